//! Who may hold a connection before showing a credential. A connection is
//! *pending* from the moment it is accepted until a request on it presents
//! a valid bearer token or API key (then it no longer counts) or it closes.
//! At most `per_ip` pending connections per client address (an IPv6
//! client by its /64, [`address_key`]) and `total` in all: past either, a
//! new connection is refused at once, so that one client holding idle
//! sockets cannot take the node's file descriptors from everyone else.
//!
//! Behind a trusted proxy the peer is the proxy, not the client: such a
//! connection counts only toward `total`, and each request on it counts
//! toward its own client's `per_ip` while it runs without a credential.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::client::address_key;

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client address holds its share of pending connections.
    PerAddress,
    /// The node holds its share of pending connections.
    Total,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerAddress => "pending_per_address",
            Refusal::Total => "pending_total",
        }
    }
}

/// The node's pending connections.
pub struct Admission {
    per_ip: usize,
    total: usize,
    counts: Mutex<Counts>,
}

impl Admission {
    /// `0` means no limit.
    pub fn new(per_ip: usize, total: usize) -> Arc<Self> {
        Arc::new(Self { per_ip, total, counts: Mutex::default() })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection straight from the client `ip`, or why
    /// not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Arc<Ticket>, Refusal> {
        self.take(Some(address_key(ip)), true, None)
    }

    /// A place for a new connection from a trusted proxy: it counts toward
    /// the node's total only (its requests count per client).
    pub fn admit_proxy(self: &Arc<Self>) -> Result<Arc<Ticket>, Refusal> {
        self.take(None, true, None)
    }

    /// A place for one request that a trusted proxy forwards for `client`
    /// on `connection`: it counts toward the client's share while the
    /// request runs; its credential also frees the connection.
    pub fn admit_forwarded(self: &Arc<Self>, client: IpAddr, connection: &Arc<Ticket>) -> Result<Arc<Ticket>, Refusal> {
        self.take(Some(address_key(client)), false, Some(connection.clone()))
    }

    fn take(
        self: &Arc<Self>,
        key: Option<IpAddr>,
        in_total: bool,
        connection: Option<Arc<Ticket>>,
    ) -> Result<Arc<Ticket>, Refusal> {
        let mut counts = self.counts();
        if in_total && self.total > 0 && counts.total >= self.total {
            return Err(Refusal::Total);
        }
        if let Some(key) = key {
            let from_ip = counts.by_ip.entry(key).or_default();
            if self.per_ip > 0 && *from_ip >= self.per_ip {
                return Err(Refusal::PerAddress);
            }
            *from_ip += 1;
        }
        if in_total {
            counts.total += 1;
        }
        let pending = AtomicBool::new(true);
        Ok(Arc::new(Ticket { admission: self.clone(), key, in_total, connection, pending }))
    }

    /// Connections pending now.
    pub fn pending(&self) -> usize {
        self.counts().total
    }

    fn release(&self, key: Option<IpAddr>, in_total: bool) {
        let mut counts = self.counts();
        if in_total {
            counts.total = counts.total.saturating_sub(1);
        }
        if let Some(key) = key
            && let Some(n) = counts.by_ip.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&key);
            }
        }
    }
}

/// A connection's (or a proxied request's) place among the pending ones,
/// until it authenticates or closes. Requests carry it in their
/// extensions.
pub struct Ticket {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
    in_total: bool,
    /// The proxy's connection a forwarded request came on.
    connection: Option<Arc<Ticket>>,
    pending: AtomicBool,
}

impl Ticket {
    /// The connection presented a valid credential: it counts no more.
    pub fn authenticated(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            self.admission.release(self.key, self.in_total);
        }
        if let Some(connection) = &self.connection {
            connection.authenticated();
        }
    }

    /// Whether no valid credential has been shown yet.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            self.admission.release(self.key, self.in_total);
        }
    }
}

/// The request's connection, for handlers that check a credential
/// themselves (the auth extractors do it on their own): never refuses.
#[derive(Clone, Default)]
pub struct Connection(Option<Arc<Ticket>>);

impl Connection {
    /// The request presented a valid credential.
    pub fn authenticated(&self) {
        if let Some(ticket) = &self.0 {
            ticket.authenticated();
        }
    }

    /// The connection of a request, from its parts.
    pub fn of(parts: &Parts) -> Self {
        Self(parts.extensions.get::<Arc<Ticket>>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Connection {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

/// The error a request body ends with when it arrives too slowly: past
/// `http.request_timeout` on a connection without a credential, or below
/// `http.min_body_rate`. The body extractors answer it 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyTooSlow {
    /// The whole request did not arrive within the deadline.
    Deadline,
    /// The body came slower than the minimum rate.
    Rate,
}

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyTooSlow::Deadline => "the request did not arrive in time",
            BodyTooSlow::Rate => "the request body arrived too slowly",
        })
    }
}

impl std::error::Error for BodyTooSlow {}

impl BodyTooSlow {
    /// The slowness behind an error, if any is in its chain of causes.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut at = Some(error);
        while let Some(e) = at {
            if let Some(slow) = e.downcast_ref::<BodyTooSlow>() {
                return Some(*slow);
            }
            at = e.source();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_connections_are_bounded_per_address_and_in_all() {
        let admission = Admission::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::PerAddress));
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::Total));
        // Authenticating frees the place; closing afterwards frees nothing twice.
        first.authenticated();
        assert_eq!(admission.pending(), 2);
        drop(first);
        assert_eq!(admission.pending(), 2);
        assert!(admission.admit(a).is_ok(), "room again for the first address");
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let admission = Admission::new(2, 0);
        let _one = admission.admit("2001:db8:1:1::1".parse().unwrap()).unwrap();
        let _two = admission.admit("2001:db8:1:1::2".parse().unwrap()).unwrap();
        let third = admission.admit("2001:db8:1:1:ffff::3".parse().unwrap());
        assert_eq!(third.err(), Some(Refusal::PerAddress), "the same /64");
        assert!(admission.admit("2001:db8:1:2::1".parse().unwrap()).is_ok(), "another /64");
    }

    #[test]
    fn a_proxy_connection_counts_in_all_and_its_requests_per_client() {
        let admission = Admission::new(1, 3);
        let proxy = admission.admit_proxy().unwrap();
        let (a, b): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
        let first = admission.admit_forwarded(a, &proxy).unwrap();
        assert_eq!(admission.admit_forwarded(a, &proxy).err(), Some(Refusal::PerAddress));
        let other = admission.admit_forwarded(b, &proxy).unwrap();
        assert_eq!(admission.pending(), 1, "requests do not count toward the total");
        drop(first);
        assert!(admission.admit_forwarded(a, &proxy).is_ok(), "the request ended");
        other.authenticated();
        assert!(!proxy.is_pending(), "a credential on a forwarded request frees its connection");
        assert_eq!(admission.pending(), 0);
    }
}
