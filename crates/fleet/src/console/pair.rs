//! `/console/pair`: a user types the code a pairing robot shows, sees the
//! robot's hostname and addresses (the one it gives, the one its request
//! came from), and confirms — the API's preview and
//! confirmation, with their refusals and their limit on wrong codes.

use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use relayhub_core::console::{self, Form, Page, PageError, Viewer, html};
use relayhub_core::error::ApiError;
use relayhub_core::http::client_ip;
use serde::Deserialize;

use super::caller;
use crate::Fleet;
use crate::rules::{display_code, normalize_code};

const TITLE: &str = "Pair a robot";

/// The most of a refused code echoed back into the form.
const MAX_ECHO: usize = 32;

pub(super) fn routes() -> Router<Fleet> {
    Router::new()
        .route("/console/pair", get(form))
        .route("/console/pair/lookup", post(lookup))
        .route("/console/pair/confirm", post(confirm))
}

/// The code as typed (a missing one is refused as a wrong code).
#[derive(Debug, Deserialize)]
struct Code {
    #[serde(default)]
    code: String,
}

async fn form(viewer: Viewer) -> Page {
    code_page(&viewer, "", None)
}

/// The form to type a code in, with the refusal of the last one.
fn code_page(viewer: &Viewer, code: &str, error: Option<&str>) -> Page {
    let echoed: String = code.chars().take(MAX_ECHO).collect();
    let described = if error.is_some() { "pair-error code-help" } else { "code-help" };
    viewer.page(
        TITLE,
        html! {
            @if let Some(error) = error { p.error role="alert" #pair-error { (error) } }
            p { "A robot that is pairing shows a code of 8 letters, like " code { "BCDF-GHJK" } ". "
                "Type it here to see which robot it is before you confirm." }
            form.stack method="post" action="/console/pair/lookup" {
                (viewer.csrf_field())
                div {
                    label for="code" { "Pairing code" }
                    input #code type="text" name="code" value=(echoed) required maxlength=(MAX_ECHO)
                        autocomplete="off" autocapitalize="characters" spellcheck="false" autofocus
                        aria-describedby=(described);
                    p.muted #code-help { "8 letters; the hyphen and the case do not matter." }
                }
                button type="submit" { "Look up" }
            }
        },
    )
}

/// A refusal of the API's rules, on the form, with the API's status (and
/// its `Retry-After` for too many wrong codes).
fn refused(viewer: &Viewer, code: &str, err: ApiError) -> Response {
    console::refused(&err, code_page(viewer, code, Some(&err.message)))
}

/// `POST /console/pair/lookup` (a POST keeps codes out of access logs):
/// the robot of the code — `GET /api/pair/{code}`'s answer.
async fn lookup(
    State(fleet): State<Fleet>,
    viewer: Viewer,
    parts: Parts,
    Form(Code { code }): Form<Code>,
) -> Result<Response, PageError> {
    let auth = caller(&fleet, &viewer).await?;
    let preview = match fleet.preview_pairing(&auth, client_ip(&parts), &code).await {
        Ok(preview) => preview,
        Err(err) => return Ok(refused(&viewer, &code, err)),
    };
    // Found, so the code is well formed.
    let shown = normalize_code(&code).map(|c| display_code(&c)).unwrap_or_default();
    let minutes = preview.expires_in.div_ceil(60);
    let differs = preview.ip_address.is_some() && preview.ip_address != preview.observed_ip_address;
    let page = viewer.page(
        TITLE,
        html! {
            p { "Check that this is the robot you are pairing: its hostname and address should be those you expect." }
            @if differs {
                p.notice role="status" #address-mismatch {
                    "The address the robot gives is not the one its request came from. Behind NAT that is normal; "
                    "if the robot cannot be behind the address seen by the server, it is not yours: do not confirm."
                }
            }
            dl.facts #pairing {
                dt { "Code" } dd { code { (shown) } }
                dt { "Hostname" } dd { (preview.hostname) }
                dt { "Address it gives" } dd {
                    @match &preview.ip_address {
                        Some(ip) => code { (ip) },
                        None => span.muted { "unknown" },
                    }
                }
                dt { "Address seen by the server" } dd #observed-address {
                    @match &preview.observed_ip_address {
                        Some(ip) => code { (ip) },
                        None => span.muted { "unknown" },
                    }
                }
                dt { "Architecture" } dd { (preview.architecture.map_or("unknown", |a| a.as_str())) }
                dt { "Expires" } dd { "in " (minutes) " min" }
            }
            form.stack method="post" action="/console/pair/confirm" {
                (viewer.csrf_field())
                input type="hidden" name="code" value=(shown);
                button type="submit" { "Confirm pairing" }
            }
            p { a href="/console/pair" { "Not this robot? Type another code" } }
        },
    );
    Ok(page.into_response())
}

/// `POST /console/pair/confirm`: `POST /api/pair/{code}/confirm`'s rule,
/// then on to the robot's page.
async fn confirm(
    State(fleet): State<Fleet>,
    viewer: Viewer,
    parts: Parts,
    Form(Code { code }): Form<Code>,
) -> Result<Response, PageError> {
    let auth = caller(&fleet, &viewer).await?;
    match fleet.confirm_pairing(&auth, client_ip(&parts), &code).await {
        Ok(robot) => Ok(Redirect::to(&format!("/console/robots/{}", robot.id)).into_response()),
        Err(err) => Ok(refused(&viewer, &code, err)),
    }
}
