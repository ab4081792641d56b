//! What rate limits (governor's token buckets) tell a refused client.

use governor::NotUntil;
use governor::clock::{Clock, DefaultClock, QuantaInstant};

/// Whole seconds until a rate limiter lets the caller in again (at least
/// one), for `Retry-After`.
pub fn retry_seconds(wait: &NotUntil<QuantaInstant>) -> u32 {
    let wait = wait.wait_time_from(DefaultClock::default().now());
    u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX)
}
