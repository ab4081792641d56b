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
        // Keys and licenses that bound nothing for a minute are forgotten.
        relay.new_devices.retain_recent();
    }
}

/// Closes the sockets of this node — devices, and every other socket the
/// gateway holds (call signaling) — whose license expired, whose API key
/// was revoked, or whose signed-in user was deactivated or whose access
/// token ran out, including changes made by `relayhub license …` in another
/// process. The gateway knows what each socket depends on; this is the
/// clock (`relay.credential_check_interval`).
pub async fn watch_credentials(relay: Relay, shutdown: CancellationToken) {
    let mut tick = interval(relay.config.credential_check_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let accounts = relay.accounts.as_deref();
        match relay.gateway.check_credentials(relay.identity.as_ref(), accounts, Timestamp::now()).await {
            Ok(0) => {}
            Ok(closed) => tracing::info!(closed, "closed connections whose credentials are no longer valid"),
            Err(err) => tracing::warn!(%err, "credential check failed; will retry"),
        }
    }
}
