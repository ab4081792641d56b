//! Verifying external identity tokens (Google ID tokens now; any OpenID
//! Connect issuer later) against a JWKS — a file, or a URL fetched once and
//! cached for as long as its `Cache-Control: max-age` says, so no request
//! waits on the identity provider while the cache is fresh.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::error::{ApiError, ErrorCode};

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// Google's published signing keys.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google ID tokens carry.
pub const GOOGLE_ISSUERS: &[&str] = &["accounts.google.com", "https://accounts.google.com"];

/// Cache a fetched key set this long when the response does not say.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Refetch at most this often, however often unknown key ids show up, so a
/// flood of forged tokens cannot turn into a flood of requests to Google.
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 60;

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

impl JwksSource {
    /// A URL if it starts with `http://` or `https://`, else a file path.
    pub fn parse(raw: &str) -> Self {
        if raw.starts_with("https://") || raw.starts_with("http://") {
            JwksSource::Url(raw.to_owned())
        } else {
            JwksSource::File(PathBuf::from(raw))
        }
    }
}

/// A verified token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    /// The person's display name (`name`, else `preferred_username`).
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    email: Option<String>,
    /// Google sends a boolean; some older tokens carry the string "true".
    email_verified: Option<BoolOrString>,
    name: Option<String>,
    preferred_username: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BoolOrString {
    Bool(bool),
    Str(String),
}

impl BoolOrString {
    fn is_true(&self) -> bool {
        match self {
            BoolOrString::Bool(b) => *b,
            BoolOrString::Str(s) => s.eq_ignore_ascii_case("true"),
        }
    }
}

struct Cached {
    keys: JwkSet,
    fetched: Instant,
    expires: Instant,
}

/// Verifies ID tokens of one issuer family for one audience.
pub struct IdTokenVerifier {
    audience: String,
    issuers: Vec<String>,
    source: JwksSource,
    cache: RwLock<Option<Cached>>,
    refetch: Mutex<()>,
    min_refetch: Duration,
    http: reqwest::Client,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

impl IdTokenVerifier {
    /// Google ID tokens for the OAuth client `client_id`; keys from `jwks`
    /// (a file or URL), Google's own URL if `None`.
    pub fn google(client_id: &str, jwks: Option<&str>) -> Result<Self, String> {
        let source = JwksSource::parse(jwks.unwrap_or(GOOGLE_JWKS_URL));
        Self::new(client_id, GOOGLE_ISSUERS.iter().map(|s| s.to_string()).collect(), source)
    }

    pub fn new(audience: &str, issuers: Vec<String>, source: JwksSource) -> Result<Self, String> {
        Ok(Self {
            audience: audience.to_owned(),
            issuers,
            source,
            cache: RwLock::new(None),
            refetch: Mutex::new(()),
            min_refetch: MIN_REFETCH,
            http: crate::http_client::client()?,
        })
    }

    /// Changes how often the keys may be refetched at most (default 10 s).
    pub fn with_min_refetch(mut self, every: Duration) -> Self {
        self.min_refetch = every;
        self
    }

    /// Loads the keys now: a missing or invalid file is a configuration
    /// error worth failing start-up for. A URL is only tried (the provider
    /// may be briefly unreachable; tokens are verified once it is back).
    pub async fn preload(&self) -> Result<(), String> {
        match self.refresh().await {
            Ok(()) => Ok(()),
            Err(err) if matches!(self.source, JwksSource::Url(_)) => {
                tracing::warn!(error = %err.message, "could not fetch the JWKS yet; will retry when a token arrives");
                Ok(())
            }
            Err(err) => Err(err.message),
        }
    }

    /// Verifies a token's signature, audience, issuer, expiry, and that its
    /// email (if any) is verified.
    pub async fn verify(&self, token: &str) -> Result<Identity, ApiError> {
        let header =
            decode_header(token).map_err(|e| refused(ErrorCode::TOKEN_MALFORMED, format!("not a signed JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(refused(ErrorCode::TOKEN_BAD_SIGNATURE, format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| refused(ErrorCode::TOKEN_UNKNOWN_KEY, "the token names no key (kid)"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&self.issuers);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<Claims>(token, &key, &validation).map_err(explain)?.claims;
        if claims.email.is_some() && !claims.email_verified.as_ref().is_some_and(BoolOrString::is_true) {
            return Err(refused(ErrorCode::EMAIL_UNVERIFIED, "the account's email address is not verified"));
        }
        Ok(Identity { subject: claims.sub, email: claims.email, name: claims.name.or(claims.preferred_username) })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        if let Some(key) = self.cached_key(kid, false).await? {
            return Ok(key);
        }
        {
            // One refetch at a time; whoever waited finds it done.
            let _one = self.refetch.lock().await;
            let due = match &*self.cache.read().await {
                None => true,
                Some(c) => {
                    c.expires <= Instant::now()
                        || (c.keys.find(kid).is_none() && c.fetched.elapsed() >= self.min_refetch)
                }
            };
            if due && let Err(err) = self.refresh().await {
                // A stale key set still beats no answer while the provider is down.
                tracing::warn!(error = %err.message, "JWKS refresh failed");
                return self.cached_key(kid, true).await?.ok_or(err);
            }
        }
        self.cached_key(kid, true).await?.ok_or_else(|| {
            refused(ErrorCode::TOKEN_UNKNOWN_KEY, format!("no signing key {kid:?} in the configured JWKS"))
        })
    }

    async fn cached_key(&self, kid: &str, stale_ok: bool) -> Result<Option<DecodingKey>, ApiError> {
        let cache = self.cache.read().await;
        let Some(cached) = cache.as_ref() else { return Ok(None) };
        if !stale_ok && cached.expires <= Instant::now() {
            return Ok(None);
        }
        match cached.keys.find(kid) {
            None => Ok(None),
            Some(jwk) => DecodingKey::from_jwk(jwk)
                .map(Some)
                .map_err(|e| refused(ErrorCode::TOKEN_UNKNOWN_KEY, format!("key {kid:?} is unusable: {e}"))),
        }
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        let unavailable = |e: String| refused(ErrorCode::JWKS_UNAVAILABLE, format!("signing keys unavailable: {e}"));
        let (body, ttl) = match &self.source {
            JwksSource::File(path) => {
                let body = tokio::fs::read(path).await.map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                (body, None)
            }
            JwksSource::Url(url) => {
                let response = self.http.get(url).send().await.map_err(|e| unavailable(e.without_url().to_string()))?;
                let response = response.error_for_status().map_err(|e| unavailable(e.without_url().to_string()))?;
                let ttl = max_age(response.headers());
                (response.bytes().await.map_err(|e| unavailable(e.without_url().to_string()))?.to_vec(), ttl)
            }
        };
        let keys: JwkSet = serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWKS: {e}")))?;
        let now = Instant::now();
        // A file is re-read only for unknown keys; a URL when its max-age
        // ends, but never more often than MIN_REFETCH.
        let ttl = match &self.source {
            JwksSource::File(_) => Duration::from_secs(365 * 24 * 3600),
            JwksSource::Url(_) => ttl.unwrap_or(DEFAULT_TTL).max(self.min_refetch),
        };
        *self.cache.write().await = Some(Cached { keys, fetched: now, expires: now + ttl });
        Ok(())
    }
}

/// `Cache-Control: max-age=N` (Google sends `public, max-age=…`).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    let directives = value.split(',').map(str::trim);
    let mut max_age = None;
    for directive in directives {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = directive.strip_prefix("max-age=").and_then(|s| s.parse().ok()) {
            max_age = Some(Duration::from_secs(secs));
        }
    }
    max_age
}

fn explain(err: jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => refused(ErrorCode::TOKEN_EXPIRED, "the ID token has expired"),
        ErrorKind::InvalidAudience => {
            refused(ErrorCode::TOKEN_WRONG_AUDIENCE, "the ID token was issued for another client id")
        }
        ErrorKind::InvalidIssuer => refused(ErrorCode::TOKEN_WRONG_ISSUER, "the ID token comes from another issuer"),
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
            refused(ErrorCode::TOKEN_BAD_SIGNATURE, "the ID token's signature does not verify")
        }
        ErrorKind::ImmatureSignature => refused(ErrorCode::TOKEN_EXPIRED, "the ID token is not valid yet"),
        ErrorKind::MissingRequiredClaim(claim) => {
            refused(ErrorCode::TOKEN_MALFORMED, format!("the ID token has no {claim:?} claim"))
        }
        other => refused(ErrorCode::TOKEN_MALFORMED, format!("the ID token cannot be read: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{TEST_CLIENT_ID, TestIssuer};
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};

    #[test]
    fn cache_control_max_age() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("cache-control", "public, max-age=19146, must-revalidate, no-transform".parse().unwrap());
        assert_eq!(max_age(&headers), Some(Duration::from_secs(19146)));
        headers.insert("cache-control", "no-cache".parse().unwrap());
        assert_eq!(max_age(&headers), Some(Duration::ZERO));
        assert_eq!(max_age(&reqwest::header::HeaderMap::new()), None);
    }

    /// A JWKS endpoint on 127.0.0.1 that counts its requests and serves
    /// whatever key set the test puts in.
    async fn jwks_server(max_age: u64) -> (String, Arc<StdMutex<String>>, Arc<AtomicUsize>) {
        let body = Arc::new(StdMutex::new(String::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let (b, h) = (b.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let cache = format!("public, max-age={max_age}");
                    ([("cache-control", cache)], b.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/certs"), body, hits)
    }

    #[tokio::test]
    async fn a_fetched_key_set_is_cached_and_refetched_for_a_new_key() {
        let (url, body, hits) = jwks_server(3600).await;
        let first = TestIssuer::new("k1");
        *body.lock().unwrap() = TestIssuer::jwks(&[&first]);
        let verifier = IdTokenVerifier::google(TEST_CLIENT_ID, Some(&url)).unwrap().with_min_refetch(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(verifier.verify(&first.token("alice")).await.unwrap().subject, "alice");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "max-age=3600: fetched once");

        // Google rotates its keys: a token with a new kid makes one refetch.
        let second = TestIssuer::new("k2");
        *body.lock().unwrap() = TestIssuer::jwks(&[&first, &second]);
        assert_eq!(verifier.verify(&second.token("bob")).await.unwrap().subject, "bob");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_keys_do_not_refetch_more_often_than_allowed() {
        let (url, body, hits) = jwks_server(3600).await;
        let known = TestIssuer::new("k1");
        *body.lock().unwrap() = TestIssuer::jwks(&[&known]);
        let verifier = IdTokenVerifier::google(TEST_CLIENT_ID, Some(&url)).unwrap();
        verifier.verify(&known.token("a")).await.unwrap();
        let forged = TestIssuer::new("nope");
        for _ in 0..5 {
            let err = verifier.verify(&forged.token("a")).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::TOKEN_UNKNOWN_KEY);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "no refetch storm within the minimum interval");
    }

    #[test]
    fn sources() {
        assert_eq!(JwksSource::parse("https://x/certs"), JwksSource::Url("https://x/certs".into()));
        assert_eq!(JwksSource::parse("/etc/jwks.json"), JwksSource::File("/etc/jwks.json".into()));
    }
}
