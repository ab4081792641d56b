//! `/console/operator/login`: an operator's email and password open an
//! operator session. Attempts are counted per email and per address before
//! the password is checked (Argon2, bounded as every check is), and an
//! unknown email costs as much as a wrong password.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use relayhub_core::admission::Connection;
use relayhub_core::attempts;
use relayhub_core::console::{
    Form, Page, PageError, html, public_page, refused, same_origin, see_other, session_cookie_header, sign_in_form,
};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::client_ip;
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde::Deserialize;

use relayhub_core::console::{OPERATOR_COOKIE as COOKIE, OPERATOR_HOME as HOME};

use super::SESSION_TTL;
use crate::Admin;

pub(super) fn routes() -> Router<Admin> {
    Router::new().route("/console/operator/login", get(form).post(sign_in))
}

pub(super) fn sign_out_routes() -> Router<Admin> {
    Router::new().route("/console/operator/logout", post(sign_out))
}

#[derive(Debug, Default, Deserialize)]
struct Ask {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn form(Query(ask): Query<Ask>) -> Page {
    page(ask.next.as_deref(), "", ask.signed_out.is_some().then_some("You are signed out."), None)
}

fn page(next: Option<&str>, email: &str, notice: Option<&str>, error: Option<&str>) -> Page {
    let body = html! {
        (sign_in_form("/console/operator/login", next.unwrap_or(HOME), email, notice, error))
        p.muted { "For the server's operators. The first is made on the server with "
            code { "relayhub operator create" } "; a license's users sign in at " a href="/console/login" { "/console/login" } "." }
    };
    public_page("Operator sign-in", body)
}

async fn sign_in(State(admin): State<Admin>, parts: Parts, Form(credentials): Form<Credentials>) -> Response {
    if !same_origin(&parts.headers) {
        return PageError::new(StatusCode::FORBIDDEN, "Sign in from the console's own page.").into_response();
    }
    let Credentials { email, password, next } = credentials;
    let refuse = |err: &ApiError, message: &str| refused(err, page(next.as_deref(), &email, None, Some(message)));
    if email.is_empty() || email.chars().count() > 254 || password.is_empty() || password.chars().count() > 200 {
        return refuse(&ApiError::invalid_field("email and password"), "Type your email and your password.");
    }
    let operator = match admin.verify_operator(&email, password, &parts).await {
        Ok(operator) => operator,
        Err(err) if err.code == ErrorCode::TOO_MANY_ATTEMPTS => {
            return refuse(&err, "Too many failed attempts. Wait a few minutes and try again.");
        }
        Err(err) if err.status() == StatusCode::UNAUTHORIZED => {
            return refuse(&err, "The email or the password is wrong.");
        }
        Err(err) => return refuse(&err, &err.message),
    };
    Connection::of(&parts).authenticated();
    let token = Secret::generate(crate::codes::CONSOLE_SESSION);
    let expires = Timestamp::now().plus(SESSION_TTL);
    if let Err(err) = admin.sessions.start_operator_session(operator.id, token.hash(), expires).await {
        return PageError::from(err).into_response();
    }
    let next = next.as_deref().filter(|n| n.starts_with(HOME) && !n.starts_with("//")).unwrap_or(HOME);
    let mut response = see_other(next);
    let max_age = i64::try_from(SESSION_TTL.as_secs()).unwrap_or(i64::MAX);
    response.headers_mut().insert(SET_COOKIE, session_cookie_header(COOKIE, HOME, token.expose(), max_age));
    response
}

impl Admin {
    /// The operator whose email and password these are; counted before the
    /// check, given back when it succeeds or nothing could be checked.
    async fn verify_operator(
        &self,
        email: &str,
        password: String,
        parts: &Parts,
    ) -> Result<relayhub_core::operators::Operator, ApiError> {
        let email = email.trim().to_lowercase();
        let keys = [format!("operator:{email}"), attempts::address(client_ip(parts))];
        let attempt = self.sign_ins.reserve(&keys)?;
        let found = match self.sessions.operator_password(&email).await {
            Ok(found) => found,
            Err(err) => {
                attempt.refund();
                return Err(err.into());
            }
        };
        let (operator, hash) = found.map_or((None, None), |(o, h)| (Some(o), Some(h)));
        let matches = match relayhub_core::password::verify_if_known(password, hash).await {
            Ok(matches) => matches,
            Err(err) => {
                attempt.refund();
                return Err(err);
            }
        };
        match operator.filter(|_| matches) {
            Some(operator) => {
                attempt.refund();
                Ok(operator)
            }
            None => Err(ApiError::new(ErrorCode::INVALID_CREDENTIALS, "the email or the password is wrong")),
        }
    }
}

/// `POST /console/operator/logout`: the session ends, the cookie goes.
async fn sign_out(State(admin): State<Admin>, parts: Parts) -> Result<Response, PageError> {
    if let Some(token) = relayhub_core::console::cookie_value(&parts.headers, COOKIE) {
        admin.sessions.end_operator_session(&Secret::new(token).hash()).await?;
    }
    let mut response = see_other("/console/operator/login?signed_out=1");
    response.headers_mut().insert(SET_COOKIE, session_cookie_header(COOKIE, HOME, "", 0));
    Ok(response)
}
