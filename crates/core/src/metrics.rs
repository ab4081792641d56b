//! Prometheus metrics with an explicit registry per server (no global
//! recorder), so that several servers in one test process keep their own
//! counts. Capabilities register their metrics at start-up.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

/// Buckets from 0.1 ms to ~3.3 s, for request and delivery latencies.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Runs just before each render, to set gauges read from elsewhere.
type Refresh = Box<dyn Fn() + Send + Sync>;

/// The server's metric registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    refreshers: Arc<RwLock<Vec<Refresh>>>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("relayhub");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register("http_requests", "HTTP requests answered, by route and status", http_requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer HTTP requests, by route",
            Unit::Seconds,
            http_seconds.clone(),
        );
        Self { registry: Arc::new(RwLock::new(registry)), refreshers: Arc::default(), http_requests, http_seconds }
    }

    /// Adds a metric (names get the `relayhub_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.write().unwrap_or_else(|e| e.into_inner()).register(name, help, metric);
    }

    /// Adds a metric with a unit suffix.
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.registry.write().unwrap_or_else(|e| e.into_inner()).register_with_unit(name, help, unit, metric);
    }

    /// Runs `refresh` before every render (gauges computed from state).
    pub fn on_render(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.refreshers.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(refresh));
    }

    /// The text exposition format served at `/metrics`.
    pub fn render(&self) -> String {
        for refresh in self.refreshers.read().unwrap_or_else(|e| e.into_inner()).iter() {
            refresh();
        }
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Middleware counting requests and timing them by matched route (never by
/// raw path, which would make one series per device id; a path no route
/// matches is `unmatched`) and by standard method (others are `other`).
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = HttpLabels { method, route: route.clone(), status: response.status().as_u16() };
    metrics.http_requests.get_or_create(&labels).inc();
    metrics.http_seconds.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    response
}

/// A request method as a label: the standard ones by name, anything else
/// (a client may send any token as a method, of any length) as `other`,
/// so clients cannot add series.
fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.into_iter().find(|m| *m == method.as_str()).unwrap_or("other")
}

/// How well a backend's group commit works: writes per transaction and
/// time to run and commit a batch.
#[derive(Clone)]
pub struct CommitMetrics {
    size: Histogram,
    seconds: Histogram,
}

impl CommitMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let seconds = latency_histogram();
        metrics.register("store_commit_batch_size", "Writes committed together in one transaction", size.clone());
        metrics.register_with_unit("store_commit", "Time to run and commit one batch", Unit::Seconds, seconds.clone());
        Self { size, seconds }
    }

    /// Records a batch of `size` writes that started at `started`.
    pub fn observe(&self, size: usize, started: Instant) {
        self.size.observe(size as f64);
        self.seconds.observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_become_labels() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
        let random = axum::http::Method::from_bytes(b"FFUHKKUOCNDZ").unwrap();
        assert_eq!(method_label(&random), "other");
        let lower = axum::http::Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&lower), "other", "methods are case-sensitive");
    }
}
