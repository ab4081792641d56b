//! Reading a robot's telemetry back: charts from points within the raw
//! retention and from rollups before it, logs, and the series it has.
//! Decoding is CPU work, so it runs off the async threads.

use std::collections::BTreeMap;

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::time::Timestamp;

use super::Telemetry;
use super::aggregate::{Agg, Chart};
use super::codec;
use super::logs::{self, LogEntry, LogFilter};
use super::model::{Chunk, Kind, SeriesKey};
use super::store::{ChunkForm, StoredChunk};

/// Series one chart may show, at most.
pub const MAX_SERIES: usize = 1000;
/// Points one series of a chart may have, at most.
pub const MAX_POINTS: i64 = 10_000;

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct ChartRequest {
    pub measurement: String,
    pub field: Option<String>,
    /// Tags every series shown has.
    pub tags: Vec<(String, String)>,
    /// `[from, to)`, Unix ns.
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub agg: Agg,
}

impl ChartRequest {
    fn wants(&self, key: &SeriesKey) -> bool {
        key.measurement == self.measurement
            && self.field.as_ref().is_none_or(|f| *f == key.field)
            && self.tags.iter().all(|t| key.tags.contains(t))
    }
}

fn damaged(err: codec::Damaged) -> ApiError {
    tracing::error!(%err, "unreadable telemetry");
    ApiError::new(ErrorCode::INTERNAL, "stored telemetry could not be read")
}

async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::new(ErrorCode::INTERNAL, "a telemetry read failed"))?
}

impl Telemetry {
    /// A robot's chart.
    pub async fn chart(
        &self,
        robot: i64,
        request: ChartRequest,
        now: Timestamp,
    ) -> Result<Vec<(SeriesKey, Vec<(i64, f64)>)>, ApiError> {
        let horizon = self.horizon(now);
        let raw = if request.to > horizon {
            self.chunks.chunks(robot, ChunkForm::Points, request.from.max(horizon), request.to).await?
        } else {
            Vec::new()
        };
        let rolled = if request.from < horizon {
            self.chunks.chunks(robot, ChunkForm::Rollup, request.from, request.to.min(horizon)).await?
        } else {
            Vec::new()
        };
        off_thread(move || {
            let mut chart = Chart::new(request.step);
            for stored in &rolled {
                let rollup = codec::decode_rollup(&stored.chunk.body, |k| request.wants(k)).map_err(damaged)?;
                chart.add_rollup(&rollup, request.from..request.to.min(horizon));
            }
            for stored in &raw {
                let chunk = codec::decode(&stored.chunk.body, |k| request.wants(k)).map_err(damaged)?;
                chart.add_points(&chunk, request.from.max(horizon)..request.to);
                if chart.series() > MAX_SERIES {
                    return Err(too_many_series());
                }
            }
            if chart.series() > MAX_SERIES {
                return Err(too_many_series());
            }
            Ok(chart.finish(request.agg))
        })
        .await
    }

    /// A robot's log lines in `[from, to)`, newest first, at most `limit`.
    pub async fn logs(
        &self,
        robot: i64,
        from: i64,
        to: i64,
        filter: LogFilter,
        limit: usize,
    ) -> Result<Vec<LogEntry>, ApiError> {
        let stored = self.chunks.chunks(robot, ChunkForm::Points, from, to).await?;
        off_thread(move || {
            let mut found = Vec::new();
            for chunk in decoded(&stored, |k| k.measurement == logs::MEASUREMENT)? {
                found.extend(logs::entries(&chunk, &filter).into_iter().filter(|e| (from..to).contains(&e.nanos)));
            }
            found.sort_by_key(|e| std::cmp::Reverse(e.nanos));
            found.truncate(limit);
            Ok(found)
        })
        .await
    }

    /// The series a robot wrote in `[from, to]`, with their types.
    pub async fn series(&self, robot: i64, from: i64, to: i64) -> Result<Vec<(SeriesKey, Kind)>, ApiError> {
        let stored = self.chunks.chunks(robot, ChunkForm::Points, from, to).await?;
        off_thread(move || {
            let mut all = BTreeMap::new();
            for chunk in &stored {
                for (key, kind, _) in codec::keys(&chunk.chunk.body).map_err(damaged)? {
                    all.insert((key, kind.code()), kind);
                }
                if all.len() > MAX_SERIES * 10 {
                    break;
                }
            }
            Ok(all.into_iter().map(|((key, _), kind)| (key, kind)).collect())
        })
        .await
    }
}

fn decoded(stored: &[StoredChunk], wanted: impl Fn(&SeriesKey) -> bool + Copy) -> Result<Vec<Chunk>, ApiError> {
    stored.iter().map(|s| codec::decode(&s.chunk.body, wanted).map_err(damaged)).collect()
}

fn too_many_series() -> ApiError {
    ApiError::invalid_field(format!("more than {MAX_SERIES} series match; name a field or tags"))
}
