//! `/console/rail`: how much the license has of each, and the way to
//! each list.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use relayhub_core::console::{PageResult, Viewer, html};
use relayhub_core::store::PageRequest;

use crate::Rail;

pub(super) fn routes() -> Router<Rail> {
    Router::new().route("/console/rail", get(overview))
}

async fn overview(State(rail): State<Rail>, viewer: Viewer) -> PageResult {
    let license = rail.console_license(&viewer).await?;
    // One row is enough to learn a list's total.
    let one = PageRequest { page: 1, size: 1 };
    let stores = rail.shops.stores(license, one).await?.total;
    let passengers = rail.base.passengers(license, one).await?.total;
    let tickets = rail.base.tickets(license, None, one).await?.total;
    let engineers = rail.base.engineers(license, one).await?.total;
    let robots = rail.base.robots(license, one).await?.total;
    Ok(viewer.page(
        "Rail",
        html! {
            p { "The railway's admin panel (seed 004's DebugConsole): what the operator's API manages, for people." }
            ul.cards {
                li {
                    a href="/console/rail/stores" { "Stores" }
                    p { (stores) " open. Their items, prices and stock; staff tokens; deleting a store." }
                }
                li {
                    a href="/console/rail/passengers" { "Passengers" }
                    p { (passengers) " known. Add one, then issue their tickets." }
                }
                li {
                    a href="/console/rail/tickets" { "Tickets" }
                    p { (tickets) " issued. The codes robots scan, and whether each has been used." }
                }
                li {
                    a href="/console/rail/engineers" { "Engineers" }
                    p { (engineers) " registered. Their privileges and access cards." }
                }
            }
            p.muted {
                "Robots (" (robots) " registered), hotels, attractions and which store travels on which train "
                "are managed through the API: " code { "/base_api/admin/…" } "."
            }
        },
    ))
}
