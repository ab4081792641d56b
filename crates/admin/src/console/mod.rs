//! The operator console, `/console/operator`: the licenses with their
//! usage, a license's page (edit, suspend, tokens, app keys, delete), the
//! operators and the audit log, in the license console's shell (layout,
//! assets, CSRF, security headers) but with a session of its own: an
//! operator's browser holds an operator session (hashed at rest, expiring,
//! in its own cookie scoped to these pages), never a license's.
//!
//! Every form calls the same acts as the admin API, so each change is in
//! the audit log with the operator and their address.

mod licenses;
mod people;
mod signin;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use relayhub_core::console::{Markup, Page, PageError, Pages, check_form, cookie_value, csrf_token, html, shell_page};
use relayhub_core::operators::{Operator, OperatorAuth};
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;

use crate::Admin;
use crate::acts::Acts;

/// The operator console's cookie, scoped to its pages.
const COOKIE: &str = "relayhub_operator";
/// Where the operator console lives.
const HOME: &str = "/console/operator";
/// How long an operator's console session lasts: a working shift.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The operator console's pages: all outside the license console's session
/// check, behind their own.
pub(crate) fn pages(admin: Admin) -> Pages {
    let signed_in = Router::new()
        .merge(licenses::routes())
        .merge(people::routes())
        .merge(signin::sign_out_routes())
        .layer(axum::middleware::from_fn_with_state(admin.clone(), require_operator));
    let public = signed_in.merge(signin::routes()).with_state(admin);
    Pages { nav: Vec::new(), pages: Router::new(), public }
}

/// The signed-in operator of an operator console page.
#[derive(Debug, Clone)]
pub(crate) struct OperatorViewer {
    pub operator: Operator,
    /// The token every form of this session carries.
    pub csrf: String,
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
const NAV: &[(&str, &str)] =
    &[("Licenses", HOME), ("Operators", "/console/operator/operators"), ("Audit log", "/console/operator/audit")];

impl OperatorViewer {
    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// A page of the operator console: its navigation, who is signed in,
    /// and `body` under `title`.
    pub fn page(&self, title: &str, body: Markup) -> Page {
        let current = |href: &str| {
            let inside = self.path.starts_with(&format!("{href}/"));
            self.path == href
                || (href != HOME && inside)
                || (href == HOME && self.path.starts_with("/console/operator/licenses"))
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
        shell_page(title, HOME, header, body)
    }

    /// The acts, done by this operator from the request's client.
    pub fn acts(&self, admin: &Admin, parts: &Parts) -> Acts {
        admin.acts(OperatorAuth(self.operator.clone()), parts)
    }
}

/// In front of every operator page but sign-in: a live operator session
/// (else off to sign in), and for anything but reading, the session's CSRF
/// token in the form and a request from the console's own origin.
async fn require_operator(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let path = request.uri().path_and_query().map_or(HOME, |p| p.as_str()).to_owned();
    let Some(token) = cookie_value(request.headers(), COOKIE) else { return signin::to_sign_in(&path) };
    let operator = match admin.sessions.operator_by_session(&Secret::new(token.clone()).hash(), Timestamp::now()).await
    {
        Ok(Some(operator)) => operator,
        Ok(None) => return signin::to_sign_in(&path),
        Err(err) => return PageError::from(err).into_response(),
    };
    let viewer = OperatorViewer { operator, csrf: csrf_token(&token), path: request.uri().path().into() };
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
