//! The telemetry read endpoints: the reads behind charts, log views and
//! the list of a robot's series (the writes are in `write_api.rs`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Uri;
use relayhub_core::error::{ApiError, ErrorBody};
use relayhub_core::http::{Json, Path, Query, check_length};
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::aggregate::Agg;
use super::logs::{LogEntry, LogFilter};
use super::model::{Kind, SeriesKey};
use super::read::{ChartRequest, MAX_POINTS};
use crate::Fleet;
use crate::auth::UserAuth;
use crate::model::Robot;

/// A time range: RFC 3339 times, the last `default` before now by default.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Start, included (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End, excluded (RFC 3339; default now).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

/// Unix ns of an RFC 3339 time, clamped to what nanoseconds can say.
fn instant(raw: &str, name: &str) -> Result<i64, ApiError> {
    let time = chrono::DateTime::parse_from_rfc3339(raw)
        .map_err(|e| ApiError::invalid_field(format!("{name}: an RFC 3339 time, e.g. 2026-11-30T12:00:00Z ({e})")))?;
    let utc = time.with_timezone(&chrono::Utc);
    Ok(utc.timestamp_nanos_opt().unwrap_or(if utc.timestamp() < 0 { i64::MIN } else { i64::MAX }))
}

impl RangeParams {
    /// `[from, to)` in Unix ns.
    fn range(&self, default: std::time::Duration) -> Result<(i64, i64), ApiError> {
        let to = match &self.to {
            Some(raw) => instant(raw, "to")?,
            None => Timestamp::now().millis().saturating_mul(1_000_000),
        };
        let from = match &self.from {
            Some(raw) => instant(raw, "from")?,
            None => to.saturating_sub(super::nanos(default)),
        };
        Ok((from, to))
    }
}

/// What to chart.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChartParams {
    /// The measurement (`cpu`, `mem`, …).
    #[param(min_length = 1, max_length = 256)]
    pub measurement: String,
    /// One field (`usage_idle`); all of the measurement's by default.
    #[param(max_length = 256)]
    pub field: Option<String>,
    /// Bucket width: a number and `s`, `m`, `h` or `d` (default: the range
    /// in about 300 steps). Widened when the range would need more than
    /// 10,000 steps.
    #[param(pattern = r"^[1-9][0-9]{0,8}(s|m|h|d)$")]
    pub step: Option<String>,
    /// What each step shows (default `mean`).
    #[param(inline)]
    pub agg: Option<Agg>,
}

fn step_nanos(raw: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid_field("step: a number and s, m, h or d (e.g. 60s)");
    let unit = raw.chars().last().ok_or_else(bad)?;
    let count: i64 = raw[..raw.len() - 1].parse().map_err(|_| bad())?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    if count < 1 {
        return Err(bad());
    }
    Ok(count.saturating_mul(seconds).saturating_mul(1_000_000_000))
}

/// A tag filter as written: `key:value` (documentation only).
pub struct TagFilter;

impl utoipa::PartialSchema for TagFilter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[^:]+:"))
            .max_length(Some(512))
            .examples([serde_json::json!("cpu:cpu-total")])
            .into()
    }
}

impl ToSchema for TagFilter {}

/// `key:value` tag filters from every `tag` in the query.
fn tag_filters(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let raw = uri.query().unwrap_or("");
    form_urlencoded::parse(raw.as_bytes())
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| {
            check_length("tag", &v, 2, 512)?;
            v.split_once(':')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::invalid_field("tag: key:value, e.g. tag=cpu:cpu-total"))
        })
        .collect()
}

/// A chart: series with their points.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChartView {
    /// The range and the step used (Unix milliseconds, and seconds).
    pub from: i64,
    pub to: i64,
    pub step_seconds: f64,
    pub series: Vec<SeriesPoints>,
}

/// One series of a chart.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPoints {
    pub measurement: String,
    pub field: String,
    /// The series' tags, with `robot`, `hostname` and `arch` from the
    /// robot's record.
    pub tags: BTreeMap<String, String>,
    /// `[time, value]`: the step's start (Unix milliseconds) and its value.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<(i64, f64)>,
}

/// A series' tags with those the server sets from the robot's record.
pub(crate) fn robot_tags(robot: &Robot, key: &SeriesKey) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = key.tags.iter().cloned().collect();
    tags.insert("robot".into(), robot.name.clone());
    tags.insert("hostname".into(), robot.hostname.clone());
    if let Some(arch) = robot.architecture {
        tags.insert("arch".into(), arch.as_str().into());
    }
    tags
}

/// A robot's metrics for a chart: per series, the `agg` of each step.
/// Points older than the raw retention come from the downsampled copy.
#[utoipa::path(
    get,
    path = "/api/robots/{id}/metrics",
    operation_id = "robot_metrics",
    tag = "telemetry",
    params(
        ("id" = i64, Path, description = "The robot's id", minimum = 1),
        ChartParams,
        RangeParams,
        ("tag" = Option<Vec<TagFilter>>, Query, description = "Only series with this tag, as `key:value`; repeat for more", style = Form, explode),
    ),
    responses(
        (status = 200, description = "The chart (the last hour by default)", body = ChartView),
        (status = 404, description = "No such robot of this user", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn metrics(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    Path(id): Path<i64>,
    Query(chart): Query<ChartParams>,
    Query(range): Query<RangeParams>,
    uri: Uri,
) -> Result<Json<ChartView>, ApiError> {
    check_length("measurement", &chart.measurement, 1, 256)?;
    check_length("field", chart.field.as_deref().unwrap_or(""), 0, 256)?;
    let tags = tag_filters(&uri)?;
    let robot = fleet.visible_robot(&auth, id).await?;
    let (from, to) = range.range(CHART_RANGE)?;
    let step = chart.step.as_deref().map(step_nanos).transpose()?;
    let query = ChartQuery {
        measurement: chart.measurement,
        field: chart.field,
        tags,
        from,
        to,
        step,
        agg: chart.agg.unwrap_or_default(),
    };
    Ok(Json(fleet.robot_chart(&robot, query).await?))
}

/// The range a chart covers by default: the last hour.
pub(crate) const CHART_RANGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A chart of one robot, as asked (the API's query, parsed; the console's).
#[derive(Debug, Clone)]
pub(crate) struct ChartQuery {
    pub measurement: String,
    /// One field; all of the measurement's when `None`.
    pub field: Option<String>,
    /// Tags every series shown has.
    pub tags: Vec<(String, String)>,
    /// `[from, to)`, Unix ns.
    pub from: i64,
    pub to: i64,
    /// The step asked for (ns); about 300 steps over the range by default.
    pub step: Option<i64>,
    pub agg: Agg,
}

impl Fleet {
    /// A robot's chart: per series, the `agg` of each step, never more than
    /// [`MAX_POINTS`] steps (a wide range gets a wider step). Points older
    /// than the raw retention come from the downsampled copy.
    pub(crate) async fn robot_chart(&self, robot: &Robot, query: ChartQuery) -> Result<ChartView, ApiError> {
        let ChartQuery { measurement, field, tags, from, to, step, agg } = query;
        let span = to.saturating_sub(from).max(1);
        let wanted = step.unwrap_or((span / 300).max(1_000_000_000));
        let step = wanted.max(span / MAX_POINTS + i64::from(span % MAX_POINTS != 0));
        let mut series = Vec::new();
        if from < to {
            let request = ChartRequest { measurement, field, tags, from, to, step, agg };
            for (key, points) in self.telemetry.chart(robot.id, request, Timestamp::now()).await? {
                let tags = robot_tags(robot, &key);
                let points = points.into_iter().map(|(t, v)| (t.div_euclid(1_000_000), v)).collect();
                series.push(SeriesPoints { measurement: key.measurement, field: key.field, tags, points });
            }
        }
        Ok(ChartView {
            from: from.div_euclid(1_000_000),
            to: to.div_euclid(1_000_000),
            step_seconds: step as f64 / 1e9,
            series,
        })
    }
}

/// Which log lines.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Only these levels, comma-separated (`err,warning`), any case.
    #[param(max_length = 256)]
    pub level: Option<String>,
    /// Only messages containing this text, any case.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Lines at most (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u16>,
}

/// The range log lines come from by default: the last day.
pub(crate) const LOG_RANGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Log lines, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogList {
    pub logs: Vec<LogEntry>,
}

/// A robot's log lines (the `syslog` measurement), newest first.
#[utoipa::path(
    get,
    path = "/api/robots/{id}/logs",
    operation_id = "robot_logs",
    tag = "telemetry",
    params(("id" = i64, Path, description = "The robot's id", minimum = 1), LogParams, RangeParams),
    responses(
        (status = 200, description = "Log lines (the last day by default)", body = LogList),
        (status = 404, description = "No such robot of this user", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn logs(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    Path(id): Path<i64>,
    Query(params): Query<LogParams>,
    Query(range): Query<RangeParams>,
) -> Result<Json<LogList>, ApiError> {
    check_length("level", params.level.as_deref().unwrap_or(""), 0, 256)?;
    check_length("q", params.q.as_deref().unwrap_or(""), 0, 256)?;
    let robot = fleet.visible_robot(&auth, id).await?;
    let (from, to) = range.range(LOG_RANGE)?;
    let limit = usize::from(params.limit.unwrap_or(100));
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit: 1 to 1000"));
    }
    let levels = params.level.map(|l| l.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
    let filter = LogFilter { levels, text: params.q.filter(|q| !q.is_empty()) };
    let logs = if from < to { fleet.telemetry.logs(robot.id, from, to, filter, limit).await? } else { Vec::new() };
    Ok(Json(LogList { logs }))
}

/// A series a robot wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesInfo {
    pub measurement: String,
    pub field: String,
    pub tags: BTreeMap<String, String>,
    pub kind: Kind,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesList {
    pub series: Vec<SeriesInfo>,
}

/// What a robot wrote in a range: measurements, fields, tags and types
/// (for building charts).
#[utoipa::path(
    get,
    path = "/api/robots/{id}/series",
    operation_id = "robot_series",
    tag = "telemetry",
    params(("id" = i64, Path, description = "The robot's id", minimum = 1), RangeParams),
    responses(
        (status = 200, description = "Series (of the last day by default)", body = SeriesList),
        (status = 404, description = "No such robot of this user", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn series(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    Path(id): Path<i64>,
    Query(range): Query<RangeParams>,
) -> Result<Json<SeriesList>, ApiError> {
    let robot = fleet.visible_robot(&auth, id).await?;
    let (from, to) = range.range(std::time::Duration::from_secs(24 * 3600))?;
    let found = if from < to { fleet.telemetry.series(robot.id, from, to).await? } else { Vec::new() };
    let series = found
        .into_iter()
        .map(|(key, kind)| SeriesInfo {
            tags: robot_tags(&robot, &key),
            measurement: key.measurement,
            field: key.field,
            kind,
        })
        .collect();
    Ok(Json(SeriesList { series }))
}
