//! Operator endpoints: liveness, readiness, Prometheus metrics, and the
//! landing document at `/`.

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
    if ops.gateway.shutdown_token().is_cancelled() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down"));
    }
    ops.stores.backend.ping().await?;
    for capability in ops.capabilities.iter() {
        capability.ready().await?;
    }
    Ok(Json(Health { status: "ready" }))
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
