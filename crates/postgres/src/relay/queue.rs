//! Reading queues and receipts, and housekeeping.

use std::collections::HashMap;
use std::sync::Arc;

use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{MessageStatus, PendingMessage, QueuedMessage, Receipt, SharedMessage, SweepReport};
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::devices;
use crate::error::SqlResult;
use crate::time::{at, opt_time, time};

/// Rows one sweep touches at most; the next sweep continues.
const SWEEP_CHUNK: i64 = 5000;

fn status(code: i16) -> MessageStatus {
    match code {
        0 => MessageStatus::Queued,
        1 => MessageStatus::Sent,
        2 => MessageStatus::Delivered,
        _ => MessageStatus::Expired,
    }
}

fn json(r: &PgRow, column: &str) -> StoreResult<Box<RawValue>> {
    RawValue::from_string(r.try_get(column).sql()?).map_err(|e| StoreError::Internal(e.to_string()))
}

pub(crate) async fn pending(
    pool: &PgPool,
    license: LicensePk,
    device: &DeviceId,
    page: PageRequest,
) -> StoreResult<Page<PendingMessage>> {
    let found = sqlx::query("SELECT pk, pending FROM devices WHERE device_id = $1 AND license_pk = $2")
        .bind(device.as_str())
        .bind(license.0)
        .fetch_optional(pool)
        .await
        .sql()?
        .ok_or_else(|| devices::not_found(device))?;
    let (pk, total): (i64, i64) = (found.try_get(0).sql()?, found.try_get(1).sql()?);
    let rows = sqlx::query(
        "SELECT id, seq, created_at, status, expires_at, data::text AS data FROM messages
         WHERE device_pk = $1 AND status < 2 ORDER BY seq LIMIT $2 OFFSET $3",
    )
    .bind(pk)
    .bind(i64::from(page.size))
    .bind(page.offset() as i64)
    .fetch_all(pool)
    .await
    .sql()?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(PendingMessage {
                id: r.try_get("id").sql()?,
                seq: r.try_get("seq").sql()?,
                time: time(r.try_get("created_at").sql()?),
                status: status(r.try_get("status").sql()?),
                expires_at: opt_time(r.try_get("expires_at").sql()?),
                data: json(r, "data")?,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(Page { items, total: total.max(0) as u64 })
}

pub(crate) async fn receipt(pool: &PgPool, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>> {
    let row = sqlx::query(
        "SELECT m.id, d.device_id, m.seq, m.status, m.created_at, m.updated_at, m.expires_at
         FROM messages m JOIN devices d ON d.pk = m.device_pk WHERE m.id = $1 AND m.license_pk = $2",
    )
    .bind(id)
    .bind(license.0)
    .fetch_optional(pool)
    .await
    .sql()?;
    row.map(|r| {
        let device: String = r.try_get("device_id").sql()?;
        Ok(Receipt {
            id: r.try_get("id").sql()?,
            device_id: DeviceId::parse(&device).map_err(|e| StoreError::Internal(e.message))?,
            seq: r.try_get("seq").sql()?,
            status: status(r.try_get("status").sql()?),
            time: time(r.try_get("created_at").sql()?),
            updated_at: time(r.try_get("updated_at").sql()?),
            expires_at: opt_time(r.try_get("expires_at").sql()?),
        })
    })
    .transpose()
}

pub(crate) async fn fetch(
    pool: &PgPool,
    device: DevicePk,
    from_seq: i64,
    limit: usize,
) -> StoreResult<Vec<SharedMessage>> {
    let rows = sqlx::query(
        "SELECT id, seq, created_at, expires_at, data::text AS data FROM messages
         WHERE device_pk = $1 AND seq >= $2 AND status < 2 ORDER BY seq LIMIT $3",
    )
    .bind(device.0)
    .bind(from_seq)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .sql()?;
    rows.iter()
        .map(|r| {
            Ok(Arc::new(QueuedMessage {
                id: r.try_get("id").sql()?,
                seq: r.try_get("seq").sql()?,
                created_at: time(r.try_get("created_at").sql()?),
                expires_at: opt_time(r.try_get("expires_at").sql()?),
                data: json(r, "data")?,
            }))
        })
        .collect()
}

pub(crate) async fn sweep(pool: &PgPool, now: Timestamp, retention: std::time::Duration) -> StoreResult<SweepReport> {
    let mut tx = pool.begin().await.sql()?;
    let expired: Vec<i64> = sqlx::query_scalar(
        "UPDATE messages SET status = 3, data = NULL, updated_at = $1
         WHERE pk IN (SELECT pk FROM messages WHERE status < 2 AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING device_pk",
    )
    .bind(at(now))
    .bind(SWEEP_CHUNK)
    .fetch_all(&mut *tx)
    .await
    .sql()?;
    if !expired.is_empty() {
        sqlx::query(
            "UPDATE devices d SET pending = d.pending - t.n
             FROM (SELECT pk, count(*) AS n FROM unnest($1::bigint[]) AS pk GROUP BY pk ORDER BY pk) AS t
             WHERE d.pk = t.pk",
        )
        .bind(&expired)
        .execute(&mut *tx)
        .await
        .sql()?;
    }
    let before = at(now.minus(retention));
    let receipts = sqlx::query(
        "DELETE FROM messages WHERE pk IN (SELECT pk FROM messages WHERE status >= 2 AND updated_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(SWEEP_CHUNK)
    .execute(&mut *tx)
    .await
    .sql()?;
    let records = sqlx::query(
        "DELETE FROM inbox WHERE pk IN (SELECT pk FROM inbox WHERE acked_at IS NOT NULL AND acked_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(SWEEP_CHUNK)
    .execute(&mut *tx)
    .await
    .sql()?;
    tx.commit().await.sql()?;
    Ok(SweepReport { expired: expired.len() as u64, purged: receipts.rows_affected() + records.rows_affected() })
}

pub(crate) async fn pending_counts(pool: &PgPool, devices: &[DevicePk]) -> StoreResult<HashMap<DevicePk, u64>> {
    let pks: Vec<i64> = devices.iter().map(|d| d.0).collect();
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT pk, pending FROM devices WHERE pk = ANY($1)").bind(&pks).fetch_all(pool).await.sql()?;
    Ok(rows.into_iter().map(|(pk, n)| (DevicePk(pk), n.max(0) as u64)).collect())
}

pub(crate) async fn total_pending(pool: &PgPool) -> StoreResult<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(pending), 0)::bigint FROM devices").fetch_one(pool).await.sql()?;
    Ok(n.max(0) as u64)
}
