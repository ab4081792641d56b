//! What receivers saw, and the results a workload reports.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::payload::{Stamp, now_ns};

/// One receiver's record: order, duplicates, latencies.
pub struct Log {
    seen: Vec<bool>,
    next: u64,
    pub received: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub latency: Histogram<u64>,
    /// When the last expected message arrived.
    pub done_ns: u64,
}

impl Log {
    pub fn new(expected: u64) -> Self {
        Self {
            seen: vec![false; expected as usize],
            next: 0,
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            latency: Histogram::new(3).expect("a histogram"),
            done_ns: 0,
        }
    }

    /// Records a message; `true` once every expected message has arrived.
    pub fn record(&mut self, stamp: &Stamp) -> bool {
        let now = now_ns();
        let i = stamp.i as usize;
        if i >= self.seen.len() || self.seen[i] {
            self.duplicates += 1;
        } else {
            self.seen[i] = true;
            self.received += 1;
            let _ = self.latency.record(now.saturating_sub(stamp.t).max(1));
        }
        if stamp.i < self.next {
            self.out_of_order += 1;
        }
        self.next = self.next.max(stamp.i + 1);
        if self.complete() {
            self.done_ns = now;
        }
        self.complete()
    }

    pub fn complete(&self) -> bool {
        self.received as usize == self.seen.len()
    }

    pub fn lost(&self) -> u64 {
        self.seen.len() as u64 - self.received
    }
}

/// One system's result in a workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub system: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_order: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_connection: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connects_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gzip_mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// Proxies: MiB/s of large bodies carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mib_per_s: Option<f64>,
    /// The server's resident memory at the end, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
    /// Face identification: the share of queries answered with the face
    /// an exact search finds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_1: Option<f64>,
    /// Faces enrolled per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrol_per_s: Option<f64>,
    /// Bytes the face index reports holding, per face.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_bytes_per_face: Option<f64>,
    /// The server's resident memory grown by enrolling, per face.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes_per_face: Option<f64>,
    /// Telemetry on disk, bytes per point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_point: Option<crate::ingest::ChunkBytes>,
    /// The server's CPU time per message (record, request), in µs: user
    /// and system, every thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us: Option<f64>,
    /// The benchmark's own CPU time (its clients) per message, in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_us: Option<f64>,
    pub fsync: String,
    /// With `--runs` above 1: every run's headline number, in the order
    /// run; the other numbers are those of the median run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<f64>>,
    /// Why a system has no numbers (not installed, failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Outcome {
    /// The number named `key` (a serialized field), if this run has it.
    pub fn number(&self, key: &str) -> Option<f64> {
        serde_json::to_value(self).ok()?.get(key)?.as_f64()
    }

    /// Of several runs of one system, the one whose `headline` number is
    /// the median (the lower middle of an even count), with every run's
    /// number in `runs`; a skipped run only if every run was skipped.
    pub fn median(runs: Vec<Outcome>, headline: &str) -> Option<Outcome> {
        let (mut measured, mut skipped) = (Vec::new(), None);
        for run in runs {
            match run.number(headline) {
                Some(number) => measured.push((number, run)),
                None => {
                    skipped.get_or_insert(run);
                }
            }
        }
        if measured.is_empty() {
            return skipped;
        }
        let numbers: Vec<f64> = measured.iter().map(|(number, _)| *number).collect();
        measured.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (_, mut median) = measured.swap_remove((measured.len() - 1) / 2);
        median.runs = Some(numbers);
        Some(median)
    }

    /// Counts, rate and latency percentiles from receivers' logs.
    pub fn from_logs(system: &str, fsync: &str, logs: &[Log], started_ns: u64) -> Self {
        let mut latency = Histogram::<u64>::new(3).expect("a histogram");
        for log in logs {
            let _ = latency.add(&log.latency);
        }
        let received: u64 = logs.iter().map(|l| l.received).sum();
        let end = logs.iter().map(|l| l.done_ns).max().unwrap_or(started_ns);
        let secs = (end.saturating_sub(started_ns)) as f64 / 1e9;
        let ms = |q: f64| (latency.value_at_quantile(q) as f64 / 1e6 * 1000.0).round() / 1000.0;
        Self {
            system: system.to_owned(),
            msgs_per_s: Some((received as f64 / secs.max(1e-9)).round()),
            p50_ms: Some(ms(0.50)),
            p99_ms: Some(ms(0.99)),
            p999_ms: Some(ms(0.999)),
            lost: Some(logs.iter().map(Log::lost).sum()),
            duplicates: Some(logs.iter().map(|l| l.duplicates).sum()),
            out_of_order: Some(logs.iter().map(|l| l.out_of_order).sum()),
            fsync: fsync.to_owned(),
            ..Self::default()
        }
    }

    pub fn skipped(system: &str, fsync: &str, why: String) -> Self {
        Self { system: system.to_owned(), fsync: fsync.to_owned(), skipped: Some(why), ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: Option<f64>) -> Outcome {
        Outcome { system: "relayhub".into(), msgs_per_s: rate, p99_ms: rate.map(|r| 1e6 / r), ..Outcome::default() }
    }

    #[test]
    fn the_median_run_is_kept_whole_with_every_runs_number() {
        let median = Outcome::median(vec![run(Some(30.0)), run(Some(10.0)), run(Some(20.0))], "msgs_per_s").unwrap();
        assert_eq!(median.msgs_per_s, Some(20.0));
        assert_eq!(median.p99_ms, Some(50_000.0), "the other numbers are the median run's own");
        assert_eq!(median.runs, Some(vec![30.0, 10.0, 20.0]));

        // An even count keeps the lower middle; a failed run does not count.
        let failed = Outcome::skipped("relayhub", "", "crashed".into());
        let median = Outcome::median(vec![run(Some(40.0)), failed.clone(), run(Some(10.0))], "msgs_per_s").unwrap();
        assert_eq!(median.msgs_per_s, Some(10.0));
        let all_failed = Outcome::median(vec![failed.clone(), failed], "msgs_per_s").unwrap();
        assert_eq!(all_failed.skipped.as_deref(), Some("crashed"));
    }
}
