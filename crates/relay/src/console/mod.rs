//! The relay's pages in the web console, for the license's admins: its
//! devices (online, queue depth, last seen), a device's pending messages,
//! receipts and settings, the inbox, and the license's own parameters.
//! They read the same stores, and write through the same rules, as the
//! back-office API.

mod device;
mod devices;
mod license;

use axum::Router;
use relayhub_core::console::{NavItem, PageError, Pages, Viewer};
use relayhub_core::identity::License;

use crate::Relay;

/// The relay's section of the console.
pub fn pages(relay: Relay) -> Pages {
    let nav = vec![
        NavItem {
            label: "Devices",
            href: "/console/devices",
            summary: "Devices of the license: online or not, messages waiting, last seen; a device's queue and settings.",
            admin: true,
            shown: None,
        },
        NavItem {
            label: "Inbox",
            href: "/console/inbox",
            summary: "Records devices sent up that the back-office has not acknowledged yet.",
            admin: true,
            shown: None,
        },
        NavItem {
            label: "License",
            href: "/console/license",
            summary: "The license's parameters and how much of it is used.",
            admin: true,
            shown: None,
        },
    ];
    let pages =
        Router::new().merge(devices::routes()).merge(device::routes()).merge(license::routes()).with_state(relay);
    Pages::new(nav, pages)
}

impl Relay {
    /// The viewer's license, if the viewer is one of its admins.
    async fn console_license(&self, viewer: &Viewer) -> Result<License, PageError> {
        viewer.require_admin()?;
        let license = self.identity.license_by_pk(viewer.account.license).await?;
        license.ok_or_else(|| PageError::not_found("license"))
    }
}

/// A JSON value as a person reads it: pretty, and cut at `max` characters.
fn preview(json: &str, max: usize) -> String {
    let pretty = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_owned());
    match pretty.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &pretty[..cut]),
        None => pretty,
    }
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn previews_are_pretty_and_cut() {
        assert_eq!(preview(r#"{"a":1}"#, 100), "{\n  \"a\": 1\n}");
        assert_eq!(preview(r#""ааааа""#, 3), "\"аа…");
        assert_eq!(preview("not json", 100), "not json");
    }
}
