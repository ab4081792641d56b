//! Operator endpoints: liveness, readiness, Prometheus metrics, the
//! landing document at `/`, and InfluxDB's `/ping` and `/health` (what
//! InfluxDB client libraries and Grafana check before they write).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use relayhub_core::backend::Stores;
use relayhub_core::capability::Capability;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::gateway::Gateway;
use relayhub_core::http::Json;
use relayhub_core::metrics::Metrics;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// What the operator endpoints look at.
#[derive(Clone)]
pub struct Ops {
    pub stores: Stores,
    pub gateway: Gateway,
    pub metrics: Metrics,
    pub capabilities: Arc<Vec<Arc<dyn Capability>>>,
}

/// Health and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations", responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the storage answers, every capability is ready, and the node
/// is not shutting down. A load balancer should send traffic only while
/// this is 200.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = Health),
        (status = 503, description = "Storage unreachable or shutting down", body = ErrorBody),
    )
)]
pub async fn readyz(State(ops): State<Ops>) -> Result<Json<Health>, ApiError> {
    ops.ready().await?;
    Ok(Json(Health { status: "ready" }))
}

impl Ops {
    /// Not shutting down, the storage answers, every capability is ready.
    async fn ready(&self) -> Result<(), ApiError> {
        if self.gateway.shutdown_token().is_cancelled() {
            return Err(ApiError::new(ErrorCode::SHUTTING_DOWN, "the server is shutting down"));
        }
        self.stores.backend.ping().await?;
        for capability in self.capabilities.iter() {
            capability.ready().await?;
        }
        Ok(())
    }
}

/// The InfluxDB version whose write API (`/api/v2/write`) relayhub speaks,
/// as InfluxDB names itself to client libraries.
const INFLUXDB_VERSION: &str = "2.7.0";

/// The headers InfluxDB's `/ping` and `/health` carry.
fn influx_headers() -> [(&'static str, String); 3] {
    [
        ("x-influxdb-build", "OSS".to_owned()),
        ("x-influxdb-version", INFLUXDB_VERSION.to_owned()),
        ("x-relayhub-version", env!("CARGO_PKG_VERSION").to_owned()),
    ]
}

/// InfluxDB's ping: what client libraries' `ping()` and Telegraf's
/// reachability checks ask. 204 while the process answers.
#[utoipa::path(get, path = "/ping", operation_id = "influx_ping", tag = "telemetry",
    responses((status = 204, description = "The server answers (InfluxDB's ping)",
        headers(("X-Influxdb-Version" = String, description = "The InfluxDB version whose API this speaks")))))]
pub async fn influx_ping() -> impl IntoResponse {
    (StatusCode::NO_CONTENT, influx_headers())
}

/// InfluxDB's health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InfluxHealth {
    /// `influxdb`, as client libraries expect.
    pub name: &'static str,
    pub message: String,
    /// `pass` or `fail`.
    pub status: &'static str,
    /// Always empty: readiness is one check here.
    #[schema(value_type = Vec<Object>)]
    pub checks: Vec<serde_json::Value>,
    pub version: &'static str,
    pub commit: &'static str,
}

/// InfluxDB's health check (`/health`), for client libraries' `health()`
/// and Grafana: `pass` while the node is ready for writes (as `/readyz`),
/// else 503 `fail` with the reason.
#[utoipa::path(get, path = "/health", operation_id = "influx_health", tag = "telemetry",
    responses((status = 200, description = "Ready for writes", body = InfluxHealth),
        (status = 503, description = "Not ready: storage unreachable, loading or shutting down", body = InfluxHealth)))]
pub async fn influx_health(State(ops): State<Ops>) -> impl IntoResponse {
    let (status, state, message) = match ops.ready().await {
        Ok(()) => (StatusCode::OK, "pass", "ready for queries and writes".to_owned()),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, "fail", err.message),
    };
    let body = InfluxHealth {
        name: "influxdb",
        message,
        status: state,
        checks: Vec::new(),
        version: INFLUXDB_VERSION,
        commit: "relayhub",
    };
    (status, influx_headers(), Json(body))
}

/// Prometheus metrics (OpenMetrics text): connections, queue depth,
/// messages in and out, delivery latency, HTTP requests, commit batches.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "get_metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    for capability in ops.capabilities.iter() {
        capability.refresh_metrics().await;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        ops.metrics.render(),
    )
}

/// What this server is and where its documentation lives.
#[derive(Debug, Serialize, ToSchema)]
pub struct About {
    pub name: &'static str,
    pub version: &'static str,
    pub docs: &'static str,
    pub openapi: &'static str,
}

/// Names the server and points at its documentation.
#[utoipa::path(get, path = "/", operation_id = "about", tag = "operations", responses((status = 200, description = "What this server is", body = About)))]
pub async fn about() -> Json<About> {
    Json(About { name: "relayhub", version: env!("CARGO_PKG_VERSION"), docs: "/docs", openapi: "/openapi.json" })
}
