//! Device settings (seed 000): one JSON document per device, with a
//! version, kept on the server for as long as the device is bound, written
//! by the back-office (HTTP) and by the device (its `settings` frame), and
//! restorable onto a new device through a linked Google account.
//!
//! Every write names the version it was based on. The same version: it
//! applies. An older one: the server merges it three ways with what changed
//! since ([`merge`]); overlapping changes are refused with the current
//! document, so neither side overwrites the other blindly.

pub mod api;
pub mod merge;

use async_trait::async_trait;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::DeviceRef;
pub use merge::Document;

/// Earlier versions kept per device, so late writers can still be merged.
pub const HISTORY: i64 = 64;

/// Who changed the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    Device,
    BackOffice,
    /// Copied from a linked account's device.
    Restore,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Author::Device => "device",
            Author::BackOffice => "back_office",
            Author::Restore => "restore",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Author::Device, Author::BackOffice, Author::Restore].into_iter().find(|a| a.as_str() == raw)
    }
}

/// A device's settings. Version 0 is the empty document nobody wrote yet.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Settings {
    pub version: i64,
    #[schema(value_type = Object)]
    pub settings: Document,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<Author>,
}

impl Settings {
    pub fn empty() -> Self {
        Self { version: 0, settings: Document::new(), updated_at: None, updated_by: None }
    }
}

/// A write: the document as the writer wants it, and the version it saw.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub base_version: i64,
    pub document: Document,
    pub author: Author,
}

/// What a write did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stored (or already so): the resulting document, and whether it had to
    /// be merged with changes the writer had not seen.
    Applied { settings: Settings, merged: bool },
    /// Refused: the current document and the conflicting paths.
    Conflict { current: Settings, paths: Vec<String>, reason: String },
}

/// What to store, decided from the current document, the writer's base
/// (if still kept) and the proposal. Shared by every backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store this document as the next version.
    Write {
        document: Document,
        merged: bool,
    },
    /// The result equals the current document: nothing to store.
    Unchanged,
    Conflict {
        paths: Vec<String>,
        reason: String,
    },
}

pub fn decide(current: &Settings, base: Option<&Document>, proposal: &Proposal) -> Decision {
    let result = if proposal.base_version == current.version {
        Ok((proposal.document.clone(), false))
    } else if proposal.base_version > current.version {
        return Decision::Conflict {
            paths: Vec::new(),
            reason: format!(
                "version {} does not exist yet; the current one is {}",
                proposal.base_version, current.version
            ),
        };
    } else if let Some(base) = base {
        merge::merge3(base, &current.settings, &proposal.document).map(|doc| (doc, true))
    } else {
        return Decision::Conflict {
            paths: Vec::new(),
            reason: format!(
                "version {} is too old to merge (the server keeps the last {HISTORY}); start from version {}",
                proposal.base_version, current.version
            ),
        };
    };
    match result {
        Ok((document, _)) if document == current.settings => Decision::Unchanged,
        Ok((document, merged)) => Decision::Write { document, merged },
        Err(paths) => Decision::Conflict {
            reason: format!("changed since version {} by someone else: {}", proposal.base_version, paths.join(", ")),
            paths,
        },
    }
}

/// Whose settings a write is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// The back-office names the device; binds it if new, like a message.
    BackOffice { license: License, device: DeviceId },
    /// The device itself, over its socket.
    Device(DevicePk),
}

/// Storage of settings and account links.
#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    /// A device's settings; `device_not_found` unless bound to `license`.
    async fn settings(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Settings>;
    async fn device_settings(&self, device: DevicePk) -> StoreResult<Settings>;
    /// Applies a write (see [`decide`]); a change is reported as
    /// [`crate::store::RelayEvent::Settings`]. A back-office write binds a
    /// device not yet bound only if it stores something: a refused write
    /// changes nothing.
    async fn write_settings(&self, target: Target, proposal: Proposal) -> StoreResult<Outcome>;
    /// Links an account (`google:<sub>`) to this device's settings, within
    /// its license.
    async fn link_account(&self, device: &DeviceRef, account: &str) -> StoreResult<()>;
    /// Copies the settings linked to `account` in this device's license onto
    /// the device, and links the account to it; `None` if the account is
    /// not linked in this license.
    async fn restore_account(&self, device: &DeviceRef, account: &str) -> StoreResult<Option<Settings>>;
}

/// The document a restore leaves on a device whose settings are
/// `current`, from the account's `source`; `None` when it has them already
/// (nothing is stored, no version is used up).
pub fn restore_onto(source: Document, current: &Settings) -> Option<Document> {
    (source != current.settings).then_some(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: serde_json::Value) -> Document {
        v.as_object().unwrap().clone()
    }

    fn at(version: i64, v: serde_json::Value) -> Settings {
        Settings { version, settings: doc(v), updated_at: None, updated_by: None }
    }

    fn proposal(base_version: i64, v: serde_json::Value) -> Proposal {
        Proposal { base_version, document: doc(v), author: Author::Device }
    }

    #[test]
    fn a_write_on_the_current_version_applies_as_is() {
        let d = decide(&at(2, json!({"a": 1})), None, &proposal(2, json!({"b": 2})));
        assert_eq!(d, Decision::Write { document: doc(json!({"b": 2})), merged: false });
    }

    #[test]
    fn a_stale_disjoint_write_merges_and_an_overlapping_one_conflicts() {
        let base = doc(json!({"a": 1, "b": 1}));
        let current = at(3, json!({"a": 2, "b": 1}));
        let d = decide(&current, Some(&base), &proposal(2, json!({"a": 1, "b": 5})));
        assert_eq!(d, Decision::Write { document: doc(json!({"a": 2, "b": 5})), merged: true });
        let d = decide(&current, Some(&base), &proposal(2, json!({"a": 9, "b": 1})));
        assert!(matches!(d, Decision::Conflict { paths, .. } if paths == vec!["a".to_owned()]));
    }

    #[test]
    fn unknown_or_forgotten_bases_conflict_and_no_ops_store_nothing() {
        let current = at(3, json!({"a": 1}));
        assert!(matches!(decide(&current, None, &proposal(1, json!({}))), Decision::Conflict { .. }));
        assert!(matches!(decide(&current, None, &proposal(7, json!({}))), Decision::Conflict { .. }));
        assert_eq!(decide(&current, None, &proposal(3, json!({"a": 1}))), Decision::Unchanged);
    }
}
