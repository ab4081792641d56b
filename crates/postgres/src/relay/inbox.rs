//! The inbox: records sent up by devices. Publishes are group-committed:
//! one insert for the whole batch (`ON CONFLICT DO NOTHING` recognises a
//! device's retried `ref`), one lookup of the retried ones, one notify.

use std::collections::HashMap;

use relayhub_core::ids::{DeviceId, LicensePk};
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_relay::model::{DeviceRef, InboxRecord, NewRecord, Published};
use relayhub_relay::store::RelayEvent;
use serde_json::value::RawValue;
use sqlx::{PgPool, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::Ctx;
use crate::error::SqlResult;
use crate::time::time;
use relayhub_core::bus::Event;

/// One device's publish.
pub(crate) struct PublishJob {
    pub device: DeviceRef,
    pub records: Vec<NewRecord>,
    pub reply: oneshot::Sender<StoreResult<Vec<Published>>>,
}

pub(crate) async fn run(ctx: &Ctx, jobs: Vec<PublishJob>) {
    match ctx.retrying(|| attempt(ctx, &jobs)).await {
        Ok((answers, licenses)) => {
            ctx.bus.publish(licenses.into_iter().map(|license| Event::new(RelayEvent::Published { license })));
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(err) => {
            for job in jobs {
                let _ = job.reply.send(Err(err.clone()));
            }
        }
    }
}

async fn attempt(ctx: &Ctx, jobs: &[PublishJob]) -> StoreResult<(Vec<Vec<Published>>, Vec<LicensePk>)> {
    let mut tx = ctx.pool.begin().await.sql()?;
    let (mut ids, mut licenses, mut devices, mut names, mut refs, mut data) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for job in jobs {
        for record in &job.records {
            ids.push(Uuid::now_v7());
            licenses.push(job.device.license.0);
            devices.push(job.device.pk.0);
            names.push(job.device.device_id.as_str().to_owned());
            refs.push(record.reference.clone());
            data.push(record.data.get().to_owned());
        }
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO inbox (id, license_pk, device_pk, device_id, ref, data, created_at)
         SELECT id, l, d, n, r, data::jsonb, now()
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[]) AS t(id, l, d, n, r, data)
         ON CONFLICT (device_pk, ref) DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&licenses)
    .bind(&devices)
    .bind(&names)
    .bind(&refs)
    .bind(&data)
    .fetch_all(&mut *tx)
    .await
    .sql()?;
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    let mut earlier: HashMap<(i64, String), Uuid> = HashMap::new();
    if inserted.len() < ids.len() {
        let rows = sqlx::query(
            "SELECT i.device_pk, i.ref, i.id FROM inbox i
             JOIN unnest($1::bigint[], $2::text[]) AS t(d, r) ON i.device_pk = t.d AND i.ref = t.r",
        )
        .bind(&devices)
        .bind(&refs)
        .fetch_all(&mut *tx)
        .await
        .sql()?;
        for row in rows {
            earlier.insert((row.try_get(0).sql()?, row.try_get(1).sql()?), row.try_get(2).sql()?);
        }
    }
    let mut touched: Vec<LicensePk> = Vec::new();
    let mut answers = Vec::with_capacity(jobs.len());
    let mut i = 0;
    for job in jobs {
        let mut answer = Vec::with_capacity(job.records.len());
        for record in &job.records {
            if inserted.contains(&ids[i]) {
                answer.push(Published { id: ids[i], duplicate: false });
                if !touched.contains(&job.device.license) {
                    touched.push(job.device.license);
                }
            } else {
                let id = earlier
                    .get(&(job.device.pk.0, record.reference.clone()))
                    .copied()
                    .ok_or_else(|| StoreError::Internal("a retried record vanished".into()))?;
                answer.push(Published { id, duplicate: true });
            }
            i += 1;
        }
        answers.push(answer);
    }
    let events: Vec<Event> = touched.iter().map(|&license| Event::new(RelayEvent::Published { license })).collect();
    crate::notify::send(&mut tx, &ctx.node, &events).await?;
    tx.commit().await.sql()?;
    Ok((answers, touched))
}

pub(crate) async fn list(pool: &PgPool, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
    let rows = sqlx::query(
        "SELECT id, device_id, ref, created_at, data::text AS data FROM inbox
         WHERE license_pk = $1 AND acked_at IS NULL ORDER BY pk LIMIT $2",
    )
    .bind(license.0)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .sql()?;
    rows.iter()
        .map(|r| {
            let device: String = r.try_get("device_id").sql()?;
            let data: String = r.try_get("data").sql()?;
            Ok(InboxRecord {
                id: r.try_get("id").sql()?,
                device_id: DeviceId::parse(&device).map_err(|e| StoreError::Internal(e.message))?,
                reference: r.try_get("ref").sql()?,
                time: time(r.try_get("created_at").sql()?),
                data: RawValue::from_string(data).map_err(|e| StoreError::Internal(e.to_string()))?,
            })
        })
        .collect()
}

pub(crate) async fn ack(pool: &PgPool, license: LicensePk, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
    sqlx::query_scalar(
        "UPDATE inbox SET acked_at = now(), data = NULL
         WHERE id = ANY($1) AND license_pk = $2 AND acked_at IS NULL RETURNING id",
    )
    .bind(ids)
    .bind(license.0)
    .fetch_all(pool)
    .await
    .sql()
}
