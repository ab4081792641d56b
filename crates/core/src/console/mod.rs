//! The web console's shell, which every capability's pages share: the
//! session a signed-in user's browser holds, the checks every page passes
//! (session, CSRF, security headers), the page layout, live regions, and
//! the embedded assets.
//!
//! A capability adds pages by answering [`crate::capability::Capability::console`]
//! with a [`Pages`]: its navigation entries and its routes under
//! `/console/…`. Its handlers take a [`Viewer`] (who is signed in, for
//! which license) and answer [`Page`]s. Pages are rendered on the server,
//! so every page works without scripts; a few lines of script replace
//! [`live`] regions as the server sends them fresh (server-sent events).
//!
//! The session is an opaque token (a fleet session, hashed at rest) in an
//! `HttpOnly`, `Secure`, `SameSite=Lax` cookie scoped to `/console`; every
//! form carries a CSRF token derived from it, and a request that changes
//! anything without it, or from another site, is refused.

mod assets;
mod form;
mod live;
mod operator;
mod page;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use tokio_util::sync::CancellationToken;

use crate::identity::{Account, Accounts};
use crate::operators::OperatorSessions;

pub use form::Form;
pub use live::{LIVE_INTERVAL, live};
pub use operator::{LicenseLink, OPERATOR_COOKIE, OPERATOR_HOME, OperatorViewer};
pub use page::{Page, PageError, PageResult, public_page, refused, shell_page, sign_in_form, time_ago};
pub use session::{
    SESSION_COOKIE, check_form, cookie_value, csrf_token, same_origin, see_other, session_cookie_header,
    sign_in_response,
};

/// Re-exported so capabilities write markup with the same version.
pub use maud::{self, Markup, PreEscaped, html};

/// Whether a signed-in account may open a page: the rule the page itself
/// applies, asked when the navigation is drawn.
pub type ShownTo = Arc<dyn Fn(Account) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// An entry of the console's navigation.
#[derive(Clone)]
pub struct NavItem {
    /// The link's text.
    pub label: &'static str,
    /// Where it leads (`/console/devices`).
    pub href: &'static str,
    /// One line on the home page.
    pub summary: &'static str,
    /// Shown to the license's admins only (the pages refuse others too).
    pub admin: bool,
    /// Shown only to whom this answers `true` (a page whose rule is more
    /// than "admins": the navigation offers only pages that open).
    pub shown: Option<ShownTo>,
}

impl std::fmt::Debug for NavItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NavItem").field("href", &self.href).field("admin", &self.admin).finish_non_exhaustive()
    }
}

/// The entries `account` may open, in order.
pub(crate) async fn nav_for(nav: &[NavItem], account: &Account) -> Arc<[NavItem]> {
    let mut shown = Vec::with_capacity(nav.len());
    for item in nav {
        if item.admin && !account.admin {
            continue;
        }
        if let Some(rule) = &item.shown
            && !rule(account.clone()).await
        {
            continue;
        }
        shown.push(item.clone());
    }
    shown.into()
}

/// What a capability adds to the console.
pub struct Pages {
    pub nav: Vec<NavItem>,
    /// Pages for signed-in users (state applied), under `/console/`.
    pub pages: Router,
    /// Pages anyone may open (the sign-in pages), under `/console/`.
    pub public: Router,
    /// Pages for signed-in operators (state applied), under
    /// `/console/operator/`; their handlers take an [`OperatorViewer`].
    pub operator: Router,
    /// Its sections of each license's page in the operator console.
    pub license_links: Vec<LicenseLink>,
}

impl Pages {
    pub fn new(nav: Vec<NavItem>, pages: Router) -> Self {
        Self { nav, pages, public: Router::new(), operator: Router::new(), license_links: Vec::new() }
    }
}

/// Who is looking: the signed-in user of a console page, with what the
/// layout needs. Only pages behind the console's session check have one.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub account: Account,
    /// The token every form of this session carries.
    pub csrf: String,
    /// The navigation entries this viewer may open.
    nav: Arc<[NavItem]>,
    /// The path asked for, to mark the current navigation entry.
    path: String,
}

impl Viewer {
    /// An admin of the license.
    pub fn is_admin(&self) -> bool {
        self.account.admin
    }

    /// Refuses anyone but an admin of the license.
    pub fn require_admin(&self) -> Result<(), PageError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(PageError::new(axum::http::StatusCode::FORBIDDEN, "This page is for the license's admins."))
        }
    }

    /// The hidden field every form of the console carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .ok_or_else(|| PageError::new(axum::http::StatusCode::UNAUTHORIZED, "Sign in to see this page."))
    }
}

/// The console: the shell's own pages and every section's, behind the
/// session check; the operator console's behind the operator session check
/// (when the backend keeps operators). Live regions end when `shutdown` is
/// cancelled.
pub fn router(
    accounts: Arc<dyn Accounts>,
    operators: Option<Arc<dyn OperatorSessions>>,
    sections: Vec<Pages>,
    shutdown: CancellationToken,
) -> Router {
    let nav: Arc<[NavItem]> = sections.iter().flat_map(|s| s.nav.iter().cloned()).collect();
    let license_links: Arc<[LicenseLink]> = sections.iter().flat_map(|s| s.license_links.iter().copied()).collect();
    let mut pages = Router::new();
    let mut public = Router::new();
    let mut operator = Router::new();
    for section in sections {
        pages = pages.merge(section.pages);
        public = public.merge(section.public);
        operator = operator.merge(section.operator);
    }
    if let Some(sessions) = operators {
        let shell = operator::OperatorShell { sessions, license_links };
        public = public.merge(operator.layer(axum::middleware::from_fn_with_state(shell, operator::require_operator)));
    }
    let shell = session::Shell { accounts, nav, shutdown };
    let pages = pages
        .merge(page::home_routes())
        .merge(session::sign_out_routes(shell.clone()))
        .layer(axum::middleware::from_fn_with_state(shell, session::require_session));
    pages.merge(public).merge(assets::routes()).layer(axum::middleware::from_fn(page::security_headers))
}
