//! What one robot, or one license, may put in the telemetry store: distinct
//! series per robot (kept in the store, so every node and every restart
//! counts the same), points per minute per robot (a token bucket on each
//! node), and bytes of chunks per license (measured by the maintenance
//! task, plus what this node stored since). A write past any of them is
//! refused whole, counted by limit, and every other robot writes on.
//!
//! Statuses, for what InfluxDB clients do with them (Telegraf's
//! `outputs.influxdb_v2` retries 429 and 5xx and drops a batch on other
//! 4xx): the rate is 429 with `Retry-After` (the same batch goes through
//! later); too many series is 422, as InfluxDB answers a write past
//! `max-series-per-database` with a 4xx — the batch holds a tag that will
//! never fit (a PID, a timestamp), and retrying it would wedge the robot's
//! buffer and its good series behind it; a full store is 409 (a limit of
//! the license; retrying cannot free space before the retention does).

use crate::codes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use relayhub_core::error::{ApiError, ErrorCode};

use super::model::SeriesKey;

/// The limits a write can meet, as the `limit` label of
/// `relayhub_fleet_telemetry_limited_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    /// `fleet.telemetry.max_series_per_robot`.
    Series,
    /// `fleet.telemetry.max_points_per_minute`.
    PointsPerMinute,
    /// `fleet.telemetry.max_bytes_per_license`.
    LicenseBytes,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Series => "max_series_per_robot",
            Limit::PointsPerMinute => "max_points_per_minute",
            Limit::LicenseBytes => "max_bytes_per_license",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

/// A series' identity in the store: 64 bits of FNV-1a over its
/// measurement, tags and field, each length-prefixed (so `a,b=c` and
/// `a,b=` + `c` differ). Stable across builds and nodes, unlike std's
/// hasher; a collision only lets one series in uncounted.
pub fn series_hash(key: &SeriesKey) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |part: &str| {
        for byte in (part.len() as u64).to_le_bytes().iter().chain(part.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&key.measurement);
    for (name, value) in &key.tags {
        eat(name);
        eat(value);
    }
    eat(&key.field);
    hash as i64
}

/// The distinct hashes of a write's series, sorted.
pub fn distinct(series: &[(i64, SeriesKey)]) -> Vec<i64> {
    let mut hashes: Vec<i64> = series.iter().map(|(hash, _)| *hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// A series as line protocol writes it, for error messages: at most 200
/// characters.
pub fn shown(key: &SeriesKey) -> String {
    let mut out = key.measurement.clone();
    for (name, value) in &key.tags {
        out.push_str(&format!(",{name}={value}"));
    }
    out.push(' ');
    out.push_str(&key.field);
    out.chars().take(200).collect()
}

/// The refusal of a write that would take its robot past `max` series.
/// `known` is `None` when the write alone holds more than `max` (then the
/// store was not asked); `shown` are hashes of a few new series, named
/// from the write's `series`.
pub fn too_many_series(known: Option<u64>, new: u64, max: u64, shown: &[i64], series: &[(i64, SeriesKey)]) -> ApiError {
    let examples: Vec<String> = shown
        .iter()
        .filter_map(|hash| series.iter().find(|(h, _)| h == hash))
        .map(|(_, key)| self::shown(key))
        .collect();
    let what = match known {
        Some(known) => format!("this robot has {known} series and the write brings {new} new ones"),
        None => format!("the write alone holds {new} series"),
    };
    ApiError::new(
        codes::TOO_MANY_SERIES,
        format!(
            "{what}, past fleet.telemetry.max_series_per_robot ({max}); nothing was stored. A tag \
             that changes with every point (a PID, a timestamp) makes a series per point: drop it \
             in Telegraf (tagexclude). New series, e.g.: {}",
            examples.join("; ")
        ),
    )
}

/// A token bucket of points: `capacity` points, refilled at `capacity` a
/// minute.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(capacity: u64, at: Instant) -> Self {
        Self { tokens: capacity as f64, at }
    }

    fn refill(&mut self, capacity: u64, now: Instant) {
        let rate = capacity as f64 / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity as f64);
        self.at = now;
    }

    /// Takes `points`, or says how long until they fit. A write larger
    /// than the whole bucket goes when the bucket is full (and empties
    /// it), so one big batch is slowed, never refused forever.
    pub fn take(&mut self, points: u64, capacity: u64, now: Instant) -> Result<(), Duration> {
        self.refill(capacity, now);
        let wanted = points as f64;
        let full = self.tokens >= capacity as f64;
        if self.tokens >= wanted || full {
            self.tokens = (self.tokens - wanted).max(0.0);
            return Ok(());
        }
        let missing = wanted.min(capacity as f64) - self.tokens;
        Err(Duration::from_secs_f64(missing / (capacity as f64 / 60.0)))
    }

    /// Whether the bucket has refilled: then forgetting it changes nothing.
    fn is_full(&self, capacity: u64, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(capacity, now);
        probe.tokens >= capacity as f64
    }
}

/// Points per minute per robot, on this node. Holds a bucket only for
/// robots that wrote within about the last minute: full buckets are
/// dropped once a minute, and whenever the map doubles, so it stays about
/// the size of the robots writing now.
pub struct PointRates {
    per_minute: u64,
    robots: Mutex<Buckets>,
}

struct Buckets {
    by_robot: HashMap<i64, Bucket>,
    /// Size at which full buckets are dropped before the minute is up.
    sweep_at: usize,
    swept: Instant,
}

/// Buckets held before the first sweep for full ones.
const FIRST_SWEEP: usize = 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl PointRates {
    pub fn new(per_minute: u64) -> Self {
        let buckets = Buckets { by_robot: HashMap::new(), sweep_at: FIRST_SWEEP, swept: Instant::now() };
        Self { per_minute: per_minute.max(1), robots: Mutex::new(buckets) }
    }

    /// Takes `points` from `robot`'s bucket; the seconds to wait otherwise.
    pub fn take(&self, robot: i64, points: u64, now: Instant) -> Result<(), ApiError> {
        let capacity = self.per_minute;
        let mut guard = self.robots.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        if buckets.by_robot.len() >= buckets.sweep_at || now.saturating_duration_since(buckets.swept) >= SWEEP_EVERY {
            buckets.by_robot.retain(|_, bucket| !bucket.is_full(capacity, now));
            buckets.sweep_at = (buckets.by_robot.len() * 2).max(FIRST_SWEEP);
            buckets.swept = now;
        }
        let bucket = buckets.by_robot.entry(robot).or_insert_with(|| Bucket::full(capacity, now));
        bucket.take(points, capacity, now).map_err(|wait| {
            let seconds = wait.as_secs().saturating_add(1).min(60);
            ApiError::new(
                ErrorCode::RATE_LIMITED,
                format!(
                    "this robot wrote more than fleet.telemetry.max_points_per_minute ({capacity}) points \
                     in the last minute; nothing was stored, retry in {seconds} s"
                ),
            )
            .retry_after(seconds as u32)
        })
    }
}

/// Bytes of telemetry per license: the store's measure (refreshed by the
/// maintenance task) plus what this node stored since. One entry per
/// license that has telemetry.
#[derive(Default)]
pub struct LicenseUsage {
    bytes: Mutex<HashMap<i64, u64>>,
}

impl LicenseUsage {
    /// Refuses a write of `bytes` that would take `license` past `max`.
    pub fn check(&self, license: i64, bytes: u64, max: u64) -> Result<(), ApiError> {
        let used = self.bytes.lock().unwrap_or_else(|e| e.into_inner()).get(&license).copied().unwrap_or(0);
        if used.saturating_add(bytes) <= max {
            return Ok(());
        }
        Err(ApiError::new(
            codes::TELEMETRY_STORE_FULL,
            format!(
                "this license's telemetry holds {used} bytes; {bytes} more would pass \
                 fleet.telemetry.max_bytes_per_license ({max}); nothing was stored. Space comes back \
                 as points pass their retention"
            ),
        ))
    }

    /// Counts a stored write.
    pub fn add(&self, license: i64, bytes: u64) {
        let mut map = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let used = map.entry(license).or_insert(0);
        *used = used.saturating_add(bytes);
    }

    /// Replaces the counts with the store's measure.
    pub fn set(&self, measured: Vec<(i64, u64)>) {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) = measured.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(measurement: &str, tags: &[(&str, &str)], field: &str) -> SeriesKey {
        SeriesKey {
            measurement: measurement.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            field: field.into(),
        }
    }

    #[test]
    fn a_series_hash_is_stable_and_tells_parts_apart() {
        let cpu = key("cpu", &[("cpu", "cpu0")], "usage_idle");
        assert_eq!(series_hash(&cpu), series_hash(&cpu.clone()));
        // Fixed, so that stored hashes stay valid across builds.
        assert_eq!(series_hash(&key("", &[], "")), series_hash(&key("", &[], "")));
        assert_ne!(series_hash(&key("ab", &[], "c")), series_hash(&key("a", &[], "bc")));
        assert_ne!(series_hash(&key("m", &[("a", "bc")], "f")), series_hash(&key("m", &[("ab", "c")], "f")));
        assert_ne!(series_hash(&cpu), series_hash(&key("cpu", &[("cpu", "cpu1")], "usage_idle")));
        assert_eq!(shown(&cpu), "cpu,cpu=cpu0 usage_idle");
    }

    #[test]
    fn a_bucket_refills_over_a_minute_and_lets_one_big_write_through_when_full() {
        let start = Instant::now();
        let mut bucket = Bucket::full(60, start);
        assert!(bucket.take(60, 60, start).is_ok());
        let wait = bucket.take(10, 60, start).unwrap_err();
        assert!((9..=10).contains(&wait.as_secs()), "{wait:?}");
        assert!(bucket.take(10, 60, start + Duration::from_secs(10)).is_ok(), "10 s refill 10 points");
        assert!(bucket.take(1, 60, start + Duration::from_secs(10)).is_err());
        let later = start + Duration::from_secs(120);
        assert!(bucket.take(500, 60, later).is_ok(), "a full bucket lets one oversized write through");
        assert!(bucket.take(1, 60, later).is_err());
    }

    #[test]
    fn rates_are_per_robot_and_forget_refilled_buckets() {
        let rates = PointRates::new(100);
        let now = Instant::now();
        rates.take(1, 100, now).unwrap();
        let refused = rates.take(1, 1, now).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RATE_LIMITED);
        rates.take(2, 100, now).unwrap();
        for robot in 3..(FIRST_SWEEP as i64 + 10) {
            rates.take(robot, 1, now).unwrap();
        }
        assert!(rates.robots.lock().unwrap().by_robot.len() > FIRST_SWEEP, "buckets still draining are kept");
        let later = now + Duration::from_secs(61);
        rates.take(99_999, 1, later).unwrap();
        assert_eq!(rates.robots.lock().unwrap().by_robot.len(), 1, "refilled buckets are dropped");
    }

    #[test]
    fn a_license_is_refused_past_its_bytes() {
        let usage = LicenseUsage::default();
        usage.check(1, 100, 100).unwrap();
        usage.add(1, 90);
        assert_eq!(usage.check(1, 11, 100).unwrap_err().code, codes::TELEMETRY_STORE_FULL);
        usage.check(2, 100, 100).unwrap();
        usage.set(vec![(1, 10)]);
        usage.check(1, 90, 100).unwrap();
    }
}
