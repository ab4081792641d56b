//! The inbox: records sent up by devices until the back-office acknowledges
//! them. An acknowledged row keeps its `ref` (not its data) for the
//! retention period, so a device's retry is recognised as one.

use relayhub_core::bus::Event;
use relayhub_core::ids::LicensePk;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{DeviceRef, InboxRecord, NewRecord, Published};
use relayhub_relay::store::RelayEvent;
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::columns;
use crate::error::SqlResult;

pub(crate) fn publish(
    conn: &Connection,
    events: &mut Vec<Event>,
    device: &DeviceRef,
    records: Vec<NewRecord>,
) -> StoreResult<Vec<Published>> {
    let now = Timestamp::now().millis();
    // Inserted unless the device sent this `ref` before: one descent of
    // the `(device_pk, ref)` index per record, not a look-up and then the
    // insert's own uniqueness check. Only a retry reads the earlier id.
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO inbox (id, license_pk, device_pk, device_id, ref, data, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device_pk, ref) DO NOTHING",
        )
        .sql()?;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let id = Uuid::now_v7();
        let inserted = insert
            .execute(params![
                id,
                device.license.0,
                device.pk.0,
                device.device_id.as_str(),
                record.reference,
                record.data.get(),
                now
            ])
            .sql()?;
        if inserted == 1 {
            out.push(Published { id, duplicate: false });
            continue;
        }
        let earlier = conn
            .prepare_cached("SELECT id FROM inbox WHERE device_pk = ?1 AND ref = ?2")
            .sql()?
            .query_row(params![device.pk.0, record.reference], |row| row.get(0))
            .sql()?;
        out.push(Published { id: earlier, duplicate: true });
    }
    if out.iter().any(|p| !p.duplicate) {
        events.push(Event::new(RelayEvent::Published { license: device.license }));
    }
    Ok(out)
}

pub(crate) fn list(conn: &Connection, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, device_id, ref, created_at, data FROM inbox
             WHERE license_pk = ?1 AND acked_at IS NULL ORDER BY pk LIMIT ?2",
        )
        .sql()?;
    let rows = stmt
        .query_map(params![license.0, limit as i64], |row| {
            Ok(InboxRecord {
                id: row.get(0)?,
                device_id: columns::device_id(row, 1)?,
                reference: row.get(2)?,
                time: columns::time(row, 3)?,
                data: columns::json(row, 4)?,
            })
        })
        .sql()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().sql()
}

pub(crate) fn ack(conn: &Connection, license: LicensePk, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
    let now = Timestamp::now().millis();
    let mut stmt = conn
        .prepare_cached(
            "UPDATE inbox SET acked_at = ?3, data = NULL WHERE id = ?1 AND license_pk = ?2 AND acked_at IS NULL",
        )
        .sql()?;
    let mut deleted = Vec::new();
    for id in ids {
        if stmt.execute(params![id, license.0, now]).sql()? == 1 {
            deleted.push(*id);
        }
    }
    Ok(deleted)
}

/// Forgets acknowledged records older than `before`; returns how many.
pub(crate) fn purge(conn: &Connection, before: Timestamp) -> StoreResult<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM inbox
             WHERE pk IN (SELECT pk FROM inbox WHERE acked_at IS NOT NULL AND acked_at < ?1 LIMIT 5000)",
        )
        .sql()?
        .execute([before.millis()])
        .sql()?;
    Ok(n as u64)
}
/// How many of a license's records are not acknowledged yet.
pub(crate) fn waiting(conn: &Connection, license: LicensePk) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM inbox WHERE license_pk = ?1 AND acked_at IS NULL")
        .sql()?
        .query_row([license.0], |row| row.get(0))
        .sql()?;
    Ok(n.max(0) as u64)
}
