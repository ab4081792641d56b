//! The telemetry write endpoints: InfluxDB v2's write (what Telegraf's
//! `outputs.influxdb_v2` and InfluxDB client libraries call) and seed
//! 002's `/api/metrics`.

use std::io::Read;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use flate2::read::MultiGzDecoder;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{Body, Query};
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::codec;
use super::line::{self, Limits, Precision};
use super::model::SeriesKey;
use super::quota::{self, Limit};
use super::store::{Appended, ChunkForm, NEW_SHOWN, NewChunk, SeriesQuota};
use crate::Fleet;
use crate::auth::RobotAuth;
use crate::codes;
use crate::model::Robot;

/// `?precision=` and InfluxDB's `org` and `bucket`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// `org` and `bucket` are parsed (so the document and the parser agree) and
// then not used.
#[allow(dead_code)]
pub struct WriteParams {
    /// Accepted and ignored: the token decides the robot.
    pub org: Option<String>,
    /// Accepted and ignored: the token decides the robot.
    pub bucket: Option<String>,
    /// The unit of the lines' timestamps (default `ns`).
    #[param(inline)]
    pub precision: Option<PrecisionParam>,
}

/// InfluxDB v2's precisions.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum PrecisionParam {
    #[serde(rename = "ns")]
    Nanoseconds,
    #[serde(rename = "us")]
    Microseconds,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl From<PrecisionParam> for Precision {
    fn from(p: PrecisionParam) -> Self {
        match p {
            PrecisionParam::Nanoseconds => Precision::Nanoseconds,
            PrecisionParam::Microseconds => Precision::Microseconds,
            PrecisionParam::Milliseconds => Precision::Milliseconds,
            PrecisionParam::Seconds => Precision::Seconds,
        }
    }
}

/// Stores a body of line protocol for `robot`: all of it, durably, or
/// nothing.
async fn ingest(
    fleet: &Fleet,
    robot: &Robot,
    precision: Precision,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<(), ApiError> {
    let telemetry = &fleet.telemetry;
    let _slot = telemetry.admit().await?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e == "gzip" || e == "x-gzip" => true,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) => {
            return Err(ApiError::new(ErrorCode::BAD_REQUEST, format!("Content-Encoding {e:?}: send gzip or nothing")));
        }
    };
    telemetry.metrics.bytes.inc_by(body.len() as u64);
    let max = telemetry.config.max_body_bytes;
    let forwarding = telemetry.forwarding.url.is_some();
    let arch = robot.architecture.map(|a| a.as_str()).unwrap_or_default();
    let tags = [
        ("robot".to_owned(), robot.name.clone()),
        ("hostname".to_owned(), robot.hostname.clone()),
        ("arch".to_owned(), arch.to_owned()),
    ];
    let now = Timestamp::now();
    let parsed = tokio::task::spawn_blocking(move || {
        let text = if gzip { gunzip(&body, max)? } else { body };
        if text.len() > max {
            return Err(too_large(max));
        }
        let text = std::str::from_utf8(&text)
            .map_err(|_| ApiError::new(codes::INVALID_LINE_PROTOCOL, "the body is not UTF-8 text"))?;
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let now_ns = now.millis().saturating_mul(1_000_000);
        let parsed = line::parse(text, precision, now_ns, Limits::default(), forwarding.then_some(tags.as_slice()))?;
        let span = parsed.chunk.span();
        let body = codec::encode(&parsed.chunk, codec::FAST);
        let points = parsed.chunk.points() as u64;
        // The keys move out of the chunk, now encoded: for counting, and to name a few in a refusal.
        let series: Vec<(i64, SeriesKey)> =
            parsed.chunk.series.into_iter().map(|s| (quota::series_hash(&s.key), s.key)).collect();
        Ok((
            span.map(|(min_time, max_time)| NewChunk {
                form: ChunkForm::Points,
                level: 0,
                min_time,
                max_time,
                points,
                body,
            }),
            parsed.forward,
            series,
        ))
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::INTERNAL, "parsing the write failed"))?;
    let (chunk, forward, series) = parsed.inspect_err(|err| telemetry.metrics.refuse(err))?;
    // An empty body (or comments only) stores nothing, as InfluxDB does.
    let Some(chunk) = chunk else { return Ok(()) };
    let points = chunk.points;
    let bytes = chunk.body.len() as u64;
    let config = &telemetry.config;
    if let Some(license) = robot.license {
        let full = telemetry.usage.check(license.0, bytes, config.max_bytes_per_license);
        full.inspect_err(|err| telemetry.metrics.limited(Limit::LicenseBytes, err))?;
    }
    let rate = telemetry.rates.take(robot.id, points, std::time::Instant::now());
    rate.inspect_err(|err| telemetry.metrics.limited(Limit::PointsPerMinute, err))?;
    let hashes = quota::distinct(&series);
    let max = config.max_series_per_robot;
    // (what the robot knew, if the store was asked; new series; a few of them)
    let refused = if hashes.len() as u64 > max {
        // Past the bound whatever the robot knows: the store is not asked.
        Some((None, hashes.len() as u64, hashes.iter().copied().take(NEW_SHOWN).collect::<Vec<_>>()))
    } else {
        let quota = SeriesQuota { hashes, max };
        match telemetry.chunks.append_within(robot.id, chunk, quota, forward, now).await {
            Ok(Appended::Stored) => None,
            Ok(Appended::TooManySeries { known, new, shown }) => Some((Some(known), new, shown)),
            Err(err) => {
                let err = ApiError::from(err);
                telemetry.metrics.refuse(&err);
                return Err(err);
            }
        }
    };
    if let Some((known, new, shown)) = refused {
        let err = quota::too_many_series(known, new, max, &shown, &series);
        telemetry.metrics.limited(Limit::Series, &err);
        return Err(err);
    }
    if let Some(license) = robot.license {
        telemetry.usage.add(license.0, bytes);
    }
    telemetry.metrics.points.inc_by(points);
    if forwarding {
        telemetry.written.notify_one();
    }
    Ok(())
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {max} bytes uncompressed; send smaller batches"),
    )
}

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(body.len() * 8);
    MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::new(ErrorCode::BAD_REQUEST, format!("the body is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(too_large(max));
    }
    Ok(out)
}

/// Writes metrics and logs as InfluxDB v2 does: line protocol, one robot's
/// token (`Authorization: Token …` or `Bearer …`), gzip allowed; `204`
/// once stored durably. The server sets the tags `robot`, `hostname` and
/// `arch` from the robot's record. A body is stored whole or not at all.
#[utoipa::path(
    post,
    path = "/api/v2/write",
    operation_id = "write_telemetry",
    tag = "telemetry",
    params(WriteParams),
    request_body(content = String, content_type = "text/plain", description = "InfluxDB line protocol; `Content-Encoding: gzip` allowed"),
    responses(
        (status = 204, description = "Stored durably"),
        (status = 400, description = "A line is not line protocol (`invalid_line_protocol` names it); nothing was stored", body = ErrorBody),
        (status = 409, description = "`telemetry_store_full`: the license stores `fleet.telemetry.max_bytes_per_license` already; nothing was stored", body = ErrorBody),
        (status = 413, description = "The body is too large; send smaller batches", body = ErrorBody),
        (status = 422, description = "`too_many_series`: the write would take the robot past `fleet.telemetry.max_series_per_robot` series (the message names some); nothing was stored", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the robot wrote `fleet.telemetry.max_points_per_minute` points in the last minute; retry after `Retry-After` seconds, nothing was stored", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Too many writes at once; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("robot" = []))
)]
pub async fn write_v2(
    State(fleet): State<Fleet>,
    RobotAuth(robot): RobotAuth,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let precision = params.precision.map_or(Precision::Nanoseconds, Precision::from);
    if body.is_empty() {
        return Err(ApiError::new(codes::INVALID_LINE_PROTOCOL, "the body is empty; send line protocol"));
    }
    ingest(&fleet, &robot, precision, &headers, body.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Seed 002's write route: the same body and answers as `/api/v2/write`,
/// with `Authorization: Bearer <robot token>`.
#[utoipa::path(
    post,
    path = "/api/metrics",
    operation_id = "write_metrics",
    tag = "telemetry",
    params(WriteParams),
    request_body(content = String, content_type = "text/plain", description = "InfluxDB line protocol; `Content-Encoding: gzip` allowed"),
    responses(
        (status = 204, description = "Stored durably"),
        (status = 400, description = "A line is not line protocol (`invalid_line_protocol` names it); nothing was stored", body = ErrorBody),
        (status = 409, description = "`telemetry_store_full`: the license stores `fleet.telemetry.max_bytes_per_license` already; nothing was stored", body = ErrorBody),
        (status = 413, description = "The body is too large; send smaller batches", body = ErrorBody),
        (status = 422, description = "`too_many_series`: the write would take the robot past `fleet.telemetry.max_series_per_robot` series (the message names some); nothing was stored", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the robot wrote `fleet.telemetry.max_points_per_minute` points in the last minute; retry after `Retry-After` seconds, nothing was stored", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Too many writes at once; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("robot" = []))
)]
pub async fn write_metrics(
    state: State<Fleet>,
    auth: RobotAuth,
    params: Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    write_v2(state, auth, params, headers, body).await
}
