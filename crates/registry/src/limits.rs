//! Rate limits per API key and per source address (GCRA, as `governor`
//! keeps them). Counted on each node: with N nodes behind a balancer a
//! client gets up to N times the rate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use relayhub_core::error::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

/// Requests per second and the burst allowed above it; `0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn limiter<K: std::hash::Hash + Eq + Clone>(self) -> Option<DefaultKeyedRateLimiter<K>> {
        let rate = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(rate);
        Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
    }
}

/// The registry's rate limits.
pub struct RateLimits {
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimits {
    pub fn new(per_key: Rate, per_address: Rate) -> Self {
        Self { per_key: per_key.limiter(), per_address: per_address.limiter() }
    }

    /// One request from `address`.
    pub fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        match &self.per_address {
            Some(limiter) => limiter.check_key(&address).map_err(|wait| refused("this address", wait_time(&wait))),
            None => Ok(()),
        }
    }

    /// One request with the API key `key` (its id).
    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        match &self.per_key {
            Some(limiter) => {
                limiter.check_key(&key.to_owned()).map_err(|wait| refused("this API key", wait_time(&wait)))
            }
            None => Ok(()),
        }
    }

    /// Forgets keys and addresses that are back at their full burst.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
        }
    }
}

fn wait_time(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
    not_until.wait_time_from(DefaultClock::default().now())
}

fn refused(who: &str, wait: Duration) -> ApiError {
    let seconds = u32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
    ApiError::new(ErrorCode::RATE_LIMITED, format!("too many requests from {who}; retry in {seconds} s"))
        .retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_waits() {
        let limits = RateLimits::new(Rate { per_second: 1, burst: 3 }, Rate { per_second: 0, burst: 0 });
        for _ in 0..3 {
            limits.check_key("key_a").unwrap();
        }
        let refused = limits.check_key("key_a").unwrap_err();
        assert_eq!(refused.code, ErrorCode::RATE_LIMITED);
        assert_eq!(refused.retry_after, Some(1));
        limits.check_key("key_b").expect("another key has its own budget");
        limits.check_address("127.0.0.1".parse().unwrap()).expect("addresses are not limited here");
    }
}
