//! The relay's background work: each a loop that runs until shutdown.

use relayhub_core::time::Timestamp;
use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::Relay;

/// Expires messages past their time to live and purges old receipts.
pub async fn sweep(relay: Relay, shutdown: CancellationToken) {
    let mut tick = interval(relay.config.sweep_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match relay.queue.sweep(Timestamp::now(), relay.config.retention).await {
            Ok(report) => {
                relay.metrics.messages_expired.inc_by(report.expired);
                if report.expired + report.purged > 0 {
                    tracing::debug!(expired = report.expired, purged = report.purged, "swept");
                }
            }
            Err(err) => tracing::warn!(%err, "sweep failed; will retry"),
        }
    }
}

/// Disconnects devices whose license expired or whose API key was revoked,
/// including changes made by `relayhub license …` in another process.
pub async fn watch_credentials(relay: Relay, shutdown: CancellationToken) {
    let mut tick = interval(relay.config.credential_check_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let (licenses, keys) = relay.hub.credentials_in_use();
        if licenses.is_empty() {
            continue;
        }
        match relay.identity.invalidated(&licenses, &keys, Timestamp::now()).await {
            Ok(gone) if gone.licenses.is_empty() && gone.api_keys.is_empty() => {}
            Ok(gone) => {
                let closed = relay.hub.close_invalidated(&gone.licenses, &gone.api_keys);
                tracing::info!(
                    closed,
                    licenses = gone.licenses.len(),
                    keys = gone.api_keys.len(),
                    "closed connections of expired licenses or revoked keys"
                );
            }
            Err(err) => tracing::warn!(%err, "credential check failed; will retry"),
        }
    }
}
