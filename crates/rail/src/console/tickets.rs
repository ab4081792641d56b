//! `/console/rail/tickets`: the license's tickets (or one passenger's),
//! the latest departures first, and issuing a ticket.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use relayhub_core::console::{Form, Markup, Page, PageError, Viewer, html};
use relayhub_core::ids::LicensePk;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use super::view::{PAGE_SIZE, day, last_page, pager, path_id, utc_minute};
use super::{ListQuery, Query, Refusal};
use crate::Rail;
use crate::model::{Passenger, Ticket};

mod form;

use form::TicketForm;

pub(super) fn routes() -> Router<Rail> {
    Router::new().route("/console/rail/tickets", get(list).post(issue))
}

/// `?page=&user_id=`: without a page, the last (the latest departures).
#[derive(Debug, Default, Deserialize)]
struct TicketQuery {
    page: Option<u32>,
    user_id: Option<String>,
}

/// Whose tickets a page lists, and which page.
struct Listing {
    passenger: Option<Passenger>,
    page: Option<u32>,
}

async fn list(State(rail): State<Rail>, viewer: Viewer, Query(query): Query<TicketQuery>) -> Result<Page, PageError> {
    let license = rail.console_license(&viewer).await?;
    let passenger = match query.user_id.as_deref().filter(|raw| !raw.is_empty()) {
        Some(raw) => Some(passenger(&rail, license, raw).await?),
        None => None,
    };
    let draft = TicketForm::fresh(passenger.as_ref().map(|p| p.id), Timestamp::now());
    page(&rail, &viewer, license, Listing { passenger, page: query.page }, &draft, None).await
}

/// The license's passenger: another license's is "not found".
async fn passenger(rail: &Rail, license: LicensePk, raw: &str) -> Result<Passenger, PageError> {
    let id = path_id(raw, "passenger")?;
    rail.base.passenger(license, id).await?.ok_or_else(|| PageError::not_found("passenger"))
}

async fn page(
    rail: &Rail,
    viewer: &Viewer,
    license: LicensePk,
    listing: Listing,
    draft: &TicketForm,
    refusal: Option<&Refusal>,
) -> Result<Page, PageError> {
    let user = listing.passenger.as_ref().map(|p| p.id);
    let request = match listing.page {
        Some(page) => ListQuery { page: Some(page) }.request()?,
        None => {
            let total = rail.base.tickets(license, user, PageRequest { page: 1, size: 1 }).await?.total;
            PageRequest { page: last_page(total, PAGE_SIZE), size: PAGE_SIZE }
        }
    };
    let tickets = rail.base.tickets(license, user, request).await?;
    let names = names(rail, license, &tickets.items).await?;
    let choices = choices(rail, license, draft).await?;
    let (title, extra) = match &listing.passenger {
        Some(p) => (format!("Tickets of {}", p.name), format!("&user_id={}", p.id)),
        None => ("Tickets".to_owned(), String::new()),
    };
    Ok(viewer.page(
        &title,
        html! {
            p {
                a href="/console/rail" { "Rail" } " › " a href="/console/rail/tickets" { "Tickets" }
                @if let Some(p) = &listing.passenger { " › " (p.name) }
            }
            p.muted { "By departure, " (PAGE_SIZE) " a page; the last page, with the latest departures, opens first." }
            @if tickets.items.is_empty() {
                p.muted { "No tickets on this page." }
            } @else {
                (table(&tickets.items, &names))
            }
            (pager("/console/rail/tickets", &extra, request, tickets.total, "tickets"))
            h2 id="new-ticket-heading" { "Issue a ticket" }
            (form::form(viewer, draft, &choices, refusal))
        },
    ))
}

fn table(tickets: &[Ticket], names: &HashMap<Uuid, String>) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption.muted { "Tickets by departure" }
                thead { tr {
                    th scope="col" { "Code" } th scope="col" { "Passenger" } th.num scope="col" { "Train" }
                    th.num scope="col" { "Wagon" } th.num scope="col" { "Place" } th scope="col" { "Day" }
                    th scope="col" { "From → to" } th scope="col" { "Departs" } th scope="col" { "Used" }
                } }
                tbody {
                    @for t in tickets {
                        tr {
                            td { code { (t.code) } }
                            td { a href={ "/console/rail/tickets?user_id=" (t.user_id) } {
                                (names.get(&t.user_id).map_or("(unknown)", String::as_str))
                            } }
                            td.num { (t.train_number) } td.num { (t.wagon_number) } td.num { (t.place_number) }
                            td { (day(t.date)) }
                            td { (t.station_id) " → " (t.destination_id) }
                            td { (utc_minute(t.start_date)) }
                            td { @if t.used { span.badge.warn { "used" } } @else { span.badge.ok { "not used" } } }
                        }
                    }
                }
            }
        }
    }
}

/// The names of the page's passengers (at most a page's worth of look-ups).
async fn names(rail: &Rail, license: LicensePk, tickets: &[Ticket]) -> Result<HashMap<Uuid, String>, PageError> {
    let mut names = HashMap::new();
    for ticket in tickets {
        if !names.contains_key(&ticket.user_id)
            && let Some(p) = rail.base.passenger(license, ticket.user_id).await?
        {
            names.insert(p.id, p.name);
        }
    }
    Ok(names)
}

/// The passengers the form offers: the [`form::CHOICES`] newest, and the
/// one already chosen; and how many there are in all.
async fn choices(rail: &Rail, license: LicensePk, draft: &TicketForm) -> Result<form::Choices, PageError> {
    let size = form::CHOICES;
    let total = rail.base.passengers(license, PageRequest { page: 1, size: 1 }).await?.total;
    let last = last_page(total, size);
    let mut newest = rail.base.passengers(license, PageRequest { page: last, size }).await?.items;
    if newest.len() < size as usize && last > 1 {
        let before = rail.base.passengers(license, PageRequest { page: last - 1, size }).await?.items;
        let keep = before.len().saturating_sub(size as usize - newest.len());
        newest.splice(0..0, before.into_iter().skip(keep));
    }
    if let Ok(chosen) = Uuid::parse_str(&draft.user_id)
        && !newest.iter().any(|p| p.id == chosen)
        && let Some(p) = rail.base.passenger(license, chosen).await?
    {
        newest.push(p);
    }
    Ok(form::Choices { passengers: newest, total })
}

/// Issues the ticket, then on to the passenger's tickets.
async fn issue(State(rail): State<Rail>, viewer: Viewer, Form(draft): Form<TicketForm>) -> Result<Response, PageError> {
    let license = rail.console_license(&viewer).await?;
    let issued = match draft.request() {
        Ok(request) => rail.issue_ticket(license, request).await,
        Err(err) => Err(err),
    };
    match issued {
        Ok(ticket) => Ok(Redirect::to(&format!("/console/rail/tickets?user_id={}", ticket.user_id)).into_response()),
        Err(err) => {
            let refusal = Refusal::from(err);
            let listing = Listing { passenger: None, page: None };
            Ok(refusal.answer(page(&rail, &viewer, license, listing, &draft, Some(&refusal)).await?))
        }
    }
}
