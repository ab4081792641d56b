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
//!   `forward`: the forwarder; `api`: the HTTP endpoints; `read`: queries;
//! - [`quota`]: what one robot or license may store (series, points per
//!   minute, bytes).

pub mod aggregate;
pub mod codec;
pub mod line;
pub mod logs;
pub mod model;
pub mod quota;
pub mod store;

pub(crate) mod api;
pub(crate) mod forward;
pub(crate) mod maintain;
pub(crate) mod read;
pub(crate) mod write_api;

use crate::codes;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use relayhub_core::backend::Stores;
use relayhub_core::capability::BuildError;
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
    /// Distinct series (measurement, tag set and field, as VictoriaMetrics
    /// counts them) one robot may have written in the raw retention; a
    /// write bringing more gets 422 `too_many_series`, nothing stored.
    /// Telegraf's usual inputs write a few hundred; a tag that changes per
    /// point (a PID, a timestamp) writes one per point.
    pub max_series_per_robot: u64,
    /// Points one robot may write a minute, per node (a bucket of this
    /// many, refilled over a minute; a write larger than it passes when
    /// the bucket is full); past it 429 with `Retry-After`, nothing stored.
    pub max_points_per_minute: u64,
    /// Bytes of stored telemetry (compressed chunks, rollups included) per
    /// license; past it 409 `telemetry_store_full`, nothing stored, until
    /// retention frees space. Measured every five minutes at most, plus
    /// what each node stored since.
    pub max_bytes_per_license: u64,
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
            max_series_per_robot: 2_000,
            max_points_per_minute: 60_000,
            max_bytes_per_license: 1 << 30,
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
    /// Writes refused by a limit, by `limit` (three values).
    pub limited: Family<quota::LimitLabel, Counter>,
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
        for limit in [quota::Limit::Series, quota::Limit::PointsPerMinute, quota::Limit::LicenseBytes] {
            let _ = self.limited.get_or_create(&quota::LimitLabel { limit: limit.label() });
        }
        metrics.register(
            "fleet_telemetry_limited",
            "Robot writes refused by a limit (fleet.telemetry.max_*), by limit",
            self.limited.clone(),
        );
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
            codes::INVALID_LINE_PROTOCOL | ErrorCode::INVALID_FIELD | ErrorCode::BAD_REQUEST => "invalid",
            ErrorCode::PAYLOAD_TOO_LARGE => "too_large",
            ErrorCode::OVERLOADED => "overloaded",
            codes::TOO_MANY_SERIES | ErrorCode::RATE_LIMITED | codes::TELEMETRY_STORE_FULL => "limit",
            _ => "storage",
        };
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a refusal by `limit` (and as a refusal).
    pub fn limited(&self, limit: quota::Limit, err: &ApiError) {
        self.limited.get_or_create(&quota::LimitLabel { limit: limit.label() }).inc();
        self.refuse(err);
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
    /// Points per minute per robot, on this node.
    pub(crate) rates: Arc<quota::PointRates>,
    /// Bytes stored per license.
    pub(crate) usage: Arc<quota::LicenseUsage>,
    /// When `usage` was last measured in the store.
    usage_measured: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
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
    ) -> Result<Self, BuildError> {
        if let Some(url) = &forwarding.url {
            let shown = relayhub_core::secret::redact_url(url);
            let refused = |why: String| BuildError::config("fleet.forward", format!("url {shown}: {why}"));
            let parsed = reqwest::Url::parse(url).map_err(|e| refused(e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(refused("not an http(s) URL".into()));
            }
        }
        if config.rollup_step.is_zero() || config.rollup_step.as_nanos() > i64::MAX as u128 {
            return Err(BuildError::config("fleet.telemetry", "rollup_step must be positive"));
        }
        let telemetry = Self {
            in_flight: Arc::new(Semaphore::new(config.max_writes_in_flight.max(1))),
            rates: Arc::new(quota::PointRates::new(config.max_points_per_minute)),
            usage: Arc::default(),
            usage_measured: Arc::default(),
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

    /// Measures the bytes each license stores, unless done in the last
    /// [`USAGE_EVERY`] (it reads every chunk row's length).
    pub(crate) async fn measure_usage(&self) -> Result<(), ApiError> {
        let now = std::time::Instant::now();
        {
            let last = self.usage_measured.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| now.duration_since(at) < USAGE_EVERY) {
                return Ok(());
            }
        }
        self.usage.set(self.chunks.bytes_by_license().await?);
        *self.usage_measured.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        Ok(())
    }

    /// Waits up to a second for a slot to store a write in; 503 otherwise.
    async fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let slot = tokio::time::timeout(Duration::from_secs(1), self.in_flight.clone().acquire_owned()).await;
        match slot {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(ErrorCode::OVERLOADED, "too many writes at once; retry shortly").retry_after(1)),
        }
    }
}

/// How often the bytes per license are measured in the store, at most.
const USAGE_EVERY: Duration = Duration::from_secs(300);

/// A duration as Unix nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
