//! Compaction and expiry. A write is one small chunk; once it is
//! `compact_after` old, a robot's fresh chunks merge into one compacted
//! chunk (better compressed) plus its rollup; compacted chunks merge again
//! up a ladder (about an hour, then a day); chunks past their retention go.
//! Every node runs this; when two merge the same chunks, one wins the
//! replace and the other's work is dropped.

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::time::Timestamp;

use super::aggregate::Rollup;
use super::codec;
use super::model::Chunk;
use super::store::{ChunkForm, NewChunk, StoredChunk};
use super::{Telemetry, nanos};

/// Merges after the first: (form, level, chunks that make a merge).
const LADDER: [(ChunkForm, u8, usize); 4] =
    [(ChunkForm::Points, 1, 6), (ChunkForm::Points, 2, 24), (ChunkForm::Rollup, 1, 24), (ChunkForm::Rollup, 2, 30)];
/// Points one merge holds in memory, at most.
const MAX_MERGE_POINTS: u64 = 4_000_000;
/// Robots merged per rung per round: the rest wait for the next round.
const ROBOTS_PER_ROUND: usize = 200;
/// Fresh chunks merged at once, at most.
const FRESH_PER_MERGE: usize = 5_000;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub merges: u64,
    pub expired: u64,
}

fn damaged(err: codec::Damaged) -> ApiError {
    tracing::error!(%err, "unreadable telemetry chunk; left as it is");
    ApiError::new(ErrorCode::INTERNAL, "a stored telemetry chunk could not be read")
}

/// The oldest chunks whose points fit in [`MAX_MERGE_POINTS`].
fn within_budget(mut chunks: Vec<StoredChunk>) -> Vec<StoredChunk> {
    let mut total = 0;
    let keep = chunks
        .iter()
        .take_while(|c| {
            total += c.chunk.points;
            total <= MAX_MERGE_POINTS
        })
        .count();
    chunks.truncate(keep.max(1));
    chunks
}

/// One robot's merge, counted; a failure is logged and that robot waits
/// for the next round while the others go on.
fn merged(robot: i64, outcome: Result<bool, ApiError>) -> u64 {
    match outcome {
        Ok(done) => u64::from(done),
        Err(err) => {
            tracing::warn!(robot, %err, "telemetry merge failed; will retry");
            0
        }
    }
}

fn chunk_row(form: ChunkForm, level: u8, span: Option<(i64, i64)>, points: usize, body: Vec<u8>) -> Option<NewChunk> {
    let (min_time, max_time) = span?;
    Some(NewChunk { form, level, min_time, max_time, points: points as u64, body })
}

impl Telemetry {
    /// One round of compaction and expiry.
    pub async fn maintain(&self, now: Timestamp) -> Result<Round, ApiError> {
        let mut round = Round::default();
        let fresh_before = now.minus(self.config.compact_after);
        for robot in self.chunks.compactable(ChunkForm::Points, 0, 1, fresh_before, ROBOTS_PER_ROUND).await? {
            round.merges += merged(robot, self.merge_fresh(robot, fresh_before, now).await);
        }
        for (form, level, min) in LADDER {
            for robot in self.chunks.compactable(form, level, min, now, ROBOTS_PER_ROUND).await? {
                round.merges += merged(robot, self.merge_up(robot, form, level, min, now).await);
            }
        }
        round.expired += self.chunks.expire(ChunkForm::Points, self.horizon(now)).await?;
        let now_ns = now.millis().saturating_mul(1_000_000);
        let rollup_horizon = now_ns.saturating_sub(nanos(self.config.rollup_retention));
        round.expired += self.chunks.expire(ChunkForm::Rollup, rollup_horizon).await?;
        // A series unwritten for the raw retention counts no more.
        self.chunks.forget_series(now.minus(self.config.retention)).await?;
        self.measure_usage().await?;
        self.metrics.compactions.inc_by(round.merges);
        Ok(round)
    }

    /// Merges a robot's fresh chunks into one compacted chunk and its rollup.
    async fn merge_fresh(&self, robot: i64, before: Timestamp, now: Timestamp) -> Result<bool, ApiError> {
        let fresh = self.chunks.chunks_at(robot, ChunkForm::Points, 0, before, FRESH_PER_MERGE).await?;
        let fresh = within_budget(fresh);
        let step = nanos(self.config.rollup_step);
        let horizon = self.horizon(now);
        let ids = fresh.iter().map(|c| c.id).collect();
        let rows = tokio::task::spawn_blocking(move || {
            let chunks = fresh.iter().map(|c| codec::decode(&c.chunk.body, |_| true)).collect::<Result<Vec<_>, _>>();
            let mut merged = Chunk::merge(chunks.map_err(damaged)?);
            // The rollup keeps what is past the raw retention; the raw copy
            // lets it go.
            let rollup = Rollup::of(&merged, step);
            merged.retain_from(horizon);
            let points = codec::encode(&merged, codec::SMALL);
            let rolled = codec::encode_rollup(&rollup, codec::SMALL);
            Ok::<_, ApiError>(
                [
                    chunk_row(ChunkForm::Points, 1, merged.span(), merged.points(), points),
                    chunk_row(ChunkForm::Rollup, 1, rollup.span(), rollup.points(), rolled),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::INTERNAL, "a telemetry merge failed"))??;
        Ok(self.chunks.replace(robot, ids, rows, now).await?)
    }

    /// Merges `min` or more of a robot's chunks at `level` into one a level up.
    async fn merge_up(
        &self,
        robot: i64,
        form: ChunkForm,
        level: u8,
        min: usize,
        now: Timestamp,
    ) -> Result<bool, ApiError> {
        let found = within_budget(self.chunks.chunks_at(robot, form, level, now, min * 2).await?);
        if found.len() < min {
            return Ok(false);
        }
        let ids = found.iter().map(|c| c.id).collect();
        let horizon = self.horizon(now);
        let row = tokio::task::spawn_blocking(move || match form {
            ChunkForm::Points => {
                let chunks =
                    found.iter().map(|c| codec::decode(&c.chunk.body, |_| true)).collect::<Result<Vec<_>, _>>();
                let mut merged = Chunk::merge(chunks.map_err(damaged)?);
                merged.retain_from(horizon);
                let body = codec::encode(&merged, codec::SMALL);
                Ok(chunk_row(form, level + 1, merged.span(), merged.points(), body))
            }
            ChunkForm::Rollup => {
                let rollups =
                    found.iter().map(|c| codec::decode_rollup(&c.chunk.body, |_| true)).collect::<Result<Vec<_>, _>>();
                let merged = Rollup::merge(rollups.map_err(damaged)?);
                let body = codec::encode_rollup(&merged, codec::SMALL);
                Ok::<_, ApiError>(chunk_row(form, level + 1, merged.span(), merged.points(), body))
            }
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::INTERNAL, "a telemetry merge failed"))??;
        Ok(self.chunks.replace(robot, ids, row.into_iter().collect(), now).await?)
    }
}
