//! The relay's background work, each run once a period by
//! [`Tasks::every`](relayhub_core::tasks::Tasks::every) until shutdown.

use relayhub_core::store::StoreError;
use relayhub_core::time::Timestamp;

use crate::Relay;

/// Expires messages past their time to live and purges old receipts.
pub async fn sweep(relay: Relay) -> Result<(), StoreError> {
    // Keys and licenses that bound nothing for a minute are forgotten.
    relay.new_devices.retain_recent();
    let report = relay.queue.sweep(Timestamp::now(), relay.config.retention).await?;
    relay.metrics.messages_expired.inc_by(report.expired);
    if report.expired + report.purged > 0 {
        tracing::debug!(expired = report.expired, purged = report.purged, "swept");
    }
    Ok(())
}

/// Closes the sockets of this node — devices, and every other socket the
/// gateway holds (call signaling) — whose license expired, whose API key
/// was revoked, or whose signed-in user was deactivated or whose access
/// token ran out, including changes made by `relayhub license …` in another
/// process. The gateway knows what each socket depends on; this is the
/// clock (`relay.credential_check_interval`).
pub async fn watch_credentials(relay: Relay) -> Result<(), StoreError> {
    let accounts = relay.accounts.as_deref();
    let closed = relay.gateway.check_credentials(relay.identity.as_ref(), accounts, Timestamp::now()).await?;
    if closed > 0 {
        tracing::info!(closed, "closed connections whose credentials are no longer valid");
    }
    Ok(())
}
