//! The series a Prometheus call needs, read from the embedded store for
//! the caller's robots only, and the calls themselves. A query's
//! selectors are read first, bounded in series and samples, then the
//! expression is evaluated off the async threads, within its time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use promql_parser::label::{METRIC_NAME, Matchers};
use promql_parser::parser::{Expr, VectorSelector};
use relayhub_core::time::Timestamp;
use serde_json::{Value, json};

use super::eval::{self, Labels, RawSeries, Read, Selection, Steps};
use super::wire::{Data, Params, PromError, answer_data, parse_duration};
use crate::Fleet;
use crate::auth::UserAuth;
use crate::model::{Robot, Role};
use crate::telemetry::codec;
use crate::telemetry::model::{RESERVED_TAGS, SeriesKey};
use crate::telemetry::store::ChunkForm;

/// Series one query may read, in all its selectors.
pub const MAX_SERIES: usize = 10_000;
/// Samples one query may read, in all its selectors.
pub const MAX_SAMPLES: usize = 5_000_000;
/// Steps a range query may have (Prometheus's own bound).
pub const MAX_STEPS: i64 = 11_000;
/// Values one query's evaluation may hold (series read × steps): what
/// bounds its memory (16 bytes each).
pub const MAX_CELLS: usize = 10_000_000;
/// The longest a query may run; `timeout` may ask for less.
pub const MAX_TIME: Duration = Duration::from_secs(30);
/// The most PromQL one query may be.
pub const MAX_QUERY_BYTES: usize = 10_000;

/// A series' metric name as VictoriaMetrics names line protocol:
/// `{measurement}_{field}`.
pub fn metric_name(key: &SeriesKey) -> String {
    format!("{}_{}", key.measurement, key.field)
}

/// The labels the server sets from the robot's record.
fn robot_labels(robot: &Robot) -> Labels {
    crate::telemetry::api::robot_tags(
        robot,
        &SeriesKey { measurement: String::new(), tags: Vec::new(), field: String::new() },
    )
}

/// A series' labels: its metric name, its tags and its robot's.
fn labels_of(robot: &Labels, key: &SeriesKey) -> Labels {
    let mut labels = robot.clone();
    labels.extend(key.tags.iter().cloned());
    labels.insert(METRIC_NAME.to_owned(), metric_name(key));
    labels
}

fn matches(name: Option<&str>, matchers: &Matchers, labels: &Labels) -> bool {
    let value = |label: &str| labels.get(label).map_or("", String::as_str);
    name.is_none_or(|n| value(METRIC_NAME) == n)
        && matchers.matchers.iter().all(|m| m.is_match(value(&m.name)))
        && (matchers.or_matchers.is_empty()
            || matchers.or_matchers.iter().any(|group| group.iter().all(|m| m.is_match(value(&m.name)))))
}

/// Whether a robot may have series matching: the matchers that name one
/// of its own labels are decided by the robot alone, before any read.
fn robot_may_match(matchers: &Matchers, robot: &Labels) -> bool {
    let value = |label: &str| robot.get(label).map_or("", String::as_str);
    matchers.matchers.iter().filter(|m| RESERVED_TAGS.contains(&m.name.as_str())).all(|m| m.is_match(value(&m.name)))
}

/// The robots the caller sees: a user's own, an admin's whole license.
async fn visible_robots(fleet: &Fleet, auth: &UserAuth) -> Result<Vec<Robot>, PromError> {
    let owner = (auth.user.role != Role::Admin).then_some(auth.user.id);
    Ok(fleet.robots.robots(auth.license.pk, owner).await?)
}

fn ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
}

/// Reads every selection for the caller's robots, within the bounds.
async fn read_selections(fleet: &Fleet, auth: &UserAuth, selections: Vec<Selection>) -> Result<Read, PromError> {
    let robots = visible_robots(fleet, auth).await?;
    let mut read = Read::new();
    let (mut series_read, mut samples_read) = (0usize, 0usize);
    // Where a query's time goes, for whoever tunes it (debug log).
    let (mut reading, mut decoding) = (Duration::ZERO, Duration::ZERO);
    for selection in selections {
        if read.contains_key(&selection.key) {
            continue;
        }
        let mut found: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let matching: Vec<&Robot> =
            robots.iter().filter(|r| robot_may_match(&selection.matchers, &robot_labels(r))).collect();
        // Robots' chunks are decoded a batch at a time off the async
        // threads: one hand-over per batch, and a batch's bodies in memory.
        for batch in matching.chunks(DECODE_BATCH) {
            let mut stored = Vec::with_capacity(batch.len());
            let began = std::time::Instant::now();
            for robot in batch {
                let (from, to) = (ns(selection.from), ns(selection.to));
                stored.push((
                    robot_labels(robot),
                    fleet.telemetry.chunks.chunks(robot.id, ChunkForm::Points, from, to).await?,
                ));
            }
            reading += began.elapsed();
            let began = std::time::Instant::now();
            let (name, matchers, span) =
                (selection.name.clone(), selection.matchers.clone(), selection.from..=selection.to);
            let decoded = tokio::task::spawn_blocking(move || decode(&stored, name.as_deref(), &matchers, &span))
                .await
                .map_err(|e| PromError::Internal(format!("a telemetry read failed: {e}")))??;
            decoding += began.elapsed();
            for (labels, samples) in decoded {
                samples_read += samples.len();
                found.entry(labels).or_default().extend(samples);
            }
            if found.len() + series_read > MAX_SERIES || samples_read > MAX_SAMPLES {
                return Err(too_much(found.len() + series_read, samples_read));
            }
        }
        series_read += found.len();
        let series = found
            .into_iter()
            .map(|(labels, mut samples)| {
                // Chunks come oldest first: of two samples at one time the
                // later write wins, as in the store's own reads.
                samples.reverse();
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
                RawSeries { labels, samples }
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        read.insert(selection.key, series);
    }
    tracing::debug!(
        robots = robots.len(),
        series = series_read,
        samples = samples_read,
        reading_ms = reading.as_millis() as u64,
        decoding_ms = decoding.as_millis() as u64,
        "prometheus query read"
    );
    Ok(read)
}

/// Robots whose chunks are decoded in one hand-over to a blocking thread.
const DECODE_BATCH: usize = 64;

/// Series as decoded, one per chunk they stand in: labels and samples (ms).
type Decoded = Vec<(Labels, Vec<(i64, f64)>)>;

/// The matching series of robots' chunks, oldest chunk first, with their
/// samples (ms) within `span`.
fn decode(
    stored: &[(Labels, Vec<crate::telemetry::store::StoredChunk>)],
    name: Option<&str>,
    matchers: &Matchers,
    span: &std::ops::RangeInclusive<i64>,
) -> Result<Decoded, PromError> {
    let mut out = Vec::new();
    for (own, chunks) in stored {
        for chunk in chunks {
            let wanted = |key: &SeriesKey| matches(name, matchers, &labels_of(own, key));
            let chunk = codec::decode(&chunk.chunk.body, wanted)
                .map_err(|e| PromError::Internal(format!("unreadable telemetry: {e}")))?;
            for series in chunk.series {
                let samples = (0..series.times.len())
                    .filter_map(|i| series.values.number(i).map(|v| (series.times[i].div_euclid(1_000_000), v)))
                    .filter(|(t, _)| span.contains(t))
                    .collect::<Vec<_>>();
                out.push((labels_of(own, &series.key), samples));
            }
        }
    }
    Ok(out)
}

fn too_much(series: usize, samples: usize) -> PromError {
    PromError::Execution(format!(
        "the query would read {series} series and {samples} samples; one query reads at most {MAX_SERIES} series \
         and {MAX_SAMPLES} samples: narrow its selectors or its range"
    ))
}

fn parse(query: &str) -> Result<Expr, PromError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(PromError::BadData(format!("the query is longer than {MAX_QUERY_BYTES} bytes")));
    }
    promql_parser::parser::parse(query).map_err(|e| PromError::BadData(format!("invalid parameter \"query\": {e}")))
}

/// The time the query may take: `timeout`, at most [`MAX_TIME`].
fn time_limit(params: &Params) -> Result<Duration, PromError> {
    match params.get("timeout").filter(|t| !t.is_empty()) {
        None => Ok(MAX_TIME),
        Some(raw) => parse_duration(raw)
            .map(|ms| Duration::from_millis(ms.unsigned_abs()).min(MAX_TIME))
            .ok_or_else(|| PromError::BadData(format!("invalid parameter \"timeout\": {raw}"))),
    }
}

async fn evaluate(
    fleet: &Fleet,
    auth: &UserAuth,
    params: &Params,
    steps: Steps,
    instant: bool,
) -> Result<Data, PromError> {
    let expr = parse(params.required("query")?)?;
    let limit = time_limit(params)?;
    let run = async {
        let selections = eval::selections(&expr, steps)?;
        let read = read_selections(fleet, auth, selections).await?;
        let series: usize = read.values().map(Vec::len).sum();
        if series.saturating_mul(steps.len()) > MAX_CELLS {
            return Err(PromError::Execution(format!(
                "{series} series over {} steps is more than one query may evaluate ({MAX_CELLS} values): \
                 narrow its selectors, its range or its resolution",
                steps.len()
            )));
        }
        let answer = tokio::task::spawn_blocking(move || {
            let began = std::time::Instant::now();
            let answer = eval::evaluate(&expr, steps, &read);
            tracing::debug!(evaluating_ms = began.elapsed().as_millis() as u64, "prometheus query evaluated");
            answer
        })
        .await
        .map_err(|e| PromError::Internal(format!("a query failed: {e}")))??;
        Ok::<_, PromError>(answer_data(answer, instant))
    };
    tokio::time::timeout(limit, run)
        .await
        .map_err(|_| PromError::Timeout(format!("query timed out in expression evaluation after {limit:?}")))?
}

/// `/api/v1/query`.
pub async fn instant(fleet: &Fleet, auth: &UserAuth, params: Params) -> Result<Data, PromError> {
    let at = params.time_or("time", Timestamp::now().millis())?;
    evaluate(fleet, auth, &params, Steps::at(at), true).await
}

/// `/api/v1/query_range`.
pub async fn range(fleet: &Fleet, auth: &UserAuth, params: Params) -> Result<Data, PromError> {
    let start = params.time_or("start", i64::MIN).and_then(|t| present(t, "start"))?;
    let end = params.time_or("end", i64::MIN).and_then(|t| present(t, "end"))?;
    if end < start {
        return Err(PromError::BadData("end timestamp must not be before start time".into()));
    }
    let raw_step = params.required("step")?;
    let step = parse_duration(raw_step).ok_or_else(|| {
        PromError::BadData(format!("invalid parameter \"step\": cannot parse \"{raw_step}\" to a valid duration"))
    })?;
    if (end - start) / step >= MAX_STEPS {
        return Err(PromError::BadData(format!(
            "exceeded maximum resolution of {MAX_STEPS} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )));
    }
    evaluate(fleet, auth, &params, Steps { start, end, step }, false).await
}

fn present(t: i64, name: &str) -> Result<i64, PromError> {
    if t == i64::MIN { Err(PromError::BadData(format!("missing {name}"))) } else { Ok(t) }
}

/// The span `series` and `labels` look at: `start`/`end`, else the raw
/// retention up to now.
fn span(fleet: &Fleet, params: &Params) -> Result<(i64, i64), PromError> {
    let now = Timestamp::now();
    let end = params.time_or("end", now.millis())?;
    let start = params.time_or("start", fleet.telemetry.horizon(now).div_euclid(1_000_000))?;
    Ok((start, end))
}

/// Every label set of the caller's series in the span matching any of the
/// selectors (all of them when there are none).
async fn label_sets(fleet: &Fleet, auth: &UserAuth, params: &Params) -> Result<Vec<Labels>, PromError> {
    let selectors = params
        .all("match[]")
        .into_iter()
        .map(|raw| match parse(raw)? {
            Expr::VectorSelector(vs) => Ok(vs),
            _ => Err(PromError::BadData(format!("invalid parameter \"match[]\": {raw} is not a series selector"))),
        })
        .collect::<Result<Vec<VectorSelector>, PromError>>()?;
    let (start, end) = span(fleet, params)?;
    let mut out = BTreeSet::new();
    for robot in visible_robots(fleet, auth).await? {
        let own = robot_labels(&robot);
        if !selectors.is_empty() && !selectors.iter().any(|s| robot_may_match(&s.matchers, &own)) {
            continue;
        }
        for (key, _) in fleet.telemetry.series(robot.id, ns(start), ns(end)).await? {
            let labels = labels_of(&own, &key);
            if selectors.is_empty() || selectors.iter().any(|s| matches(s.name.as_deref(), &s.matchers, &labels)) {
                out.insert(labels);
            }
            if out.len() > MAX_SERIES {
                return Err(too_much(out.len(), 0));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// `/api/v1/series`: at least one `match[]`.
pub async fn series(fleet: &Fleet, auth: &UserAuth, params: Params) -> Result<Value, PromError> {
    if params.all("match[]").is_empty() {
        return Err(PromError::BadData("no match[] parameter provided".into()));
    }
    Ok(json!(label_sets(fleet, auth, &params).await?))
}

/// `/api/v1/labels`.
pub async fn label_names(fleet: &Fleet, auth: &UserAuth, params: Params) -> Result<Value, PromError> {
    let names: BTreeSet<String> =
        label_sets(fleet, auth, &params).await?.into_iter().flat_map(|l| l.into_keys()).collect();
    Ok(json!(names))
}

/// `/api/v1/label/{name}/values`.
pub async fn label_values(fleet: &Fleet, auth: &UserAuth, name: &str, params: Params) -> Result<Value, PromError> {
    if name.is_empty() || name.len() > 256 {
        return Err(PromError::BadData(format!("invalid label name: {name:?}")));
    }
    let values: BTreeSet<String> =
        label_sets(fleet, auth, &params).await?.into_iter().filter_map(|mut l| l.remove(name)).collect();
    Ok(json!(values))
}
