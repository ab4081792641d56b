//! Settings documents, their recent versions, and account links. A write
//! locks the device's settings row, so concurrent writers on any node are
//! decided one after the other by the shared rule (`decide`).

use std::sync::Arc;

use relayhub_core::bus::Event;
use relayhub_core::devices::{self as rules, Binding, Purpose};
use relayhub_core::ids::DevicePk;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_relay::model::DeviceRef;
use relayhub_relay::settings::{
    Author, Decision, Document, HISTORY, Outcome, Proposal, Settings, Target, decide, restore_onto,
};
use relayhub_relay::store::RelayEvent;
use sqlx::{PgExecutor, Postgres, Row, Transaction};

use crate::devices;
use crate::error::SqlResult;
use crate::time::time;

fn document(raw: &str) -> StoreResult<Document> {
    serde_json::from_str(raw).map_err(|e| StoreError::Internal(format!("stored settings are not an object: {e}")))
}

fn text(document: &Document) -> String {
    serde_json::to_string(document).unwrap_or_else(|_| "{}".into())
}

/// The device's settings; `lock` holds the row until the transaction ends.
pub(crate) async fn load<'e>(db: impl PgExecutor<'e>, device: DevicePk, lock: bool) -> StoreResult<Settings> {
    let sql = if lock {
        "SELECT version, document::text AS document, updated_at, updated_by FROM settings WHERE device_pk = $1 FOR UPDATE"
    } else {
        "SELECT version, document::text AS document, updated_at, updated_by FROM settings WHERE device_pk = $1"
    };
    let row = sqlx::query(sql).bind(device.0).fetch_optional(db).await.sql()?;
    match row {
        None => Ok(Settings::empty()),
        // The placeholder a first writer locks: nobody has written yet.
        Some(r) if r.try_get::<i64, _>("version").sql()? == 0 => Ok(Settings::empty()),
        Some(r) => {
            let raw: String = r.try_get("document").sql()?;
            let by: String = r.try_get("updated_by").sql()?;
            Ok(Settings {
                version: r.try_get("version").sql()?,
                settings: document(&raw)?,
                updated_at: Some(time(r.try_get("updated_at").sql()?)),
                updated_by: Author::parse(&by),
            })
        }
    }
}

async fn base(tx: &mut Transaction<'_, Postgres>, device: DevicePk, version: i64) -> StoreResult<Option<Document>> {
    if version == 0 {
        return Ok(Some(Document::new()));
    }
    let raw: Option<String> =
        sqlx::query_scalar("SELECT document::text FROM settings_history WHERE device_pk = $1 AND version = $2")
            .bind(device.0)
            .bind(version)
            .fetch_optional(&mut **tx)
            .await
            .sql()?;
    raw.as_deref().map(document).transpose()
}

/// Stores `document` as the next version, keeping the last [`HISTORY`].
async fn store(
    tx: &mut Transaction<'_, Postgres>,
    device: DevicePk,
    version: i64,
    document: Document,
    author: Author,
) -> StoreResult<Settings> {
    let raw = text(&document);
    let updated: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO settings (device_pk, version, document, updated_at, updated_by) VALUES ($1, $2, $3::jsonb, now(), $4)
         ON CONFLICT (device_pk) DO UPDATE SET version = $2, document = $3::jsonb, updated_at = now(), updated_by = $4
         RETURNING updated_at",
    )
    .bind(device.0)
    .bind(version)
    .bind(&raw)
    .bind(author.as_str())
    .fetch_one(&mut **tx)
    .await
    .sql()?;
    sqlx::query("INSERT INTO settings_history (device_pk, version, document) VALUES ($1, $2, $3::jsonb)")
        .bind(device.0)
        .bind(version)
        .bind(&raw)
        .execute(&mut **tx)
        .await
        .sql()?;
    sqlx::query("DELETE FROM settings_history WHERE device_pk = $1 AND version <= $2")
        .bind(device.0)
        .bind(version - HISTORY)
        .execute(&mut **tx)
        .await
        .sql()?;
    Ok(Settings { version, settings: document, updated_at: Some(time(updated)), updated_by: Some(author) })
}

/// A change, for this node's connections (with the document) and the
/// other nodes'.
pub(crate) fn changed(device: DevicePk, settings: &Settings) -> Event {
    Event::new(RelayEvent::Settings { device, settings: Some(Arc::new(settings.clone())) })
}

/// Makes sure the device has a settings row to lock, so that the first
/// two writers of a device are also decided one after the other.
async fn lock_row(tx: &mut Transaction<'_, Postgres>, device: DevicePk) -> StoreResult<Settings> {
    sqlx::query(
        "INSERT INTO settings (device_pk, version, document, updated_at, updated_by)
         VALUES ($1, 0, '{}'::jsonb, now(), 'back_office') ON CONFLICT (device_pk) DO NOTHING",
    )
    .bind(device.0)
    .execute(&mut **tx)
    .await
    .sql()?;
    load(&mut **tx, device, true).await
}

/// Applies a write; also returns what it stored. A back-office write to a
/// device not bound yet binds it only if something is stored: a refused
/// write leaves nothing behind.
pub(crate) async fn write(
    tx: &mut Transaction<'_, Postgres>,
    target: Target,
    proposal: Proposal,
) -> StoreResult<(Outcome, Option<(DevicePk, Settings)>)> {
    let device = match &target {
        Target::Device(pk) => Some(*pk),
        Target::BackOffice { license, device } => {
            let held = devices::owner(&mut **tx, device).await?;
            match rules::resolve(device, held.map(|(_, l)| l), license, Purpose::Queue).map_err(StoreError::Rejected)? {
                Binding::Bound => held.map(|(pk, _)| pk),
                Binding::Bind => None,
            }
        }
    };
    let current = match device {
        Some(pk) => lock_row(tx, pk).await?,
        None => Settings::empty(),
    };
    let base = match device {
        Some(pk) if proposal.base_version < current.version => base(tx, pk, proposal.base_version).await?,
        _ => None,
    };
    let (document, merged) = match decide(&current, base.as_ref(), &proposal) {
        Decision::Write { document, merged } => (document, merged),
        Decision::Unchanged => return Ok((Outcome::Applied { settings: current, merged: false }, None)),
        Decision::Conflict { paths, reason } => return Ok((Outcome::Conflict { current, paths, reason }, None)),
    };
    let device = match (device, target) {
        (Some(pk), _) | (None, Target::Device(pk)) => pk,
        (None, Target::BackOffice { license, device }) => {
            let (pk, _) = devices::resolve_or_bind(tx, &license, &device, Purpose::Queue).await?;
            // Bound just now, or by another node a moment ago: decide again
            // on what is there.
            let again = lock_row(tx, pk).await?;
            if again.version != current.version {
                return Err(StoreError::Unavailable(format!(
                    "{}: settings changed meanwhile",
                    crate::error::ROLLED_BACK
                )));
            }
            pk
        }
    };
    let settings = store(tx, device, current.version + 1, document, proposal.author).await?;
    Ok((Outcome::Applied { settings: settings.clone(), merged }, Some((device, settings))))
}

pub(crate) async fn link<'e>(db: impl PgExecutor<'e>, device: &DeviceRef, account: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO accounts (license_pk, account, device_pk, snapshot, linked_at) VALUES ($1, $2, $3, NULL, now())
         ON CONFLICT (license_pk, account) DO UPDATE SET device_pk = $3, snapshot = NULL, linked_at = now()",
    )
    .bind(device.license.0)
    .bind(account)
    .bind(device.pk.0)
    .execute(db)
    .await
    .sql()?;
    Ok(())
}

/// Restores the account's settings onto `device`; also returns them if
/// they changed the device's document.
pub(crate) async fn restore(
    tx: &mut Transaction<'_, Postgres>,
    device: &DeviceRef,
    account: &str,
) -> StoreResult<Option<(Settings, bool)>> {
    let linked = sqlx::query(
        "SELECT device_pk, snapshot::text AS snapshot FROM accounts WHERE license_pk = $1 AND account = $2 FOR UPDATE",
    )
    .bind(device.license.0)
    .bind(account)
    .fetch_optional(&mut **tx)
    .await
    .sql()?;
    let Some(linked) = linked else { return Ok(None) };
    let source_device: Option<i64> = linked.try_get("device_pk").sql()?;
    let snapshot: Option<String> = linked.try_get("snapshot").sql()?;
    let source = match (source_device, snapshot) {
        (Some(pk), _) => load(&mut **tx, DevicePk(pk), false).await?.settings,
        (None, Some(raw)) => document(&raw)?,
        (None, None) => Document::new(),
    };
    let current = lock_row(tx, device.pk).await?;
    let (settings, changed) = match restore_onto(source, &current) {
        None => (current, false),
        Some(document) => (store(tx, device.pk, current.version + 1, document, Author::Restore).await?, true),
    };
    // The new device is the account's device from now on.
    link(&mut **tx, device, account).await?;
    Ok(Some((settings, changed)))
}

/// Before a device is unbound: accounts that follow it keep a copy of its
/// settings, and its own settings go.
pub(crate) async fn forget_device(tx: &mut Transaction<'_, Postgres>, device: DevicePk) -> StoreResult<()> {
    sqlx::query(
        "UPDATE accounts SET snapshot = (SELECT document FROM settings WHERE device_pk = $1 AND version > 0),
                             device_pk = NULL
         WHERE device_pk = $1",
    )
    .bind(device.0)
    .execute(&mut **tx)
    .await
    .sql()?;
    sqlx::query("DELETE FROM settings WHERE device_pk = $1").bind(device.0).execute(&mut **tx).await.sql()?;
    sqlx::query("DELETE FROM settings_history WHERE device_pk = $1").bind(device.0).execute(&mut **tx).await.sql()?;
    Ok(())
}
