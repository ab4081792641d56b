//! Delivery bookkeeping, group-committed: sent marks, expiries seen by a
//! connection, and acknowledgements of every device on this node go
//! together, a few set-based statements per batch:
//!
//! 1. mark sent ranges (`unnest` of device, first, last);
//! 2. expire skipped messages;
//! 3. deliver acknowledged ids (only the acking device's own messages);
//! 4. look up ids that were not pending, to tell harmless repeats from ids
//!    the device never had (only if there are any);
//! 5. lower the devices' `pending` counts; commit.

use std::collections::{HashMap, HashSet};

use relayhub_core::ids::DevicePk;
use relayhub_core::store::StoreResult;
use relayhub_relay::model::AckOutcome;
use sqlx::Row;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::Ctx;
use crate::error::SqlResult;

/// One piece of bookkeeping.
pub(crate) enum BookJob {
    Sent { device: DevicePk, first: i64, last: i64 },
    Expired { device: DevicePk, seqs: Vec<i64> },
    Ack { device: DevicePk, ids: Vec<Uuid>, reply: oneshot::Sender<StoreResult<AckOutcome>> },
}

pub(crate) async fn run(ctx: &Ctx, jobs: Vec<BookJob>) {
    let outcome = ctx.retrying(|| attempt(ctx, &jobs)).await;
    let mut outcomes = match outcome {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(err) => {
            tracing::warn!(%err, "delivery bookkeeping failed; acknowledged messages stay pending");
            jobs.iter().map(|_| Err(err.clone())).collect()
        }
    }
    .into_iter();
    for job in jobs {
        if let BookJob::Ack { reply, .. } = job {
            let _ = reply.send(outcomes.next().unwrap_or_else(|| Ok(AckOutcome::default())));
        }
    }
}

/// The outcome of each ack job, in order.
async fn attempt(ctx: &Ctx, jobs: &[BookJob]) -> StoreResult<Vec<AckOutcome>> {
    let mut tx = ctx.pool.begin().await.sql()?;
    let (mut sent_devices, mut firsts, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
    let (mut exp_devices, mut exp_seqs) = (Vec::new(), Vec::new());
    let (mut ack_ids, mut ack_devices) = (Vec::new(), Vec::new());
    for job in jobs {
        match job {
            BookJob::Sent { device, first, last } => {
                sent_devices.push(device.0);
                firsts.push(*first);
                lasts.push(*last);
            }
            BookJob::Expired { device, seqs } => {
                exp_devices.extend(seqs.iter().map(|_| device.0));
                exp_seqs.extend(seqs.iter().copied());
            }
            BookJob::Ack { device, ids, .. } => {
                ack_ids.extend(ids.iter().copied());
                ack_devices.extend(ids.iter().map(|_| device.0));
            }
        }
    }
    if !sent_devices.is_empty() {
        sqlx::query(
            "UPDATE messages m SET status = 1, updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(d, f, l)
             WHERE m.device_pk = t.d AND m.seq BETWEEN t.f AND t.l AND m.status < 2 AND m.status = 0",
        )
        .bind(&sent_devices)
        .bind(&firsts)
        .bind(&lasts)
        .execute(&mut *tx)
        .await
        .sql()?;
    }
    let mut drop_pending: HashMap<i64, i64> = HashMap::new();
    if !exp_devices.is_empty() {
        let expired: Vec<i64> = sqlx::query_scalar(
            "UPDATE messages m SET status = 3, data = NULL, updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[]) AS t(d, s)
             WHERE m.device_pk = t.d AND m.seq = t.s AND m.status < 2 RETURNING m.device_pk",
        )
        .bind(&exp_devices)
        .bind(&exp_seqs)
        .fetch_all(&mut *tx)
        .await
        .sql()?;
        for device in expired {
            *drop_pending.entry(device).or_default() += 1;
        }
    }
    let mut delivered: HashSet<(Uuid, i64)> = HashSet::new();
    let mut known: HashSet<(Uuid, i64)> = HashSet::new();
    if !ack_ids.is_empty() {
        let rows = sqlx::query(
            "UPDATE messages m SET status = 2, data = NULL, updated_at = now()
             FROM unnest($1::uuid[], $2::bigint[]) AS t(id, d)
             WHERE m.id = t.id AND m.device_pk = t.d AND m.status < 2 RETURNING m.id, m.device_pk",
        )
        .bind(&ack_ids)
        .bind(&ack_devices)
        .fetch_all(&mut *tx)
        .await
        .sql()?;
        for row in rows {
            let (id, device): (Uuid, i64) = (row.try_get(0).sql()?, row.try_get(1).sql()?);
            delivered.insert((id, device));
            *drop_pending.entry(device).or_default() += 1;
        }
        let others: Vec<Uuid> = ack_ids
            .iter()
            .zip(&ack_devices)
            .filter(|(id, device)| !delivered.contains(&(**id, **device)))
            .map(|(id, _)| *id)
            .collect();
        if !others.is_empty() {
            let rows = sqlx::query("SELECT id, device_pk FROM messages WHERE id = ANY($1)")
                .bind(&others)
                .fetch_all(&mut *tx)
                .await
                .sql()?;
            for row in rows {
                known.insert((row.try_get(0).sql()?, row.try_get(1).sql()?));
            }
        }
    }
    let mut drops: Vec<(i64, i64)> = drop_pending.into_iter().collect();
    drops.sort_unstable();
    if !drops.is_empty() {
        sqlx::query(
            "UPDATE devices d SET pending = d.pending - t.n
             FROM unnest($1::bigint[], $2::bigint[]) AS t(pk, n) WHERE d.pk = t.pk",
        )
        .bind(drops.iter().map(|d| d.0).collect::<Vec<_>>())
        .bind(drops.iter().map(|d| d.1).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .sql()?;
    }
    tx.commit().await.sql()?;

    // Each id counts as delivered once, for the first job that named it.
    let mut counted = HashSet::new();
    let outcomes = jobs
        .iter()
        .filter_map(|job| match job {
            BookJob::Ack { device, ids, .. } => {
                let mut outcome = AckOutcome::default();
                for id in ids {
                    if delivered.contains(&(*id, device.0)) {
                        if counted.insert(*id) {
                            outcome.delivered += 1;
                        }
                    } else if !known.contains(&(*id, device.0)) {
                        outcome.unknown.push(*id);
                    }
                }
                Some(outcome)
            }
            _ => None,
        })
        .collect();
    Ok(outcomes)
}
