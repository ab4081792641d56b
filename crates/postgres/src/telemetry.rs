//! Telemetry chunks and the forwarding backlog on PostgreSQL: the same rows
//! as on SQLite, so every node reads what any node stored. Forwarding
//! nodes claim batches with `SKIP LOCKED`, so each batch goes out once.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::ids::LicensePk;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_fleet::telemetry::store::{
    Appended, ChunkForm, ForwardStore, NewChunk, SEEN_GRANULARITY, SeriesQuota, StoredChunk, TelemetryStore,
    series_verdict, within_bytes,
};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::error::SqlResult;
use crate::time::{at, time};
use crate::{Ctx, PgStore};

/// The telemetry module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "telemetry",
    steps: &[
        crate::schema::Step { sql: include_str!("../migrations/telemetry/0001_telemetry.sql"), was: Some(4) },
        crate::schema::Step { sql: include_str!("../migrations/telemetry/0002_series.sql"), was: Some(9) },
    ],
};

/// Offers the telemetry store traits.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let telemetry = Arc::new(PgTelemetry { ctx: store.ctx.clone() });
    stores.provide::<dyn TelemetryStore>(telemetry.clone());
    stores.provide::<dyn ForwardStore>(telemetry);
}

struct PgTelemetry {
    ctx: Ctx,
}

const CHUNK_COLUMNS: &str = "id, robot_id, form, level, min_time, max_time, points, created_at, body";

fn chunk_from_row(r: &PgRow) -> StoreResult<StoredChunk> {
    let form: i16 = r.try_get("form").sql()?;
    let level: i16 = r.try_get("level").sql()?;
    let points: i64 = r.try_get("points").sql()?;
    Ok(StoredChunk {
        id: r.try_get("id").sql()?,
        robot: r.try_get("robot_id").sql()?,
        chunk: NewChunk {
            form: ChunkForm::from_code(form.into())
                .ok_or_else(|| StoreError::Internal("a stored chunk form is not valid".into()))?,
            level: u8::try_from(level).map_err(|_| StoreError::Internal("a stored chunk level is not valid".into()))?,
            min_time: r.try_get("min_time").sql()?,
            max_time: r.try_get("max_time").sql()?,
            points: u64::try_from(points).unwrap_or(0),
            body: r.try_get("body").sql()?,
        },
        created_at: time(r.try_get("created_at").sql()?),
    })
}

async fn insert_chunk(db: impl PgExecutor<'_>, robot: i64, chunk: &NewChunk, now: Timestamp) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO telemetry_chunks (robot_id, form, level, min_time, max_time, points, created_at, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(robot)
    .bind(chunk.form.code() as i16)
    .bind(i16::from(chunk.level))
    .bind(chunk.min_time)
    .bind(chunk.max_time)
    .bind(i64::try_from(chunk.points).unwrap_or(i64::MAX))
    .bind(at(now))
    .bind(&chunk.body)
    .execute(db)
    .await
    .sql()?;
    Ok(())
}

/// Checks a write's series against its robot's and records them; the
/// refusal when they would pass the bound. The caller holds the robot's
/// row lock (its `last_seen_at` update), so a robot's writes on any node
/// pass this one at a time.
async fn record_series(
    tx: &mut sqlx::PgConnection,
    robot: i64,
    quota: &SeriesQuota,
    now: Timestamp,
) -> StoreResult<Option<Appended>> {
    if quota.hashes.is_empty() {
        return Ok(None);
    }
    let seen: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT hash, seen_at FROM telemetry_series WHERE robot_id = $1 AND hash = ANY($2)")
            .bind(robot)
            .bind(&quota.hashes)
            .fetch_all(&mut *tx)
            .await
            .sql()?;
    let seen: std::collections::HashMap<i64, Timestamp> = seen.into_iter().map(|(h, t)| (h, time(t))).collect();
    let count: i64 = if seen.len() < quota.hashes.len() {
        sqlx::query_scalar("SELECT count(*) FROM telemetry_series WHERE robot_id = $1")
            .bind(robot)
            .fetch_one(&mut *tx)
            .await
            .sql()?
    } else {
        0
    };
    let count = u64::try_from(count).unwrap_or(0);
    if let Some(refused) = series_verdict(&quota.hashes, |h| seen.contains_key(&h), count, quota.max) {
        return Ok(Some(refused));
    }
    let stale = now.minus(SEEN_GRANULARITY);
    let touch: Vec<i64> = quota.hashes.iter().copied().filter(|h| seen.get(h).is_none_or(|at| *at < stale)).collect();
    if !touch.is_empty() {
        sqlx::query(
            "INSERT INTO telemetry_series (robot_id, hash, seen_at) SELECT $1, unnest($2::bigint[]), $3
             ON CONFLICT (robot_id, hash) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(robot)
        .bind(&touch)
        .bind(at(now))
        .execute(&mut *tx)
        .await
        .sql()?;
    }
    Ok(None)
}

#[async_trait]
impl TelemetryStore for PgTelemetry {
    async fn append_within(
        &self,
        robot: i64,
        chunk: NewChunk,
        quota: SeriesQuota,
        forward: Option<Vec<u8>>,
        now: Timestamp,
    ) -> StoreResult<Appended> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        // First: the row lock serialises this robot's writes (the series count).
        sqlx::query("UPDATE fleet_robots SET last_seen_at = $2 WHERE id = $1")
            .bind(robot)
            .bind(at(now))
            .execute(&mut *tx)
            .await
            .sql()?;
        if let Some(refused) = record_series(&mut tx, robot, &quota, now).await? {
            // Dropping the transaction rolls the update back.
            return Ok(refused);
        }
        insert_chunk(&mut *tx, robot, &chunk, now).await?;
        if let Some(lines) = forward.filter(|l| !l.is_empty()) {
            sqlx::query("INSERT INTO telemetry_forward (bytes, body) VALUES ($1, $2)")
                .bind(i64::try_from(lines.len()).unwrap_or(i64::MAX))
                .bind(lines)
                .execute(&mut *tx)
                .await
                .sql()?;
        }
        tx.commit().await.sql()?;
        Ok(Appended::Stored)
    }

    async fn forget_series(&self, before: Timestamp) -> StoreResult<u64> {
        let gone = sqlx::query("DELETE FROM telemetry_series WHERE seen_at < $1")
            .bind(at(before))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(gone.rows_affected())
    }

    async fn bytes_by_license(&self) -> StoreResult<Vec<(i64, u64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT r.license_pk, sum(octet_length(c.body))::bigint FROM telemetry_chunks c
             JOIN fleet_robots r ON r.id = c.robot_id
             WHERE r.license_pk IS NOT NULL GROUP BY r.license_pk",
        )
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        Ok(rows.into_iter().map(|(license, bytes)| (license, u64::try_from(bytes).unwrap_or(0))).collect())
    }

    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        for table in ["telemetry_chunks", "telemetry_series"] {
            let sql =
                format!("DELETE FROM {table} WHERE robot_id IN (SELECT id FROM fleet_robots WHERE license_pk = $1)");
            sqlx::query(&sql).bind(license.0).execute(&mut *tx).await.sql()?;
        }
        tx.commit().await.sql()
    }

    async fn license_usage(&self, license: LicensePk, since_ns: i64) -> StoreResult<(u64, u64)> {
        let (points, bytes): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(sum(c.points) FILTER (WHERE c.form = 0 AND c.max_time >= $2), 0)::bigint,
                    COALESCE(sum(octet_length(c.body)), 0)::bigint
             FROM fleet_robots r JOIN telemetry_chunks c ON c.robot_id = r.id
             WHERE r.license_pk = $1",
        )
        .bind(license.0)
        .bind(since_ns)
        .fetch_one(&self.ctx.pool)
        .await
        .sql()?;
        Ok((points.max(0) as u64, bytes.max(0) as u64))
    }

    async fn chunks(&self, robot: i64, form: ChunkForm, from: i64, to: i64) -> StoreResult<Vec<StoredChunk>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHUNK_COLUMNS} FROM telemetry_chunks
             WHERE robot_id = $1 AND form = $2 AND max_time >= $3 AND min_time <= $4 ORDER BY id"
        ))
        .bind(robot)
        .bind(form.code() as i16)
        .bind(from)
        .bind(to)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn compactable(
        &self,
        form: ChunkForm,
        level: u8,
        min: usize,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT robot_id FROM telemetry_chunks WHERE form = $1 AND level = $2 AND created_at < $3
             GROUP BY robot_id HAVING count(*) >= $4 ORDER BY min(id) LIMIT $5",
        )
        .bind(form.code() as i16)
        .bind(i16::from(level))
        .bind(at(before))
        .bind(i64::try_from(min).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.ctx.pool)
        .await
        .sql()
    }

    async fn chunks_at(
        &self,
        robot: i64,
        form: ChunkForm,
        level: u8,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<StoredChunk>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHUNK_COLUMNS} FROM telemetry_chunks
             WHERE robot_id = $1 AND form = $2 AND level = $3 AND created_at < $4 ORDER BY id LIMIT $5"
        ))
        .bind(robot)
        .bind(form.code() as i16)
        .bind(i16::from(level))
        .bind(at(before))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn replace(&self, robot: i64, old: Vec<i64>, new: Vec<NewChunk>, now: Timestamp) -> StoreResult<bool> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let gone = sqlx::query("DELETE FROM telemetry_chunks WHERE id = ANY($1) AND robot_id = $2")
            .bind(&old)
            .bind(robot)
            .execute(&mut *tx)
            .await
            .sql()?;
        if gone.rows_affected() != old.len() as u64 {
            // Another node compacted some of them: leave it all as it was.
            tx.rollback().await.sql()?;
            return Ok(false);
        }
        for chunk in &new {
            insert_chunk(&mut *tx, robot, chunk, now).await?;
        }
        tx.commit().await.sql()?;
        Ok(true)
    }

    async fn expire(&self, form: ChunkForm, before: i64) -> StoreResult<u64> {
        let gone = sqlx::query("DELETE FROM telemetry_chunks WHERE form = $1 AND max_time < $2")
            .bind(form.code() as i16)
            .bind(before)
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(gone.rows_affected())
    }
}

#[async_trait]
impl ForwardStore for PgTelemetry {
    async fn claim(&self, max_bytes: usize, now: Timestamp, until: Timestamp) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let waiting: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, bytes FROM telemetry_forward WHERE claimed_until < $1
             ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED",
        )
        .bind(at(now))
        .fetch_all(&mut *tx)
        .await
        .sql()?;
        let waiting: Vec<(i64, usize)> =
            waiting.into_iter().map(|(id, bytes)| (id, usize::try_from(bytes).unwrap_or(usize::MAX))).collect();
        let ids = within_bytes(&waiting, max_bytes);
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("UPDATE telemetry_forward SET claimed_until = $2 WHERE id = ANY($1) RETURNING id, body")
                .bind(&ids)
                .bind(at(until))
                .fetch_all(&mut *tx)
                .await
                .sql()?;
        tx.commit().await.sql()?;
        let mut rows = rows;
        rows.sort_by_key(|(id, _)| *id);
        Ok(rows)
    }

    async fn forwarded(&self, ids: Vec<i64>) -> StoreResult<()> {
        sqlx::query("DELETE FROM telemetry_forward WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(())
    }

    async fn release(&self, ids: Vec<i64>) -> StoreResult<()> {
        sqlx::query("UPDATE telemetry_forward SET claimed_until = '-infinity' WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(())
    }

    async fn trim(&self, max_bytes: u64) -> StoreResult<u64> {
        let gone = sqlx::query(
            "DELETE FROM telemetry_forward WHERE id <= (
               SELECT id FROM (SELECT id, sum(bytes) OVER (ORDER BY id DESC) AS newer FROM telemetry_forward) t
               WHERE newer > $1 ORDER BY id DESC LIMIT 1)",
        )
        .bind(i64::try_from(max_bytes).unwrap_or(i64::MAX))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(gone.rows_affected())
    }

    async fn backlog(&self) -> StoreResult<(u64, u64)> {
        let (rows, bytes): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(bytes), 0)::BIGINT FROM telemetry_forward")
                .fetch_one(&self.ctx.pool)
                .await
                .sql()?;
        Ok((u64::try_from(rows).unwrap_or(0), u64::try_from(bytes).unwrap_or(0)))
    }
}
