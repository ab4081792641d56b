//! Queueing, group-committed: the calls waiting when a batch starts are
//! checked one after the other, in order, against the devices' state (as if
//! each ran alone — a refused call changes nothing), and then all accepted
//! messages are written with a handful of set-based statements in one
//! transaction:
//!
//! 1. lock the named devices (`FOR UPDATE`, in pk order: seq numbers are
//!    handed out under this lock, so commit order is seq order on every node);
//! 2. read earlier messages with the same idempotency keys (if any);
//! 3. lock the licenses that bind new devices and count their devices (if any);
//! 4. insert the new devices (if any);
//! 5. insert every message (`unnest` of arrays: one statement);
//! 6. advance the devices' `next_seq` and `pending` (one statement);
//! 7. notify the other nodes; commit.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use relayhub_core::error::ErrorCode;
use relayhub_core::identity::License;
use relayhub_core::ids::DevicePk;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{Enqueued, NewMessage, QueuedMessage, SharedMessage};
use relayhub_relay::store::RelayEvent;
use sqlx::Row;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::devices::device_limit;
use crate::Ctx;
use crate::error::SqlResult;
use crate::notify::{self, Wire};
use crate::time::at;

/// One producer call.
pub(crate) struct EnqueueJob {
    pub license: License,
    pub messages: Vec<NewMessage>,
    pub queue_limit: u32,
    pub reply: oneshot::Sender<StoreResult<Vec<Enqueued>>>,
}

/// A device as the batch sees it.
#[derive(Debug, Clone)]
struct Target {
    /// `None` until a device bound by this batch is inserted.
    pk: Option<i64>,
    license: i64,
    next_seq: i64,
    pending: i64,
    added: i64,
}

#[derive(Debug, Clone)]
enum Key {
    /// A stored message: its id, seq and fingerprint.
    Stored(Uuid, i64, Vec<u8>),
    /// A message of this batch.
    Batch(Uuid, i64, [u8; 32]),
}

/// A message accepted by the simulation, to be inserted.
struct Accepted {
    id: Uuid,
    device: String,
    seq: i64,
    message: NewMessage,
    fingerprint: Option<[u8; 32]>,
}

struct Plan {
    targets: HashMap<String, Target>,
    rows: Vec<Accepted>,
    answers: Vec<StoreResult<Vec<Enqueued>>>,
}

pub(crate) async fn run(ctx: &Ctx, jobs: Vec<EnqueueJob>) {
    let (answers, events) = match ctx.retrying(|| attempt(ctx, &jobs)).await {
        Ok(done) => done,
        Err(err) => (jobs.iter().map(|_| Err(err.clone())).collect(), Vec::new()),
    };
    for (job, answer) in jobs.into_iter().zip(answers) {
        let _ = job.reply.send(answer);
    }
    for event in events {
        ctx.events.emit(event);
    }
}

type Done = (Vec<StoreResult<Vec<Enqueued>>>, Vec<RelayEvent>);

async fn attempt(ctx: &Ctx, jobs: &[EnqueueJob]) -> StoreResult<Done> {
    let mut tx = ctx.pool.begin().await.sql()?;
    let mut names: Vec<String> =
        jobs.iter().flat_map(|j| j.messages.iter().map(|m| m.device_id.as_str().to_owned())).collect();
    names.sort_unstable();
    names.dedup();
    let rows = sqlx::query(
        "SELECT pk, device_id, license_pk, next_seq, pending FROM devices
         WHERE device_id = ANY($1) ORDER BY pk FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await
    .sql()?;
    let mut targets = HashMap::new();
    for r in &rows {
        let name: String = r.try_get("device_id").sql()?;
        targets.insert(
            name,
            Target {
                pk: Some(r.try_get("pk").sql()?),
                license: r.try_get("license_pk").sql()?,
                next_seq: r.try_get("next_seq").sql()?,
                pending: r.try_get("pending").sql()?,
                added: 0,
            },
        );
    }

    let keys = stored_keys(&mut tx, jobs).await?;
    let counts = device_counts(&mut tx, jobs, &targets).await?;
    let plan = simulate(jobs, targets, keys, counts);

    let mut targets = plan.targets;
    insert_devices(&mut tx, &mut targets).await?;
    let now = Utc::now();
    insert_messages(&mut tx, &plan.rows, &targets, now).await?;
    let mut changed: Vec<(i64, i64, i64)> =
        targets.values().filter(|t| t.added > 0).filter_map(|t| t.pk.map(|pk| (pk, t.next_seq, t.added))).collect();
    changed.sort_unstable();
    sqlx::query(
        "UPDATE devices d SET next_seq = t.next_seq, pending = d.pending + t.added
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(pk, next_seq, added) WHERE d.pk = t.pk",
    )
    .bind(changed.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.2).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .sql()?;
    let wires: Vec<Wire> = changed.iter().map(|c| Wire::Queued(DevicePk(c.0))).collect();
    notify::send(&mut tx, &ctx.node, &wires).await?;
    tx.commit().await.sql()?;

    // Committed: the local hub gets the messages themselves, in seq order.
    let created = Timestamp::from_millis(now.timestamp_millis());
    let mut per_device: HashMap<i64, Vec<SharedMessage>> = HashMap::new();
    let mut order = Vec::new();
    for row in plan.rows {
        let Some(pk) = targets.get(&row.device).and_then(|t| t.pk) else { continue };
        let queue = per_device.entry(pk).or_insert_with(|| {
            order.push(pk);
            Vec::new()
        });
        queue.push(Arc::new(QueuedMessage {
            id: row.id,
            seq: row.seq,
            created_at: created,
            expires_at: row.message.expires_at,
            data: row.message.data,
        }));
    }
    let events = order
        .into_iter()
        .filter_map(|pk| {
            let messages = per_device.remove(&pk)?;
            let first_seq = messages.first()?.seq;
            Some(RelayEvent::Queued { device: DevicePk(pk), first_seq, messages })
        })
        .collect();
    Ok((plan.answers, events))
}

/// Stored messages with the idempotency keys the batch uses.
async fn stored_keys(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    jobs: &[EnqueueJob],
) -> StoreResult<HashMap<(i64, String), Key>> {
    let (licenses, keys): (Vec<i64>, Vec<String>) = jobs
        .iter()
        .flat_map(|j| j.messages.iter().filter_map(|m| Some((j.license.pk.0, m.idempotency_key.clone()?))))
        .unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT m.license_pk, m.idem_key, m.id, m.seq, m.idem_hash FROM messages m
         JOIN unnest($1::bigint[], $2::text[]) AS k(license_pk, idem_key)
           ON m.license_pk = k.license_pk AND m.idem_key = k.idem_key",
    )
    .bind(&licenses)
    .bind(&keys)
    .fetch_all(&mut **tx)
    .await
    .sql()?;
    let mut out = HashMap::new();
    for r in rows {
        let key = (r.try_get("license_pk").sql()?, r.try_get("idem_key").sql()?);
        out.insert(key, Key::Stored(r.try_get("id").sql()?, r.try_get("seq").sql()?, r.try_get("idem_hash").sql()?));
    }
    Ok(out)
}

/// Devices per license, for licenses with a limit that bind new devices
/// here; their rows are locked so that no other node binds meanwhile.
async fn device_counts(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    jobs: &[EnqueueJob],
    known: &HashMap<String, Target>,
) -> StoreResult<HashMap<i64, i64>> {
    let mut licenses: Vec<i64> = jobs
        .iter()
        .filter(|j| j.license.max_devices.is_some())
        .filter(|j| j.messages.iter().any(|m| !known.contains_key(m.device_id.as_str())))
        .map(|j| j.license.pk.0)
        .collect();
    licenses.sort_unstable();
    licenses.dedup();
    if licenses.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query("SELECT 1 FROM licenses WHERE pk = ANY($1) ORDER BY pk FOR UPDATE")
        .bind(&licenses)
        .execute(&mut **tx)
        .await
        .sql()?;
    let rows = sqlx::query("SELECT license_pk, count(*) FROM devices WHERE license_pk = ANY($1) GROUP BY license_pk")
        .bind(&licenses)
        .fetch_all(&mut **tx)
        .await
        .sql()?;
    let mut counts: HashMap<i64, i64> = licenses.iter().map(|l| (*l, 0)).collect();
    for r in rows {
        counts.insert(r.try_get(0).sql()?, r.try_get(1).sql()?);
    }
    Ok(counts)
}

/// Decides every call in order, as if each ran alone.
fn simulate(
    jobs: &[EnqueueJob],
    mut targets: HashMap<String, Target>,
    mut keys: HashMap<(i64, String), Key>,
    mut counts: HashMap<i64, i64>,
) -> Plan {
    let mut rows = Vec::new();
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        // Work on copies; keep them only if the whole call is accepted.
        let (mut t, mut k, mut c) = (HashMap::<String, Target>::new(), HashMap::new(), HashMap::new());
        let mut new_rows = Vec::new();
        let mut answer = Vec::with_capacity(job.messages.len());
        let lic = job.license.pk.0;
        let decided: StoreResult<()> = (|| {
            for message in &job.messages {
                let name = message.device_id.as_str();
                if !t.contains_key(name) {
                    let target = match targets.get(name) {
                        Some(known) => known.clone(),
                        None => {
                            let used = c.entry(lic).or_insert_with(|| counts.get(&lic).copied().unwrap_or(0));
                            if let Some(max) = job.license.max_devices
                                && *used >= i64::from(max)
                            {
                                return Err(device_limit(&job.license, max));
                            }
                            *used += 1;
                            Target { pk: None, license: lic, next_seq: 1, pending: 0, added: 0 }
                        }
                    };
                    t.insert(name.to_owned(), target);
                }
                let target = t.get_mut(name).expect("just inserted");
                if target.license != lic {
                    return Err(super::devices::not_found(&message.device_id));
                }
                let fingerprint = message.idempotency_key.as_ref().map(|_| message.fingerprint());
                if let (Some(key), Some(fp)) = (&message.idempotency_key, fingerprint) {
                    let slot = (lic, key.clone());
                    let earlier = k.get(&slot).or_else(|| keys.get(&slot)).cloned();
                    match earlier {
                        Some(Key::Stored(id, seq, stored)) if stored.as_slice() == fp.as_slice() => {
                            answer.push(Enqueued { id, seq, replayed: true });
                            continue;
                        }
                        Some(Key::Batch(id, seq, first)) if first == fp => {
                            answer.push(Enqueued { id, seq, replayed: true });
                            continue;
                        }
                        Some(_) => {
                            return Err(StoreError::rejected(
                                ErrorCode::IdempotencyKeyReused,
                                format!("idempotency key {key:?} was used for a different message"),
                            ));
                        }
                        None => {}
                    }
                }
                if target.pending + 1 > i64::from(job.queue_limit) {
                    return Err(StoreError::rejected(
                        ErrorCode::QueueFull,
                        format!("the queue of device {name} is full: {} messages are pending", job.queue_limit),
                    ));
                }
                let (id, seq) = (Uuid::now_v7(), target.next_seq);
                target.next_seq += 1;
                target.pending += 1;
                target.added += 1;
                if let (Some(key), Some(fp)) = (&message.idempotency_key, fingerprint) {
                    k.insert((lic, key.clone()), Key::Batch(id, seq, fp));
                }
                answer.push(Enqueued { id, seq, replayed: false });
                new_rows.push((id, name.to_owned(), seq, message.clone(), fingerprint));
            }
            Ok(())
        })();
        match decided {
            Ok(()) => {
                targets.extend(t);
                keys.extend(k);
                counts.extend(c);
                rows.extend(new_rows.into_iter().map(|(id, device, seq, message, fingerprint)| Accepted {
                    id,
                    device,
                    seq,
                    message,
                    fingerprint,
                }));
                answers.push(Ok(answer));
            }
            Err(err) => answers.push(Err(err)),
        }
    }
    Plan { targets, rows, answers }
}

/// Inserts the devices bound by this batch and learns their pks.
async fn insert_devices(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    targets: &mut HashMap<String, Target>,
) -> StoreResult<()> {
    let new: Vec<(String, i64)> =
        targets.iter().filter(|(_, t)| t.pk.is_none()).map(|(n, t)| (n.clone(), t.license)).collect();
    if new.is_empty() {
        return Ok(());
    }
    // A unique violation here means another node bound one of them since
    // step 1: the whole batch is retried and sees it.
    let rows = sqlx::query(
        "INSERT INTO devices (device_id, license_pk, bound_at)
         SELECT n, l, now() FROM unnest($1::text[], $2::bigint[]) AS t(n, l) RETURNING pk, device_id",
    )
    .bind(new.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
    .bind(new.iter().map(|n| n.1).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
    .sql()?;
    for r in rows {
        let name: String = r.try_get("device_id").sql()?;
        if let Some(target) = targets.get_mut(&name) {
            target.pk = Some(r.try_get("pk").sql()?);
        }
    }
    Ok(())
}

async fn insert_messages(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[Accepted],
    targets: &HashMap<String, Target>,
    now: chrono::DateTime<Utc>,
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let (mut licenses, mut devices, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut data, mut expires, mut keys, mut hashes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        let target = &targets[&row.device];
        ids.push(row.id);
        licenses.push(target.license);
        devices.push(target.pk.ok_or_else(|| StoreError::Internal("a bound device has no pk".into()))?);
        seqs.push(row.seq);
        data.push(row.message.data.get().to_owned());
        expires.push(row.message.expires_at.map(at));
        keys.push(row.message.idempotency_key.clone());
        hashes.push(row.fingerprint.map(|f| f.to_vec()));
    }
    sqlx::query(
        "INSERT INTO messages (id, license_pk, device_pk, seq, status, data, created_at, updated_at, expires_at, idem_key, idem_hash)
         SELECT id, lic, dev, seq, 0, data::jsonb, $6, $6, exp, k, h
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                     $7::timestamptz[], $8::text[], $9::bytea[]) AS t(id, lic, dev, seq, data, exp, k, h)",
    )
    .bind(ids)
    .bind(licenses)
    .bind(devices)
    .bind(seqs)
    .bind(data)
    .bind(now)
    .bind(expires)
    .bind(keys)
    .bind(hashes)
    .execute(&mut **tx)
    .await
    .sql()?;
    Ok(())
}
