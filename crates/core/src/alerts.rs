//! Alerts to an operator's webhook: errors worth a human's attention are
//! POSTed as `{"text": "…"}` — what Slack's incoming webhooks take, and
//! what Telegram's `sendMessage` takes when the URL carries the chat:
//! `https://api.telegram.org/bot<TOKEN>/sendMessage?chat_id=<CHAT>`.
//!
//! Rate-limited: at most `per_minute` posts a minute; what is suppressed is
//! counted and mentioned in the next post, so a storm of errors becomes a
//! few messages, not a ban from the chat service. The URL holds a secret
//! (the bot token) and is never logged.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Alert settings (`[alerts]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Where to POST `{"text": …}`; no alerts are sent without it.
    pub webhook: Option<String>,
    /// Posts per minute, at most.
    pub per_minute: u32,
    /// Prefixed to every alert, e.g. the deployment's name.
    pub name: String,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self { webhook: None, per_minute: 10, name: "relayhub".into() }
    }
}

/// Sends alerts without ever making the caller wait. Cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    tx: Option<mpsc::Sender<String>>,
    outcomes: Family<Outcome, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

fn count(outcomes: &Family<Outcome, Counter>, outcome: &'static str) {
    outcomes.get_or_create(&Outcome { outcome }).inc();
}

/// Alerts queued for the webhook, at most; beyond, they count as suppressed.
const QUEUE: usize = 64;

impl Alerter {
    /// Starts the sender task on `tasks` (it ends on shutdown). Counts
    /// alerts by outcome (`sent`, `suppressed`, `failed`) in
    /// `relayhub_alerts_total`.
    pub fn start(
        config: &AlertConfig,
        metrics: &crate::metrics::Metrics,
        tasks: &crate::tasks::Tasks,
    ) -> Result<Self, String> {
        let outcomes = Family::<Outcome, Counter>::default();
        metrics.register("alerts", "Alerts for the webhook, by outcome", outcomes.clone());
        let Some(url) = config.webhook.clone() else { return Ok(Self { tx: None, outcomes }) };
        let http = crate::http_client::client()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = Delivery {
            http,
            url,
            name: config.name.clone(),
            per_minute: config.per_minute.max(1),
            outcomes: outcomes.clone(),
        };
        tasks.spawn(move |stop| task.run(rx, stop));
        Ok(Self { tx: Some(tx), outcomes })
    }

    /// Queues an alert; never blocks.
    pub fn alert(&self, text: impl Into<String>) {
        if let Some(tx) = &self.tx
            && tx.try_send(text.into()).is_err()
        {
            // Full: the rate limit would drop it anyway.
            count(&self.outcomes, "suppressed");
        }
    }
}

struct Delivery {
    http: reqwest::Client,
    url: String,
    name: String,
    per_minute: u32,
    outcomes: Family<Outcome, Counter>,
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<String>, stop: tokio_util::sync::CancellationToken) {
        let Delivery { http, url, name, per_minute, outcomes } = self;
        let window = Duration::from_secs(60);
        let mut sent_at: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
        let mut suppressed = 0u64;
        loop {
            let text = tokio::select! {
                text = rx.recv() => match text { Some(text) => text, None => return },
                () = stop.cancelled() => return,
            };
            let now = Instant::now();
            while sent_at.front().is_some_and(|t| now.duration_since(*t) >= window) {
                sent_at.pop_front();
            }
            if sent_at.len() >= per_minute as usize {
                suppressed += 1;
                count(&outcomes, "suppressed");
                continue;
            }
            sent_at.push_back(now);
            let mut message = format!("[{name}] {text}");
            if suppressed > 0 {
                message.push_str(&format!(" (and {suppressed} more alerts suppressed by the rate limit)"));
                suppressed = 0;
            }
            let outcome = match http.post(&url).json(&serde_json::json!({"text": message})).send().await {
                Ok(response) if response.status().is_success() => "sent",
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "the alert webhook refused an alert");
                    "failed"
                }
                Err(err) => {
                    tracing::warn!(error = %err.without_url(), "the alert webhook is unreachable");
                    "failed"
                }
            };
            count(&outcomes, outcome);
        }
    }
}
