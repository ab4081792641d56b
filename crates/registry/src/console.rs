//! The registry's page in the web console, `/console/registry`: the
//! devices registered with the server's instances (seed 001), and
//! approving or blocking one through the same method as
//! `relayhub registry approve|block`.
//!
//! Registered devices belong to instances, not to licenses (an app API key
//! registers them, and app keys are the server's), so the registry is the
//! whole server's. The page is therefore shown only to the admins of a
//! server's single license: on a server with several licenses, no tenant's
//! admin may see or block another tenant's devices, and the page says to
//! use `relayhub registry` on the server instead.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use relayhub_core::console::{
    Form, Markup, NavItem, PageError, PageResult, Pages, ShownTo, Viewer, html, live, time_ago,
};
use relayhub_core::error::ErrorCode;
use relayhub_core::identity::IdentityStore;
use relayhub_core::ids::LicensePk;
use relayhub_core::operators::{Actor, Auditor};
use relayhub_core::store::StoreResult;
use serde::Deserialize;

use crate::Registry;
use crate::model::{DeviceFilter, DeviceStatus, RegisteredDevice};

/// Devices per page.
const PAGE_SIZE: usize = 100;
/// The last page the console goes to: the store lists from the oldest
/// registration, so a page costs what it skips.
const MAX_PAGE: u32 = 50;

/// The registry's section of the console.
pub fn pages(registry: Registry) -> Pages {
    let identity = registry.identity.clone();
    // Offered only where it opens: to the admins of a server's only license.
    let shown: ShownTo = Arc::new(move |account| {
        let identity = identity.clone();
        Box::pin(async move { registry_is_theirs_now(identity.as_ref(), account.license).await.unwrap_or(false) })
    });
    let nav = vec![NavItem {
        label: "Registry",
        href: "/console/registry",
        summary: "Devices registered with warehouse instances: approve new ones, block lost ones.",
        admin: true,
        shown: Some(shown),
    }];
    let pages = Router::new()
        .route("/console/registry", get(list))
        .route("/console/registry/live", get(list_live))
        .route("/console/registry/{device}/approve", post(approve))
        .route("/console/registry/{device}/block", post(block))
        .with_state(registry);
    Pages::new(nav, pages)
}

/// Whether the registry is the viewer's license's to see: it is the only
/// license of the server.
fn registry_is_theirs(licenses: &[LicensePk], viewer: LicensePk) -> bool {
    licenses == [viewer]
}

/// [`registry_is_theirs`], with the server's licenses as they are now.
async fn registry_is_theirs_now(identity: &dyn IdentityStore, viewer: LicensePk) -> StoreResult<bool> {
    let licenses: Vec<LicensePk> = identity.licenses().await?.iter().map(|l| l.pk).collect();
    Ok(registry_is_theirs(&licenses, viewer))
}

impl Registry {
    /// Refuses anyone but an admin of the server's only license.
    async fn console_access(&self, viewer: &Viewer) -> Result<(), PageError> {
        viewer.require_admin()?;
        if registry_is_theirs_now(self.identity.as_ref(), viewer.account.license).await? {
            return Ok(());
        }
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The device registry belongs to the whole server, not to one license, and this server has several \
             licenses: the console shows it only on a server with a single license. On the server, use the \
             commands relayhub registry list, relayhub registry approve and relayhub registry block.",
        ))
    }
}

/// Which devices a page shows: a status (or all) and a page number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    status: Option<DeviceStatus>,
    page: u32,
}

impl View {
    /// From `?status=&page=`; anything unreadable means all, page 1.
    fn parse(status: Option<&str>, page: Option<&str>) -> Self {
        let page = page.and_then(|p| p.trim().parse::<u32>().ok()).unwrap_or(1).clamp(1, MAX_PAGE);
        Self { status: status.and_then(|s| DeviceStatus::parse(s.trim())), page }
    }

    fn from_query(query: &HashMap<String, String>) -> Self {
        Self::parse(query.get("status").map(String::as_str), query.get("page").map(String::as_str))
    }

    /// The query string of this view (`?status=pending&page=2`, or empty).
    fn query(self) -> String {
        let mut parts = Vec::new();
        if let Some(status) = self.status {
            parts.push(format!("status={}", status.as_str()));
        }
        if self.page > 1 {
            parts.push(format!("page={}", self.page));
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }

    fn href(self) -> String {
        format!("/console/registry{}", self.query())
    }

    /// How many devices to skip, and how many to fetch (one more than the
    /// page holds, to know whether a next page exists).
    fn window(self) -> (usize, usize) {
        let skip = (self.page as usize - 1) * PAGE_SIZE;
        (skip, skip + PAGE_SIZE + 1)
    }
}

/// What a device's row offers: the text of the button that makes it
/// active (none when it is), and whether it may be blocked.
fn actions(status: DeviceStatus) -> (Option<&'static str>, bool) {
    match status {
        DeviceStatus::Pending => (Some("Approve"), true),
        DeviceStatus::Active => (None, true),
        DeviceStatus::Blocked => (Some("Unblock"), false),
    }
}

async fn list(
    State(registry): State<Registry>,
    viewer: Viewer,
    Query(query): Query<HashMap<String, String>>,
) -> PageResult {
    registry.console_access(&viewer).await?;
    let view = View::from_query(&query);
    let table = table(&registry, &viewer, view).await?;
    let filters = [
        (None, "All"),
        (Some(DeviceStatus::Pending), "Pending"),
        (Some(DeviceStatus::Active), "Active"),
        (Some(DeviceStatus::Blocked), "Blocked"),
    ];
    Ok(viewer.page(
        "Registry",
        html! {
            p.muted {
                "Devices registered with the server's warehouse instances (seed 001). A pending device may not use the "
                "proxy until approved; a blocked one is refused from its next call, on every node."
            }
            nav.pager aria-label="Filter by status" {
                @for (status, label) in filters {
                    @let here = View { status, page: 1 };
                    a href=(here.href()) aria-current=[(status == view.status).then_some("page")] { (label) }
                }
            }
            div #registry-live data-live=(format!("/console/registry/live{}", view.query())) { (table) }
        },
    ))
}

async fn list_live(
    State(registry): State<Registry>,
    viewer: Viewer,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    registry.console_access(&viewer).await?;
    let view = View::from_query(&query);
    Ok(live(move || {
        let (registry, viewer) = (registry.clone(), viewer.clone());
        async move { table(&registry, &viewer, view).await }
    })
    .into_response())
}

/// The page's table and pager: the one fragment the page and its live
/// region render.
async fn table(registry: &Registry, viewer: &Viewer, view: View) -> Result<Markup, PageError> {
    let (skip, fetch) = view.window();
    let found = registry.devices.devices(DeviceFilter { status: view.status, instance_id: None }, fetch).await?;
    let more = found.len() > skip + PAGE_SIZE;
    let devices: Vec<&RegisteredDevice> = found.iter().skip(skip).take(PAGE_SIZE).collect();
    let first = skip + 1;
    Ok(html! {
        @if devices.is_empty() {
            p { @if view.status.is_some() { "No devices with this status." } @else {
                "No devices yet. A device appears here when it registers (POST /ECK/API/DEVICE/REGISTER)." } }
        } @else {
            p.muted { "Devices " (first) "–" (skip + devices.len()) ", oldest registration first, " (PAGE_SIZE) " a page." }
            div.table-wrap {
                table #registry {
                    thead { tr {
                        th scope="col" { "Device" } th scope="col" { "Instance" } th scope="col" { "Address" }
                        th scope="col" { "Status" } th scope="col" { "Registered" } th scope="col" { "Last seen" }
                        th scope="col" { "Actions" }
                    } }
                    tbody { @for device in &devices { (row(registry, viewer, view, device)) } }
                }
            }
        }
        @if view.page > 1 || more {
            nav.pager aria-label="Pages" {
                @if view.page > 1 { a href=(View { page: view.page - 1, ..view }.href()) { "Previous" } }
                span { "Page " (view.page) }
                @if more && view.page < MAX_PAGE { a href=(View { page: view.page + 1, ..view }.href()) { "Next" } }
            }
        }
        @if more && view.page >= MAX_PAGE {
            p.notice { "The console pages through the first " (MAX_PAGE as usize * PAGE_SIZE)
                " devices; filter by status, or use " code { "relayhub registry list" } " for the rest." }
        }
    })
}

fn row(registry: &Registry, viewer: &Viewer, view: View, device: &RegisteredDevice) -> Markup {
    let id = device.device_uuid.as_str();
    let (make_active, may_block) = actions(device.status);
    let return_to = html! {
        input type="hidden" name="return_status" value=(view.status.map_or("", DeviceStatus::as_str));
        input type="hidden" name="return_page" value=(view.page);
    };
    html! {
        tr data-device=(id) data-status=(device.status.as_str()) {
            td { code { (id) } }
            td { code { (device.instance_id) } }
            td { (address(registry, device)) }
            td.status { (status_badge(device.status)) }
            td { (time_ago(Some(device.registered_at))) }
            td { (time_ago(Some(device.last_seen))) }
            td.actions {
                @if let Some(label) = make_active {
                    form.inline method="post" action=(format!("/console/registry/{id}/approve")) {
                        (viewer.csrf_field()) (return_to)
                        button type="submit" name="action" value="approve" aria-label=(format!("{label} {id}")) { (label) }
                    }
                    " "
                }
                @if may_block {
                    form.inline method="post" action=(format!("/console/registry/{id}/block"))
                        data-confirm=(format!("Block device {id}? It is refused from its next call, on every node.")) {
                        (viewer.csrf_field()) (return_to)
                        button.danger type="submit" name="action" value="block" aria-label=(format!("Block {id}")) { "Block" }
                    }
                }
            }
        }
    }
}

/// The instance's public URL, or its tunnel and whether this node holds it.
fn address(registry: &Registry, device: &RegisteredDevice) -> Markup {
    match &device.public_url {
        Some(url) => html! { code { (url) } },
        None if registry.tunnels.get(&device.instance_id).is_some() => {
            html! { "Tunnel " span.badge.ok { "connected here" } }
        }
        None => html! { "Tunnel " span.muted { "(not connected to this node)" } },
    }
}

fn status_badge(status: DeviceStatus) -> Markup {
    match status {
        DeviceStatus::Pending => html! { span.badge.warn { "Pending" } },
        DeviceStatus::Active => html! { span.badge.ok { "Active" } },
        DeviceStatus::Blocked => html! { span.badge.bad { "Blocked" } },
    }
}

/// The page a form came from, to go back to.
#[derive(Debug, Deserialize)]
struct Back {
    #[serde(default)]
    return_status: Option<String>,
    #[serde(default)]
    return_page: Option<String>,
}

async fn approve(
    State(registry): State<Registry>,
    viewer: Viewer,
    Path(device): Path<String>,
    Form(back): Form<Back>,
) -> Result<Response, PageError> {
    set_status(&registry, &viewer, &device, DeviceStatus::Active, back).await
}

async fn block(
    State(registry): State<Registry>,
    viewer: Viewer,
    Path(device): Path<String>,
    Form(back): Form<Back>,
) -> Result<Response, PageError> {
    set_status(&registry, &viewer, &device, DeviceStatus::Blocked, back).await
}

/// Sets the status as `relayhub registry` does, then back to the page.
async fn set_status(
    registry: &Registry,
    viewer: &Viewer,
    device: &str,
    status: DeviceStatus,
    back: Back,
) -> Result<Response, PageError> {
    registry.console_access(viewer).await?;
    let auditor = Auditor::new(registry.audit.clone(), Actor::User(viewer.account.id), None);
    match registry.set_device_status(&auditor, device, status).await {
        Ok(_) => {
            let view = View::parse(back.return_status.as_deref(), back.return_page.as_deref());
            Ok(Redirect::to(&view.href()).into_response())
        }
        // A path that is no UUID names no device either.
        Err(err) if matches!(err.code, ErrorCode::DEVICE_NOT_FOUND | ErrorCode::INVALID_FIELD) => {
            Err(PageError::not_found("device"))
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_license_sees_the_registry() {
        let (a, b) = (LicensePk(1), LicensePk(2));
        assert!(registry_is_theirs(&[a], a));
        assert!(!registry_is_theirs(&[a, b], a), "another tenant's devices may be there");
        assert!(!registry_is_theirs(&[b], a));
        assert!(!registry_is_theirs(&[], a));
    }

    #[test]
    fn views_read_leniently_and_write_back() {
        let view = View::parse(Some("pending"), Some("3"));
        assert_eq!(view, View { status: Some(DeviceStatus::Pending), page: 3 });
        assert_eq!(view.href(), "/console/registry?status=pending&page=3");
        assert_eq!(View::parse(None, None).href(), "/console/registry");
        assert_eq!(View::parse(Some("nope"), Some("-1")), View { status: None, page: 1 });
        assert_eq!(View::parse(Some(""), Some("0")).page, 1);
        assert_eq!(View::parse(None, Some("99999999999")).page, 1, "not a u32");
        assert_eq!(View::parse(None, Some("4000")).page, MAX_PAGE);
        assert_eq!(View::parse(Some("blocked"), Some("1")).query(), "?status=blocked");
    }

    #[test]
    fn a_page_fetches_one_more_than_it_shows() {
        assert_eq!(View::parse(None, None).window(), (0, PAGE_SIZE + 1));
        assert_eq!(View::parse(None, Some("3")).window(), (2 * PAGE_SIZE, 3 * PAGE_SIZE + 1));
    }

    #[test]
    fn rows_offer_what_the_status_allows() {
        assert_eq!(actions(DeviceStatus::Pending), (Some("Approve"), true));
        assert_eq!(actions(DeviceStatus::Active), (None, true));
        assert_eq!(actions(DeviceStatus::Blocked), (Some("Unblock"), false));
    }
}
