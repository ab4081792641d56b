//! Telemetry chunks and the forwarding backlog on SQLite. Writes join the
//! group commit, so a `204` to a robot means its points are on disk.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::ids::LicensePk;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use relayhub_fleet::telemetry::store::{
    Appended, ChunkForm, ForwardStore, NewChunk, SEEN_GRANULARITY, SeriesQuota, StoredChunk, TelemetryStore,
    series_verdict, within_bytes,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// The telemetry module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "telemetry",
    migrations: &[include_str!("../migrations/telemetry/0001_baseline.sql")],
};

/// Offers the telemetry store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let telemetry = Arc::new(SqliteTelemetry { db: store.clone() });
    stores.provide::<dyn TelemetryStore>(telemetry.clone());
    stores.provide::<dyn ForwardStore>(telemetry);
}

/// The telemetry stores, over the shared handle.
pub(crate) struct SqliteTelemetry {
    db: Arc<SqliteStore>,
}

const CHUNK_COLUMNS: &str = "id, robot_id, form, level, min_time, max_time, points, created_at, body";

fn chunk_from_row(row: &Row<'_>) -> rusqlite::Result<StoredChunk> {
    let form: i64 = row.get(2)?;
    let form = ChunkForm::from_code(form).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Integer, "chunk form".into())
    })?;
    Ok(StoredChunk {
        id: row.get(0)?,
        robot: row.get(1)?,
        chunk: NewChunk {
            form,
            level: row.get(3)?,
            min_time: row.get(4)?,
            max_time: row.get(5)?,
            points: row.get(6)?,
            body: row.get(8)?,
        },
        created_at: columns::time(row, 7)?,
    })
}

fn insert_chunk(conn: &Connection, robot: i64, chunk: &NewChunk, now: Timestamp) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO telemetry_chunks (robot_id, form, level, min_time, max_time, points, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .sql()?
    .execute(params![
        robot,
        chunk.form.code(),
        chunk.level,
        chunk.min_time,
        chunk.max_time,
        chunk.points,
        now.millis(),
        chunk.body
    ])
    .sql()?;
    Ok(())
}

/// Checks a write's series against its robot's and records them; the
/// refusal when they would pass the bound (then nothing is written). Runs
/// on the one writer, so two writes of a robot never both pass the count.
fn record_series(conn: &Connection, robot: i64, quota: &SeriesQuota, now: Timestamp) -> StoreResult<Option<Appended>> {
    if quota.hashes.is_empty() {
        return Ok(None);
    }
    let mut lookup =
        conn.prepare_cached("SELECT seen_at FROM telemetry_series WHERE robot_id = ?1 AND hash = ?2").sql()?;
    let mut seen = std::collections::HashMap::with_capacity(quota.hashes.len());
    for hash in &quota.hashes {
        let at: Option<i64> = lookup.query_row(params![robot, hash], |r| r.get(0)).optional().sql()?;
        if let Some(at) = at {
            seen.insert(*hash, at);
        }
    }
    let count: u64 = if seen.len() < quota.hashes.len() {
        conn.prepare_cached("SELECT count(*) FROM telemetry_series WHERE robot_id = ?1")
            .sql()?
            .query_row([robot], |r| r.get(0))
            .sql()?
    } else {
        0
    };
    if let Some(refused) = series_verdict(&quota.hashes, |h| seen.contains_key(&h), count, quota.max) {
        return Ok(Some(refused));
    }
    let stale = now.minus(SEEN_GRANULARITY).millis();
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO telemetry_series (robot_id, hash, seen_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (robot_id, hash) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .sql()?;
    for hash in &quota.hashes {
        if seen.get(hash).is_none_or(|at| *at < stale) {
            upsert.execute(params![robot, hash, now.millis()]).sql()?;
        }
    }
    Ok(None)
}

#[async_trait]
impl TelemetryStore for SqliteTelemetry {
    async fn append_within(
        &self,
        robot: i64,
        chunk: NewChunk,
        quota: SeriesQuota,
        forward: Option<Vec<u8>>,
        now: Timestamp,
    ) -> StoreResult<Appended> {
        self.db
            .writer
            .write(move |conn, _| {
                if let Some(refused) = record_series(conn, robot, &quota, now)? {
                    return Ok(refused);
                }
                insert_chunk(conn, robot, &chunk, now)?;
                conn.prepare_cached("UPDATE fleet_robots SET last_seen_at = ?2 WHERE id = ?1")
                    .sql()?
                    .execute(params![robot, now.millis()])
                    .sql()?;
                if let Some(lines) = forward.filter(|l| !l.is_empty()) {
                    conn.prepare_cached("INSERT INTO telemetry_forward (bytes, body) VALUES (?1, ?2)")
                        .sql()?
                        .execute(params![lines.len(), lines])
                        .sql()?;
                }
                Ok(Appended::Stored)
            })
            .await
    }

    async fn forget_series(&self, before: Timestamp) -> StoreResult<u64> {
        self.db
            .writer
            .write(move |conn, _| {
                let gone = conn
                    .prepare_cached("DELETE FROM telemetry_series WHERE seen_at < ?1")
                    .sql()?
                    .execute([before.millis()])
                    .sql()?;
                Ok(gone as u64)
            })
            .await
    }

    async fn bytes_by_license(&self) -> StoreResult<Vec<(i64, u64)>> {
        self.db
            .readers
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT r.license_pk, sum(length(c.body)) FROM telemetry_chunks c
                     JOIN fleet_robots r ON r.id = c.robot_id
                     WHERE r.license_pk IS NOT NULL GROUP BY r.license_pk",
                )
                .sql()?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }

    /// A commit per few hundred chunks (their bodies are large), so that
    /// other robots' writes keep going while a large license goes.
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        const CHUNKS: &str = "DELETE FROM telemetry_chunks WHERE id IN (SELECT id FROM telemetry_chunks
             WHERE robot_id IN (SELECT id FROM fleet_robots WHERE license_pk = ?1) LIMIT 500)";
        // Series are small rows, at most `max_series_per_robot` a robot.
        const SERIES: &str =
            "DELETE FROM telemetry_series WHERE robot_id IN (SELECT id FROM fleet_robots WHERE license_pk = ?1)";
        let forget = |sql: &'static str| {
            self.db.writer.write(move |conn, _| conn.prepare_cached(sql).sql()?.execute([license.0]).sql())
        };
        while forget(CHUNKS).await? > 0 {}
        forget(SERIES).await?;
        Ok(())
    }

    async fn license_usage(&self, license: LicensePk, since_ns: i64) -> StoreResult<(u64, u64)> {
        self.db
            .readers
            .read(move |conn| {
                let (points, bytes): (i64, i64) = conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(CASE WHEN c.form = 0 AND c.max_time >= ?2 THEN c.points END), 0),
                                COALESCE(SUM(length(c.body)), 0)
                         FROM fleet_robots r JOIN telemetry_chunks c ON c.robot_id = r.id
                         WHERE r.license_pk = ?1",
                    )
                    .sql()?
                    .query_row(params![license.0, since_ns], |r| Ok((r.get(0)?, r.get(1)?)))
                    .sql()?;
                Ok((points.max(0) as u64, bytes.max(0) as u64))
            })
            .await
    }

    async fn chunks(&self, robot: i64, form: ChunkForm, from: i64, to: i64) -> StoreResult<Vec<StoredChunk>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CHUNK_COLUMNS} FROM telemetry_chunks
                     WHERE robot_id = ?1 AND form = ?2 AND max_time >= ?3 AND min_time <= ?4 ORDER BY id"
                ))
                .sql()?
                .query_map(params![robot, form.code(), from, to], chunk_from_row)
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }

    async fn compactable(
        &self,
        form: ChunkForm,
        level: u8,
        min: usize,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<i64>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT robot_id FROM telemetry_chunks WHERE form = ?1 AND level = ?2 AND created_at < ?3
                     GROUP BY robot_id HAVING count(*) >= ?4 ORDER BY min(id) LIMIT ?5",
                )
                .sql()?
                .query_map(params![form.code(), level, before.millis(), min, limit], |r| r.get(0))
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }

    async fn chunks_at(
        &self,
        robot: i64,
        form: ChunkForm,
        level: u8,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<StoredChunk>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CHUNK_COLUMNS} FROM telemetry_chunks
                     WHERE robot_id = ?1 AND form = ?2 AND level = ?3 AND created_at < ?4 ORDER BY id LIMIT ?5"
                ))
                .sql()?
                .query_map(params![robot, form.code(), level, before.millis(), limit], chunk_from_row)
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }

    async fn replace(&self, robot: i64, old: Vec<i64>, new: Vec<NewChunk>, now: Timestamp) -> StoreResult<bool> {
        self.db
            .writer
            .write(move |conn, _| {
                let mut present = conn
                    .prepare_cached("SELECT count(*) FROM telemetry_chunks WHERE id = ?1 AND robot_id = ?2")
                    .sql()?;
                for id in &old {
                    let found: i64 = present.query_row(params![id, robot], |r| r.get(0)).sql()?;
                    if found == 0 {
                        return Ok(false);
                    }
                }
                let mut delete = conn.prepare_cached("DELETE FROM telemetry_chunks WHERE id = ?1").sql()?;
                for id in &old {
                    delete.execute([id]).sql()?;
                }
                for chunk in &new {
                    insert_chunk(conn, robot, chunk, now)?;
                }
                Ok(true)
            })
            .await
    }

    async fn expire(&self, form: ChunkForm, before: i64) -> StoreResult<u64> {
        self.db
            .writer
            .write(move |conn, _| {
                let gone = conn
                    .prepare_cached("DELETE FROM telemetry_chunks WHERE form = ?1 AND max_time < ?2")
                    .sql()?
                    .execute(params![form.code(), before])
                    .sql()?;
                Ok(gone as u64)
            })
            .await
    }
}

#[async_trait]
impl ForwardStore for SqliteTelemetry {
    async fn claim(&self, max_bytes: usize, now: Timestamp, until: Timestamp) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        self.db
            .writer
            .write(move |conn, _| {
                let waiting: Vec<(i64, usize)> = conn
                    .prepare_cached(
                        "SELECT id, bytes FROM telemetry_forward WHERE claimed_until < ?1 ORDER BY id LIMIT 1000",
                    )
                    .sql()?
                    .query_map([now.millis()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .sql()?
                    .collect::<Result<_, _>>()
                    .sql()?;
                let ids = within_bytes(&waiting, max_bytes);
                let mut claim = conn
                    .prepare_cached("UPDATE telemetry_forward SET claimed_until = ?2 WHERE id = ?1 RETURNING body")
                    .sql()?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let body: Vec<u8> = claim.query_row(params![id, until.millis()], |r| r.get(0)).sql()?;
                    out.push((id, body));
                }
                Ok(out)
            })
            .await
    }

    async fn forwarded(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                let mut delete = conn.prepare_cached("DELETE FROM telemetry_forward WHERE id = ?1").sql()?;
                for id in ids {
                    delete.execute([id]).sql()?;
                }
                Ok(())
            })
            .await
    }

    async fn release(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                let mut release =
                    conn.prepare_cached("UPDATE telemetry_forward SET claimed_until = 0 WHERE id = ?1").sql()?;
                for id in ids {
                    release.execute([id]).sql()?;
                }
                Ok(())
            })
            .await
    }

    async fn trim(&self, max_bytes: u64) -> StoreResult<u64> {
        self.db.writer
            .write(move |conn, _| {
                let dropped = conn
                    .prepare_cached(
                        "DELETE FROM telemetry_forward WHERE id <= (
                           SELECT id FROM (SELECT id, sum(bytes) OVER (ORDER BY id DESC) AS newer FROM telemetry_forward)
                           WHERE newer > ?1 ORDER BY id DESC LIMIT 1)",
                    )
                    .sql()?
                    .execute([i64::try_from(max_bytes).unwrap_or(i64::MAX)])
                    .sql()?;
                Ok(dropped as u64)
            })
            .await
    }

    async fn backlog(&self) -> StoreResult<(u64, u64)> {
        self.db
            .readers
            .read(|conn| {
                conn.prepare_cached("SELECT count(*), coalesce(sum(bytes), 0) FROM telemetry_forward")
                    .sql()?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .sql()
            })
            .await
    }
}
