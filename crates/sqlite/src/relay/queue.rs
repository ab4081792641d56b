//! Message queues and receipts: one `messages` row per message, the queue
//! entry while pending (`status` 0 queued, 1 sent) and its receipt after
//! (2 delivered, 3 expired, with the data gone).

use std::collections::HashMap;
use std::sync::Arc;

use relayhub_core::bus::Event;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{
    AckOutcome, Enqueued, MessageStatus, NewMessage, PendingMessage, QueuedMessage, Receipt, SharedMessage,
};
use relayhub_relay::plan::{Head, Keyed, Snapshot, plan};
use relayhub_relay::store::RelayEvent;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::NeedsBinding;
use super::sent::SentMarks;
use crate::columns;
use crate::devices;
use crate::error::SqlResult;

// The statements on the delivery path, named so that a test can check that
// each uses the partial queue index (SQLite uses a partial index only when
// the query repeats its `status < 2` term literally).
const FETCH: &str = "SELECT id, seq, created_at, expires_at, data FROM messages
     WHERE device_pk = ?1 AND seq >= ?2 AND status < 2 ORDER BY seq LIMIT ?3";
const MARK_EXPIRED: &str = "UPDATE messages SET status = 3, data = NULL, updated_at = ?3
     WHERE device_pk = ?1 AND seq = ?2 AND status < 2";
const DELIVER: &str = "UPDATE messages SET status = 2, data = NULL, updated_at = ?3
     WHERE id = ?1 AND device_pk = ?2 AND status < 2";
/// What unbinding removes: the pending queue, and messages with an
/// idempotency key (so that the key is free for the license again).
const FORGET_PENDING: &str = "DELETE FROM messages WHERE device_pk = ?1 AND status < 2";
const FORGET_KEYED: &str = "DELETE FROM messages WHERE device_pk = ?1 AND idem_key IS NOT NULL";
const PENDING: &str = "SELECT id, seq, created_at, status, expires_at, data FROM messages
     WHERE device_pk = ?1 AND status < 2 ORDER BY seq LIMIT ?2 OFFSET ?3";

/// The `status` column: 0 queued, 1 sent, 2 delivered, 3 expired. The SQL
/// below relies on `status < 2` meaning "pending".
fn status_from(code: i64) -> MessageStatus {
    match code {
        0 => MessageStatus::Queued,
        1 => MessageStatus::Sent,
        2 => MessageStatus::Delivered,
        _ => MessageStatus::Expired,
    }
}

/// A stored message with this license's idempotency key.
fn keyed(conn: &Connection, license: LicensePk, key: &str) -> StoreResult<Option<Keyed>> {
    conn.prepare_cached("SELECT id, seq, idem_hash FROM messages WHERE license_pk = ?1 AND idem_key = ?2")
        .sql()?
        .query_row(params![license.0, key], |row| {
            Ok(Keyed { id: row.get(0)?, seq: row.get(1)?, fingerprint: row.get(2)? })
        })
        .optional()
        .sql()
}

/// A bound device's queue head.
fn head(conn: &Connection, device: &DeviceId) -> StoreResult<Option<Head>> {
    conn.prepare_cached(
        "SELECT d.pk, d.license_pk, COALESCE(q.next_seq, 1), COALESCE(q.pending, 0)
         FROM devices d LEFT JOIN queues q ON q.device_pk = d.pk WHERE d.device_id = ?1",
    )
    .sql()?
    .query_row([device.as_str()], |row| {
        Ok(Head {
            pk: Some(DevicePk(row.get(0)?)),
            license: LicensePk(row.get(1)?),
            next_seq: row.get(2)?,
            pending: row.get(3)?,
        })
    })
    .optional()
    .sql()
}

/// What [`plan`] reads for one call; without the idempotency keys when
/// only bindings are being decided.
fn snapshot(conn: &Connection, license: &License, messages: &[NewMessage], with_keys: bool) -> StoreResult<Snapshot> {
    let mut snapshot = Snapshot::default();
    for message in messages {
        if !snapshot.heads.contains_key(&message.device_id)
            && let Some(head) = head(conn, &message.device_id)?
        {
            snapshot.heads.insert(message.device_id.clone(), head);
        }
        if let Some(key) = message.idempotency_key.as_ref().filter(|_| with_keys)
            && let Some(keyed) = keyed(conn, license.pk, key)?
        {
            snapshot.keys.insert((license.pk, key.clone()), keyed);
        }
    }
    if snapshot.needs_count(license, messages) {
        snapshot.bound.insert(license.pk, devices::count(conn, license.pk)?);
    }
    Ok(snapshot)
}

/// Queues a call as [`plan`] decides: a refusal writes nothing. In a
/// partition file (`binds` false) a call that would bind a device writes
/// nothing either and hands its messages back: bindings are the main
/// file's, and [`bind`] them there first.
pub(crate) fn enqueue(
    conn: &Connection,
    events: &mut Vec<Event>,
    license: &License,
    messages: Vec<NewMessage>,
    queue_limit: u32,
    binds: bool,
) -> StoreResult<NeedsBinding<Vec<Enqueued>, Vec<NewMessage>>> {
    let now = Timestamp::now();
    let mut snapshot = snapshot(conn, license, &messages, true)?;
    let plan = plan(&mut snapshot, license, &messages, queue_limit).map_err(StoreError::Rejected)?;
    if !binds && !plan.binds.is_empty() {
        return Ok(NeedsBinding::Unbound(messages));
    }

    let mut pks: HashMap<DeviceId, DevicePk> = HashMap::new();
    for device in &plan.binds {
        pks.insert(device.clone(), devices::insert(conn, license.pk, device)?);
    }
    for (device, head) in &plan.heads {
        if let Some(pk) = head.pk {
            pks.insert(device.clone(), pk);
        }
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO messages
             (id, license_pk, device_pk, seq, status, data, created_at, updated_at, expires_at, idem_key, idem_hash)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?6, ?7, ?8, ?9)",
        )
        .sql()?;
    let mut queued: Vec<(DevicePk, i64, Vec<SharedMessage>)> = Vec::new();
    let mut slot: HashMap<DevicePk, usize> = HashMap::new();
    let mut messages: Vec<Option<NewMessage>> = messages.into_iter().map(Some).collect();
    for row in &plan.inserts {
        let message = messages[row.index].take().ok_or_else(|| StoreError::Internal("a message twice".into()))?;
        let pk = pks[&message.device_id];
        let fingerprint = message.idempotency_key.as_ref().map(|_| message.fingerprint());
        insert
            .execute(params![
                row.id,
                license.pk.0,
                pk.0,
                row.seq,
                message.data.get(),
                now.millis(),
                message.expires_at.map(Timestamp::millis),
                message.idempotency_key,
                fingerprint.as_ref().map(|f| f.as_slice()),
            ])
            .sql()?;
        let shared = Arc::new(QueuedMessage {
            id: row.id,
            seq: row.seq,
            created_at: now,
            expires_at: message.expires_at,
            data: message.data,
        });
        match slot.get(&pk) {
            Some(&at) => queued[at].2.push(shared),
            None => {
                slot.insert(pk, queued.len());
                queued.push((pk, row.seq, vec![shared]));
            }
        }
    }
    for (device, head) in &plan.heads {
        if slot.contains_key(&pks[device]) {
            conn.prepare_cached(
                "INSERT INTO queues (device_pk, next_seq, pending) VALUES (?1, ?2, ?3)
                 ON CONFLICT (device_pk) DO UPDATE SET next_seq = excluded.next_seq, pending = excluded.pending",
            )
            .sql()?
            .execute(params![pks[device].0, head.next_seq, head.pending])
            .sql()?;
        }
    }
    for (device, first_seq, messages) in queued {
        events.push(Event::new(RelayEvent::Queued { device, first_seq, messages }));
    }
    Ok(NeedsBinding::Done(plan.answers))
}

/// Binds the devices of a call that are bound to no license yet, in the
/// main file, as [`plan`] decides (another license's device, the device
/// limit); the queues are a partition's to check.
pub(crate) fn bind(conn: &Connection, license: &License, messages: &[NewMessage]) -> StoreResult<()> {
    let mut snapshot = snapshot(conn, license, messages, false)?;
    let plan = plan(&mut snapshot, license, messages, u32::MAX).map_err(StoreError::Rejected)?;
    for device in &plan.binds {
        devices::insert(conn, license.pk, device)?;
    }
    Ok(())
}

/// Messages waiting for each of these devices.
pub(crate) fn pending_counts(conn: &Connection, devices: &[DevicePk]) -> StoreResult<HashMap<DevicePk, u64>> {
    let list = serde_json::to_string(&devices.iter().map(|d| d.0).collect::<Vec<_>>()).unwrap_or_default();
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.pk, COALESCE(q.pending, 0) FROM devices d LEFT JOIN queues q ON q.device_pk = d.pk
             WHERE d.pk IN (SELECT value FROM json_each(?1))",
        )
        .sql()?;
    let rows = stmt.query_map([list], |row| Ok((DevicePk(row.get(0)?), row.get::<_, i64>(1)?.max(0) as u64))).sql()?;
    rows.collect::<rusqlite::Result<HashMap<_, _>>>().sql()
}

/// Messages waiting in the queues of a license's devices (the partition
/// sees the main file's devices).
pub(crate) fn license_pending(conn: &Connection, license: LicensePk) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(q.pending), 0) FROM devices d JOIN queues q ON q.device_pk = d.pk
             WHERE d.license_pk = ?1",
        )
        .sql()?
        .query_row([license.0], |row| row.get(0))
        .sql()?;
    Ok(n.max(0) as u64)
}

pub(crate) fn pending(
    conn: &Connection,
    license: LicensePk,
    device: &DeviceId,
    page: PageRequest,
    sent: &SentMarks,
) -> StoreResult<Page<PendingMessage>> {
    let pk = devices::owned(conn, license, device)?.ok_or_else(|| devices::not_found(device))?;
    let total: i64 = conn
        .prepare_cached("SELECT COALESCE((SELECT pending FROM queues WHERE device_pk = ?1), 0)")
        .sql()?
        .query_row([pk.0], |row| row.get(0))
        .sql()?;
    let mut stmt = conn.prepare_cached(PENDING).sql()?;
    let rows = stmt
        .query_map(params![pk.0, page.size, page.offset() as i64], |row| {
            let seq = row.get(1)?;
            Ok(PendingMessage {
                id: row.get(0)?,
                seq,
                time: columns::time(row, 2)?,
                status: sent.status(pk, seq, status_from(row.get(3)?)),
                expires_at: columns::opt_time(row, 4)?,
                data: columns::json(row, 5)?,
            })
        })
        .sql()?;
    Ok(Page { items: rows.collect::<rusqlite::Result<Vec<_>>>().sql()?, total: total.max(0) as u64 })
}

pub(crate) fn receipt(
    conn: &Connection,
    license: LicensePk,
    id: Uuid,
    sent: &SentMarks,
) -> StoreResult<Option<Receipt>> {
    conn.prepare_cached(
        "SELECT m.id, d.device_id, m.seq, m.status, m.created_at, m.updated_at, m.expires_at, m.device_pk
         FROM messages m JOIN devices d ON d.pk = m.device_pk
         WHERE m.id = ?1 AND m.license_pk = ?2",
    )
    .sql()?
    .query_row(params![id, license.0], |row| {
        let seq = row.get(2)?;
        Ok(Receipt {
            id: row.get(0)?,
            device_id: columns::device_id(row, 1)?,
            seq,
            status: sent.status(DevicePk(row.get(7)?), seq, status_from(row.get(3)?)),
            time: columns::time(row, 4)?,
            updated_at: columns::time(row, 5)?,
            expires_at: columns::opt_time(row, 6)?,
        })
    })
    .optional()
    .sql()
}

fn queued_from_row(row: &Row<'_>) -> rusqlite::Result<SharedMessage> {
    Ok(Arc::new(QueuedMessage {
        id: row.get(0)?,
        seq: row.get(1)?,
        created_at: columns::time(row, 2)?,
        expires_at: columns::opt_time(row, 3)?,
        data: columns::json(row, 4)?,
    }))
}

pub(crate) fn fetch(
    conn: &Connection,
    device: DevicePk,
    from_seq: i64,
    limit: usize,
) -> StoreResult<Vec<SharedMessage>> {
    let mut stmt = conn.prepare_cached(FETCH).sql()?;
    let rows = stmt.query_map(params![device.0, from_seq, limit as i64], queued_from_row).sql()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().sql()
}

pub(crate) fn mark_expired(conn: &Connection, device: DevicePk, seqs: &[i64]) -> StoreResult<()> {
    let now = Timestamp::now().millis();
    let mut stmt = conn.prepare_cached(MARK_EXPIRED).sql()?;
    let mut expired = 0;
    for seq in seqs {
        expired += stmt.execute(params![device.0, seq, now]).sql()? as i64;
    }
    add_pending(conn, device, -expired)
}

pub(crate) fn ack(conn: &Connection, device: DevicePk, ids: &[Uuid]) -> StoreResult<AckOutcome> {
    let now = Timestamp::now().millis();
    let mut deliver = conn.prepare_cached(DELIVER).sql()?;
    let mut known = conn.prepare_cached("SELECT 1 FROM messages WHERE id = ?1 AND device_pk = ?2").sql()?;
    let mut outcome = AckOutcome::default();
    for id in ids {
        if deliver.execute(params![id, device.0, now]).sql()? == 1 {
            outcome.delivered += 1;
        } else if !known.exists(params![id, device.0]).sql()? {
            outcome.unknown.push(*id);
        }
    }
    add_pending(conn, device, -(outcome.delivered as i64))?;
    Ok(outcome)
}

/// Changes a device's pending count by `delta`.
fn add_pending(conn: &Connection, device: DevicePk, delta: i64) -> StoreResult<()> {
    if delta != 0 {
        conn.prepare_cached("UPDATE queues SET pending = pending + ?2 WHERE device_pk = ?1")
            .sql()?
            .execute(params![device.0, delta])
            .sql()?;
    }
    Ok(())
}

/// Rows one sweep touches at most, so a large backlog never holds the
/// writer for long; the next sweep continues.
const SWEEP_CHUNK: i64 = 5000;

/// Expires pending messages past their time to live; returns how many.
pub(crate) fn expire_due(conn: &Connection, now: Timestamp) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE messages SET status = 3, data = NULL, updated_at = ?1
             WHERE pk IN (SELECT pk FROM messages WHERE status < 2 AND expires_at <= ?1 LIMIT ?2)
             RETURNING device_pk",
        )
        .sql()?;
    let mut per_device: HashMap<i64, i64> = HashMap::new();
    let rows = stmt.query_map(params![now.millis(), SWEEP_CHUNK], |row| row.get::<_, i64>(0)).sql()?;
    for device in rows {
        *per_device.entry(device.sql()?).or_default() += 1;
    }
    let mut total = 0;
    for (device, n) in per_device {
        add_pending(conn, DevicePk(device), -n)?;
        total += n as u64;
    }
    Ok(total)
}

/// Deletes receipts older than `before`; returns how many.
pub(crate) fn purge_receipts(conn: &Connection, before: Timestamp) -> StoreResult<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM messages
             WHERE pk IN (SELECT pk FROM messages WHERE status >= 2 AND updated_at < ?1 LIMIT ?2)",
        )
        .sql()?
        .execute(params![before.millis(), SWEEP_CHUNK])
        .sql()?;
    Ok(n as u64)
}

/// Deletes what an unbound device leaves behind that could still matter;
/// its other receipts are unreachable and leave with the purge.
pub(crate) fn forget_device(conn: &Connection, device: DevicePk) -> StoreResult<()> {
    for sql in [FORGET_PENDING, FORGET_KEYED, "DELETE FROM queues WHERE device_pk = ?1"] {
        conn.prepare_cached(sql).sql()?.execute([device.0]).sql()?;
    }
    Ok(())
}

pub(crate) fn total_pending(conn: &Connection) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(pending), 0) FROM queues")
        .sql()?
        .query_row([], |row| row.get(0))
        .sql()?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = stmt.parameter_count();
        let params: Vec<i64> = vec![1; n];
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |row| row.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn delivery_statements_use_the_queue_index_not_the_receipts() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::conn::migrate(&mut conn).unwrap();
        for sql in [FETCH, MARK_EXPIRED, PENDING, FORGET_PENDING] {
            let plan = plan(&conn, sql);
            assert!(plan.contains("USING INDEX messages_queue"), "{sql}\n→ {plan}");
        }
        assert!(plan(&conn, DELIVER).contains("sqlite_autoindex_messages_1 (id=?)"));
        assert!(plan(&conn, FORGET_KEYED).contains("USING INDEX messages_device_keyed"));
    }

    /// A data directory from before queue heads had their own table keeps
    /// each device's next sequence number and pending count: a device's
    /// sequence never restarts, and a full queue stays full.
    #[test]
    fn upgrading_keeps_every_queue_head() {
        let mut conn = Connection::open_in_memory().unwrap();
        let before_queue_heads = 8; // 0001 to 0008
        rusqlite_migration::Migrations::new(crate::conn::LEGACY[..before_queue_heads].to_vec())
            .to_latest(&mut conn)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO licenses (pk, number, created_at) VALUES (1, 'L-1', 0);
             INSERT INTO devices (pk, device_id, license_pk, bound_at, next_seq, pending)
             VALUES (7, 'busy', 1, 0, 42, 3), (8, 'idle', 1, 0, 1, 0);
             UPDATE sqlite_sequence SET seq = 9 WHERE name = 'devices'; -- device 9 was unbound",
        )
        .unwrap();
        crate::conn::migrate(&mut conn).unwrap();

        let busy = head(&conn, &DeviceId::parse("busy").unwrap()).unwrap().unwrap();
        assert_eq!((busy.pk, busy.next_seq, busy.pending), (Some(DevicePk(7)), 42, 3));
        let idle = head(&conn, &DeviceId::parse("idle").unwrap()).unwrap().unwrap();
        assert_eq!((idle.pk, idle.next_seq, idle.pending), (Some(DevicePk(8)), 1, 0));
        assert_eq!(total_pending(&conn).unwrap(), 3);
        assert_eq!(pending_counts(&conn, &[DevicePk(7), DevicePk(8)]).unwrap()[&DevicePk(7)], 3);
        let next = devices::insert(&conn, LicensePk(1), &DeviceId::parse("new").unwrap()).unwrap();
        assert_eq!(next, DevicePk(10), "an unbound device's pk is never reused");
    }
}
