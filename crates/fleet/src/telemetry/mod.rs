//! Robot telemetry (seed 002): metrics and logs written with a robot's
//! token in InfluxDB's line protocol (what Telegraf and InfluxDB clients
//! send), kept in an embedded columnar store — chunk rows in the backend's
//! database — compacted, downsampled and expired by configuration, read
//! back for charts and logs, and optionally forwarded to VictoriaMetrics or
//! InfluxDB.
//!
//! - [`line`]: line protocol → [`model::Chunk`]; [`codec`]: chunks ↔ bytes;
//! - [`aggregate`]: buckets and partial aggregates; [`logs`]: log entries;
//! - [`store`]: what storage provides; `maintain`: compaction and expiry;
//!   `forward`: the forwarder; `api`: the HTTP endpoints; `read`: queries.

pub mod aggregate;
pub mod codec;
pub mod line;
pub mod logs;
pub mod model;
pub mod store;

pub(crate) mod api;
pub(crate) mod forward;
pub(crate) mod maintain;
pub(crate) mod read;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use relayhub_core::backend::Stores;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::metrics::Metrics;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use self::store::{ForwardStore, TelemetryStore};

/// Telemetry settings (`[fleet.telemetry]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// How long points are kept as written.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The step of the downsampled copy (per-step count, mean, min, max,
    /// last). Five minutes by default: at 1 minute the copy costs about as
    /// much disk per day as the raw points (BENCHMARKS.md), and is kept 12
    /// times longer.
    #[serde(with = "humantime_serde")]
    pub rollup_step: Duration,
    /// How long the downsampled copy is kept.
    #[serde(with = "humantime_serde")]
    pub rollup_retention: Duration,
    /// How old a write's chunk is before it is merged into its robot's
    /// compacted chunks.
    #[serde(with = "humantime_serde")]
    pub compact_after: Duration,
    /// How often compaction and expiry run.
    #[serde(with = "humantime_serde")]
    pub maintain_interval: Duration,
    /// Largest body after decompression, in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Writes parsed and stored at once; more wait up to a second, then
    /// get 503 with `Retry-After`.
    pub max_writes_in_flight: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            rollup_step: Duration::from_secs(300),
            rollup_retention: Duration::from_secs(365 * 24 * 3600),
            compact_after: Duration::from_secs(10 * 60),
            maintain_interval: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            max_writes_in_flight: 64,
        }
    }
}

/// Forwarding settings (`[fleet.forward]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardConfig {
    /// Where accepted writes also go: InfluxDB 1.x or VictoriaMetrics
    /// `…/write?db=NAME`, or anything that takes line protocol by POST.
    pub url: Option<String>,
    /// Bytes of line protocol per request to the target, about.
    pub batch_bytes: usize,
    /// Bytes kept waiting while the target is down; past it the oldest
    /// batches are dropped (and counted), never the robots' writes.
    pub max_backlog_bytes: u64,
    /// How long one request to the target may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self { url: None, batch_bytes: 1 << 20, max_backlog_bytes: 1 << 30, timeout: Duration::from_secs(10) }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The ingest path's metrics.
#[derive(Clone, Default)]
pub struct TelemetryMetrics {
    pub points: Counter,
    pub bytes: Counter,
    pub refused: Family<ReasonLabel, Counter>,
    pub forward_sent: Counter,
    pub forward_dropped: Counter,
    pub forward_failures: Counter,
    pub forward_backlog_bytes: Gauge,
    pub compactions: Counter,
}

impl TelemetryMetrics {
    fn register(&self, metrics: &Metrics) {
        metrics.register("fleet_telemetry_points", "Points stored from robots' writes", self.points.clone());
        metrics.register("fleet_telemetry_bytes", "Bytes of robots' write bodies, as sent", self.bytes.clone());
        metrics.register("fleet_telemetry_refused", "Robot writes refused, by reason", self.refused.clone());
        metrics.register("fleet_telemetry_forward_sent", "Batches forwarded", self.forward_sent.clone());
        metrics.register(
            "fleet_telemetry_forward_dropped",
            "Batches dropped from a full forwarding backlog or refused by the target",
            self.forward_dropped.clone(),
        );
        metrics.register(
            "fleet_telemetry_forward_failures",
            "Forwarding attempts that failed and will be retried",
            self.forward_failures.clone(),
        );
        metrics.register(
            "fleet_telemetry_forward_backlog_bytes",
            "Bytes waiting to be forwarded",
            self.forward_backlog_bytes.clone(),
        );
        metrics.register("fleet_telemetry_compactions", "Chunk merges done", self.compactions.clone());
    }

    /// Counts a refusal by its code.
    pub fn refuse(&self, err: &ApiError) {
        let reason = match err.code {
            ErrorCode::InvalidLineProtocol | ErrorCode::InvalidField | ErrorCode::BadRequest => "invalid",
            ErrorCode::PayloadTooLarge => "too_large",
            ErrorCode::Overloaded => "overloaded",
            _ => "storage",
        };
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// What the telemetry handlers and tasks share. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    pub config: Arc<TelemetryConfig>,
    pub forwarding: Arc<ForwardConfig>,
    pub chunks: Arc<dyn TelemetryStore>,
    pub backlog: Arc<dyn ForwardStore>,
    pub metrics: TelemetryMetrics,
    in_flight: Arc<Semaphore>,
    /// Woken when a write adds to the forwarding backlog.
    written: Arc<Notify>,
}

impl Telemetry {
    pub fn build(
        config: TelemetryConfig,
        forwarding: ForwardConfig,
        stores: &Stores,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        if let Some(url) = &forwarding.url {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("fleet.forward.url {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("fleet.forward.url {url:?}: not an http(s) URL"));
            }
        }
        if config.rollup_step.is_zero() || config.rollup_step.as_nanos() > i64::MAX as u128 {
            return Err("fleet.telemetry.rollup_step must be positive".into());
        }
        let telemetry = Self {
            in_flight: Arc::new(Semaphore::new(config.max_writes_in_flight.max(1))),
            config: Arc::new(config),
            forwarding: Arc::new(forwarding),
            chunks: stores.get()?,
            backlog: stores.get()?,
            metrics: TelemetryMetrics::default(),
            written: Arc::default(),
        };
        telemetry.metrics.register(metrics);
        Ok(telemetry)
    }

    /// Where raw points end and only rollups remain (Unix ns): `now`
    /// minus the raw retention.
    pub fn horizon(&self, now: relayhub_core::time::Timestamp) -> i64 {
        now.millis().saturating_mul(1_000_000).saturating_sub(nanos(self.config.retention))
    }

    /// Waits up to a second for a slot to store a write in; 503 otherwise.
    async fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let slot = tokio::time::timeout(Duration::from_secs(1), self.in_flight.clone().acquire_owned()).await;
        match slot {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(ErrorCode::Overloaded, "too many writes at once; retry shortly").retry_after(1)),
        }
    }
}

/// A duration as Unix nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
