//! Queueing, group-committed: the calls waiting when a batch starts are
//! decided one after the other, in order, by the shared rule
//! ([`relayhub_relay::plan`]) on one snapshot of the devices' state (each
//! as if it ran alone — a refused call changes nothing), and then all
//! accepted messages are written with a handful of set-based statements in
//! one transaction:
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
use relayhub_core::bus::Event;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{Enqueued, NewMessage, QueuedMessage, SharedMessage};
use relayhub_relay::plan::{Head, Keyed, Plan, Snapshot, plan};
use relayhub_relay::store::RelayEvent;
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::oneshot;

use crate::Ctx;
use crate::devices;
use crate::error::SqlResult;
use crate::notify;
use crate::time::at;

/// One producer call.
pub(crate) struct EnqueueJob {
    pub license: License,
    pub messages: Vec<NewMessage>,
    pub queue_limit: u32,
    pub reply: oneshot::Sender<StoreResult<Vec<Enqueued>>>,
}

pub(crate) async fn run(ctx: &Ctx, jobs: Vec<EnqueueJob>) {
    let (answers, events) = match ctx.retrying(|| attempt(ctx, &jobs)).await {
        Ok(done) => done,
        Err(err) => (jobs.iter().map(|_| Err(err.clone())).collect(), Vec::new()),
    };
    // Announced before anyone is answered, as on every backend.
    ctx.bus.publish(events);
    for (job, answer) in jobs.into_iter().zip(answers) {
        let _ = job.reply.send(answer);
    }
}

type Done = (Vec<StoreResult<Vec<Enqueued>>>, Vec<Event>);

async fn attempt(ctx: &Ctx, jobs: &[EnqueueJob]) -> StoreResult<Done> {
    let mut tx = ctx.pool.begin().await.sql()?;
    let mut snapshot = snapshot(&mut tx, jobs).await?;
    let plans: Vec<Result<Plan, StoreError>> = jobs
        .iter()
        .map(|job| plan(&mut snapshot, &job.license, &job.messages, job.queue_limit).map_err(StoreError::Rejected))
        .collect();

    // Bind the new devices and learn their pks.
    let mut pks: HashMap<DeviceId, DevicePk> =
        snapshot.heads.iter().filter_map(|(id, head)| Some((id.clone(), head.pk?))).collect();
    let binds: Vec<(DeviceId, LicensePk)> = jobs
        .iter()
        .zip(&plans)
        .filter_map(|(job, plan)| Some(plan.as_ref().ok()?.binds.iter().map(|d| (d.clone(), job.license.pk))))
        .flatten()
        .collect();
    insert_devices(&mut tx, &binds, &mut pks).await?;

    let now = Utc::now();
    let created = Timestamp::from_millis(now.timestamp_millis());
    let mut rows = Rows::default();
    let mut queued: Vec<(DevicePk, i64, Vec<SharedMessage>)> = Vec::new();
    let mut slot: HashMap<DevicePk, usize> = HashMap::new();
    for (job, plan) in jobs.iter().zip(&plans) {
        let Ok(plan) = plan else { continue };
        for insert in &plan.inserts {
            let message = &job.messages[insert.index];
            let pk = *pks.get(&message.device_id).ok_or_else(|| StoreError::Internal("a device has no pk".into()))?;
            rows.push(job.license.pk, pk, insert.id, insert.seq, message);
            let shared = Arc::new(QueuedMessage {
                id: insert.id,
                seq: insert.seq,
                created_at: created,
                expires_at: message.expires_at,
                data: message.data.clone(),
            });
            match slot.get(&pk) {
                Some(&at) => queued[at].2.push(shared),
                None => {
                    slot.insert(pk, queued.len());
                    queued.push((pk, insert.seq, vec![shared]));
                }
            }
        }
    }
    rows.insert(&mut tx, now).await?;

    // Advance the queues the batch added to, from the snapshot's final heads.
    let mut changed: Vec<(i64, i64, i64)> = pks
        .iter()
        .filter(|(_, pk)| slot.contains_key(pk))
        .filter_map(|(id, pk)| snapshot.heads.get(id).map(|head| (pk.0, head.next_seq, head.pending)))
        .collect();
    changed.sort_unstable();
    sqlx::query(
        "UPDATE devices d SET next_seq = t.next_seq, pending = t.pending
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(pk, next_seq, pending) WHERE d.pk = t.pk",
    )
    .bind(changed.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.2).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .sql()?;

    // Committed, the local bus gets the messages themselves, in seq order.
    let events: Vec<Event> = queued
        .into_iter()
        .map(|(device, first_seq, messages)| Event::new(RelayEvent::Queued { device, first_seq, messages }))
        .collect();
    notify::send(&mut tx, &ctx.node, &events).await?;
    tx.commit().await.sql()?;
    let answers = plans.into_iter().map(|plan| plan.map(|p| p.answers)).collect();
    Ok((answers, events))
}

/// What the batch's calls need to be decided: the named devices (locked
/// `FOR UPDATE` in pk order: seq numbers are handed out under this lock, so
/// commit order is seq order on every node), the stored messages with the
/// calls' idempotency keys, and the device counts of licenses with a limit
/// that bind devices (their rows locked, so that no other node binds
/// meanwhile).
async fn snapshot(tx: &mut Transaction<'_, Postgres>, jobs: &[EnqueueJob]) -> StoreResult<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut names: Vec<&str> = jobs.iter().flat_map(|j| j.messages.iter().map(|m| m.device_id.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    let rows = sqlx::query(
        "SELECT pk, device_id, license_pk, next_seq, pending FROM devices
         WHERE device_id = ANY($1) ORDER BY pk FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut **tx)
    .await
    .sql()?;
    for r in &rows {
        let name: String = r.try_get("device_id").sql()?;
        let id = DeviceId::parse(&name).map_err(|e| StoreError::Internal(e.message))?;
        snapshot.heads.insert(
            id,
            Head {
                pk: Some(DevicePk(r.try_get("pk").sql()?)),
                license: LicensePk(r.try_get("license_pk").sql()?),
                next_seq: r.try_get("next_seq").sql()?,
                pending: r.try_get("pending").sql()?,
            },
        );
    }

    let (licenses, keys): (Vec<i64>, Vec<String>) = jobs
        .iter()
        .flat_map(|j| j.messages.iter().filter_map(|m| Some((j.license.pk.0, m.idempotency_key.clone()?))))
        .unzip();
    if !keys.is_empty() {
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
        for r in rows {
            let key = (LicensePk(r.try_get("license_pk").sql()?), r.try_get("idem_key").sql()?);
            let keyed = Keyed {
                id: r.try_get("id").sql()?,
                seq: r.try_get("seq").sql()?,
                fingerprint: r.try_get("idem_hash").sql()?,
            };
            snapshot.keys.insert(key, keyed);
        }
    }

    let mut limited: Vec<LicensePk> =
        jobs.iter().filter(|j| snapshot.needs_count(&j.license, &j.messages)).map(|j| j.license.pk).collect();
    limited.sort_unstable();
    limited.dedup();
    for license in limited {
        let used = devices::lock_and_count(tx, license).await?;
        snapshot.bound.insert(license, used);
    }
    Ok(snapshot)
}

/// Inserts the devices bound by this batch and learns their pks.
async fn insert_devices(
    tx: &mut Transaction<'_, Postgres>,
    binds: &[(DeviceId, LicensePk)],
    pks: &mut HashMap<DeviceId, DevicePk>,
) -> StoreResult<()> {
    if binds.is_empty() {
        return Ok(());
    }
    // A unique violation here means another node bound one of them since
    // the snapshot: the whole batch is retried and sees it.
    let rows = sqlx::query(
        "INSERT INTO devices (device_id, license_pk, bound_at)
         SELECT n, l, now() FROM unnest($1::text[], $2::bigint[]) AS t(n, l) RETURNING pk, device_id",
    )
    .bind(binds.iter().map(|b| b.0.as_str().to_owned()).collect::<Vec<_>>())
    .bind(binds.iter().map(|b| b.1.0).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
    .sql()?;
    for r in rows {
        let name: String = r.try_get("device_id").sql()?;
        let id = DeviceId::parse(&name).map_err(|e| StoreError::Internal(e.message))?;
        pks.insert(id, DevicePk(r.try_get("pk").sql()?));
    }
    Ok(())
}

/// The batch's new messages, as columns for one `INSERT … unnest`.
#[derive(Default)]
struct Rows {
    ids: Vec<uuid::Uuid>,
    licenses: Vec<i64>,
    devices: Vec<i64>,
    seqs: Vec<i64>,
    data: Vec<String>,
    expires: Vec<Option<chrono::DateTime<Utc>>>,
    keys: Vec<Option<String>>,
    hashes: Vec<Option<Vec<u8>>>,
}

impl Rows {
    fn push(&mut self, license: LicensePk, device: DevicePk, id: uuid::Uuid, seq: i64, message: &NewMessage) {
        self.ids.push(id);
        self.licenses.push(license.0);
        self.devices.push(device.0);
        self.seqs.push(seq);
        self.data.push(message.data.get().to_owned());
        self.expires.push(message.expires_at.map(at));
        self.keys.push(message.idempotency_key.clone());
        self.hashes.push(message.idempotency_key.as_ref().map(|_| message.fingerprint().to_vec()));
    }

    async fn insert(self, tx: &mut Transaction<'_, Postgres>, now: chrono::DateTime<Utc>) -> StoreResult<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO messages (id, license_pk, device_pk, seq, status, data, created_at, updated_at, expires_at, idem_key, idem_hash)
             SELECT id, lic, dev, seq, 0, data::jsonb, $6, $6, exp, k, h
             FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                         $7::timestamptz[], $8::text[], $9::bytea[]) AS t(id, lic, dev, seq, data, exp, k, h)",
        )
        .bind(self.ids)
        .bind(self.licenses)
        .bind(self.devices)
        .bind(self.seqs)
        .bind(self.data)
        .bind(now)
        .bind(self.expires)
        .bind(self.keys)
        .bind(self.hashes)
        .execute(&mut **tx)
        .await
        .sql()?;
        Ok(())
    }
}
