//! `/console/license` and `/console/inbox`: the license's parameters and
//! usage, and the records devices sent up that wait for the back-office.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use relayhub_core::console::{Markup, PageError, PageResult, Viewer, html, live, time_ago};
use relayhub_core::identity::License;
use relayhub_core::time::Timestamp;

use super::preview;
use crate::Relay;

/// Records shown (the oldest, as the back-office will read them).
const INBOX_SHOWN: usize = 100;

pub(super) fn routes() -> Router<Relay> {
    Router::new()
        .route("/console/license", get(license))
        .route("/console/inbox", get(inbox))
        .route("/console/inbox/live", get(inbox_live))
}

async fn license(State(relay): State<Relay>, viewer: Viewer) -> PageResult {
    let license = relay.console_license(&viewer).await?;
    let devices = relay.devices.device_count(license.pk).await?;
    let view = license.view(Some(devices));
    let expired = license.is_expired(Timestamp::now());
    Ok(viewer.page(
        "License",
        html! {
            dl.facts #license {
                dt { "Number" } dd { code { (view.number) } }
                dt { "Name" } dd { (view.name) }
                dt { "Valid until" } dd {
                    @match &view.expires { Some(day) => { (day) " (UTC)" }, None => { "no expiry" } }
                    @if expired { " " span.badge.bad { "expired" } }
                }
                dt { "Devices" } dd {
                    (devices)
                    @match view.max_devices { Some(max) => { " of " (max) }, None => { " (no limit)" } }
                }
                dt { "Created" } dd { (time_ago(Some(view.created_at))) }
            }
            p.muted { "Tokens and the app API key are managed with " code { "relayhub license" } " and "
                code { "relayhub apikey" } "; they are shown once, when made, and never here." }
        },
    ))
}

async fn inbox(State(relay): State<Relay>, viewer: Viewer) -> PageResult {
    let license = relay.console_license(&viewer).await?;
    let records = records(&relay, &license).await?;
    Ok(viewer.page(
        "Inbox",
        html! {
            p.muted { "Records devices sent up, oldest first, until the back-office acknowledges them "
                "(" code { "POST /api/v1/inbox/ack" } "). The console only shows them: taking them is the back-office's." }
            div data-live="/console/inbox/live" { (records) }
        },
    ))
}

async fn inbox_live(State(relay): State<Relay>, viewer: Viewer) -> Result<Response, PageError> {
    let license = relay.console_license(&viewer).await?;
    Ok(live(move || {
        let (relay, license) = (relay.clone(), license.clone());
        async move { records(&relay, &license).await }
    })
    .into_response())
}

async fn records(relay: &Relay, license: &License) -> Result<Markup, PageError> {
    let records = relay.inbox.inbox(license.pk, INBOX_SHOWN).await?;
    Ok(html! {
        @if records.is_empty() {
            p #inbox-empty { "The inbox is empty." }
        } @else {
            @if records.len() == INBOX_SHOWN { p.muted { "The oldest " (INBOX_SHOWN) " records." } }
            div.table-wrap {
                table #inbox {
                    thead { tr {
                        th scope="col" { "Device" } th scope="col" { "Ref" } th scope="col" { "Stored" } th scope="col" { "Data" }
                    } }
                    tbody {
                        @for record in &records {
                            tr {
                                td { a href=(format!("/console/devices/{}", record.device_id.as_str())) { code { (record.device_id.as_str()) } } }
                                td { code { (record.reference) } }
                                td { (time_ago(Some(record.time))) }
                                td { pre { (preview(record.data.get(), 300)) } }
                            }
                        }
                    }
                }
            }
        }
    })
}
