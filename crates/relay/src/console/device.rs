//! `/console/devices/{id}`: one device — its connection, its pending
//! messages with their receipts, and its settings, edited with the same
//! merge rules as `PUT /api/v1/devices/{id}/settings`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use relayhub_core::console::{Form, Markup, PageError, PageResult, Viewer, html, live, time_ago};
use relayhub_core::http::parse_json;
use relayhub_core::identity::License;
use relayhub_core::ids::DeviceId;
use relayhub_core::store::PageRequest;
use serde::Deserialize;

use super::preview;
use crate::Relay;
use crate::model::{DeviceInfo, MessageStatus};
use crate::settings::{Author, Document, Outcome, Proposal, Settings, Target, api::check};

/// Pending messages shown (the oldest; the total is said).
const PENDING_SHOWN: u32 = 100;

pub(super) fn routes() -> Router<Relay> {
    Router::new()
        .route("/console/devices/{id}", get(show))
        .route("/console/devices/{id}/live", get(show_live))
        .route("/console/devices/{id}/settings", axum::routing::post(save_settings))
        .route("/console/devices/{id}/reset", axum::routing::post(reset_secret))
}

#[derive(Debug, Default, Deserialize)]
struct Said {
    saved: Option<String>,
}

/// The device, if it is bound to the viewer's license (else a 404 page
/// that says nothing of other licenses).
async fn device(relay: &Relay, license: &License, id: &str) -> Result<(DeviceId, DeviceInfo), PageError> {
    let not_found = || PageError::not_found("device");
    let device_id = DeviceId::parse(id).map_err(|_| not_found())?;
    let record = relay.devices.device(license.pk, &device_id).await?.ok_or_else(not_found)?;
    Ok((device_id, relay.info(record).await?))
}

async fn show(
    State(relay): State<Relay>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(said): Query<Said>,
) -> PageResult {
    let license = relay.console_license(&viewer).await?;
    let (device_id, _) = device(&relay, &license, &id).await?;
    let settings = relay.settings.settings(license.pk, &device_id).await?;
    let notice = match said.saved.as_deref() {
        Some("merged") => Some("Settings saved, merged with changes made since you opened them."),
        Some("reset") => Some("Device secret reset: the device's next connection gets a new one."),
        Some(_) => Some("Settings saved."),
        None => None,
    };
    let form = settings_form(&viewer, &id, &settings);
    page(&relay, &viewer, &device_id, notice, None, form).await
}

async fn page(
    relay: &Relay,
    viewer: &Viewer,
    device_id: &DeviceId,
    notice: Option<&str>,
    error: Option<Markup>,
    form: Markup,
) -> PageResult {
    let license = relay.console_license(viewer).await?;
    let state = state(relay, &license, device_id).await?;
    let id = device_id.as_str();
    Ok(viewer.page(
        id,
        html! {
            p { a href="/console/devices" { "← All devices" } }
            div data-live=(format!("/console/devices/{id}/live")) { (state) }
            @if license.binding.has_secrets() {
                form method="post" action=(format!("/console/devices/{id}/reset")) aria-describedby="reset-help" {
                    (viewer.csrf_field())
                    button type="submit" { "Reset device secret" }
                    p.muted #reset-help {
                        "For a reinstalled app that lost its secret: the device's next connection gets a new "
                        "one, and the old one stops working."
                    }
                }
            }
            h2 #settings-heading { "Settings" }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @if let Some(error) = error { div.error role="alert" { (error) } }
            (form)
        },
    ))
}

async fn show_live(State(relay): State<Relay>, viewer: Viewer, Path(id): Path<String>) -> Result<Response, PageError> {
    let license = relay.console_license(&viewer).await?;
    let (device_id, _) = device(&relay, &license, &id).await?;
    Ok(live(move || {
        let (relay, license, device_id) = (relay.clone(), license.clone(), device_id.clone());
        async move { state(&relay, &license, &device_id).await }
    })
    .into_response())
}

/// The device's connection and queue: the one fragment the page and its
/// live region render.
async fn state(relay: &Relay, license: &License, device_id: &DeviceId) -> Result<Markup, PageError> {
    let record = relay.devices.device(license.pk, device_id).await?.ok_or_else(|| PageError::not_found("device"))?;
    let info = relay.info(record).await?;
    let pending = relay.queue.pending(license.pk, device_id, PageRequest { page: 1, size: PENDING_SHOWN }).await?;
    Ok(html! {
        dl.facts {
            dt { "Connection" } dd { (super::devices::connection(&info)) }
            dt { "Last seen" } dd { (time_ago(info.last_seen)) }
            dt { "Bound" } dd { (time_ago(Some(info.bound_at))) }
            dt { "Device secret" } dd #device-secret { (super::devices::secret_state(license, &info)) }
            dt { "Pending messages" } dd #pending-count { (info.pending) }
        }
        h2 { "Pending messages" }
        @if pending.items.is_empty() {
            p { "Nothing waiting: every message was acknowledged." }
        } @else {
            @if pending.total > u64::from(PENDING_SHOWN) {
                p.muted { "The oldest " (PENDING_SHOWN) " of " (pending.total) "." }
            }
            div.table-wrap {
                table #pending {
                    thead { tr {
                        th scope="col" class="num" { "Seq" } th scope="col" { "Message" } th scope="col" { "Receipt" }
                        th scope="col" { "Accepted" } th scope="col" { "Data" }
                    } }
                    tbody {
                        @for message in &pending.items {
                            tr data-message=(message.id) {
                                td.num { (message.seq) }
                                td { code { (message.id) } }
                                td { (status_badge(message.status)) }
                                td { (time_ago(Some(message.time))) }
                                td { pre { (preview(message.data.get(), 300)) } }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A receipt's status, worded and coloured.
pub(super) fn status_badge(status: MessageStatus) -> Markup {
    let (class, text) = match status {
        MessageStatus::Queued => ("badge warn", "queued"),
        MessageStatus::Sent => ("badge warn", "sent, not acknowledged"),
        MessageStatus::Delivered => ("badge ok", "delivered"),
        MessageStatus::Expired => ("badge bad", "expired"),
    };
    html! { span class=(class) { (text) } }
}

fn settings_form(viewer: &Viewer, id: &str, settings: &Settings) -> Markup {
    let text = serde_json::to_string_pretty(&settings.settings).unwrap_or_else(|_| "{}".into());
    settings_form_with(viewer, id, settings.version, &text)
}

fn settings_form_with(viewer: &Viewer, id: &str, version: i64, text: &str) -> Markup {
    html! {
        form.stack method="post" action=(format!("/console/devices/{id}/settings")) aria-labelledby="settings-heading" {
            (viewer.csrf_field())
            input type="hidden" name="version" value=(version);
            div {
                label for="settings" { "Settings (JSON)" }
                textarea #settings name="settings" spellcheck="false" aria-describedby="settings-help" { (text) }
                p.muted #settings-help {
                    "Version " (version) ". Changes made meanwhile to other keys are merged; "
                    "changes to the same keys are refused and shown."
                }
            }
            button type="submit" { "Save settings" }
        }
    }
}

/// The reset button's form: nothing but the CSRF field.
#[derive(Debug, Deserialize)]
struct ResetForm {}

async fn reset_secret(
    State(relay): State<Relay>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(ResetForm {}): Form<ResetForm>,
) -> Result<Response, PageError> {
    let license = relay.console_license(&viewer).await?;
    let (device_id, _) = device(&relay, &license, &id).await?;
    relay.devices.reset_secret(license.pk, &device_id).await?;
    tracing::info!(device = %device_id, license = %license.number, "device secret reset from the console");
    Ok(Redirect::to(&format!("/console/devices/{}?saved=reset", device_id.as_str())).into_response())
}

#[derive(Debug, Deserialize)]
struct SettingsForm {
    version: i64,
    settings: String,
}

async fn save_settings(
    State(relay): State<Relay>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, PageError> {
    let license = relay.console_license(&viewer).await?;
    let (device_id, _) = device(&relay, &license, &id).await?;
    let parsed = parse_json::<Document>(form.settings.as_bytes())
        .and_then(|doc| check(&doc, form.version, relay.config.settings_limit).map(|()| doc));
    let (status, error, form) = match parsed {
        // The person's text stays in the form, to be mended.
        Err(err) => {
            let error = html! { p { "Not saved: " (err.message) } };
            (err.status(), error, settings_form_with(&viewer, &id, form.version, &form.settings))
        }
        Ok(document) => {
            let proposal = Proposal { base_version: form.version, document, author: Author::BackOffice };
            let target = Target::BackOffice { license: license.clone(), device: device_id.clone() };
            match relay.settings.write_settings(target, proposal).await? {
                Outcome::Applied { merged, .. } => {
                    let said = if merged { "merged" } else { "1" };
                    let to = format!("/console/devices/{}?saved={said}#settings-heading", device_id.as_str());
                    return Ok(Redirect::to(&to).into_response());
                }
                Outcome::Conflict { current, paths, reason } => {
                    let error = html! {
                        p { "Not saved: " (reason) }
                        p { "Changed by someone else meanwhile: " @for (i, path) in paths.iter().enumerate() {
                            @if i > 0 { ", " } code { (path) }
                        } ". The form now holds the current settings; yours were:" }
                        pre { (form.settings) }
                    };
                    (StatusCode::CONFLICT, error, settings_form(&viewer, &id, &current))
                }
            }
        }
    };
    let mut page = page(&relay, &viewer, &device_id, None, Some(error), form).await?.into_response();
    *page.status_mut() = status;
    Ok(page)
}
