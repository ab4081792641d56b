//! The rail admin in the web console: seed 004's DebugConsole, which
//! stood in for the railway's admin panel. The license's admins (the
//! operator) see and change its stores and their items, passengers and
//! their tickets, and engineers and their cards, through the same rules
//! as the operator's API (`/base_api/admin/…`, `/store_api/…`).
//!
//! Every list is paged 50 at a time with the API's paging rules; forms
//! post back with the CSRF field and answer a redirect, or the page again
//! with the refusal beside the form. What is shown once (a staff token, a
//! generated password or card key) is the answer to its form, never kept.

mod engineers;
mod overview;
mod passengers;
mod store;
mod stores;
mod tickets;
mod view;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use relayhub_core::console::{Markup, NavItem, Page, PageError, Pages, Viewer, html};
use relayhub_core::ids::LicensePk;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Rail;
use crate::api::{Paging, RailError};

/// The rail's section of the console.
pub fn pages(rail: Rail) -> Pages {
    let nav = vec![NavItem {
        label: "Rail",
        href: "/console/rail",
        summary: "The railway's stores and their stock, passengers and tickets, engineers and their cards.",
        admin: true,
        shown: None,
    }];
    let pages = Router::new()
        .merge(overview::routes())
        .merge(stores::routes())
        .merge(store::routes())
        .merge(passengers::routes())
        .merge(tickets::routes())
        .merge(engineers::routes())
        .with_state(rail);
    Pages::new(nav, pages)
}

impl Rail {
    /// The license the viewer administers: an admin's, and active, as the
    /// operator's license token must be for the API.
    async fn console_license(&self, viewer: &Viewer) -> Result<LicensePk, PageError> {
        viewer.require_admin()?;
        let license = self.identity.license_by_pk(viewer.account.license).await?;
        let license = license.ok_or_else(|| PageError::not_found("license"))?;
        license.ensure_active(Timestamp::now())?;
        Ok(license.pk)
    }
}

impl From<RailError> for PageError {
    fn from(err: RailError) -> Self {
        err.error.into()
    }
}

/// The address's query, refused as a page naming what does not fit `T`.
struct Query<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).map(Query).map_err(|err| {
            PageError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("The address's query is not valid: {err}"))
        })
    }
}

/// `?page=` of a list: 50 rows a page, the API's bounds.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    page: Option<u32>,
}

impl ListQuery {
    fn request(&self) -> Result<PageRequest, PageError> {
        Ok(Paging { page: self.page, size: Some(view::PAGE_SIZE) }.request()?)
    }
}

/// A form's refusal, shown beside it: the API's message, answered with
/// the API's status.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl From<RailError> for Refusal {
    fn from(err: RailError) -> Self {
        Self { status: err.error.status(), message: err.error.message }
    }
}

impl Refusal {
    /// The sentence, for screen readers at once (`id` for `aria-describedby`).
    fn alert(&self, id: &str) -> Markup {
        html! { p.error role="alert" id=(id) { (self.message) } }
    }

    /// The page with the refusal in it, under the refusal's status.
    fn answer(&self, page: Page) -> Response {
        (self.status, page).into_response()
    }
}
