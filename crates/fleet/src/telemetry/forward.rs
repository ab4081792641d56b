//! The forwarder: sends the backlog of accepted lines to
//! `fleet.forward.url` (InfluxDB 1.x or VictoriaMetrics `/write`), gzip'd,
//! in batches, oldest first, with back-off while the target is down. It
//! never holds up a robot's write: the backlog is on disk, bounded by
//! `fleet.forward.max_backlog_bytes` (the oldest batches go first, and are
//! counted). A batch the target refuses as malformed (400, 413, 422) is
//! dropped and logged rather than retried forever; any other failure waits.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use relayhub_core::time::Timestamp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Telemetry;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the backlog is trimmed and measured.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// What the target said.
enum Outcome {
    Sent,
    /// Refused for good (malformed, too large): retrying cannot help.
    Refused(String),
    /// Down, overloaded or unreachable: retry later.
    Failed(String),
}

impl Telemetry {
    /// Forwards until `stop`.
    pub(crate) async fn forward(self, url: String, stop: CancellationToken) {
        let client = match relayhub_core::http_client::builder().timeout(self.forwarding.timeout).build() {
            Ok(client) => client,
            Err(err) => return tracing::error!(%err, "forwarding cannot start"),
        };
        // The URL may carry credentials (`user:pass@`, `?u=…&p=…`).
        let shown = relayhub_core::secret::redact_url(&url);
        let mut backoff = Duration::ZERO;
        let mut housekept = Instant::now() - HOUSEKEEPING;
        loop {
            if housekept.elapsed() >= HOUSEKEEPING {
                self.housekeep().await;
                housekept = Instant::now();
            }
            let pause = match self.forward_once(&client, &url).await {
                Some(Outcome::Sent) => {
                    backoff = Duration::ZERO;
                    continue;
                }
                Some(Outcome::Refused(why)) => {
                    tracing::error!(url = %shown, %why, "the forwarding target refused a batch; it was dropped");
                    continue;
                }
                Some(Outcome::Failed(why)) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                    tracing::warn!(url = %shown, %why, retry_in = ?backoff, "forwarding failed");
                    backoff
                }
                // Nothing waiting: until the next write, or a while.
                None => Duration::from_secs(1),
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.written.notified(), if backoff.is_zero() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Sends one batch; `None` when nothing waits.
    async fn forward_once(&self, client: &reqwest::Client, url: &str) -> Option<Outcome> {
        let now = Timestamp::now();
        let lease = now.plus(self.forwarding.timeout * 3);
        let batches = match self.backlog.claim(self.forwarding.batch_bytes, now, lease).await {
            Ok(batches) if batches.is_empty() => return None,
            Ok(batches) => batches,
            Err(err) => return Some(Outcome::Failed(format!("reading the backlog: {err}"))),
        };
        let ids: Vec<i64> = batches.iter().map(|(id, _)| *id).collect();
        let outcome = send(client, url, &batches).await;
        match &outcome {
            Outcome::Sent => self.metrics.forward_sent.inc_by(ids.len() as u64),
            Outcome::Refused(_) => self.metrics.forward_dropped.inc_by(ids.len() as u64),
            Outcome::Failed(_) => {
                self.metrics.forward_failures.inc();
                // For the next attempt (if this fails too, the lease runs out).
                let _ = self.backlog.release(ids).await;
                return Some(outcome);
            }
        };
        if let Err(err) = self.backlog.forwarded(ids).await {
            return Some(Outcome::Failed(format!("forgetting sent batches: {err}")));
        }
        Some(outcome)
    }

    /// Keeps the backlog within its bound and its gauge current.
    async fn housekeep(&self) {
        match self.backlog.trim(self.forwarding.max_backlog_bytes).await {
            Ok(0) => {}
            Ok(dropped) => {
                self.metrics.forward_dropped.inc_by(dropped);
                tracing::warn!(dropped, "the forwarding backlog is full; the oldest batches were dropped");
            }
            Err(err) => tracing::warn!(%err, "trimming the forwarding backlog failed"),
        }
        if let Ok((_, bytes)) = self.backlog.backlog().await {
            self.metrics.forward_backlog_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, batches: &[(i64, Vec<u8>)]) -> Outcome {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    for (_, lines) in batches {
        // Writing into memory cannot fail.
        gzip.write_all(lines).expect("gzip into memory");
    }
    let body = gzip.finish().expect("gzip into memory");
    let request = client
        .post(url)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(body);
    match request.send().await {
        Ok(response) if response.status().is_success() => Outcome::Sent,
        Ok(response) => {
            let status = response.status();
            let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
            let why = format!("{status}: {text}");
            // Only a verdict on the data is final; anything else (credentials,
            // a wrong path, an outage) may be fixed, so the batch waits.
            if matches!(status.as_u16(), 400 | 413 | 422) { Outcome::Refused(why) } else { Outcome::Failed(why) }
        }
        // reqwest's message names the URL, credentials included.
        Err(err) => Outcome::Failed(err.without_url().to_string()),
    }
}
