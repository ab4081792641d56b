//! `/console/rail/passengers`: the license's passengers, adding one (and
//! on to issue their first ticket).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use relayhub_core::console::{Form, Page, PageError, Viewer, html, time_ago};
use relayhub_core::ids::LicensePk;
use relayhub_core::store::PageRequest;
use serde::Deserialize;

use super::view::{PAGE_SIZE, last_page, pager};
use super::{ListQuery, Query, Refusal};
use crate::Rail;
use crate::api::admin::UserRequest;

pub(super) fn routes() -> Router<Rail> {
    Router::new().route("/console/rail/passengers", get(list).post(add))
}

/// The form that adds a passenger.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PassengerForm {
    name: String,
}

async fn list(State(rail): State<Rail>, viewer: Viewer, Query(query): Query<ListQuery>) -> Result<Page, PageError> {
    let license = rail.console_license(&viewer).await?;
    page(&rail, &viewer, license, query.request()?, &PassengerForm::default(), None).await
}

async fn page(
    rail: &Rail,
    viewer: &Viewer,
    license: LicensePk,
    request: PageRequest,
    draft: &PassengerForm,
    refusal: Option<&Refusal>,
) -> Result<Page, PageError> {
    let passengers = rail.base.passengers(license, request).await?;
    let described = refusal.map(|_| "new-passenger-error");
    Ok(viewer.page(
        "Passengers",
        html! {
            p { a href="/console/rail" { "Rail" } " › Passengers" }
            @if passengers.items.is_empty() {
                p.muted { "No passengers on this page." }
            } @else {
                div.table-wrap {
                    table {
                        caption.muted { "Passengers, oldest first" }
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Added" } th scope="col" { "Id" }
                            th scope="col" { "Tickets" }
                        } }
                        tbody {
                            @for p in &passengers.items {
                                tr {
                                    td { (p.name) }
                                    td { (time_ago(Some(p.created_at))) }
                                    td { code { (p.id) } }
                                    td { a href={ "/console/rail/tickets?user_id=" (p.id) } { "Tickets of " (p.name) } }
                                }
                            }
                        }
                    }
                }
            }
            (pager("/console/rail/passengers", "", request, passengers.total, "passengers"))
            h2 id="new-passenger-heading" { "Add a passenger" }
            @if let Some(refusal) = refusal { (refusal.alert("new-passenger-error")) }
            form.stack id="new-passenger" method="post" action="/console/rail/passengers"
                aria-labelledby="new-passenger-heading" {
                (viewer.csrf_field())
                div {
                    label for="passenger-name" { "Name" }
                    input #passenger-name name="name" required maxlength="60" value=(draft.name)
                        aria-describedby=[described];
                }
                button type="submit" { "Add passenger" }
            }
            p.muted { "Passengers who sign in with the railway's identity provider are added on their first sign-in." }
        },
    ))
}

/// Adds the passenger, then on to their tickets, to issue the first.
async fn add(
    State(rail): State<Rail>,
    viewer: Viewer,
    Form(draft): Form<PassengerForm>,
) -> Result<Response, PageError> {
    let license = rail.console_license(&viewer).await?;
    match rail.add_passenger(license, UserRequest { name: draft.name.clone() }).await {
        Ok(passenger) => Ok(Redirect::to(&format!("/console/rail/tickets?user_id={}", passenger.id)).into_response()),
        Err(err) => {
            let refusal = Refusal::from(err);
            // The newest passengers are on the last page, where this one would be.
            let total = rail.base.passengers(license, PageRequest { page: 1, size: 1 }).await?.total;
            let request = PageRequest { page: last_page(total, PAGE_SIZE), size: PAGE_SIZE };
            Ok(refusal.answer(page(&rail, &viewer, license, request, &draft, Some(&refusal)).await?))
        }
    }
}
