//! The operator console's part of the shell, `/console/operator`: the
//! session check in front of its pages (an operator session in a cookie of
//! its own, never a license user's), the signed-in operator its handlers
//! take, and its page layout. The admin capability signs operators in and
//! draws the licenses; another capability adds a section to a license's
//! page by answering [`super::Pages::operator`] and naming it in
//! [`super::Pages::license_links`].

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::session::{check_form, cookie_value, csrf_token, see_other, session_cookie_header};
use super::{Page, PageError, shell_page};
use crate::operators::{Operator, OperatorSessions};
use crate::secret::Secret;
use crate::time::Timestamp;

/// Where the operator console lives.
pub const OPERATOR_HOME: &str = "/console/operator";
/// The operator console's cookie, scoped to its pages.
pub const OPERATOR_COOKIE: &str = "relayhub_operator";

/// A section a capability adds to every license's page in the operator
/// console: a link to `/console/operator/licenses/{number}/{suffix}`.
#[derive(Debug, Clone, Copy)]
pub struct LicenseLink {
    pub label: &'static str,
    /// The path under the license's page (`users`).
    pub suffix: &'static str,
    /// One line beside the link.
    pub summary: &'static str,
}

/// The signed-in operator of an operator console page.
#[derive(Debug, Clone)]
pub struct OperatorViewer {
    pub operator: Operator,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Every capability's sections of a license's page.
    pub license_links: Arc<[LicenseLink]>,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for OperatorViewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        parts
            .extensions
            .get::<OperatorViewer>()
            .cloned()
            .ok_or_else(|| PageError::new(StatusCode::UNAUTHORIZED, "Sign in as an operator to see this page."))
    }
}

/// The operator console's navigation.
const NAV: &[(&str, &str)] = &[
    ("Licenses", OPERATOR_HOME),
    ("Operators", "/console/operator/operators"),
    ("Audit log", "/console/operator/audit"),
];

impl OperatorViewer {
    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// A page of the operator console: its navigation, who is signed in,
    /// and `body` under `title`.
    pub fn page(&self, title: &str, body: Markup) -> Page {
        let current = |href: &str| match href {
            OPERATOR_HOME => self.path == href || self.path.starts_with("/console/operator/licenses"),
            _ => self.path == href || self.path.starts_with(&format!("{href}/")),
        };
        let header = html! {
            nav aria-label="Operator console" {
                ul {
                    @for (label, href) in NAV {
                        li { a href=(href) aria-current=[current(href).then_some("page")] { (label) } }
                    }
                }
            }
            form.signout method="post" action="/console/operator/logout" {
                (self.csrf_field())
                span.who { (self.operator.email) " (operator)" }
                button type="submit" { "Sign out" }
            }
        };
        shell_page(title, OPERATOR_HOME, header, body)
    }
}

/// Off to the operator sign-in page, then back to `path`.
fn to_operator_sign_in(path: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    let mut response = see_other(&format!("/console/operator/login?next={next}"));
    let cleared = session_cookie_header(OPERATOR_COOKIE, OPERATOR_HOME, "", 0);
    response.headers_mut().insert(axum::http::header::SET_COOKIE, cleared);
    response
}

#[derive(Clone)]
pub(super) struct OperatorShell {
    pub sessions: Arc<dyn OperatorSessions>,
    pub license_links: Arc<[LicenseLink]>,
}

/// In front of every operator page but sign-in: a live operator session
/// (else off to sign in), and for anything but reading, the session's CSRF
/// token in the form and a request from the console's own origin.
pub(super) async fn require_operator(State(shell): State<OperatorShell>, request: Request, next: Next) -> Response {
    let path = request.uri().path_and_query().map_or(OPERATOR_HOME, |p| p.as_str()).to_owned();
    let Some(token) = cookie_value(request.headers(), OPERATOR_COOKIE) else { return to_operator_sign_in(&path) };
    let operator = match shell.sessions.operator_by_session(&Secret::new(token.clone()).hash(), Timestamp::now()).await
    {
        Ok(Some(operator)) => operator,
        Ok(None) => return to_operator_sign_in(&path),
        Err(err) => return PageError::from(err).into_response(),
    };
    let viewer = OperatorViewer {
        operator,
        csrf: csrf_token(&token),
        license_links: shell.license_links.clone(),
        path: request.uri().path().into(),
    };
    let mut request = match *request.method() {
        Method::GET | Method::HEAD => request,
        _ => match check_form(request, &viewer.csrf).await {
            Ok(request) => request,
            Err(err) => return err.into_response(),
        },
    };
    request.extensions_mut().insert(viewer);
    next.run(request).await
}
