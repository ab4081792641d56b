//! `/console/login`: a fleet user's email and password open a console
//! session (the fleet's session table, so signing out or deactivating the
//! user ends it on every node).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use relayhub_core::admission::Connection;
use relayhub_core::console::{
    Form, Markup, Page, PageError, html, public_page, refused, same_origin, sign_in_form, sign_in_response,
};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::client_ip;
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde::Deserialize;

use crate::Fleet;
use crate::codes;

pub(super) fn routes() -> Router<Fleet> {
    Router::new().route("/console/login", get(form).post(sign_in))
}

/// Where to go after signing in, and what to say on the form.
#[derive(Debug, Default, Deserialize)]
struct Ask {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
    /// After a reset link set a new password.
    #[serde(default)]
    password_set: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn form(headers: HeaderMap, Query(ask): Query<Ask>) -> Response {
    let notice = if ask.password_set.is_some() {
        Some("Your new password is set, and you are signed out everywhere. Sign in with it.")
    } else {
        ask.signed_out.is_some().then_some("You are signed out.")
    };
    page(&headers, ask.next.as_deref(), "", notice, None).into_response()
}

fn page(headers: &HeaderMap, next: Option<&str>, email: &str, notice: Option<&str>, error: Option<&str>) -> Page {
    let body = html! {
        @if plain_http_elsewhere(headers) {
            p.error role="alert" {
                "This page is served over plain HTTP to another machine: browsers keep the console's "
                "session cookie only over HTTPS (or on this machine). Put the server behind TLS."
            }
        }
        (sign_in_form("/console/login", next.unwrap_or("/console"), email, notice, error))
        (help())
    };
    public_page("Sign in", body)
}

fn help() -> Markup {
    html! {
        p.muted { "Sign in with your fleet account. An admin creates one with "
            code { "relayhub user create" } "." }
    }
}

/// Plain HTTP to a host that is not this machine, with no proxy saying
/// the browser spoke TLS: the `Secure` cookie would not be kept.
fn plain_http_elsewhere(headers: &HeaderMap) -> bool {
    let tls = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let local = matches!(name, "localhost" | "[::1]") || name.starts_with("127.");
    !tls && !local
}

async fn sign_in(State(fleet): State<Fleet>, parts: Parts, Form(credentials): Form<Credentials>) -> Response {
    if !same_origin(&parts.headers) {
        return PageError::new(StatusCode::FORBIDDEN, "Sign in from the console's own page.").into_response();
    }
    let Credentials { email, password, next } = credentials;
    // The form again, with the refusal's status (and Retry-After) and words
    // for a person.
    let refuse = |err: &ApiError, message: &str| {
        refused(err, page(&parts.headers, next.as_deref(), &email, None, Some(message)))
    };
    if email.is_empty() || email.chars().count() > 254 || password.is_empty() || password.chars().count() > 200 {
        return refuse(&ApiError::invalid_field("email and password"), "Type your email and your password.");
    }
    let auth = match fleet.verify_login(&email, password, client_ip(&parts)).await {
        Ok(auth) => auth,
        Err(err) if err.code == ErrorCode::TOO_MANY_ATTEMPTS => {
            return refuse(&err, "Too many failed attempts. Wait a few minutes and try again.");
        }
        Err(err) if err.status() == StatusCode::UNAUTHORIZED => {
            return refuse(&err, "The email or the password is wrong.");
        }
        Err(err) => return refuse(&err, &err.message),
    };
    Connection::of(&parts).authenticated();
    let token = Secret::generate(codes::REFRESH_TOKEN);
    let ttl = fleet.config.refresh_ttl;
    if let Err(err) = fleet.sessions.start_session(auth.user.id, token.hash(), Timestamp::now().plus(ttl)).await {
        return PageError::from(err).into_response();
    }
    sign_in_response(token.expose(), ttl.as_secs(), next.as_deref().unwrap_or("/console"))
}
