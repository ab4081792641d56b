//! `/console/devices`: the license's devices, a page at a time, and a
//! receipt looked up by message id.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use relayhub_core::console::{Markup, PageError, PageResult, Viewer, html, live, time_ago};
use relayhub_core::identity::License;
use relayhub_core::store::PageRequest;
use serde::Deserialize;
use uuid::Uuid;

use crate::Relay;
use crate::model::DeviceInfo;

/// Devices per page.
const PAGE_SIZE: u32 = 50;

pub(super) fn routes() -> Router<Relay> {
    Router::new()
        .route("/console/devices", get(list))
        .route("/console/live/devices", get(list_live))
        .route("/console/receipt", get(receipt))
}

#[derive(Debug, Deserialize)]
struct Paging {
    page: Option<u32>,
}

impl Paging {
    fn request(&self) -> PageRequest {
        PageRequest { page: self.page.unwrap_or(1).clamp(1, PageRequest::MAX_PAGE), size: PAGE_SIZE }
    }
}

async fn list(State(relay): State<Relay>, viewer: Viewer, Query(paging): Query<Paging>) -> PageResult {
    let license = relay.console_license(&viewer).await?;
    let page = paging.request();
    let table = table(&relay, &license, page).await?;
    Ok(viewer.page(
        "Devices",
        html! {
            div data-live=(format!("/console/live/devices?page={}", page.page)) { (table) }
            h2 { "Look up a message" }
            form.stack method="get" action="/console/receipt" {
                div {
                    label for="receipt-id" { "Message id" }
                    input #receipt-id name="id" required pattern="[0-9a-fA-F-]{36}" placeholder="the id from the 202 answer";
                }
                button type="submit" { "Show receipt" }
            }
        },
    ))
}

async fn list_live(
    State(relay): State<Relay>,
    viewer: Viewer,
    Query(paging): Query<Paging>,
) -> Result<Response, PageError> {
    let license = relay.console_license(&viewer).await?;
    let page = paging.request();
    Ok(live(move || {
        let (relay, license) = (relay.clone(), license.clone());
        async move { table(&relay, &license, page).await }
    })
    .into_response())
}

/// The page's table and pager: the one fragment the page and its live
/// region render.
async fn table(relay: &Relay, license: &License, page: PageRequest) -> Result<Markup, PageError> {
    let found = relay.devices.devices(license.pk, page).await?;
    let devices = relay.infos(found.items).await?;
    let last_page = found.total.div_ceil(u64::from(page.size)).max(1);
    Ok(html! {
        p.muted { (found.total) @if found.total == 1 { " device" } @else { " devices" } " bound to " (license_name(license)) "." }
        @if devices.is_empty() {
            p { "No devices yet. A device appears here when the back-office sends it a message, binds it, or it connects." }
        } @else {
            div.table-wrap {
                table #devices {
                    thead { tr {
                        th scope="col" { "Device" } th scope="col" { "Connection" }
                        th scope="col" class="num" { "Pending" } th scope="col" { "Last seen" } th scope="col" { "Bound" }
                        th scope="col" { "Device secret" }
                    } }
                    tbody { @for device in &devices { (row(license, device)) } }
                }
            }
        }
        @if last_page > 1 {
            nav.pager aria-label="Pages" {
                @if page.page > 1 { a href=(format!("/console/devices?page={}", page.page - 1)) { "Previous" } }
                span { "Page " (page.page) " of " (last_page) }
                @if u64::from(page.page) < last_page { a href=(format!("/console/devices?page={}", page.page + 1)) { "Next" } }
            }
        }
    })
}

fn row(license: &License, device: &DeviceInfo) -> Markup {
    let id = device.device_id.as_str();
    html! {
        tr data-device=(id) {
            td { a href=(format!("/console/devices/{id}")) { code { (id) } } }
            td { (connection(device)) }
            td.num.pending { (device.pending) }
            td { (time_ago(device.last_seen)) }
            td { (time_ago(Some(device.bound_at))) }
            td.secret { (secret_state(license, device)) }
        }
    }
}

/// Whether the device proves who it is, in words.
pub(super) fn secret_state(license: &License, info: &DeviceInfo) -> &'static str {
    match (license.binding.has_secrets(), info.has_secret) {
        (false, _) => "none: the license is open (the app key is enough)",
        (true, true) => "set: its connections must present it",
        (true, false) => "none yet: its next connection gets one",
    }
}

/// Online, or how long since; a bound device that never connected says so.
pub(super) fn connection(device: &DeviceInfo) -> Markup {
    match (device.online, device.last_seen) {
        (true, _) => html! { span.badge.ok { "Online" } },
        (false, Some(_)) => html! { span.badge.off { "Offline" } },
        (false, None) => html! { span.badge.warn { "Never connected" } },
    }
}

#[derive(Debug, Deserialize)]
struct ReceiptQuery {
    id: String,
}

/// A message's receipt, as `GET /api/v1/messages/{id}` gives it.
async fn receipt(State(relay): State<Relay>, viewer: Viewer, Query(query): Query<ReceiptQuery>) -> PageResult {
    let license = relay.console_license(&viewer).await?;
    let not_found = || PageError::not_found("message");
    let id = Uuid::parse_str(query.id.trim()).map_err(|_| not_found())?;
    let receipt = relay.receipt_of(license.pk, id).await?.ok_or_else(not_found)?;
    let device = receipt.device_id.as_str().to_owned();
    Ok(viewer.page(
        "Message receipt",
        html! {
            dl.facts #receipt {
                dt { "Message" } dd { code { (receipt.id) } }
                dt { "Device" } dd { a href=(format!("/console/devices/{device}")) { code { (device) } } }
                dt { "Status" } dd { (super::device::status_badge(receipt.status)) }
                dt { "Sequence" } dd { (receipt.seq) }
                dt { "Accepted" } dd { (time_ago(Some(receipt.time))) }
                dt { "Status since" } dd { (time_ago(Some(receipt.updated_at))) }
                @if let Some(at) = receipt.expires_at { dt { "Expires" } dd { (at.rfc3339()) } }
            }
        },
    ))
}

/// The license's name, or its number when it has none.
fn license_name(license: &License) -> &str {
    if license.name.trim().is_empty() { license.number.as_str() } else { &license.name }
}
