//! Attempts per key (an email, a user, an address) in a sliding window:
//! past `max`, callers are told to wait (429 `too_many_attempts` with
//! `Retry-After`).
//!
//! An attempt is counted *before* the credential is checked
//! ([`Attempts::reserve`], atomically with the check), and given back
//! ([`Reservation::refund`]) only when it succeeded: however many guesses
//! arrive at the same moment, at most `max` of them are ever checked. A
//! reservation dropped without a refund (a failure, a cancelled request)
//! stays counted.
//!
//! Keys come from unauthenticated input, so the table is bounded: windows
//! that ended are forgotten, and past `capacity` keys a new key is refused
//! (429) until old windows end — failing closed, so that a flood of keys
//! can neither grow memory nor push out the count of the key it attacks.
//!
//! Per node: behind a load balancer an attacker gets `max` per node, which
//! the size of what is guessed (passwords, 20^8 pairing codes) makes no
//! matter.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::address_key;
use crate::error::{ApiError, ErrorCode};

/// The keys [`Attempts`] remembers unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Attempts per key in a sliding window; see the module.
pub struct Attempts {
    max: usize,
    window: Duration,
    capacity: usize,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// One attempt counted against its keys; [`Reservation::refund`] gives it
/// back (a success), dropping it keeps it (a failure).
#[must_use = "dropping a reservation keeps the attempt counted; refund it on success"]
pub struct Reservation {
    owner: Arc<Attempts>,
    keys: Vec<String>,
    at: Instant,
}

/// The key an address counts under (IPv6 by its /64; no address at all is
/// one key of its own).
pub fn address(ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("ip:{}", address_key(ip)),
        None => "ip:unknown".to_owned(),
    }
}

impl Attempts {
    /// `max` attempts per key within `window`, remembering at most
    /// [`DEFAULT_CAPACITY`] keys.
    pub fn new(max: usize, window: Duration) -> Arc<Self> {
        Self::with_capacity(max, window, DEFAULT_CAPACITY)
    }

    /// `max` attempts per key within `window`, remembering at most
    /// `capacity` keys.
    pub fn with_capacity(max: usize, window: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Self { max: max.max(1), window, capacity: capacity.max(1), seen: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one attempt against every key of `keys`, or refuses (counting
    /// nothing) while any of them has used up its attempts.
    pub fn reserve(self: &Arc<Self>, keys: &[String]) -> Result<Reservation, ApiError> {
        let now = Instant::now();
        let mut seen = self.lock();
        for key in keys {
            let Some(times) = seen.get_mut(key) else { continue };
            while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                times.pop_front();
            }
            if times.len() >= self.max
                && let Some(first) = times.front()
            {
                let wait = self.window.saturating_sub(now.duration_since(*first));
                return Err(too_many("too many failed attempts; wait and try again", wait));
            }
        }
        let new_keys = keys.iter().filter(|k| !seen.contains_key(*k)).count();
        if seen.len() + new_keys > self.capacity {
            // Forget the keys whose window ended; if that is not enough,
            // refuse newcomers rather than forget a count that still runs.
            seen.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < self.window));
            if seen.len() + new_keys > self.capacity {
                return Err(too_many("too many clients are failing at once; wait and try again", self.window));
            }
        }
        for key in keys {
            seen.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Reservation { owner: self.clone(), keys: keys.to_vec(), at: now })
    }

    /// Keys remembered now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Reservation {
    /// Gives the attempt back: it succeeded.
    pub fn refund(self) {
        let mut seen = self.owner.lock();
        for key in &self.keys {
            let Some(times) = seen.get_mut(key) else { continue };
            if let Some(i) = times.iter().rposition(|t| *t == self.at) {
                times.remove(i);
            }
            if times.is_empty() {
                seen.remove(key);
            }
        }
    }
}

fn too_many(message: &str, wait: Duration) -> ApiError {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = u32::try_from(whole.max(1)).unwrap_or(u32::MAX);
    ApiError::new(ErrorCode::TOO_MANY_ATTEMPTS, message).retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[tokio::test]
    async fn attempts_run_out_per_key_and_say_when_to_retry() {
        let attempts = Attempts::new(2, Duration::from_secs(60));
        let both = keys(&["user:1", "ip:1.2.3.4"]);
        drop(attempts.reserve(&both).unwrap());
        drop(attempts.reserve(&both[1..]).unwrap());
        let refused = attempts.reserve(&both).err().unwrap();
        assert_eq!((refused.code, refused.retry_after), (ErrorCode::TOO_MANY_ATTEMPTS, Some(60)));
        assert!(attempts.reserve(&both[..1]).is_ok(), "the user alone has one left");
    }

    #[tokio::test]
    async fn a_refused_reservation_counts_nothing_and_a_refund_gives_one_back() {
        let attempts = Attempts::new(1, Duration::from_secs(60));
        let ip = keys(&["ip:a"]);
        let user = keys(&["ip:a", "user:b"]);
        let held = attempts.reserve(&ip).unwrap();
        assert!(attempts.reserve(&user).is_err());
        held.refund();
        assert!(attempts.is_empty(), "a refund of the only attempt forgets the key");
        drop(attempts.reserve(&user).unwrap());
        assert!(attempts.reserve(&keys(&["user:b"])).is_err(), "user:b was not counted by the refused try");
    }

    #[tokio::test]
    async fn concurrent_reservations_never_pass_more_than_max() {
        let attempts = Attempts::new(10, Duration::from_secs(60));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let attempts = attempts.clone();
                std::thread::spawn(move || attempts.reserve(&keys(&["ip:x"])).map(drop).is_ok())
            })
            .collect();
        let passed = tasks.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(passed, 10);
    }

    #[tokio::test]
    async fn the_table_is_bounded_and_ended_windows_make_room() {
        let attempts = Attempts::with_capacity(5, Duration::from_millis(100), 3);
        for k in ["a", "b", "c"] {
            drop(attempts.reserve(&keys(&[k])).unwrap());
        }
        let refused = attempts.reserve(&keys(&["d"])).err().unwrap();
        assert_eq!(refused.code, ErrorCode::TOO_MANY_ATTEMPTS);
        assert!(attempts.reserve(&keys(&["a"])).is_ok(), "known keys still count");
        // Past the window (the window is measured on the same clock).
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(attempts.reserve(&keys(&["d"])).unwrap());
        assert_eq!(attempts.len(), 1, "the ended windows were forgotten");
    }

    #[test]
    fn addresses_count_by_their_key() {
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(address(v6("2001:db8::1")), address(v6("2001:db8::ffff")));
        assert_eq!(address(v6("192.0.2.1")), "ip:192.0.2.1");
        assert_eq!(address(None), "ip:unknown");
    }
}
