//! The Prometheus API's wire: parameters (the query string and a form
//! body, times as RFC 3339 or Unix seconds, durations as `1m30s` or
//! seconds) and answers (values as strings, times as seconds, errors as
//! `errorType` with Prometheus's status codes).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::eval::{Answer, EvalError, Labels};

/// The most a form body or query string may hold.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;

/// Why a call has no answer, as Prometheus says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromError {
    /// 400: a parameter, or PromQL this engine does not evaluate.
    BadData(String),
    /// 422: valid, but not answerable as asked (too large, many-to-many).
    Execution(String),
    /// 503: past its time.
    Timeout(String),
    /// 500: the store failed (said in the log).
    Internal(String),
}

impl From<EvalError> for PromError {
    fn from(err: EvalError) -> Self {
        match err {
            EvalError::Unsupported(what) => PromError::BadData(format!("not supported by relayhub: {what}")),
            EvalError::Execution(why) => PromError::Execution(why),
        }
    }
}

impl From<relayhub_core::error::ApiError> for PromError {
    fn from(err: relayhub_core::error::ApiError) -> Self {
        match err.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => PromError::BadData(err.message),
            _ => PromError::Internal(err.message),
        }
    }
}

impl From<relayhub_core::store::StoreError> for PromError {
    fn from(err: relayhub_core::store::StoreError) -> Self {
        relayhub_core::error::ApiError::from(err).into()
    }
}

/// What a successful call answers: JSON built as a value (small answers),
/// or a range query's matrix, written straight out (it can hold millions
/// of points, and a value tree of them would cost more than the query).
pub enum Data {
    Json(Value),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        Data::Json(value)
    }
}

/// `[seconds, "value"]`.
struct Point(i64, f64);

impl serde::Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        if self.0 % 1000 == 0 {
            tuple.serialize_element(&(self.0 / 1000))?;
        } else {
            tuple.serialize_element(&(self.0 as f64 / 1000.0))?;
        }
        tuple.serialize_element(&format_value(self.1))?;
        tuple.end()
    }
}

#[derive(serde::Serialize)]
struct MatrixSeries<'a> {
    metric: &'a Labels,
    values: Vec<Point>,
}

#[derive(serde::Serialize)]
struct MatrixData<'a> {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    result: Vec<MatrixSeries<'a>>,
}

#[derive(serde::Serialize)]
struct Success<T> {
    status: &'static str,
    data: T,
}

/// The answer, or the error, as Prometheus writes them.
pub fn respond(result: Result<impl Into<Data>, PromError>) -> Response {
    let written = match result.map(Into::into) {
        Ok(Data::Json(data)) => serde_json::to_vec(&Success { status: "success", data }),
        Ok(Data::Matrix(series)) => {
            let result = series
                .iter()
                .map(|(metric, points)| MatrixSeries {
                    metric,
                    values: points.iter().map(|&(t, v)| Point(t, v)).collect(),
                })
                .collect();
            serde_json::to_vec(&Success { status: "success", data: MatrixData { result_type: "matrix", result } })
        }
        Err(err) => return refusal(err),
    };
    match written {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(err) => refusal(PromError::Internal(format!("writing an answer: {err}"))),
    }
}

/// A refusal as Prometheus writes one, with its status code.
fn refusal(err: PromError) -> Response {
    let (status, kind, message) = match err {
        PromError::BadData(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
        PromError::Execution(m) => (StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
        PromError::Timeout(m) => (StatusCode::SERVICE_UNAVAILABLE, "timeout", m),
        PromError::Internal(m) => {
            tracing::error!(error = %m, "a Prometheus API call failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log".to_owned())
        }
    };
    (status, axum::Json(json!({"status": "error", "errorType": kind, "error": message}))).into_response()
}

/// A call's parameters, the query string's and the form body's together.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str, body: &[u8]) -> Result<Self, PromError> {
        if query.len() + body.len() > MAX_PARAMS_BYTES {
            return Err(PromError::BadData(format!("the parameters are larger than {MAX_PARAMS_BYTES} bytes")));
        }
        let pairs = form_urlencoded::parse(query.as_bytes())
            .chain(form_urlencoded::parse(body))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Self(pairs))
    }

    /// The last value of `name` (Prometheus takes the form's over the URL's).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn required(&self, name: &str) -> Result<&str, PromError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| PromError::BadData(format!("missing {name}")))
    }

    /// A time parameter (ms), or `default`.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, PromError> {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(raw) => parse_time(raw).ok_or_else(|| {
                PromError::BadData(format!("invalid parameter \"{name}\": cannot parse \"{raw}\" to a valid timestamp"))
            }),
        }
    }
}

/// The earliest and latest times a parameter may name (ms): Prometheus's
/// own bounds, so that no arithmetic on them overflows.
const MIN_TIME_MS: i64 = -9_223_372_036_854_775 + 1;
const MAX_TIME_MS: i64 = 9_223_372_036_854_775 - 1;

/// RFC 3339 or Unix seconds (with a fraction), as ms.
pub fn parse_time(raw: &str) -> Option<i64> {
    if let Ok(seconds) = raw.parse::<f64>() {
        let ms = (seconds * 1000.0).round();
        return (ms.is_finite() && (MIN_TIME_MS as f64..=MAX_TIME_MS as f64).contains(&ms)).then_some(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(raw).ok().map(|t| t.timestamp_millis())
}

/// A duration as Prometheus writes them (`1h30m`, `15s`, `500ms`; units
/// y w d h m s ms) or seconds, as ms; `None` if it is neither or not positive.
pub fn parse_duration(raw: &str) -> Option<i64> {
    if let Ok(seconds) = raw.parse::<f64>() {
        let ms = (seconds * 1000.0).round();
        return (ms.is_finite() && ms >= 1.0 && ms <= MAX_TIME_MS as f64).then_some(ms as i64);
    }
    let (mut total, mut rest) = (0i64, raw);
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = [("ms", 2), ("y", 1), ("w", 1), ("d", 1), ("h", 1), ("m", 1), ("s", 1)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))?;
        let per: i64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => 31_536_000_000,
        };
        total = total.checked_add(n.checked_mul(per)?)?;
        rest = &rest[len..];
    }
    (total > 0).then_some(total)
}

/// A float as Prometheus writes one: shortest form, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// A time as Prometheus writes one: Unix seconds, a JSON number with no
/// fraction when it has none (`1700000000`, `1700000000.5`).
fn seconds(ms: i64) -> Value {
    if ms % 1000 == 0 { json!(ms / 1000) } else { json!(ms as f64 / 1000.0) }
}

fn point(t: i64, v: f64) -> Value {
    json!([seconds(t), format_value(v)])
}

/// An answer's `data`: a range query's `matrix`, an instant query's
/// `vector`, `scalar` or `string`.
pub fn answer_data(answer: Answer, instant: bool) -> Data {
    let metric = |labels: Labels| -> Value { json!(labels) };
    Data::Json(match (answer, instant) {
        (Answer::Series(series), false) => return Data::Matrix(series),
        (Answer::Series(series), true) => json!({
            "resultType": "vector",
            "result": series.into_iter().filter_map(|(labels, points)| points.last().map(|&(t, v)| json!({
                "metric": metric(labels),
                "value": point(t, v),
            }))).collect::<Vec<_>>(),
        }),
        (Answer::Scalar(points), false) => return Data::Matrix(vec![(Labels::new(), points)]),
        (Answer::Scalar(points), true) => {
            let (t, v) = points.first().copied().unwrap_or((0, f64::NAN));
            json!({"resultType": "scalar", "result": point(t, v)})
        }
        (Answer::String(s), _) => json!({"resultType": "string", "result": [0, s]}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_are_read_as_prometheus_reads_them() {
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("1e300"), None);
        assert_eq!(parse_duration("1m30s"), Some(90_000));
        assert_eq!(parse_duration("15"), Some(15_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
