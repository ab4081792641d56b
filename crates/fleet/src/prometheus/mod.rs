//! The Prometheus HTTP API over the embedded telemetry, under
//! `/prometheus`, so that a Grafana Prometheus data source, `promtool` or
//! any Prometheus client reads the robots' metrics from relayhub itself:
//! `query`, `query_range`, `series`, `labels` and `label/{name}/values`,
//! with Prometheus's JSON shapes, error types and status codes.
//!
//! Names are VictoriaMetrics' for line protocol: measurement `cpu`, field
//! `usage_idle` → `cpu_usage_idle`, tags as labels with `robot`, `hostname`
//! and `arch` from the robot's record. The caller sees what the fleet lets
//! them see: a user's robots, an admin's whole license, nothing of another
//! license — in every answer, `series` and `labels` included.
//!
//! - [`eval`]: PromQL (parsed by `promql-parser`) evaluated as Prometheus
//!   2.x does; [`read`]: the series a query needs, read and bounded;
//!   [`wire`]: parameters in and JSON out.

pub mod eval;
mod read;
mod wire;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::Uri;
use axum::http::request::Parts;
use axum::response::Response;
use relayhub_core::admission::Connection;
use relayhub_core::secret::Secret;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Fleet;
use crate::auth::{UserAuth, presented};
use crate::codes::READ_TOKEN;
use wire::Params;

/// Who reads: a user by a read token (`rhq_…`) or an access token.
pub struct Reader(pub UserAuth);

impl FromRequestParts<Fleet> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, fleet: &Fleet) -> Result<Self, Response> {
        let refused = |err: relayhub_core::error::ApiError| axum::response::IntoResponse::into_response(err);
        let token = presented(&parts.headers, &["bearer"]).map_err(refused)?;
        let auth = if token.starts_with(READ_TOKEN.prefix()) {
            let invalid = || {
                relayhub_core::error::ApiError::new(
                    relayhub_core::error::ErrorCode::INVALID_TOKEN,
                    "the read token is unknown or revoked",
                )
            };
            let user =
                fleet.users.user_by_read_token(&Secret::new(token).hash()).await.map_err(|e| refused(e.into()))?;
            let user = user.ok_or_else(|| refused(invalid()))?;
            let (user, license) =
                fleet.accounts.active(user).await.map_err(refused)?.ok_or_else(|| refused(invalid()))?;
            UserAuth { user, license }
        } else {
            let signed_in = fleet.accounts.authenticate(&token).await.map_err(refused)?;
            UserAuth { user: signed_in.user, license: signed_in.license }
        };
        Connection::of(parts).authenticated();
        Ok(Reader(auth))
    }
}

/// Prometheus's answer: `{"status": "success", "data": …}`, or
/// `{"status": "error", "errorType": …, "error": …}` with its status code
/// (400 `bad_data`, 422 `execution`, 503 `timeout`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PromAnswer {
    /// `success` or `error`.
    pub status: String,
    /// The result, on success, in the shape Prometheus documents for the
    /// call: `{resultType, result}` for queries, a list for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// `bad_data`, `execution` or `timeout`, on error.
    #[serde(rename = "errorType", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

macro_rules! prom_route {
    ($get:ident, $post:ident, $path:literal, $id:literal, $summary:literal, $run:path, $($param:tt)*) => {
        #[doc = $summary]
        #[utoipa::path(
            get,
            path = $path,
            operation_id = $id,
            tag = "prometheus",
            params($($param)*),
            responses(
                (status = 200, description = "`{\"status\": \"success\", \"data\": …}`", body = PromAnswer),
                (status = 400, description = "A parameter or the PromQL is not valid, or asks what this engine does not evaluate (`bad_data`)", body = PromAnswer),
                (status = 401, description = "No token, or not a valid read or access token", body = relayhub_core::error::ErrorBody),
                (status = 403, description = "The license is suspended or expired", body = relayhub_core::error::ErrorBody),
                (status = 422, description = "The query would read more series or samples than one query may, or cannot be evaluated (`execution`)", body = PromAnswer),
                (status = 503, description = "The query ran past its time (`timeout`)", body = PromAnswer),
                (status = 414, description = "The URL is longer than the server takes: send the parameters as a form (POST)"),
            ),
            security(("user" = []))
        )]
        pub async fn $get(State(fleet): State<Fleet>, Reader(auth): Reader, uri: Uri) -> Response {
            let answer = async { $run(&fleet, &auth, Params::parse(uri.query().unwrap_or(""), &[])?).await };
            wire::respond(answer.await)
        }

        #[doc = $summary]
        #[doc = ""]
        #[doc = "The same, with the parameters as a form (as Grafana sends them)."]
        #[utoipa::path(
            post,
            path = $path,
            operation_id = concat!($id, "_post"),
            tag = "prometheus",
            params($($param)*),
            request_body(
                content = String,
                content_type = "application/x-www-form-urlencoded",
                description = "The same parameters as a form; a parameter in both wins from the form"
            ),
            responses(
                (status = 200, description = "`{\"status\": \"success\", \"data\": …}`", body = PromAnswer),
                (status = 400, description = "A parameter or the PromQL is not valid, or asks what this engine does not evaluate (`bad_data`)", body = PromAnswer),
                (status = 401, description = "No token, or not a valid read or access token", body = relayhub_core::error::ErrorBody),
                (status = 403, description = "The license is suspended or expired", body = relayhub_core::error::ErrorBody),
                (status = 422, description = "The query would read more series or samples than one query may, or cannot be evaluated (`execution`)", body = PromAnswer),
                (status = 503, description = "The query ran past its time (`timeout`)", body = PromAnswer),
            ),
            security(("user" = []))
        )]
        pub async fn $post(State(fleet): State<Fleet>, Reader(auth): Reader, uri: Uri, body: Bytes) -> Response {
            let answer = async { $run(&fleet, &auth, Params::parse(uri.query().unwrap_or(""), &body)?).await };
            wire::respond(answer.await)
        }
    };
}

prom_route!(query, query_post, "/prometheus/api/v1/query", "prometheus_query",
    "An instant query: the expression's value at `time` (now by default).",
    read::instant,
    ("query" = Option<String>, Query, description = "PromQL (required, here or in the form), at most 10,000 bytes"),
    ("time" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
    ("timeout" = Option<String>, Query, description = "At most 30 s"),
);
prom_route!(query_range, query_range_post, "/prometheus/api/v1/query_range", "prometheus_query_range",
    "A range query: the expression at every `step` from `start` to `end`.",
    read::range,
    ("query" = Option<String>, Query, description = "PromQL (required, here or in the form), at most 10,000 bytes"),
    ("start" = Option<String>, Query, description = "RFC 3339 or Unix seconds (required)"),
    ("end" = Option<String>, Query, description = "RFC 3339 or Unix seconds (required)"),
    ("step" = Option<String>, Query, description = "A duration (`15s`, `1m`) or seconds (required); at most 11,000 steps"),
    ("timeout" = Option<String>, Query, description = "At most 30 s"),
);
prom_route!(series, series_post, "/prometheus/api/v1/series", "prometheus_series",
    "The series (label sets) that match any `match[]`, among the caller's robots.",
    read::series,
    ("match[]" = Option<Vec<String>>, Query, description = "Series selectors; at least one (here or in the form)", style = Form, explode),
    ("start" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
    ("end" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
);
prom_route!(labels, labels_post, "/prometheus/api/v1/labels", "prometheus_labels",
    "The label names of the caller's series (of those matching `match[]`, if given).",
    read::label_names,
    ("match[]" = Option<Vec<String>>, Query, description = "Series selectors", style = Form, explode),
    ("start" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
    ("end" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
);

/// The values of one label among the caller's series.
#[utoipa::path(
    get,
    path = "/prometheus/api/v1/label/{name}/values",
    operation_id = "prometheus_label_values",
    tag = "prometheus",
    params(
        ("name" = String, Path, description = "A label name (`__name__` for metric names)", max_length = 256),
        ("match[]" = Option<Vec<String>>, Query, description = "Series selectors", style = Form, explode),
        ("start" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
        ("end" = Option<String>, Query, description = "RFC 3339 or Unix seconds"),
    ),
    responses(
        (status = 200, description = "`{\"status\": \"success\", \"data\": [values]}`", body = PromAnswer),
        (status = 400, description = "A parameter is not valid (`bad_data`)", body = PromAnswer),
        (status = 401, description = "No token, or not a valid read or access token", body = relayhub_core::error::ErrorBody),
        (status = 403, description = "The license is suspended or expired", body = relayhub_core::error::ErrorBody),
        (status = 422, description = "Too many series to list (`execution`)", body = PromAnswer),
    ),
    security(("user" = []))
)]
pub async fn label_values(
    State(fleet): State<Fleet>,
    Reader(auth): Reader,
    axum::extract::Path(name): axum::extract::Path<String>,
    uri: Uri,
) -> Response {
    let answer = async {
        let params = Params::parse(uri.query().unwrap_or(""), &[])?;
        read::label_values(&fleet, &auth, &name, params).await
    };
    wire::respond(answer.await)
}
