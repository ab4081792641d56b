//! The registry's decisions, as pure functions both backends and the proxy
//! follow: what a device id, an instance id and a public URL may be, which
//! addresses the proxy may reach, and which targets a device may name.

use std::net::IpAddr;

use ipnet::IpNet;
use relayhub_core::error::{ApiError, ErrorCode};
use reqwest::Url;

use crate::codes;
use crate::model::{DeviceStatus, DeviceUuid, InstanceId};

/// The longest instance id, public URL and proxy target accepted.
pub const MAX_INSTANCE_ID: usize = 128;
pub const MAX_URL: usize = 2048;
pub const MAX_TARGET: usize = 8192;

/// A device UUID in any usual spelling (hyphenated, simple, braced, URN),
/// as the registry keeps it: lowercase and hyphenated.
pub fn device_uuid(raw: &str) -> Result<DeviceUuid, ApiError> {
    uuid::Uuid::try_parse(raw.trim())
        .map(|id| DeviceUuid::checked(id.hyphenated().to_string()))
        .map_err(|_| ApiError::invalid_field(format!("device_uuid {:?} is not a UUID", clip(raw))))
}

/// An instance id: 1 to 128 letters, digits, `.`, `_`, `-` or `:`.
pub fn instance_id(raw: &str) -> Result<InstanceId, ApiError> {
    let id = raw.trim();
    let ok = !id.is_empty()
        && id.len() <= MAX_INSTANCE_ID
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(InstanceId::checked(id.to_owned()))
    } else {
        Err(ApiError::invalid_field(format!(
            "instance_id must be 1 to {MAX_INSTANCE_ID} letters, digits, '.', '_', '-' or ':'"
        )))
    }
}

/// An instance's public URL: `http` or `https`, a host, no user name or
/// password, no query or fragment. Kept without a trailing `/`.
pub fn public_url(raw: &str) -> Result<Url, ApiError> {
    let bad = |why: &str| ApiError::invalid_field(format!("public_url {why}"));
    if raw.len() > MAX_URL {
        return Err(bad(&format!("is longer than {MAX_URL} bytes")));
    }
    let url = Url::parse(raw.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url)
}

/// How a public URL is stored and compared: without a trailing `/`.
pub fn url_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Whether an address is one the proxy must not reach on its own: loopback,
/// private, link-local (cloud metadata services), shared, unspecified,
/// multicast or reserved, in IPv4 or IPv6 (IPv4-mapped included).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x64 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Whether the proxy may connect to `ip`: a public address, or one the
/// operator listed in `registry.allow_private`.
pub fn address_allowed(ip: IpAddr, allow_private: &[IpNet]) -> bool {
    !is_internal(ip) || allow_private.iter().any(|net| net.contains(&ip))
}

/// The URL a device's `X-eckWMS-Target-Url` names under its instance's
/// public URL `base`: a path (`/api/items?x=1`) is resolved against it; a
/// full URL must lie under it — same scheme, host and port, no user info,
/// and a path inside the base path — after parsing and normalising (so
/// `..`, `%2e%2e`, `user@host` and other spellings cannot leave it).
pub fn target(base: &Url, header: &str) -> Result<Url, ApiError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(ApiError::new(ErrorCode::BAD_REQUEST, "X-eckWMS-Target-Url is empty"));
    }
    if header.len() > MAX_TARGET {
        return Err(ApiError::new(ErrorCode::BAD_REQUEST, format!("X-eckWMS-Target-Url is longer than {MAX_TARGET}")));
    }
    let outside = || {
        ApiError::new(
            codes::TARGET_NOT_REGISTERED,
            "the target is not under the public URL registered for this instance",
        )
    };
    let candidate = if let Some(path) = path_form(header) {
        Url::parse(&format!("{}{path}", url_text(base))).map_err(|_| outside())?
    } else {
        Url::parse(header).map_err(|_| outside())?
    };
    let base_path = base.path().trim_end_matches('/');
    let path = candidate.path();
    let inside_path = path == base_path
        || (path.starts_with(base_path) && path[base_path.len()..].starts_with('/'))
        || (base_path.is_empty() && path.is_empty());
    let same_origin = candidate.scheme() == base.scheme()
        && candidate.host() == base.host()
        && candidate.port_or_known_default() == base.port_or_known_default()
        && candidate.username().is_empty()
        && candidate.password().is_none();
    if !(same_origin && inside_path) {
        return Err(outside());
    }
    let mut candidate = candidate;
    candidate.set_fragment(None);
    Ok(candidate)
}

/// A target given as a path: it starts with one `/` (not `//`, which
/// would name another host, nor `/\`, which browsers read the same way).
pub fn path_form(header: &str) -> Option<&str> {
    let rest = header.strip_prefix('/')?;
    (!rest.starts_with(['/', '\\'])).then_some(header)
}

/// Where a registered device's calls go: its instance, and the public URL
/// it is reached at (`None`: through the instance's tunnel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    pub instance_id: &'a str,
    pub public_url: Option<&'a str>,
}

/// The status a registration at `placement` leaves: a new device starts
/// `initial`; a known one keeps its status while it stays where it was (an
/// instance's restart needs no new approval), and a blocked one is refused.
/// A device that moves to another instance, or to another public URL (or
/// between a URL and the tunnel), starts over (`initial`): an approval is
/// for one instance at one address, and the proxy sends the device's
/// bodies and the instance's own `Authorization` wherever the URL points.
pub fn registration_status(
    existing: Option<(DeviceStatus, Placement<'_>)>,
    placement: Placement<'_>,
    initial: DeviceStatus,
) -> Result<DeviceStatus, ApiError> {
    match existing {
        None => Ok(initial),
        Some((DeviceStatus::Blocked, _)) => Err(blocked()),
        Some((_, before)) if before != placement => Ok(initial),
        Some((status, _)) => Ok(status),
    }
}

/// Whether a device in `status` may use the proxy.
pub fn may_proxy(status: DeviceStatus) -> Result<(), ApiError> {
    match status {
        DeviceStatus::Active => Ok(()),
        DeviceStatus::Pending => {
            Err(ApiError::new(codes::DEVICE_PENDING, "this device waits for an operator's approval"))
        }
        DeviceStatus::Blocked => Err(blocked()),
    }
}

fn blocked() -> ApiError {
    ApiError::new(codes::DEVICE_BLOCKED, "this device is blocked by the operator")
}

/// At most 64 characters of client input, for messages.
fn clip(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// The act a status change is, for the audit log: `approve` (pending to
/// active), `unblock` (blocked to active), `block`; `None` when the status
/// stays what it was (nothing changed, nothing to record).
pub fn status_act(from: DeviceStatus, to: DeviceStatus) -> Option<&'static str> {
    match (from, to) {
        (DeviceStatus::Active, DeviceStatus::Active)
        | (DeviceStatus::Blocked, DeviceStatus::Blocked)
        | (DeviceStatus::Pending, DeviceStatus::Pending) => None,
        (DeviceStatus::Pending, DeviceStatus::Active) => Some("registry_device.approve"),
        (DeviceStatus::Blocked, DeviceStatus::Active) => Some("registry_device.unblock"),
        (_, DeviceStatus::Blocked) => Some("registry_device.block"),
        (_, DeviceStatus::Pending) => Some("registry_device.reset"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_change_is_named_for_what_it_does() {
        use DeviceStatus::*;
        assert_eq!(status_act(Pending, Active), Some("registry_device.approve"));
        assert_eq!(status_act(Blocked, Active), Some("registry_device.unblock"));
        assert_eq!(status_act(Active, Blocked), Some("registry_device.block"));
        assert_eq!(status_act(Pending, Blocked), Some("registry_device.block"));
        assert_eq!(status_act(Active, Active), None, "a repeated approval changes nothing");
        assert_eq!(status_act(Blocked, Blocked), None);
    }

    fn base() -> Url {
        public_url("https://wh1.example.com:8443/eck").unwrap()
    }

    #[test]
    fn paths_resolve_under_the_base_path() {
        let url = target(&base(), "/api/items?x=1").unwrap();
        assert_eq!(url.as_str(), "https://wh1.example.com:8443/eck/api/items?x=1");
        let full = target(&base(), "https://WH1.example.com:8443/eck/api/x#frag").unwrap();
        assert_eq!(full.as_str(), "https://wh1.example.com:8443/eck/api/x");
    }

    #[test]
    fn every_spelling_that_leaves_the_instance_is_refused() {
        for header in [
            "/../admin",
            "/%2e%2e/admin",
            "/eck/../../admin",
            "//evil.example.com/x",
            "/\\evil.example.com/x",
            "https://evil.example.com/eck/x",
            "https://wh1.example.com:8443@evil.example.com/eck/x",
            "https://user@wh1.example.com:8443/eck/x",
            "https://wh1.example.com:9443/eck/x",
            "http://wh1.example.com:8443/eck/x",
            "https://wh1.example.com:8443/eckother",
            "https://wh1.example.com:8443/",
            "https://localhost:8443/eck/x",
            "https://127.0.0.1:8443/eck/x",
            "file:///etc/passwd",
            "gopher://wh1.example.com:8443/eck",
        ] {
            let refused = target(&base(), header).unwrap_err();
            assert_eq!(refused.code, codes::TARGET_NOT_REGISTERED, "{header}");
        }
    }

    #[test]
    fn a_root_public_url_takes_any_path() {
        let root = public_url("http://10.0.0.5:8080/").unwrap();
        assert_eq!(url_text(&root), "http://10.0.0.5:8080");
        assert_eq!(target(&root, "/a").unwrap().as_str(), "http://10.0.0.5:8080/a");
        assert_eq!(target(&root, "http://10.0.0.5:8080").unwrap().as_str(), "http://10.0.0.5:8080/");
        assert!(target(&root, "http://0x0a.0.0.5:8080/a").is_ok(), "the same address, spelled in hex");
        assert!(target(&root, "http://10.0.0.6:8080/a").is_err());
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(address_allowed("127.0.0.1".parse().unwrap(), &allow));
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), &allow));
    }

    #[test]
    fn public_urls_are_checked() {
        for bad in ["ftp://x.example", "http://", "https://u:p@x.example", "http://x.example/?q=1", "not a url"] {
            assert_eq!(public_url(bad).unwrap_err().code, ErrorCode::INVALID_FIELD, "{bad}");
        }
    }

    #[test]
    fn uuids_in_any_spelling_become_one() {
        let want = "6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10";
        for spelling in [
            want,
            "6F1C1A522B1E4E399A2F3B0C2D7F5E10",
            "{6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10}",
            "urn:uuid:6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10",
        ] {
            assert_eq!(device_uuid(spelling).unwrap().as_str(), want);
        }
        assert!(device_uuid("not-a-uuid").is_err());
    }

    #[test]
    fn blocked_devices_stay_blocked_and_a_move_starts_over() {
        let pending = DeviceStatus::Pending;
        let at = |instance_id, public_url| Placement { instance_id, public_url };
        let w1 = at("w1", Some("https://a.example.com"));
        assert_eq!(registration_status(None, w1, pending).unwrap(), pending);
        let active = Some((DeviceStatus::Active, w1));
        assert_eq!(registration_status(active, w1, pending).unwrap(), DeviceStatus::Active, "a restart");
        let w2 = at("w2", Some("https://a.example.com"));
        assert_eq!(registration_status(active, w2, pending).unwrap(), pending, "approval was for w1");
        let blocked = registration_status(Some((DeviceStatus::Blocked, w1)), w2, DeviceStatus::Active);
        assert_eq!(blocked.unwrap_err().code, codes::DEVICE_BLOCKED);
        assert_eq!(may_proxy(DeviceStatus::Pending).unwrap_err().code, codes::DEVICE_PENDING);
    }

    #[test]
    fn an_approval_is_for_one_url() {
        let pending = DeviceStatus::Pending;
        let at = |public_url| Placement { instance_id: "w1", public_url };
        let approved = Some((DeviceStatus::Active, at(Some("https://a.example.com"))));
        let moved = registration_status(approved, at(Some("https://evil.example.com")), pending);
        assert_eq!(moved.unwrap(), pending, "another host");
        assert_eq!(registration_status(approved, at(None), pending).unwrap(), pending, "to the tunnel");
        let tunnel = Some((DeviceStatus::Active, at(None)));
        assert_eq!(registration_status(tunnel, at(Some("https://a.example.com")), pending).unwrap(), pending);
        assert_eq!(registration_status(tunnel, at(None), pending).unwrap(), DeviceStatus::Active);
        let blocked = Some((DeviceStatus::Blocked, at(Some("https://a.example.com"))));
        let refused = registration_status(blocked, at(Some("https://b.example.com")), DeviceStatus::Active);
        assert_eq!(refused.unwrap_err().code, codes::DEVICE_BLOCKED, "a move does not unblock");
    }
}
