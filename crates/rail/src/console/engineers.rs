//! `/console/rail/engineers`: the license's service engineers, creating
//! one, giving one an access card. A password or card key the console
//! generates is shown once, on the form's answer; neither is ever read
//! back (they are kept hashed).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use relayhub_core::console::{Form, Markup, Page, PageError, Viewer, html, time_ago};
use relayhub_core::ids::LicensePk;
use relayhub_core::store::PageRequest;
use serde::Deserialize;

use super::view::{PAGE_SIZE, last_page, number, pager, path_id, shown_once};
use super::{ListQuery, Query, Refusal};
use crate::Rail;
use crate::api::admin::{CardRequest, EngineerRequest};
use crate::model::Engineer;
use crate::rules;

pub(super) fn routes() -> Router<Rail> {
    Router::new()
        .route("/console/rail/engineers", get(list).post(create))
        .route("/console/rail/engineers/{engineer}/cards", post(add_card))
}

/// The form that creates an engineer; a blank password is generated.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EngineerForm {
    login: String,
    password: String,
    privileges: String,
}

/// A row's card form; a blank key is generated.
#[derive(Debug, Deserialize)]
struct CardForm {
    #[serde(default)]
    key: String,
    page: Option<u32>,
}

/// Which form a refusal belongs beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Cards,
    NewEngineer,
}

async fn list(State(rail): State<Rail>, viewer: Viewer, Query(query): Query<ListQuery>) -> Result<Page, PageError> {
    let license = rail.console_license(&viewer).await?;
    page(&rail, &viewer, license, query.request()?, &EngineerForm::default(), None).await
}

async fn page(
    rail: &Rail,
    viewer: &Viewer,
    license: LicensePk,
    request: PageRequest,
    draft: &EngineerForm,
    refused: Option<(At, &Refusal)>,
) -> Result<Page, PageError> {
    let engineers = rail.base.engineers(license, request).await?;
    let refusal = |at: At| refused.filter(|(place, _)| *place == at).map(|(_, refusal)| refusal);
    let described = refusal(At::NewEngineer).map(|_| "new-engineer-error");
    let privileges = if draft.privileges.is_empty() { "0" } else { &draft.privileges };
    Ok(viewer.page(
        "Engineers",
        html! {
            p { a href="/console/rail" { "Rail" } " › Engineers" }
            @if let Some(refusal) = refusal(At::Cards) { (refusal.alert("cards-error")) }
            @if engineers.items.is_empty() {
                p.muted { "No engineers on this page." }
            } @else {
                div.table-wrap {
                    table {
                        caption.muted { "Engineers, oldest first" }
                        thead { tr {
                            th scope="col" { "Login" } th.num scope="col" { "Privileges" } th scope="col" { "Added" }
                            th scope="col" { "Id" } th scope="col" { "Access card" }
                        } }
                        tbody { @for e in &engineers.items { (row(viewer, e, request.page)) } }
                    }
                }
            }
            (pager("/console/rail/engineers", "", request, engineers.total, "engineers"))
            h2 id="new-engineer-heading" { "Create an engineer" }
            @if let Some(refusal) = refusal(At::NewEngineer) { (refusal.alert("new-engineer-error")) }
            form.stack id="new-engineer" method="post" action="/console/rail/engineers"
                aria-labelledby="new-engineer-heading" {
                (viewer.csrf_field())
                div {
                    label for="engineer-login" { "Login" }
                    input #engineer-login name="login" required maxlength="60" autocomplete="off" value=(draft.login)
                        aria-describedby=[described];
                }
                div {
                    label for="engineer-password" { "Password (8-200 characters; leave blank to generate one)" }
                    input #engineer-password type="password" name="password" minlength="8" maxlength="200"
                        autocomplete="new-password";
                }
                div {
                    label for="engineer-privileges" { "Privileges (a bit set, 0-2147483647)" }
                    input #engineer-privileges type="number" name="privileges" min="0" max="2147483647" required
                        value=(privileges);
                }
                button type="submit" { "Create engineer" }
            }
        },
    ))
}

fn row(viewer: &Viewer, engineer: &Engineer, page: u32) -> Markup {
    let input = format!("card-{}", engineer.id);
    html! {
        tr {
            td { (engineer.login) }
            td.num { (engineer.privileges) }
            td { (time_ago(Some(engineer.created_at))) }
            td { code { (engineer.id) } }
            td {
                form.rail-row method="post" action={ "/console/rail/engineers/" (engineer.id) "/cards" } {
                    (viewer.csrf_field())
                    input type="hidden" name="page" value=(page);
                    label.rail-hidden for=(input) { "Card key for " (engineer.login) " (blank: generate one)" }
                    input id=(input) name="key" maxlength="256" autocomplete="off" placeholder="blank: generate";
                    button.secondary type="submit" { "Add card" }
                }
            }
        }
    }
}

async fn create(
    State(rail): State<Rail>,
    viewer: Viewer,
    Form(draft): Form<EngineerForm>,
) -> Result<Response, PageError> {
    let license = rail.console_license(&viewer).await?;
    let generated = draft.password.is_empty().then(rules::random_password);
    let created = async {
        let request = EngineerRequest {
            login: draft.login.clone(),
            password: generated.clone().unwrap_or_else(|| draft.password.clone()),
            privileges: number("privileges", &draft.privileges)?,
        };
        rail.add_engineer(license, request).await
    };
    match (created.await, generated) {
        (Ok(engineer), Some(password)) => {
            let body = html! {
                p { "Engineer " strong { (engineer.login) } " can sign in on a robot with this password." }
                (shown_once("password", &password))
                p { a href="/console/rail/engineers" { "Back to the engineers" } }
            };
            Ok(viewer.page(&format!("Engineer {} created", engineer.login), body).into_response())
        }
        (Ok(_), None) => {
            let total = rail.base.engineers(license, PageRequest { page: 1, size: 1 }).await?.total;
            Ok(Redirect::to(&format!("/console/rail/engineers?page={}", last_page(total, PAGE_SIZE))).into_response())
        }
        (Err(err), _) => {
            let refusal = Refusal::from(err);
            let request = PageRequest { page: 1, size: PAGE_SIZE };
            let draft = EngineerForm { password: String::new(), ..draft };
            Ok(refusal.answer(page(&rail, &viewer, license, request, &draft, Some((At::NewEngineer, &refusal))).await?))
        }
    }
}

async fn add_card(
    State(rail): State<Rail>,
    viewer: Viewer,
    Path(engineer): Path<String>,
    Form(form): Form<CardForm>,
) -> Result<Response, PageError> {
    let license = rail.console_license(&viewer).await?;
    let engineer = path_id(&engineer, "engineer")?;
    let request = ListQuery { page: form.page }.request()?;
    let generated = form.key.is_empty().then(rules::random_code);
    let key = generated.clone().unwrap_or(form.key);
    match (rail.add_card(license, engineer, CardRequest { key }).await, generated) {
        (Ok(_), Some(key)) => {
            let body = html! {
                p { "Write this key on the engineer's card: the card reader sends it to the robot." }
                (shown_once("card key", &key))
                p { a href={ "/console/rail/engineers?page=" (request.page) } { "Back to the engineers" } }
            };
            Ok(viewer.page("Access card added", body).into_response())
        }
        (Ok(_), None) => Ok(Redirect::to(&format!("/console/rail/engineers?page={}", request.page)).into_response()),
        (Err(err), _) if err.error.status() == axum::http::StatusCode::NOT_FOUND => {
            Err(PageError::not_found("engineer"))
        }
        (Err(err), _) => {
            let refusal = Refusal::from(err);
            let draft = EngineerForm::default();
            Ok(refusal.answer(page(&rail, &viewer, license, request, &draft, Some((At::Cards, &refusal))).await?))
        }
    }
}
