//! Who may hold a connection before showing a credential. A connection is
//! *pending* from the moment it is accepted until a request on it presents
//! a valid bearer token or API key (then it no longer counts) or it closes.
//! At most `per_ip` pending connections per source address and `total` in
//! all: past either, a new connection is refused at once, so that one
//! client holding idle sockets cannot take the node's file descriptors
//! from everyone else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source address holds its share of pending connections.
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

    /// A place for a new connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Arc<Ticket>, Refusal> {
        let mut counts = self.counts();
        if self.total > 0 && counts.total >= self.total {
            return Err(Refusal::Total);
        }
        let from_ip = counts.by_ip.entry(ip).or_default();
        if self.per_ip > 0 && *from_ip >= self.per_ip {
            return Err(Refusal::PerAddress);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(Arc::new(Ticket { admission: self.clone(), ip, pending: AtomicBool::new(true) }))
    }

    /// Connections pending now.
    pub fn pending(&self) -> usize {
        self.counts().total
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&ip);
            }
        }
    }
}

/// A connection's place among the pending ones, until it authenticates or
/// closes. Requests carry it in their extensions.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    pending: AtomicBool,
}

impl Ticket {
    /// The connection presented a valid credential: it counts no more.
    pub fn authenticated(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            self.admission.release(self.ip);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.authenticated();
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
}
