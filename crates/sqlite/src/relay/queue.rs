//! Message queues and receipts: one `messages` row per message, the queue
//! entry while pending (`status` 0 queued, 1 sent) and its receipt after
//! (2 delivered, 3 expired, with the data gone).

use std::collections::HashMap;
use std::sync::Arc;

use relayhub_core::error::ErrorCode;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{
    AckOutcome, Enqueued, MessageStatus, NewMessage, PendingMessage, QueuedMessage, Receipt, SharedMessage,
};
use relayhub_relay::store::RelayEvent;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::devices::{self, DeviceRow, Purpose};
use super::sent::SentMarks;
use crate::columns;
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

/// What an earlier message with the same idempotency key was.
struct Previous {
    id: Uuid,
    seq: i64,
    fingerprint: Vec<u8>,
}

fn previous(conn: &Connection, license: LicensePk, key: &str) -> StoreResult<Option<Previous>> {
    conn.prepare_cached("SELECT id, seq, idem_hash FROM messages WHERE license_pk = ?1 AND idem_key = ?2")
        .sql()?
        .query_row(params![license.0, key], |row| {
            Ok(Previous { id: row.get(0)?, seq: row.get(1)?, fingerprint: row.get(2)? })
        })
        .optional()
        .sql()
}

/// How one message of a batch is answered.
#[derive(Clone, Copy)]
enum Outcome {
    /// Inserted now (filled in as it is).
    New(Option<Enqueued>),
    /// Its idempotency key matched a stored message.
    Replay(Enqueued),
    /// Its idempotency key matched message `i` of the same batch.
    SameAs(usize),
}

/// Queues a batch, all or nothing (the writer's savepoint undoes a refusal).
pub(crate) fn enqueue(
    conn: &Connection,
    events: &mut Vec<RelayEvent>,
    license: &License,
    messages: Vec<NewMessage>,
    queue_limit: u32,
) -> StoreResult<Vec<Enqueued>> {
    let now = Timestamp::now();
    // First decide, reading only (a refusal must leave nothing written);
    // `None`: a device this call binds.
    let mut targets: HashMap<DeviceId, Option<DeviceRow>> = HashMap::new();
    let mut order: Vec<DeviceId> = Vec::new();
    let mut outcomes = vec![Outcome::New(None); messages.len()];
    let mut keys_in_batch: HashMap<&str, (usize, [u8; 32])> = HashMap::new();

    for (i, message) in messages.iter().enumerate() {
        if !targets.contains_key(&message.device_id) {
            let row = devices::lookup(conn, license, &message.device_id, Purpose::Queue)?;
            order.push(message.device_id.clone());
            targets.insert(message.device_id.clone(), row);
        }
        let Some(key) = message.idempotency_key.as_deref() else {
            continue;
        };
        let fingerprint = message.fingerprint();
        let (matches, outcome) = if let Some(earlier) = previous(conn, license.pk, key)? {
            let replay = Enqueued { id: earlier.id, seq: earlier.seq, replayed: true };
            (earlier.fingerprint == fingerprint, Outcome::Replay(replay))
        } else if let Some(&(first, first_fingerprint)) = keys_in_batch.get(key) {
            (first_fingerprint == fingerprint, Outcome::SameAs(first))
        } else {
            keys_in_batch.insert(key, (i, fingerprint));
            continue;
        };
        if !matches {
            return Err(StoreError::rejected(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key {key:?} was used for a different message"),
            ));
        }
        outcomes[i] = outcome;
    }

    devices::check_room(conn, license, targets.values().filter(|row| row.is_none()).count())?;
    let mut new_per_device: HashMap<DeviceId, i64> = HashMap::new();
    for (message, outcome) in messages.iter().zip(&outcomes) {
        if matches!(outcome, Outcome::New(_)) {
            *new_per_device.entry(message.device_id.clone()).or_default() += 1;
        }
    }
    for (device_id, row) in &targets {
        let adding = new_per_device.get(device_id).copied().unwrap_or(0);
        let pending = row.map_or(0, |r| r.pending);
        if adding > 0 && pending + adding > i64::from(queue_limit) {
            return Err(StoreError::rejected(
                ErrorCode::QueueFull,
                format!("device {device_id} has {pending} pending messages; the limit is {queue_limit}"),
            ));
        }
    }

    // Decided: now write, binding the new devices first.
    let mut rows: HashMap<DeviceId, DeviceRow> = HashMap::with_capacity(order.len());
    for device_id in &order {
        let row = match targets[device_id] {
            Some(row) => row,
            None => devices::insert(conn, license, device_id)?,
        };
        rows.insert(device_id.clone(), row);
    }

    let mut queued: HashMap<DevicePk, (i64, Vec<SharedMessage>)> = HashMap::new();
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO messages
             (id, license_pk, device_pk, seq, status, data, created_at, updated_at, expires_at, idem_key, idem_hash)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?6, ?7, ?8, ?9)",
        )
        .sql()?;
    for (message, outcome) in messages.into_iter().zip(outcomes.iter_mut()) {
        if !matches!(outcome, Outcome::New(_)) {
            continue;
        }
        let row = rows.get_mut(&message.device_id).ok_or_else(|| StoreError::Internal("lost a device".into()))?;
        let seq = row.next_seq;
        row.next_seq += 1;
        let id = Uuid::now_v7();
        let fingerprint = message.idempotency_key.as_ref().map(|_| message.fingerprint());
        insert
            .execute(params![
                id,
                license.pk.0,
                row.pk.0,
                seq,
                message.data.get(),
                now.millis(),
                message.expires_at.map(Timestamp::millis),
                message.idempotency_key,
                fingerprint.as_ref().map(|f| f.as_slice()),
            ])
            .sql()?;
        *outcome = Outcome::New(Some(Enqueued { id, seq, replayed: false }));
        let entry = queued.entry(row.pk).or_insert_with(|| (seq, Vec::new()));
        entry.1.push(Arc::new(QueuedMessage {
            id,
            seq,
            created_at: now,
            expires_at: message.expires_at,
            data: message.data,
        }));
    }

    for (device_id, row) in &rows {
        let added = new_per_device.get(device_id).copied().unwrap_or(0);
        if added > 0 {
            conn.prepare_cached("UPDATE devices SET next_seq = ?2, pending = pending + ?3 WHERE pk = ?1")
                .sql()?
                .execute(params![row.pk.0, row.next_seq, added])
                .sql()?;
        }
    }
    for device_id in &order {
        let pk = rows[device_id].pk;
        if let Some((first_seq, messages)) = queued.remove(&pk) {
            events.push(RelayEvent::Queued { device: pk, first_seq, messages });
        }
    }
    outcomes
        .iter()
        .map(|outcome| match *outcome {
            Outcome::New(Some(done)) | Outcome::Replay(done) => Ok(done),
            Outcome::SameAs(first) => match outcomes[first] {
                Outcome::New(Some(done)) => Ok(Enqueued { replayed: true, ..done }),
                _ => Err(StoreError::Internal("a repeated key lost its first message".into())),
            },
            Outcome::New(None) => Err(StoreError::Internal("a message was left unqueued".into())),
        })
        .collect()
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
        .prepare_cached("SELECT pending FROM devices WHERE pk = ?1")
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
    devices::add_pending(conn, device, -expired)
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
    devices::add_pending(conn, device, -(outcome.delivered as i64))?;
    Ok(outcome)
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
        devices::add_pending(conn, DevicePk(device), -n)?;
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
    for sql in [FORGET_PENDING, FORGET_KEYED] {
        conn.prepare_cached(sql).sql()?.execute([device.0]).sql()?;
    }
    Ok(())
}

pub(crate) fn total_pending(conn: &Connection) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(pending), 0) FROM devices")
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
}
