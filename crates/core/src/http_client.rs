//! The outgoing HTTP client (JWKS fetches, alert webhooks, forwarding):
//! rustls with the ring provider, the system's root certificates, short
//! timeouts.

use std::time::Duration;

/// A client builder for calls to other services, with a connect timeout
/// and no overall timeout yet.
pub fn builder() -> reqwest::ClientBuilder {
    // reqwest is built without a default crypto provider (aws-lc would need
    // cmake and minutes of C); ring is installed once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("relayhub/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
}

/// A client for calls to other services: 10 s per call at most.
pub fn client() -> Result<reqwest::Client, String> {
    builder().timeout(Duration::from_secs(10)).build().map_err(|e| format!("building the HTTP client: {e}"))
}
