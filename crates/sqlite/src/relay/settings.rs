//! Settings documents, their recent versions, and account links.

use std::sync::Arc;

use relayhub_core::bus::Event;
use relayhub_core::devices::{self as rules, Binding, Purpose};
use relayhub_core::ids::DevicePk;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::DeviceRef;
use relayhub_relay::settings::{
    Author, Decision, Document, HISTORY, Outcome, Proposal, Settings, Target, decide, restore_onto,
};
use relayhub_relay::store::RelayEvent;
use rusqlite::{Connection, OptionalExtension, params};

use super::NeedsBinding;
use crate::devices;
use crate::error::SqlResult;

fn document(raw: &str) -> StoreResult<Document> {
    serde_json::from_str(raw).map_err(|e| StoreError::Internal(format!("stored settings are not an object: {e}")))
}

fn text(document: &Document) -> String {
    serde_json::to_string(document).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn load(conn: &Connection, device: DevicePk) -> StoreResult<Settings> {
    let row = conn
        .prepare_cached("SELECT version, document, updated_at, updated_by FROM settings WHERE device_pk = ?1")
        .sql()?
        .query_row([device.0], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, String>(3)?))
        })
        .optional()
        .sql()?;
    match row {
        None => Ok(Settings::empty()),
        Some((version, raw, at, by)) => Ok(Settings {
            version,
            settings: document(&raw)?,
            updated_at: Some(Timestamp::from_millis(at)),
            updated_by: Author::parse(&by),
        }),
    }
}

/// The document as it was at `version`, if still kept.
fn base(conn: &Connection, device: DevicePk, version: i64) -> StoreResult<Option<Document>> {
    if version == 0 {
        return Ok(Some(Document::new()));
    }
    let raw: Option<String> = conn
        .prepare_cached("SELECT document FROM settings_history WHERE device_pk = ?1 AND version = ?2")
        .sql()?
        .query_row(params![device.0, version], |row| row.get(0))
        .optional()
        .sql()?;
    raw.as_deref().map(document).transpose()
}

/// Stores `document` as the next version, keeping the last [`HISTORY`].
fn store(
    conn: &Connection,
    events: &mut Vec<Event>,
    device: DevicePk,
    version: i64,
    document: Document,
    author: Author,
) -> StoreResult<Settings> {
    let now = Timestamp::now();
    let raw = text(&document);
    conn.prepare_cached(
        "INSERT INTO settings (device_pk, version, document, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (device_pk) DO UPDATE SET version = ?2, document = ?3, updated_at = ?4, updated_by = ?5",
    )
    .sql()?
    .execute(params![device.0, version, raw, now.millis(), author.as_str()])
    .sql()?;
    conn.prepare_cached("INSERT INTO settings_history (device_pk, version, document) VALUES (?1, ?2, ?3)")
        .sql()?
        .execute(params![device.0, version, raw])
        .sql()?;
    conn.prepare_cached("DELETE FROM settings_history WHERE device_pk = ?1 AND version <= ?2")
        .sql()?
        .execute(params![device.0, version - HISTORY])
        .sql()?;
    let settings = Settings { version, settings: document, updated_at: Some(now), updated_by: Some(author) };
    events.push(Event::new(RelayEvent::Settings { device, settings: Some(Arc::new(settings.clone())) }));
    Ok(settings)
}

/// Applies a write. A back-office write to a device not bound yet binds it
/// only if something is stored: a refused write leaves nothing behind. In
/// a partition file (`binds` false) such a write hands the call back
/// instead, to bind the device in the main file first.
pub(crate) fn write(
    conn: &Connection,
    events: &mut Vec<Event>,
    target: Target,
    proposal: Proposal,
    binds: bool,
) -> StoreResult<NeedsBinding<Outcome, (Target, Proposal)>> {
    let (device, current) = match &target {
        Target::Device(pk) => (Some(*pk), load(conn, *pk)?),
        Target::BackOffice { license, device } => {
            let held = devices::owner(conn, device)?;
            match rules::resolve(device, held.map(|(_, l)| l), license, Purpose::Queue).map_err(StoreError::Rejected)? {
                Binding::Bound => {
                    let pk = held.map(|(pk, _)| pk).ok_or_else(|| StoreError::Internal("lost a device".into()))?;
                    (Some(pk), load(conn, pk)?)
                }
                Binding::Bind => (None, Settings::empty()),
            }
        }
    };
    let base = match device {
        Some(pk) if proposal.base_version < current.version => base(conn, pk, proposal.base_version)?,
        _ => None,
    };
    let (document, merged) = match decide(&current, base.as_ref(), &proposal) {
        Decision::Write { document, merged } => (document, merged),
        Decision::Unchanged => {
            return Ok(NeedsBinding::Done(Outcome::Applied { settings: current, merged: false }));
        }
        Decision::Conflict { paths, reason } => {
            return Ok(NeedsBinding::Done(Outcome::Conflict { current, paths, reason }));
        }
    };
    let device = match (device, target) {
        (Some(pk), _) => pk,
        (None, target @ Target::BackOffice { .. }) if !binds => return Ok(NeedsBinding::Unbound((target, proposal))),
        (None, Target::BackOffice { license, device }) => {
            devices::resolve_or_bind(conn, &license, &device, Purpose::Queue)?.0
        }
        (None, Target::Device(pk)) => pk,
    };
    let settings = store(conn, events, device, current.version + 1, document, proposal.author)?;
    Ok(NeedsBinding::Done(Outcome::Applied { settings, merged }))
}

pub(crate) fn link(conn: &Connection, device: &DeviceRef, account: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO accounts (license_pk, account, device_pk, snapshot, linked_at) VALUES (?1, ?2, ?3, NULL, ?4)
         ON CONFLICT (license_pk, account) DO UPDATE SET device_pk = ?3, snapshot = NULL, linked_at = ?4",
    )
    .sql()?
    .execute(params![device.license.0, account, device.pk.0, Timestamp::now().millis()])
    .sql()?;
    Ok(())
}

pub(crate) fn restore(
    conn: &Connection,
    events: &mut Vec<Event>,
    device: &DeviceRef,
    account: &str,
) -> StoreResult<Option<Settings>> {
    let linked = conn
        .prepare_cached("SELECT device_pk, snapshot FROM accounts WHERE license_pk = ?1 AND account = ?2")
        .sql()?
        .query_row(params![device.license.0, account], |row| {
            Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Option<String>>(1)?))
        })
        .optional()
        .sql()?;
    let source = match linked {
        None => return Ok(None),
        Some((Some(pk), _)) => load(conn, DevicePk(pk))?.settings,
        Some((None, Some(snapshot))) => document(&snapshot)?,
        Some((None, None)) => Document::new(),
    };
    let current = load(conn, device.pk)?;
    let settings = match restore_onto(source, &current) {
        None => current,
        Some(document) => store(conn, events, device.pk, current.version + 1, document, Author::Restore)?,
    };
    // The new device is the account's device from now on.
    link(conn, device, account)?;
    Ok(Some(settings))
}

/// Before a device is unbound: accounts that follow it keep a copy of its
/// settings, and its own settings go.
pub(crate) fn forget_device(conn: &Connection, device: DevicePk) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE accounts SET snapshot = (SELECT document FROM settings WHERE device_pk = ?1), device_pk = NULL
         WHERE device_pk = ?1",
    )
    .sql()?
    .execute([device.0])
    .sql()?;
    conn.prepare_cached("DELETE FROM settings WHERE device_pk = ?1").sql()?.execute([device.0]).sql()?;
    conn.prepare_cached("DELETE FROM settings_history WHERE device_pk = ?1").sql()?.execute([device.0]).sql()?;
    Ok(())
}
