//! Bearer tokens and API keys: 256 random bits, shown once, stored only as
//! SHA-256, compared in constant time, never printed by `Debug`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a secret is for; its prefix lets operators and secret scanners tell
/// a leaked license token from an app key at a glance. The core declares
/// the kinds every capability shares; a capability declares its own (in its
/// `codes` module) and lists them in
/// [`Spec::SECRET_KINDS`](crate::capability::Spec::SECRET_KINDS), and a test
/// of the server holds every prefix to be unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKind {
    prefix: &'static str,
    id_prefix: &'static str,
}

impl SecretKind {
    /// Secrets that start with `prefix` (`rhb_`), whose public ids start
    /// with `id_prefix` (`tok_`).
    pub const fn new(prefix: &'static str, id_prefix: &'static str) -> Self {
        Self { prefix, id_prefix }
    }

    /// `rhb_…`: a back-office bearer token of one license.
    pub const LICENSE_TOKEN: SecretKind = SecretKind::new("rhb_", "tok_");
    /// `rhk_…`: the app API key compiled into the device app.
    pub const API_KEY: SecretKind = SecretKind::new("rhk_", "key_");
    /// `rhd_…`: one device's own secret (`X-Device-Secret`), from its first
    /// connection's `hello`.
    pub const DEVICE_SECRET: SecretKind = SecretKind::new("rhd_", "dsc_");
    /// `rho_…`: an operator's admin API token.
    pub const OPERATOR_TOKEN: SecretKind = SecretKind::new("rho_", "opt_");
    /// The kinds the core declares.
    pub const SHARED: &'static [SecretKind] =
        &[Self::LICENSE_TOKEN, Self::API_KEY, Self::DEVICE_SECRET, Self::OPERATOR_TOKEN];

    /// What secrets of this kind start with.
    pub fn prefix(self) -> &'static str {
        self.prefix
    }

    /// What the public ids of secrets of this kind start with.
    pub fn id_prefix(self) -> &'static str {
        self.id_prefix
    }
}

/// A secret in clear text. Only ever held long enough to show it once or to
/// hash it; its `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret presented by a client.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// A fresh random secret of this kind.
    pub fn generate(kind: SecretKind) -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        Self(format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The clear text, for the single moment it is shown.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The SHA-256 of a secret: what is stored and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality, for the final check after an index lookup.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Query parameters whose values are credentials.
const SECRET_PARAMS: &[&str] =
    &["api_key", "key", "token", "access_token", "id_token", "secret", "password", "device_secret"];

/// A query string fit for a log: the values of credential parameters
/// (`api_key=…`, `token=…`) replaced by `[redacted]`, the rest as sent.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) => {
                format!("{name}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A configured URL fit for a log: scheme, host, port and path only. The
/// user and password (`https://user:pass@…`), the query (`?u=…&p=…`, where
/// InfluxDB 1.x takes credentials) and the fragment are left out whatever
/// their names; text that is not a URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("");
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", parsed.scheme(), parsed.path())
        }
        Err(_) => "[not a URL]".to_owned(),
    }
}

/// A public identifier for a token or key (`tok_…`, `key_…`): safe to log
/// and to pass to `revoke`.
pub fn public_id(kind: SecretKind) -> String {
    let mut bytes = [0u8; 9];
    rand::fill(&mut bytes);
    format!("{}{}", kind.id_prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_for_logs_keeps_no_userinfo_query_or_fragment() {
        assert_eq!(
            redact_url("http://robots:s3cret@influx.example:8086/write?db=robots&u=robots&p=s3cret#x"),
            "http://influx.example:8086/write"
        );
        assert_eq!(redact_url("https://vm.example/api/v2/write?token=abc"), "https://vm.example/api/v2/write");
        assert_eq!(redact_url("https://[2001:db8::1]:9000/hook"), "https://[2001:db8::1]:9000/hook");
        assert_eq!(redact_url("not a url with p=s3cret"), "[not a URL]");
    }

    #[test]
    fn credentials_in_a_query_are_redacted_for_logs() {
        assert_eq!(
            redact_query("api_key=rhk_secret&device_id=d1&TOKEN=x&license=L"),
            "api_key=[redacted]&device_id=d1&TOKEN=[redacted]&license=L"
        );
        assert_eq!(redact_query("wait=30"), "wait=30");
    }

    #[test]
    fn generated_secrets_are_prefixed_random_and_redacted() {
        let a = Secret::generate(SecretKind::LICENSE_TOKEN);
        let b = Secret::generate(SecretKind::LICENSE_TOKEN);
        assert!(a.expose().starts_with("rhb_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Secret([redacted])");
        assert!(a.hash().ct_eq(&Secret::new(a.expose()).hash()));
        assert!(!a.hash().ct_eq(&b.hash()));
    }
}
