//! A license's fleet users in the operator console,
//! `/console/operator/licenses/{number}/users`: the list, a new user
//! invited with a one-time password link (shown once), a user switched off
//! or on again (off signs them out at once), a new link for one who forgot.
//! The same acts as the admin API's `…/users` routes, audited with the
//! operator and their address.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use relayhub_core::console::{
    Form, LicenseLink, Markup, OperatorViewer, PageError, PageResult, html, see_other, time_ago,
};
use relayhub_core::identity::License;
use relayhub_core::operators::{Auditor, OperatorAuth};
use serde::Deserialize;

use crate::Fleet;
use crate::model::{Role, UserPatch};

/// The section on each license's page.
pub(super) const LINK: LicenseLink =
    LicenseLink { label: "Fleet users", suffix: "users", summary: "Who signs in to the license's console and apps." };

pub(super) fn routes() -> Router<Fleet> {
    Router::new()
        .route("/console/operator/licenses/{number}/users", get(list).post(invite))
        .route("/console/operator/licenses/{number}/users/{id}/active", post(switch))
        .route("/console/operator/licenses/{number}/users/{id}/password-reset", post(reset))
}

fn users_path(license: &License) -> String {
    format!("/console/operator/licenses/{}/users", license.number)
}

fn auditor(fleet: &Fleet, viewer: &OperatorViewer, parts: &Parts) -> Auditor {
    Auditor::operator(fleet.audit.clone(), OperatorAuth(viewer.operator.clone()), parts)
}

async fn license(fleet: &Fleet, raw: &str) -> Result<License, PageError> {
    fleet.license_named(raw).await.map_err(|_| PageError::new(StatusCode::NOT_FOUND, "No such license."))
}

async fn list(State(fleet): State<Fleet>, viewer: OperatorViewer, Path(raw): Path<String>) -> PageResult {
    let license = license(&fleet, &raw).await?;
    page(&fleet, &viewer, &license, None).await
}

/// The users page, with `notice` (a link shown once) on top.
async fn page(fleet: &Fleet, viewer: &OperatorViewer, license: &License, notice: Option<Markup>) -> PageResult {
    let users = fleet.users.users(license.pk).await?;
    let base = users_path(license);
    let body = html! {
        p { a href={ "/console/operator/licenses/" (license.number) } { "Back to license " (license.number) } }
        @if let Some(notice) = notice { (notice) }
        @if users.is_empty() { p.muted { "No users yet." } } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Role" }
                    th scope="col" { "State" } th scope="col" { "Since" } th scope="col" { "" }
                } }
                tbody { @for user in &users {
                    tr {
                        td { (user.email) } td { (user.name) } td { (user.role.as_str()) }
                        td { @if user.is_active { "active" } @else { strong { "switched off" } } }
                        td { (time_ago(Some(user.created_at))) }
                        td {
                            form method="post" action={ (base) "/" (user.id) "/active" } {
                                (viewer.csrf_field())
                                input type="hidden" name="active" value=(if user.is_active { "false" } else { "true" });
                                button type="submit" { @if user.is_active { "Switch off" } @else { "Switch on" } }
                            }
                            form method="post" action={ (base) "/" (user.id) "/password-reset" } {
                                (viewer.csrf_field()) button type="submit" { "New password link" }
                            }
                        }
                    }
                } }
            } }
        }
        h2 { "Invite a user" }
        form.stack method="post" action=(base) {
            (viewer.csrf_field())
            div { label for="email" { "Email" } input #email type="email" name="email" required maxlength="254" autocomplete="off"; }
            div { label for="name" { "Name" } input #name name="name" maxlength="200"; }
            div { label for="role" { "Role" }
                select #role name="role" { option value="user" { "user" } option value="admin" { "admin" } } }
            button type="submit" { "Invite" }
        }
        p.muted { "The invitation is a one-time link (24 hours) to a page where they choose their password." }
    };
    Ok(viewer.page(&format!("Fleet users of {}", license.number), body))
}

/// A one-time link, shown this once.
fn shown_link(email: &str, reset: &crate::acts::PasswordReset) -> Markup {
    html! {
        div.notice role="status" {
            p { "The password link for " (email) " — send it to them; it is not shown again and works until "
                (reset.expires_at.rfc3339()) ":" }
            p { code.secret { (reset.path()) } }
            p.muted { "Put the server's public address in front of it." }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Invite {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

async fn invite(
    State(fleet): State<Fleet>,
    viewer: OperatorViewer,
    parts: Parts,
    Path(raw): Path<String>,
    Form(form): Form<Invite>,
) -> PageResult {
    let license = license(&fleet, &raw).await?;
    relayhub_core::http::check_length("name", &form.name, 0, 200)?;
    let role = Role::parse(&form.role).unwrap_or(Role::User);
    let auditor = auditor(&fleet, &viewer, &parts);
    let user = fleet.add_user(&auditor, &license, &form.email, form.name.trim(), role, None).await?;
    let reset = fleet.password_reset(&auditor, &license, user.id).await?;
    page(&fleet, &viewer, &license, Some(shown_link(&user.email, &reset))).await
}

#[derive(Debug, Deserialize)]
struct Active {
    active: bool,
}

async fn switch(
    State(fleet): State<Fleet>,
    viewer: OperatorViewer,
    parts: Parts,
    Path((raw, id)): Path<(String, i64)>,
    Form(form): Form<Active>,
) -> Result<Response, PageError> {
    let license = license(&fleet, &raw).await?;
    let patch = UserPatch { is_active: Some(form.active), ..UserPatch::default() };
    fleet.change_user(&auditor(&fleet, &viewer, &parts), &license, id, patch).await?;
    Ok(see_other(&users_path(&license)))
}

async fn reset(
    State(fleet): State<Fleet>,
    viewer: OperatorViewer,
    parts: Parts,
    Path((raw, id)): Path<(String, i64)>,
) -> PageResult {
    let license = license(&fleet, &raw).await?;
    let reset = fleet.password_reset(&auditor(&fleet, &viewer, &parts), &license, id).await?;
    let email = fleet.users.user(id).await?.map(|u| u.email).unwrap_or_default();
    page(&fleet, &viewer, &license, Some(shown_link(&email, &reset))).await
}
