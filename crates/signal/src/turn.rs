//! Time-limited TURN credentials in coturn's `use-auth-secret` scheme: the
//! username is `<expiry unix time>:<userId>`, the password the base64
//! HMAC-SHA1 of the username keyed with the secret shared with coturn
//! (`static-auth-secret`). coturn checks them without any call back to us.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::Sha1;

/// TURN settings (`[signal.turn]`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:`/`turns:` URLs of the TURN server; `stun:` URLs are passed on
    /// without credentials. Empty: no `iceServers` are sent.
    pub urls: Vec<String>,
    /// The secret shared with coturn (`static-auth-secret`).
    pub secret: Option<String>,
    /// How long credentials stay valid.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self { urls: Vec::new(), secret: None, ttl: Duration::from_secs(24 * 3600) }
    }
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The username and password for `user`, valid until `now + ttl`.
pub fn credentials(secret: &str, user: &str, ttl: Duration, now: SystemTime) -> (String, String) {
    let expiry = now.checked_add(ttl).unwrap_or(now).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let username = format!("{expiry}:{user}");
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    (username, STANDARD.encode(mac.finalize().into_bytes()))
}

impl TurnConfig {
    /// The `iceServers` a WebRTC client of `user` should use, if configured.
    pub fn ice_servers(&self, user: &str, now: SystemTime) -> Option<Value> {
        let secret = self.secret.as_deref()?;
        if self.urls.is_empty() {
            return None;
        }
        let (stun, turn): (Vec<&String>, Vec<&String>) = self.urls.iter().partition(|u| u.starts_with("stun:"));
        let (username, credential) = credentials(secret, user, self.ttl, now);
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(json!({"urls": stun}));
        }
        if !turn.is_empty() {
            servers.push(json!({"urls": turn, "username": username, "credential": credential}));
        }
        Some(Value::Array(servers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_carries_expiry_and_user() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, password) = credentials("s3cret", "alice", Duration::from_secs(3600), at);
        assert_eq!(user, "1700003600:alice");
        assert_eq!(STANDARD.decode(password).unwrap().len(), 20, "an HMAC-SHA1");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let config = TurnConfig { secret: Some("hunter2".into()), ..TurnConfig::default() };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
