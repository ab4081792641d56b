//! The operator console's operators (the list, and another added with a
//! password for this console) and the audit log (newest first, by license
//! or by operator, paged).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use relayhub_core::console::{Form, PageError, PageResult, html, see_other, time_ago};
use relayhub_core::operators::AuditFilter;
use relayhub_core::store::PageRequest;
use serde::Deserialize;
use uuid::Uuid;

use crate::Admin;
use relayhub_core::console::OperatorViewer;

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/operator/operators", get(operators).post(add_operator))
        .route("/console/operator/audit", get(audit))
}

/// Acts on one page of the audit log.
const AUDIT_PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
struct Added {
    #[serde(default)]
    added: Option<String>,
}

async fn operators(State(admin): State<Admin>, viewer: OperatorViewer, Query(added): Query<Added>) -> PageResult {
    let operators = admin.operators.operators().await?;
    let tokens = admin.operators.operator_tokens().await?;
    let body = html! {
        @if let Some(email) = &added.added { p.notice role="status" { "Operator " (email) " added." } }
        div.table-wrap { table {
            thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "API tokens" } th scope="col" { "Since" } } }
            tbody { @for operator in &operators {
                @let live = tokens.iter().filter(|t| t.operator == operator.id && t.info.revoked_at.is_none()).count();
                tr {
                    td { a href={ "/console/operator/audit?operator=" (operator.id) } { (operator.email) } }
                    td { (operator.name) } td { (live) } td { (time_ago(Some(operator.created_at))) }
                }
            } }
        } }
        h2 { "Another operator" }
        form.stack method="post" action="/console/operator/operators" {
            (viewer.csrf_field())
            div { label for="email" { "Email" } input #email type="email" name="email" required maxlength="254" autocomplete="off"; }
            div { label for="name" { "Name" } input #name name="name" maxlength="200"; }
            div { label for="password" { "Password (8 characters or more), for this console" }
                input #password type="password" name="password" required minlength="8" maxlength="200" autocomplete="new-password"; }
            button type="submit" { "Add the operator" }
        }
        p.muted { "API tokens for automation are made over the admin API or with " code { "relayhub operator token create" } "." }
    };
    Ok(viewer.page("Operators", body))
}

#[derive(Debug, Deserialize)]
struct NewOperatorFields {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

async fn add_operator(
    State(admin): State<Admin>,
    viewer: OperatorViewer,
    parts: Parts,
    Form(fields): Form<NewOperatorFields>,
) -> Result<Response, PageError> {
    relayhub_core::http::check_length("name", &fields.name, 0, 200)?;
    let acts = admin.console_acts(&viewer, &parts);
    let operator = acts.create_operator(&fields.email, fields.name.trim(), fields.password).await?;
    let email: String = form_urlencoded::byte_serialize(operator.email.as_bytes()).collect();
    Ok(see_other(&format!("/console/operator/operators?added={email}")))
}

#[derive(Debug, Default, Deserialize)]
struct AuditAsk {
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    operator: Option<Uuid>,
    #[serde(default)]
    page: Option<u32>,
}

async fn audit(State(admin): State<Admin>, viewer: OperatorViewer, Query(ask): Query<AuditAsk>) -> PageResult {
    let license = ask.license.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned);
    let page = ask.page.unwrap_or(1).clamp(1, PageRequest::MAX_PAGE);
    let filter = AuditFilter { license: license.clone(), operator: ask.operator };
    let found = admin.audit.entries(filter, PageRequest { page, size: AUDIT_PAGE }).await?;
    let pages = found.total.div_ceil(u64::from(AUDIT_PAGE)).max(1);
    let query = |page: u32| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(license) = &license {
            query.append_pair("license", license);
        }
        if let Some(operator) = ask.operator {
            query.append_pair("operator", &operator.to_string());
        }
        query.append_pair("page", &page.to_string());
        format!("/console/operator/audit?{}", query.finish())
    };
    let body = html! {
        form.inline method="get" action="/console/operator/audit" {
            label for="license" { "License" }
            input #license name="license" maxlength="64" value=(license.as_deref().unwrap_or(""));
            @if let Some(operator) = ask.operator { input type="hidden" name="operator" value=(operator); }
            button type="submit" { "Filter" }
        }
        p { (found.total) " acts." }
        div.table-wrap { table {
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "License" }
                th scope="col" { "Target" } th scope="col" { "From" } th scope="col" { "Detail" }
            } }
            tbody { @for entry in &found.items {
                tr {
                    td { (time_ago(Some(entry.at))) } td { (entry.actor) } td { code { (entry.action) } }
                    td { @if let Some(license) = &entry.license {
                        a href={ "/console/operator/licenses/" (license) } { (license) }
                    } }
                    td { (entry.target.as_deref().unwrap_or("")) }
                    td { (entry.address.as_deref().unwrap_or("")) }
                    td { code { (entry.detail.to_string()) } }
                }
            } }
        } }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(query(page - 1)) { "Newer" } " " }
                "Page " (page) " of " (pages)
                @if u64::from(page) < pages { " " a href=(query(page + 1)) { "Older" } }
            }
        }
    };
    Ok(viewer.page("Audit log", body))
}
