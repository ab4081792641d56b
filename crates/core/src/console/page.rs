//! The console's pages: the layout every page shares, errors as pages,
//! the home page and the headers every answer carries.

use axum::Router;
use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::Viewer;
use crate::error::ApiError;
use crate::time::Timestamp;

/// A rendered page.
pub type Page = Html<String>;

/// What a console handler answers.
pub type PageResult = Result<Page, PageError>;

/// A refusal, shown as a page: the status, and a sentence for a person.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("No such {what} in your license."))
    }
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self::new(err.status(), err.message)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        ApiError::from(err).into()
    }
}

/// `page` answered with a refusal's status, and its `Retry-After` when it
/// has one (too many attempts): a form shown again beside the API's words.
pub fn refused(err: &ApiError, page: Page) -> Response {
    let mut response = (err.status(), page).into_response();
    if let Some(secs) = err.retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            p role="alert" { (self.message) }
            p { a href="/console" { "Back to the console" } }
        };
        (self.status, public_page(title, body)).into_response()
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · relayhub" }
            // No icon to fetch: browsers would ask for /favicon.ico.
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

/// The document around every page: `header` on top, `body` under `title`.
fn document(title: &str, home: &str, header: Markup, main_class: Option<&str>, body: Markup) -> Page {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.bar { a.brand href=(home) { "relayhub" } (header) }
                    main id="main" class=[main_class] { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A page outside the session (sign-in, errors): no navigation.
pub fn public_page(title: &str, body: Markup) -> Page {
    document(title, "/console", html! {}, Some("narrow"), body)
}

/// A page of another console on the same shell (the operator's, whose
/// home is `home`): `header` beside the brand — its navigation, who is
/// signed in — and `body` under `title`.
pub fn shell_page(title: &str, home: &str, header: Markup, body: Markup) -> Page {
    document(title, home, header, None, body)
}

impl Viewer {
    /// A page of the console: the navigation (the entries this viewer may
    /// open, decided when the session was checked), who is signed in, and
    /// `body` under `title`.
    pub fn page(&self, title: &str, body: Markup) -> Page {
        let nav = self.nav.iter();
        let header = html! {
            nav aria-label="Console" {
                ul {
                    @for item in nav {
                        @let current = self.path == item.href || self.path.starts_with(&format!("{}/", item.href));
                        li { a href=(item.href) aria-current=[current.then_some("page")] { (item.label) } }
                    }
                }
            }
            form.signout method="post" action="/console/logout" {
                (self.csrf_field())
                span.who { (self.account.name) @if self.is_admin() { " (admin)" } }
                button type="submit" { "Sign out" }
            }
        };
        document(title, "/console", header, None, body)
    }
}

/// The email-and-password form every sign-in page shows: its notice and
/// error, the fields (the email kept when it is shown again), and where to
/// go after (`next`). Posted to `action`.
pub fn sign_in_form(action: &str, next: &str, email: &str, notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        @if let Some(error) = error { p.error role="alert" id="login-error" { (error) } }
        form.stack method="post" action=(action) {
            input type="hidden" name="next" value=(next);
            div {
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required maxlength="254" value=(email)
                    autofocus aria-describedby=[error.map(|_| "login-error")];
            }
            div {
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required maxlength="200";
            }
            button type="submit" { "Sign in" }
        }
    }
}

/// "3 min ago", for a person scanning a table at 3 a.m.; the exact time is
/// in the element's `title`.
pub fn time_ago(at: Option<Timestamp>) -> Markup {
    let Some(at) = at else { return html! { span.muted { "never" } } };
    let secs = (Timestamp::now().millis() - at.millis()).max(0) / 1000;
    let text = match secs {
        0..5 => "just now".to_owned(),
        5..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    };
    html! { time datetime=(at.rfc3339()) title=(at.rfc3339()) { (text) } }
}

pub(super) fn home_routes() -> Router {
    Router::new().route("/console", get(home)).route("/console/", get(home))
}

async fn home(viewer: Viewer) -> Page {
    let entries: Vec<_> = viewer.nav.to_vec();
    viewer.page(
        "Console",
        html! {
            p { "Signed in as " strong { (viewer.account.name) } "." }
            ul.cards {
                @for item in &entries {
                    li { a href=(item.href) { (item.label) } p { (item.summary) } }
                }
            }
        },
    )
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every console answer carries: nothing from other hosts may run or
/// load, no framing, no caching of pages that hold a license's data.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let assets = request.uri().path().starts_with("/console/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !assets {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
