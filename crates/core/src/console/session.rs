//! The console's session: the cookie, the check in front of every page,
//! CSRF, and signing out.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::{NavItem, PageError, Viewer};
use crate::admission::Ticket;
use crate::identity::Accounts;

/// The cookie that holds the console's session token.
pub const SESSION_COOKIE: &str = "relayhub_console";

/// The most a console form may send (settings documents included).
const FORM_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub(super) struct Shell {
    pub accounts: Arc<dyn Accounts>,
    pub nav: Arc<[NavItem]>,
    /// Cancelled when the node shuts down: live regions end then, so that
    /// graceful shutdown does not wait for their streams.
    pub shutdown: CancellationToken,
}

/// The CSRF token of a session: derived from the session token, which
/// scripts cannot read (`HttpOnly`), so another site cannot know it.
pub fn csrf_token(session: &str) -> String {
    let digest = Sha256::new().chain_update(b"relayhub console csrf\0").chain_update(session.as_bytes()).finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// The session token the request's cookie holds.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, SESSION_COOKIE)
}

/// The value of cookie `name` (at most 200 bytes, as a session token is).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 200)
}

/// Whether a request comes from the console's own pages: browsers say so
/// in `Sec-Fetch-Site`, older ones in `Origin`; a client that sends
/// neither (curl) is no browser another site could drive.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    match (headers.get(ORIGIN).and_then(|v| v.to_str().ok()), headers.get(HOST).and_then(|v| v.to_str().ok())) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn cookie(value: &str, max_age: i64) -> HeaderValue {
    session_cookie_header(SESSION_COOKIE, "/console", value, max_age)
}

/// A session cookie as the console sets them: `HttpOnly`, `Secure`,
/// `SameSite=Lax`, scoped to `path`; an empty `value` with `max_age` 0
/// clears it.
pub fn session_cookie_header(name: &str, path: &str, value: &str, max_age: i64) -> HeaderValue {
    let cookie = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The answer to a successful sign-in: the session cookie, and on to
/// `next` (a console path; anything else goes to the console's home).
pub fn sign_in_response(token: &str, max_age_secs: u64, next: &str) -> Response {
    let next = if next.starts_with("/console") && !next.starts_with("//") { next } else { "/console" };
    let mut response = see_other(next);
    response.headers_mut().insert(SET_COOKIE, cookie(token, i64::try_from(max_age_secs).unwrap_or(i64::MAX)));
    response
}

/// `303 See Other` to `to` (after a form, so a reload does not send it again).
pub fn see_other(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/console"));
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

/// Off to the sign-in page, then back to `path`.
fn to_sign_in(path: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let mut response = see_other(&format!("/console/login?next={next}"));
    response.headers_mut().insert(SET_COOKIE, cookie("", 0));
    response
}

/// In front of every page but the public ones: a live session (else off to
/// sign in), and for anything but reading, the session's CSRF token in the
/// form and a request from the console's own origin.
pub(super) async fn require_session(State(shell): State<Shell>, request: Request, next: Next) -> Response {
    let path = request.uri().path_and_query().map_or("/console", |p| p.as_str()).to_owned();
    let Some(token) = session_cookie(request.headers()) else { return to_sign_in(&path) };
    let account = match shell.accounts.session(&token).await {
        Ok(account) => account,
        Err(err) if err.status() == StatusCode::UNAUTHORIZED => return to_sign_in(&path),
        Err(err) => return PageError::from(err).into_response(),
    };
    // A signed-in browser no longer counts against the connections that
    // may wait for a credential (its live streams stay open).
    if let Some(ticket) = request.extensions().get::<Arc<Ticket>>() {
        ticket.authenticated();
    }
    let nav = super::nav_for(&shell.nav, &account).await;
    let viewer = Viewer { account, csrf: csrf_token(&token), nav, path: request.uri().path().into() };
    let request = match *request.method() {
        Method::GET | Method::HEAD => request,
        _ => match check_form(request, &viewer.csrf).await {
            Ok(request) => request,
            Err(err) => return err.into_response(),
        },
    };
    let mut request = request;
    request.extensions_mut().insert(viewer);
    let response = next.run(request).await;
    let streaming =
        response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().take_until(shell.shutdown.cancelled_owned());
    Response::from_parts(parts, Body::from_stream(body))
}

/// The request again, once it came from the console's own origin and its
/// form's CSRF token matched `csrf`.
pub async fn check_form(request: Request, csrf: &str) -> Result<Request, PageError> {
    let forbidden = || {
        PageError::new(
            StatusCode::FORBIDDEN,
            "This form is stale or came from another site. Reload the page and try again.",
        )
    };
    if !same_origin(request.headers()) {
        return Err(forbidden());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    let sent = form_urlencoded::parse(&bytes).find(|(name, _)| name == "csrf").map(|(_, value)| value.into_owned());
    match sent {
        Some(sent) if bool::from(sent.as_bytes().ct_eq(csrf.as_bytes())) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(forbidden()),
    }
}

/// `POST /console/logout`: the session ends on every node, the cookie goes.
pub(super) fn sign_out_routes(shell: Shell) -> Router {
    Router::new().route("/console/logout", post(sign_out)).with_state(shell)
}

async fn sign_out(State(shell): State<Shell>, headers: HeaderMap) -> Result<Response, PageError> {
    if let Some(token) = session_cookie(&headers) {
        shell.accounts.close_session(&token).await?;
    }
    let mut response = see_other("/console/login?signed_out=1");
    response.headers_mut().insert(SET_COOKIE, cookie("", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_read_from_its_cookie_only() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; relayhub_console=tok; b=2".parse().unwrap());
        assert_eq!(session_cookie(&headers).as_deref(), Some("tok"));
        headers.insert(COOKIE, "relayhub_console_x=tok".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
    }

    #[test]
    fn csrf_tokens_differ_by_session() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
    }

    #[test]
    fn other_sites_are_told_apart() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            same_origin(&headers)
        };
        assert!(with(&[("sec-fetch-site", "same-origin")]));
        assert!(!with(&[("sec-fetch-site", "cross-site")]));
        assert!(!with(&[("sec-fetch-site", "same-site")]));
        assert!(with(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")]));
        assert!(!with(&[("origin", "https://evil.example"), ("host", "127.0.0.1:8080")]));
        assert!(with(&[]), "curl sends neither");
    }

    #[test]
    fn sign_in_goes_back_to_console_pages_only() {
        let location = |next| sign_in_response("t", 60, next).headers()[LOCATION].to_str().unwrap().to_owned();
        assert_eq!(location("/console/devices"), "/console/devices");
        assert_eq!(location("https://evil.example/"), "/console");
        assert_eq!(location("//evil.example/console"), "/console");
    }
}
