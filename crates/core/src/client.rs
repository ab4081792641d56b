//! Who the client is: its address as the connection's peer shows it, or —
//! only when that peer is a configured trusted proxy — as the proxy
//! reports it in `X-Forwarded-For`. Every per-address rule (pending
//! connections, sign-in and pairing attempts, rate limits) and every log
//! line uses this address, keyed by [`address_key`] so that one IPv6
//! customer (a /64) counts once.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The client's address for a request, computed once by the accept loop
/// and carried in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Marks a request that came through a trusted proxy, whose other
/// `X-Forwarded-*` headers (the scheme a client used) may be believed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaTrustedProxy;

/// Whether the request came through a trusted proxy.
pub fn via_trusted_proxy(parts: &Parts) -> bool {
    parts.extensions.get::<ViaTrustedProxy>().is_some()
}

/// The peers whose `X-Forwarded-For` is believed (`http.trusted_proxies`):
/// addresses or CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrustedProxies(Vec<ProxyRange>);

/// One trusted proxy: an address (`127.0.0.1`) or a range (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProxyRange(IpNet);

impl TryFrom<String> for ProxyRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|ip| Self(IpNet::from(ip)))
            .map_err(|_| format!("{text:?} is neither an address nor a CIDR range"))
    }
}

impl From<ProxyRange> for String {
    fn from(range: ProxyRange) -> Self {
        if range.0.prefix_len() == range.0.max_prefix_len() { range.0.addr().to_string() } else { range.0.to_string() }
    }
}

impl TrustedProxies {
    /// The list from its text form (`["127.0.0.1", "10.0.0.0/8"]`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries.iter().map(|e| ProxyRange::try_from(e.as_ref().to_owned())).collect::<Result<_, _>>().map(Self)
    }

    /// Whether no proxy is trusted (then `X-Forwarded-For` is never read).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|range| range.0.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; then
    /// the right-most address of `X-Forwarded-For` that is not itself a
    /// trusted proxy (addresses further left are the client's own word).
    /// A trusted peer that sends no usable header is the client.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
        for hop in hops.iter().rev().flat_map(|v| v.rsplit(',')) {
            match parse_hop(hop) {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return ip,
                // Garbage in the chain: nothing left of it can be believed.
                None => return peer,
            }
        }
        peer
    }
}

/// One `X-Forwarded-For` entry: an address, or `[v6]:port` / `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    hop.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket
/// reports) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The key per-address limits count under: an IPv4 address as it is, an
/// IPv6 address by its /64 (one customer's network), so that a client
/// cannot escape a limit by walking its own prefix.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The client's address of a request: what the accept loop computed, or
/// the connection's peer where no accept loop of ours ran (tests of a
/// router alone).
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(ClientAddr(ip)) = parts.extensions.get::<ClientAddr>() {
        return Some(*ip);
    }
    parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| canonical(c.0.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_peer() {
        let trusted = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let forged = headers(&["6.6.6.6"]);
        assert_eq!(trusted.client(ip("203.0.113.9"), &forged), ip("203.0.113.9"), "a direct client's header");
        assert_eq!(trusted.client(ip("127.0.0.1"), &forged), ip("6.6.6.6"));
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &forged), ip("127.0.0.1"), "none trusted");
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let trusted = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        // The client wrote "1.1.1.1" itself; 198.51.100.7 is who reached
        // the first proxy (10.1.2.3), which nginx on loopback appended.
        let chain = headers(&["1.1.1.1, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(trusted.client(ip("127.0.0.1"), &chain), ip("198.51.100.7"));
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers(&["[2001:db8::1]:4711"])), ip("2001:db8::1"));
        assert_eq!(trusted.client(ip("127.0.0.1"), &headers(&["not an address"])), ip("127.0.0.1"));
        assert_eq!(trusted.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        assert_eq!(trusted.client(ip("::ffff:127.0.0.1"), &headers(&["5.5.5.5"])), ip("5.5.5.5"), "mapped v4");
    }

    #[test]
    fn ranges_parse_and_bad_entries_are_named() {
        let parsed = TrustedProxies::parse(&["::1", "192.168.0.0/16"]).unwrap();
        assert!(parsed.trusts(ip("192.168.44.2")) && parsed.trusts(ip("::1")) && !parsed.trusts(ip("192.169.0.1")));
        let err = TrustedProxies::parse(&["nginx"]).unwrap_err();
        assert!(err.contains("nginx"), "{err}");
        let text: Vec<String> = parsed.0.into_iter().map(String::from).collect();
        assert_eq!(text, ["::1", "192.168.0.0/16"]);
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), address_key(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(address_key(ip("2001:db8:1:2::1")), address_key(ip("2001:db8:1:3::1")));
        assert_eq!(address_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
