//! The operator console's licenses: the list with each one's usage and a
//! form for a new customer; a license's page with its settings, its
//! suspension, its bearer tokens and app keys, and its deletion. A secret
//! is shown once, on the page that answers the form that made it.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use relayhub_core::console::{Form, Markup, PageError, PageResult, html, see_other, time_ago};
use relayhub_core::error::ApiError;
use relayhub_core::identity::{BindingPolicy, KeyScope, License, LicenseUpdate, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::store::PageRequest;
use serde::Deserialize;

use crate::Admin;
use crate::api::LicenseUsed;
use crate::rules::{self, Expires};
use relayhub_core::console::{OPERATOR_HOME as HOME, OperatorViewer};

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route(HOME, get(list))
        .route("/console/operator/licenses", post(create))
        .route("/console/operator/licenses/{number}", get(show))
        .route("/console/operator/licenses/{number}/edit", post(edit))
        .route("/console/operator/licenses/{number}/suspend", post(suspend))
        .route("/console/operator/licenses/{number}/tokens", post(issue_token))
        .route("/console/operator/licenses/{number}/tokens/{id}/revoke", post(revoke_token))
        .route("/console/operator/licenses/{number}/keys", post(create_key))
        .route("/console/operator/licenses/{number}/keys/{id}/revoke", post(revoke_key))
        .route("/console/operator/licenses/{number}/delete", post(delete))
}

/// Licenses on one page of the list.
const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
struct ListAsk {
    #[serde(default)]
    page: Option<u32>,
    /// The number of a license just deleted.
    #[serde(default)]
    deleted: Option<String>,
}

fn path_of(number: &LicenseNumber) -> String {
    format!("/console/operator/licenses/{number}")
}

fn number(raw: &str) -> Result<LicenseNumber, PageError> {
    LicenseNumber::parse(raw).map_err(|_| PageError::new(StatusCode::NOT_FOUND, "No such license."))
}

/// A refusal shown as a page with its status (the API's words).
fn refusal(err: ApiError) -> PageError {
    PageError::from(err)
}

async fn list(State(admin): State<Admin>, viewer: OperatorViewer, Query(ask): Query<ListAsk>) -> PageResult {
    let page = ask.page.unwrap_or(1).clamp(1, PageRequest::MAX_PAGE);
    let found = admin.identity.license_page(PageRequest { page, size: PAGE_SIZE }).await?;
    let mut rows = Vec::with_capacity(found.items.len());
    for license in &found.items {
        rows.push(admin.view(license).await.map_err(refusal)?);
    }
    let pages = found.total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let body = html! {
        @if let Some(number) = &ask.deleted { p.notice role="status" { "License " (number) " and all its data are deleted." } }
        p { (found.total) " licenses." }
        div.table-wrap {
            table {
                thead { tr {
                    th scope="col" { "License" } th scope="col" { "State" } th scope="col" { "Devices (online)" }
                    th scope="col" { "Queued" } th scope="col" { "Inbox" } th scope="col" { "Telemetry, 24 h" }
                } }
                tbody {
                    @for row in &rows {
                        tr {
                            td { a href=(path_of(&row.license.number)) { (row.license.number) } " " span.muted { (row.license.name) } }
                            td { (state(row)) }
                            td { (row.usage.devices_bound) " (" (row.usage.devices_online) ")" }
                            td { (row.usage.messages_queued) }
                            td { (row.usage.inbox_waiting) }
                            td { (row.usage.telemetry_points_day) " points" }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href={ (HOME) "?page=" (page - 1) } { "Previous" } " " }
                "Page " (page) " of " (pages)
                @if u64::from(page) < pages { " " a href={ (HOME) "?page=" (page + 1) } { "Next" } }
            }
        }
        h2 { "A new customer" }
        form.stack method="post" action="/console/operator/licenses" {
            (viewer.csrf_field())
            div { label for="number" { "Number" } input #number name="number" required maxlength="64" pattern="[A-Za-z0-9._\\-]{1,64}"; }
            div { label for="name" { "Name" } input #name name="name" maxlength="200"; }
            div { label for="expires" { "Last valid day (empty: never expires)" } input #expires type="date" name="expires"; }
            div { label for="max_devices" { "Device limit (empty: none)" } input #max_devices type="number" min="0" name="max_devices"; }
            button type="submit" { "Create the license" }
        }
    };
    Ok(viewer.page("Licenses", body))
}

/// "active", "suspended" or "expired", as a person reads it.
fn state(row: &LicenseUsed) -> Markup {
    let expired = row.license.expires_at.is_some_and(|at| at <= relayhub_core::time::Timestamp::now());
    html! {
        @if row.license.suspended_at.is_some() { strong { "suspended" } }
        @else if expired { strong { "expired" } }
        @else { "active" }
    }
}

#[derive(Debug, Deserialize)]
struct LicenseFields {
    #[serde(default)]
    number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    max_devices: String,
    /// How devices bind; empty keeps it (a new license: `first_use`).
    #[serde(default)]
    binding: String,
}

impl LicenseFields {
    /// The expiry instant the form names (empty: never).
    fn expires_at(&self) -> Result<Option<relayhub_core::time::Timestamp>, ApiError> {
        let day = self.expires.trim();
        if day.is_empty() { Ok(None) } else { Ok(Expires::parse(day)?.at()) }
    }

    /// The device limit the form names (empty: none).
    fn max_devices(&self) -> Result<Option<u32>, ApiError> {
        let limit = self.max_devices.trim();
        if limit.is_empty() {
            return Ok(None);
        }
        let limit = limit.parse().map_err(|_| ApiError::invalid_field("max_devices is a whole number"))?;
        Ok(Some(rules::device_limit(limit)?))
    }

    fn binding(&self) -> Result<Option<BindingPolicy>, ApiError> {
        match self.binding.trim() {
            "" => Ok(None),
            raw => raw.parse().map(Some).map_err(ApiError::invalid_field),
        }
    }

    fn name(&self) -> Result<String, ApiError> {
        relayhub_core::http::check_length("name", &self.name, 0, 200)?;
        Ok(self.name.trim().to_owned())
    }
}

async fn create(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Form(fields): Form<LicenseFields>,
) -> PageResult {
    let number = LicenseNumber::parse(fields.number.trim()).map_err(refusal)?;
    let new = NewLicense {
        number,
        name: fields.name().map_err(refusal)?,
        expires_at: fields.expires_at().map_err(refusal)?,
        max_devices: fields.max_devices().map_err(refusal)?,
        binding: fields.binding().map_err(refusal)?.unwrap_or_default(),
    };
    let (license, token) = admin.console_acts(&viewer, &parts).create_license(new).await?;
    let shown = once("The license's first bearer token", &token.id, token.secret.expose());
    license_page(&admin, &viewer, &license, Some(shown)).await
}

/// A secret just made, shown this once.
fn once(what: &str, id: &str, secret: &str) -> Markup {
    html! {
        div.notice role="status" {
            p { (what) " (" code { (id) } ") — copy it now, it is not shown again:" }
            p { code.secret { (secret) } }
        }
    }
}

async fn show(State(admin): State<Admin>, viewer: OperatorViewer, Path(raw): Path<String>) -> PageResult {
    let license = admin.license_or_page(&raw).await?;
    license_page(&admin, &viewer, &license, None).await
}

impl Admin {
    async fn license_or_page(&self, raw: &str) -> Result<License, PageError> {
        Ok(relayhub_core::identity::existing_license(self.identity.as_ref(), &number(raw)?).await?)
    }
}

/// A license's page, with `notice` (a secret shown once) on top.
async fn license_page(admin: &Admin, viewer: &OperatorViewer, license: &License, notice: Option<Markup>) -> PageResult {
    let row = admin.view(license).await.map_err(refusal)?;
    let tokens = admin.identity.tokens(license.pk).await?;
    let keys: Vec<_> = admin
        .identity
        .api_keys()
        .await?
        .into_iter()
        .filter(|key| matches!(&key.scope, KeyScope::Licenses(pks) if pks.contains(&license.pk)))
        .collect();
    let base = path_of(&license.number);
    let view = &row.license;
    let usage = &row.usage;
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        dl.facts {
            dt { "Name" } dd { (view.name) }
            dt { "State" } dd { (state(&row)) @if let Some(at) = view.suspended_at { " since " (time_ago(Some(at))) } }
            dt { "Expires" } dd { (view.expires.as_deref().unwrap_or("never")) }
            dt { "Device limit" } dd { @match view.max_devices { Some(n) => (n), None => "none" } }
            dt { "Device binding" } dd { (view.binding.as_str()) }
            dt { "Created" } dd { (time_ago(Some(view.created_at))) }
        }
        h2 { "Usage" }
        dl.facts {
            dt { "Devices bound" } dd { (usage.devices_bound) }
            dt { "Online now" } dd { (usage.devices_online) }
            dt { "Messages queued" } dd { (usage.messages_queued) }
            dt { "Inbox records waiting" } dd { (usage.inbox_waiting) }
            dt { "Telemetry points, last 24 h" } dd { (usage.telemetry_points_day) }
            dt { "Telemetry stored" } dd { (usage.telemetry_bytes) " bytes" }
        }
        @if !viewer.license_links.is_empty() {
            ul.cards {
                @for link in viewer.license_links.iter() {
                    li { a href={ (base) "/" (link.suffix) } { (link.label) } p { (link.summary) } }
                }
            }
        }
        h2 { "Settings" }
        form.stack method="post" action={ (base) "/edit" } {
            (viewer.csrf_field())
            div { label for="name" { "Name" } input #name name="name" maxlength="200" value=(view.name); }
            div { label for="expires" { "Last valid day (empty: never expires)" }
                input #expires type="date" name="expires" value=(view.expires.as_deref().unwrap_or("")); }
            div { label for="max_devices" { "Device limit (empty: none)" }
                input #max_devices type="number" min="0" name="max_devices" value=(view.max_devices.map(|n| n.to_string()).unwrap_or_default()); }
            div { label for="binding" { "Device binding" }
                (binding_select(view.binding)) }
            button type="submit" { "Save" }
        }
        form method="post" action={ (base) "/suspend" } {
            (viewer.csrf_field())
            @if view.suspended_at.is_some() {
                input type="hidden" name="suspended" value="false";
                button type="submit" { "Resume the license" }
            } @else {
                input type="hidden" name="suspended" value="true";
                p.muted { "Suspending refuses its tokens, devices and users at once, on every node; its data is kept." }
                button type="submit" { "Suspend the license" }
            }
        }
        h2 { "Bearer tokens" }
        (credentials(viewer, &tokens, &format!("{base}/tokens")))
        form method="post" action={ (base) "/tokens" } { (viewer.csrf_field()) button type="submit" { "Issue a token" } }
        h2 { "App keys for this license only" }
        (credentials(viewer, &keys.iter().map(|k| k.info.clone()).collect::<Vec<_>>(), &format!("{base}/keys")))
        form.stack method="post" action={ (base) "/keys" } {
            (viewer.csrf_field())
            div { label for="key-name" { "Key name" } input #key-name name="name" maxlength="200" required placeholder="android"; }
            button type="submit" { "Create an app key" }
        }
        h2 { "Delete" }
        form.stack method="post" action={ (base) "/delete" } {
            (viewer.csrf_field())
            p { "Deletes the license with all its data — devices and queues, inbox, fleet users and robots, telemetry, "
                "rail data — on every node. It cannot be undone." }
            div { label for="confirm" { "Type " code { (view.number) } " to confirm" }
                input #confirm name="confirm" required maxlength="64" autocomplete="off"; }
            button.danger type="submit" { "Delete the license" }
        }
    };
    Ok(viewer.page(&format!("License {}", view.number), body))
}

/// How devices bind, with `current` chosen: what each choice means is in
/// the README (`binding`).
fn binding_select(current: BindingPolicy) -> Markup {
    let choices = [
        (BindingPolicy::Open, "open — the app key and an id are enough"),
        (BindingPolicy::FirstUse, "first_use — a device secret from its first connection on"),
        (BindingPolicy::Preregistered, "preregistered — only ids the back office bound, with a secret"),
    ];
    html! {
        select #binding name="binding" {
            @for (policy, text) in choices {
                option value=(policy.as_str()) selected[policy == current] { (text) }
            }
        }
    }
}

/// Tokens or keys, with a revoke button for each live one.
fn credentials(viewer: &OperatorViewer, items: &[relayhub_core::identity::CredentialInfo], base: &str) -> Markup {
    html! {
        @if items.is_empty() { p.muted { "None." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Created" } th scope="col" { "" } } }
                tbody { @for item in items {
                    tr {
                        td { code { (item.id) } } td { (item.name) } td { (time_ago(Some(item.created_at))) }
                        td { @if item.revoked_at.is_some() { "revoked" } @else {
                            form method="post" action={ (base) "/" (item.id) "/revoke" } {
                                (viewer.csrf_field()) button type="submit" { "Revoke" }
                            }
                        } }
                    }
                } }
            } }
        }
    }
}

async fn edit(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path(raw): Path<String>,
    Form(fields): Form<LicenseFields>,
) -> Result<Response, PageError> {
    let number = number(&raw)?;
    let update = LicenseUpdate {
        name: Some(fields.name().map_err(refusal)?),
        expires_at: Some(fields.expires_at().map_err(refusal)?),
        max_devices: Some(fields.max_devices().map_err(refusal)?),
        binding: fields.binding().map_err(refusal)?,
        ..LicenseUpdate::default()
    };
    admin.console_acts(&viewer, &parts).update_license(&number, update).await?;
    Ok(see_other(&path_of(&number)))
}

#[derive(Debug, Deserialize)]
struct Suspension {
    suspended: bool,
}

async fn suspend(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path(raw): Path<String>,
    Form(form): Form<Suspension>,
) -> Result<Response, PageError> {
    let number = number(&raw)?;
    let update = LicenseUpdate { suspended: Some(form.suspended), ..LicenseUpdate::default() };
    admin.console_acts(&viewer, &parts).update_license(&number, update).await?;
    Ok(see_other(&path_of(&number)))
}

async fn issue_token(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path(raw): Path<String>,
) -> PageResult {
    let license = admin.license_or_page(&raw).await?;
    let token = admin.console_acts(&viewer, &parts).issue_token(&license.number).await?;
    let shown = once("A new bearer token", &token.id, token.secret.expose());
    license_page(&admin, &viewer, &license, Some(shown)).await
}

async fn revoke_token(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path((raw, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let number = number(&raw)?;
    admin.console_acts(&viewer, &parts).revoke_token(&number, &id).await?;
    Ok(see_other(&path_of(&number)))
}

#[derive(Debug, Deserialize)]
struct KeyFields {
    #[serde(default)]
    name: String,
}

async fn create_key(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path(raw): Path<String>,
    Form(fields): Form<KeyFields>,
) -> PageResult {
    let license = admin.license_or_page(&raw).await?;
    relayhub_core::http::check_length("name", &fields.name, 0, 200).map_err(refusal)?;
    let key = admin
        .console_acts(&viewer, &parts)
        .create_api_key(fields.name.trim(), std::slice::from_ref(&license.number))
        .await?;
    let shown = once("A new app key", &key.id, key.secret.expose());
    license_page(&admin, &viewer, &license, Some(shown)).await
}

async fn revoke_key(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path((raw, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let license = admin.license_or_page(&raw).await?;
    let scoped = admin
        .identity
        .api_keys()
        .await?
        .into_iter()
        .any(|key| key.info.id == id && matches!(&key.scope, KeyScope::Licenses(pks) if pks.contains(&license.pk)));
    if !scoped {
        return Err(PageError::new(StatusCode::NOT_FOUND, "No such app key of this license."));
    }
    admin.console_acts(&viewer, &parts).revoke_api_key(&id).await?;
    Ok(see_other(&path_of(&license.number)))
}

#[derive(Debug, Deserialize)]
struct Confirm {
    #[serde(default)]
    confirm: String,
}

async fn delete(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Path(raw): Path<String>,
    Form(form): Form<Confirm>,
) -> Result<Response, PageError> {
    let number = number(&raw)?;
    let acts = admin.console_acts(&viewer, &parts);
    admin.delete_license(acts, number.clone(), form.confirm).await?;
    Ok(see_other(&format!("{HOME}?deleted={number}")).into_response())
}
