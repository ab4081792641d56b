//! Devices: binding to a license, presence, listing.

use relayhub_core::error::ErrorCode;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{DeviceInfo, DeviceStatus};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::columns;
use crate::error::SqlResult;

/// A bound device as the writer works with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceRow {
    pub pk: DevicePk,
    pub next_seq: i64,
    pub pending: i64,
}

/// Who is asking to use a device: a producer gets 404 for another
/// license's device (it must not learn it exists), the device itself 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Queue,
    Connect,
}

/// The device, bound to `license` now if it was not bound to any.
pub(crate) fn resolve_or_bind(
    conn: &Connection,
    license: &License,
    device: &DeviceId,
    purpose: Purpose,
) -> StoreResult<(DeviceRow, bool)> {
    if let Some(row) = lookup(conn, license, device, purpose)? {
        return Ok((row, false));
    }
    check_room(conn, license, 1)?;
    Ok((insert(conn, license, device)?, true))
}

/// The device if bound to `license`; `None` if bound to none; refused if it
/// is another license's. Reads only.
pub(crate) fn lookup(
    conn: &Connection,
    license: &License,
    device: &DeviceId,
    purpose: Purpose,
) -> StoreResult<Option<DeviceRow>> {
    let found = conn
        .prepare_cached("SELECT pk, license_pk, next_seq, pending FROM devices WHERE device_id = ?1")
        .sql()?
        .query_row([device.as_str()], |row| {
            Ok((
                DeviceRow { pk: DevicePk(row.get(0)?), next_seq: row.get(2)?, pending: row.get(3)? },
                row.get::<_, i64>(1)?,
            ))
        })
        .optional()
        .sql()?;
    match found {
        Some((row, owner)) if owner == license.pk.0 => Ok(Some(row)),
        Some(_) if purpose == Purpose::Connect => Err(StoreError::rejected(
            ErrorCode::DeviceBoundElsewhere,
            format!("device {device} is bound to another license"),
        )),
        Some(_) => Err(not_found(device)),
        None => Ok(None),
    }
}

/// Refuses if binding `adding` more devices would exceed `max_devices`.
pub(crate) fn check_room(conn: &Connection, license: &License, adding: usize) -> StoreResult<()> {
    let Some(max) = license.max_devices else { return Ok(()) };
    if adding == 0 {
        return Ok(());
    }
    let used: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE license_pk = ?1")
        .sql()?
        .query_row([license.pk.0], |row| row.get(0))
        .sql()?;
    if used + adding as i64 > i64::from(max) {
        return Err(StoreError::rejected(
            ErrorCode::DeviceLimit,
            format!("license {} already has its maximum of {max} devices", license.number),
        ));
    }
    Ok(())
}

/// Binds an unbound device to `license`.
pub(crate) fn insert(conn: &Connection, license: &License, device: &DeviceId) -> StoreResult<DeviceRow> {
    conn.prepare_cached("INSERT INTO devices (device_id, license_pk, bound_at) VALUES (?1, ?2, ?3)")
        .sql()?
        .execute(params![device.as_str(), license.pk.0, Timestamp::now().millis()])
        .sql()?;
    Ok(DeviceRow { pk: DevicePk(conn.last_insert_rowid()), next_seq: 1, pending: 0 })
}

pub(crate) fn not_found(device: &DeviceId) -> StoreError {
    StoreError::rejected(ErrorCode::DeviceNotFound, format!("no device {device} in this license"))
}

/// A device's pk if it is bound to this license.
pub(crate) fn owned(conn: &Connection, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DevicePk>> {
    conn.prepare_cached("SELECT pk FROM devices WHERE device_id = ?1 AND license_pk = ?2")
        .sql()?
        .query_row(params![device.as_str(), license.0], |row| row.get(0).map(DevicePk))
        .optional()
        .sql()
}

const INFO_COLUMNS: &str = "device_id, active, online_conn IS NOT NULL, last_seen, pending, bound_at";

fn info_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceInfo> {
    Ok(DeviceInfo {
        device_id: columns::device_id(row, 0)?,
        status: if row.get::<_, bool>(1)? { DeviceStatus::Active } else { DeviceStatus::Registered },
        online: row.get(2)?,
        last_seen: columns::opt_time(row, 3)?,
        pending: row.get::<_, i64>(4)?.max(0) as u64,
        bound_at: columns::time(row, 5)?,
    })
}

pub(crate) fn info(conn: &Connection, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceInfo>> {
    conn.prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM devices WHERE device_id = ?1 AND license_pk = ?2"))
        .sql()?
        .query_row(params![device.as_str(), license.0], info_from_row)
        .optional()
        .sql()
}

pub(crate) fn list(conn: &Connection, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceInfo>> {
    let total = count(conn, license)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM devices WHERE license_pk = ?1 ORDER BY device_id LIMIT ?2 OFFSET ?3"
        ))
        .sql()?;
    let rows = stmt.query_map(params![license.0, page.size, page.offset() as i64], info_from_row).sql()?;
    Ok(Page { items: rows.collect::<rusqlite::Result<Vec<_>>>().sql()?, total })
}

pub(crate) fn count(conn: &Connection, license: LicensePk) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE license_pk = ?1")
        .sql()?
        .query_row([license.0], |row| row.get(0))
        .sql()?;
    Ok(n as u64)
}

/// Unbinds a device: its pending messages, idempotency keys and settings go
/// with it; its receipts become unreachable and leave with the retention
/// purge (see migration 0003).
pub(crate) fn unbind(conn: &Connection, license: LicensePk, device: &DeviceId) -> StoreResult<DevicePk> {
    let pk = owned(conn, license, device)?.ok_or_else(|| not_found(device))?;
    super::settings::forget_device(conn, pk)?;
    super::queue::forget_device(conn, pk)?;
    conn.prepare_cached("DELETE FROM devices WHERE pk = ?1").sql()?.execute([pk.0]).sql()?;
    Ok(pk)
}

pub(crate) fn set_online(conn: &Connection, device: DevicePk, conn_id: u64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE devices SET online_conn = ?2, active = 1, last_seen = ?3 WHERE pk = ?1")
        .sql()?
        .execute(params![device.0, conn_id as i64, Timestamp::now().millis()])
        .sql()?;
    Ok(())
}

pub(crate) fn set_offline(conn: &Connection, device: DevicePk, conn_id: u64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE devices SET online_conn = NULL, last_seen = ?3 WHERE pk = ?1 AND online_conn = ?2")
        .sql()?
        .execute(params![device.0, conn_id as i64, Timestamp::now().millis()])
        .sql()?;
    Ok(())
}

/// Changes a device's pending count by `delta`.
pub(crate) fn add_pending(conn: &Connection, device: DevicePk, delta: i64) -> StoreResult<()> {
    if delta != 0 {
        conn.prepare_cached("UPDATE devices SET pending = pending + ?2 WHERE pk = ?1")
            .sql()?
            .execute(params![device.0, delta])
            .sql()?;
    }
    Ok(())
}
