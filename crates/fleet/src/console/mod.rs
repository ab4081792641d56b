//! The fleet's pages in the web console: signing in (the fleet keeps the
//! passwords), the user's robots with live charts and logs, and pairing a
//! robot by its code.

mod chart;
mod license_users;
mod pair;
mod reset;
mod robots;
mod signin;

use axum::Router;
use axum::http::StatusCode;
use relayhub_core::console::{NavItem, PageError, Pages, Viewer};

use crate::Fleet;
use crate::auth::UserAuth;

/// The fleet's section of the console.
pub fn pages(fleet: Fleet) -> Pages {
    let nav = vec![
        NavItem {
            label: "Robots",
            href: "/console/robots",
            summary: "Your robots: online or not, live charts of their measurements, recent logs.",
            admin: false,
            shown: None,
        },
        NavItem {
            label: "Pair a robot",
            href: "/console/pair",
            summary: "Type the code a new robot shows, check its hostname and address, confirm.",
            admin: false,
            shown: None,
        },
    ];
    let pages = Router::new().merge(robots::routes()).merge(pair::routes()).with_state(fleet.clone());
    let mut section = Pages::new(nav, pages);
    section.public = signin::routes().merge(reset::routes()).with_state(fleet.clone());
    section.operator = license_users::routes().with_state(fleet);
    section.license_links = vec![license_users::LINK];
    section
}

/// The viewer as the fleet's API sees a caller, so the pages ask the same
/// rules (who sees which robot, whose pairing attempts count) the same way.
async fn caller(fleet: &Fleet, viewer: &Viewer) -> Result<UserAuth, PageError> {
    let ended = || PageError::new(StatusCode::UNAUTHORIZED, "Your session ended. Sign in again.");
    let (user, license) = fleet.accounts.active(viewer.account.id).await?.ok_or_else(ended)?;
    Ok(UserAuth { user, license })
}
