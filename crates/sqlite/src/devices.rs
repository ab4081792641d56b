//! The core's devices on SQLite: binding to a license (by the shared rule,
//! [`relayhub_core::devices::resolve`]), presence, listing.

use async_trait::async_trait;
use relayhub_core::bus::Event;
use relayhub_core::devices::{
    self, Attach, Attached, Binding, DeviceEvent, DeviceRecord, DeviceRef, DeviceStatus, DeviceStore, PresenceStore,
    Purpose, SecretStep,
};
use relayhub_core::gateway::ConnId;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// Who holds a device: its pk and license, if it is bound.
pub(crate) fn owner(conn: &Connection, device: &DeviceId) -> StoreResult<Option<(DevicePk, LicensePk)>> {
    conn.prepare_cached("SELECT pk, license_pk FROM devices WHERE device_id = ?1")
        .sql()?
        .query_row([device.as_str()], |row| Ok((DevicePk(row.get(0)?), LicensePk(row.get(1)?))))
        .optional()
        .sql()
}

/// Devices bound to a license.
pub(crate) fn count(conn: &Connection, license: LicensePk) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE license_pk = ?1")
        .sql()?
        .query_row([license.0], |row| row.get(0))
        .sql()?;
    Ok(n.max(0) as u64)
}

/// Binds an unbound device to `license` (the rules were checked).
pub(crate) fn insert(conn: &Connection, license: LicensePk, device: &DeviceId) -> StoreResult<DevicePk> {
    conn.prepare_cached("INSERT INTO devices (device_id, license_pk, bound_at) VALUES (?1, ?2, ?3)")
        .sql()?
        .execute(params![device.as_str(), license.0, Timestamp::now().millis()])
        .sql()?;
    Ok(DevicePk(conn.last_insert_rowid()))
}

/// The device, bound to `license` now if it was bound to none. Refuses
/// (having written nothing) as the shared rule says.
pub(crate) fn resolve_or_bind(
    conn: &Connection,
    license: &License,
    device: &DeviceId,
    purpose: Purpose,
) -> StoreResult<(DevicePk, bool)> {
    let held = owner(conn, device)?;
    match devices::resolve(device, held.map(|(_, l)| l), license, purpose).map_err(StoreError::Rejected)? {
        Binding::Bound => {
            Ok((held.map(|(pk, _)| pk).ok_or_else(|| StoreError::Internal("lost a device".into()))?, false))
        }
        Binding::Bind => {
            devices::check_room(license, count(conn, license.pk)?, 1).map_err(StoreError::Rejected)?;
            Ok((insert(conn, license.pk, device)?, true))
        }
    }
}

/// A device's pk if it is bound to this license.
pub(crate) fn owned(conn: &Connection, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DevicePk>> {
    conn.prepare_cached("SELECT pk FROM devices WHERE device_id = ?1 AND license_pk = ?2")
        .sql()?
        .query_row(params![device.as_str(), license.0], |row| row.get(0).map(DevicePk))
        .optional()
        .sql()
}

/// A device that is not this license's, as a store refusal.
pub(crate) fn not_found(device: &DeviceId) -> StoreError {
    StoreError::Rejected(devices::not_found(device))
}

const RECORD_COLUMNS: &str =
    "pk, device_id, active, online_conn IS NOT NULL, last_seen, bound_at, secret_hash IS NOT NULL";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        pk: DevicePk(row.get(0)?),
        device_id: columns::device_id(row, 1)?,
        status: if row.get::<_, bool>(2)? { DeviceStatus::Active } else { DeviceStatus::Registered },
        online: row.get(3)?,
        last_seen: columns::opt_time(row, 4)?,
        bound_at: columns::time(row, 5)?,
        has_secret: row.get(6)?,
    })
}

/// Who holds a device, and its secret's hash if it has one.
fn owner_and_secret(
    conn: &Connection,
    device: &DeviceId,
) -> StoreResult<Option<(DevicePk, LicensePk, Option<SecretHash>)>> {
    conn.prepare_cached("SELECT pk, license_pk, secret_hash FROM devices WHERE device_id = ?1")
        .sql()?
        .query_row([device.as_str()], |row| {
            let secret: Option<Vec<u8>> = row.get(2)?;
            Ok((DevicePk(row.get(0)?), LicensePk(row.get(1)?), secret.and_then(|s| SecretHash::from_slice(&s))))
        })
        .optional()
        .sql()
}

/// Checks a bound device's secret by the shared rule, storing the
/// connection's fresh one when the device gets one now (then `true`).
/// Runs on the one writer, so two connections never both get one.
fn settle_secret(conn: &Connection, pk: DevicePk, request: &Request) -> StoreResult<bool> {
    let stored = owner_and_secret(conn, &request.device)?.and_then(|(_, _, secret)| secret);
    let step =
        devices::device_secret(&request.device, request.license.binding, stored.as_ref(), request.presented.as_ref())
            .map_err(StoreError::Rejected)?;
    if step != SecretStep::Issue {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE devices SET secret_hash = ?2 WHERE pk = ?1")
        .sql()?
        .execute(params![pk.0, request.fresh.as_bytes().as_slice()])
        .sql()?;
    Ok(true)
}

/// An [`Attach`] the writer thread can own.
struct Request {
    license: License,
    device: DeviceId,
    presented: Option<SecretHash>,
    fresh: SecretHash,
}

/// What the read before a connection's write found.
enum Found {
    /// Bound here, its secret proven or not used: nothing to write.
    Ready(DevicePk),
    /// Bound here, and its secret must be issued.
    Issue,
    /// Not bound yet: bind it.
    Unbound,
}

fn look(conn: &Connection, request: &Request) -> StoreResult<Found> {
    let Some((pk, held, stored)) = owner_and_secret(conn, &request.device)? else {
        // Refused now (preregistered) before the new-binding rate is spent.
        devices::resolve(&request.device, None, &request.license, Purpose::Connect).map_err(StoreError::Rejected)?;
        return Ok(Found::Unbound);
    };
    devices::resolve(&request.device, Some(held), &request.license, Purpose::Connect).map_err(StoreError::Rejected)?;
    let step =
        devices::device_secret(&request.device, request.license.binding, stored.as_ref(), request.presented.as_ref())
            .map_err(StoreError::Rejected)?;
    Ok(if step == SecretStep::Issue { Found::Issue } else { Found::Ready(pk) })
}

pub(crate) fn record(conn: &Connection, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
    conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM devices WHERE device_id = ?1 AND license_pk = ?2"))
        .sql()?
        .query_row(params![device.as_str(), license.0], record_from_row)
        .optional()
        .sql()
}

fn list(conn: &Connection, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceRecord>> {
    let total = count(conn, license)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM devices WHERE license_pk = ?1 ORDER BY device_id LIMIT ?2 OFFSET ?3"
        ))
        .sql()?;
    let rows = stmt.query_map(params![license.0, page.size, page.offset() as i64], record_from_row).sql()?;
    Ok(Page { items: rows.collect::<rusqlite::Result<Vec<_>>>().sql()?, total })
}

/// Unbinds a device. When its data lives in the main file (`data_here`),
/// every capability's data of it goes first, in the same commit (each
/// capability module with per-device data has its line here); otherwise
/// the caller forgets it in its partition after this commit.
fn unbind(conn: &Connection, license: LicensePk, device: &DeviceId, data_here: bool) -> StoreResult<DevicePk> {
    let pk = owned(conn, license, device)?.ok_or_else(|| not_found(device))?;
    if data_here {
        crate::relay::forget_device(conn, pk)?;
    }
    conn.prepare_cached("DELETE FROM devices WHERE pk = ?1").sql()?.execute([pk.0]).sql()?;
    Ok(pk)
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn bind(&self, license: &License, device: &DeviceId) -> StoreResult<(DeviceRecord, bool)> {
        let (license, device) = (license.clone(), device.clone());
        self.writer
            .write(move |conn, _| {
                let (_, created) = resolve_or_bind(conn, &license, &device, Purpose::Queue)?;
                let record = record(conn, license.pk, &device)?.ok_or_else(|| not_found(&device))?;
                Ok((record, created))
            })
            .await
    }

    async fn attach(&self, request: Attach<'_>) -> StoreResult<Attached> {
        let may_bind = request.may_bind;
        let request = Request {
            license: request.license.clone(),
            device: request.device.clone(),
            presented: request.presented,
            fresh: request.fresh,
        };
        let license = request.license.pk;
        let partition = self.license_partition(license).await?.index;
        // Reconnects of bound devices, by far the common case, need no write.
        let request = std::sync::Arc::new(request);
        let read = request.clone();
        let found = self.readers.read(move |conn| look(conn, &read)).await?;
        let attached = match found {
            Found::Ready(pk) => {
                Attached { device: DeviceRef { pk, license, device_id: request.device.clone() }, issued: false }
            }
            found => {
                if matches!(found, Found::Unbound) {
                    may_bind().map_err(StoreError::Rejected)?;
                }
                self.writer
                    .write(move |conn, _| {
                        let (pk, _) = resolve_or_bind(conn, &request.license, &request.device, Purpose::Connect)?;
                        let issued = settle_secret(conn, pk, &request)?;
                        Ok(Attached { device: DeviceRef { pk, license, device_id: request.device.clone() }, issued })
                    })
                    .await?
            }
        };
        // Its socket's calls carry only the pk: find its partition now.
        self.remember_device(attached.device.pk, partition);
        Ok(attached)
    }

    async fn reset_secret(&self, license: LicensePk, device: &DeviceId) -> StoreResult<DeviceRecord> {
        let device = device.clone();
        self.writer
            .write(move |conn, _| {
                let pk = owned(conn, license, &device)?.ok_or_else(|| not_found(&device))?;
                conn.prepare_cached("UPDATE devices SET secret_hash = NULL WHERE pk = ?1")
                    .sql()?
                    .execute([pk.0])
                    .sql()?;
                record(conn, license, &device)?.ok_or_else(|| not_found(&device))
            })
            .await
    }

    /// The binding goes first, then (in a partition file) the device's
    /// data: a crash in between leaves rows no call reaches again, as
    /// unbinding leaves receipts behind anyway.
    async fn unbind(&self, license: LicensePk, device: &DeviceId) -> StoreResult<DevicePk> {
        let device = device.clone();
        let partition = self.license_partition(license).await?;
        let data_here = partition.index == 0;
        let pk = self
            .writer
            .write(move |conn, events| {
                let pk = unbind(conn, license, &device, data_here)?;
                events.push(Event::new(DeviceEvent::Unbound { device: pk }));
                Ok(pk)
            })
            .await?;
        if !data_here {
            partition.writer.write(move |conn, _| crate::relay::forget_device(conn, pk)).await?;
        }
        self.forget_device_partition(pk);
        Ok(pk)
    }

    async fn device(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let device = device.clone();
        self.readers.read(move |conn| record(conn, license, &device)).await
    }

    async fn devices(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceRecord>> {
        self.readers.read(move |conn| list(conn, license, page)).await
    }

    async fn device_count(&self, license: LicensePk) -> StoreResult<u64> {
        self.readers.read(move |conn| count(conn, license)).await
    }

    async fn online_count(&self, license: LicensePk) -> StoreResult<u64> {
        self.readers
            .read(move |conn| {
                let n: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM devices WHERE license_pk = ?1 AND online_conn IS NOT NULL")
                    .sql()?
                    .query_row([license.0], |row| row.get(0))
                    .sql()?;
                Ok(n.max(0) as u64)
            })
            .await
    }
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn set_online(&self, device: DevicePk, conn: ConnId) -> StoreResult<()> {
        self.writer
            .write(move |db, _| {
                db.prepare_cached("UPDATE devices SET online_conn = ?2, active = 1, last_seen = ?3 WHERE pk = ?1")
                    .sql()?
                    .execute(params![device.0, conn.0 as i64, Timestamp::now().millis()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    fn set_offline(&self, device: DevicePk, conn: ConnId) {
        self.writer.submit(move |db, _| {
            db.prepare_cached(
                "UPDATE devices SET online_conn = NULL, last_seen = ?3 WHERE pk = ?1 AND online_conn = ?2",
            )
            .sql()?
            .execute(params![device.0, conn.0 as i64, Timestamp::now().millis()])
            .sql()?;
            Ok(())
        });
    }

    async fn is_current_connection(&self, _: DevicePk, _: ConnId) -> StoreResult<bool> {
        // One node: a newer connection of the device replaced this one in
        // the hub directly; nothing is ever connected elsewhere.
        Ok(true)
    }
}

/// Forgets presence that did not end cleanly (the process died with
/// sockets open).
pub(crate) fn forget_presence(conn: &Connection) -> StoreResult<()> {
    conn.execute("UPDATE devices SET online_conn = NULL WHERE online_conn IS NOT NULL", []).sql()?;
    Ok(())
}
