//! The reverse proxy's parts: the client that reaches instances at their
//! public URLs (no redirects followed, internal addresses refused after
//! every DNS answer), which headers cross, and bodies streamed with a
//! bound on what a caller may send.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use relayhub_core::error::{ApiError, ErrorCode};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::codes;
use crate::rules;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers meant for the registry itself, never for the instance.
const OURS: &[&str] = &["host", "x-api-key", "x-eckwms-target-url", "x-eckwms-target-method", "x-forwarded-for"];

/// Which of `headers` describe the connection: the fixed list and every
/// name the `Connection` header lists.
fn connection_headers(headers: &HeaderMap) -> HashSet<String> {
    let mut names: HashSet<String> = HOP_BY_HOP.iter().map(|s| (*s).to_owned()).collect();
    for value in headers.get_all(header::CONNECTION) {
        if let Ok(value) = value.to_str() {
            names.extend(value.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()));
        }
    }
    names
}

/// The end-to-end headers of a caller's request, as the instance gets them:
/// without hop-by-hop headers, the registry's own headers and the caller's
/// API key (in `Authorization` too), with the caller's address appended
/// to `X-Forwarded-For`.
pub fn request_headers(headers: &HeaderMap, api_key: &str, peer: Option<IpAddr>) -> HeaderMap {
    let dropped = connection_headers(headers);
    let bearer = format!("Bearer {api_key}");
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let lower = name.as_str();
        if dropped.contains(lower) || OURS.contains(&lower) {
            continue;
        }
        if name == header::AUTHORIZATION && value.as_bytes() == bearer.as_bytes() {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let earlier = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let mut chain = earlier.join(", ");
    if let Some(peer) = peer {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&peer.to_string());
    }
    if let Ok(value) = HeaderValue::from_str(&chain)
        && !chain.is_empty()
    {
        out.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    out
}

/// The end-to-end headers of an instance's response.
pub fn response_headers(headers: &HeaderMap) -> HeaderMap {
    let dropped = connection_headers(headers);
    headers.iter().filter(|(name, _)| !dropped.contains(name.as_str())).map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// Headers as the tunnel carries them (values that are not text are left
/// out: the tunnel's frames are JSON).
pub fn to_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect()
}

/// Headers from the tunnel; names or values that are not valid are dropped.
pub fn from_pairs(pairs: &[(String, String)]) -> HeaderMap {
    pairs
        .iter()
        .filter_map(|(n, v)| Some((HeaderName::try_from(n.as_str()).ok()?, HeaderValue::try_from(v.as_str()).ok()?)))
        .collect()
}

/// Whether a request has a body (HTTP/1.1's rule: a length above zero, or
/// a transfer coding).
pub fn has_body(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        Some(length) => length > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// A caller's body as a stream that fails with 413 past `max` bytes.
pub fn limited(body: Body, max: usize) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static {
    let mut seen = 0usize;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|_| ApiError::new(ErrorCode::BAD_REQUEST, "the request body was cut off"))?;
        seen += chunk.len();
        if seen > max {
            return Err(too_large(max));
        }
        Ok(chunk)
    })
}

pub fn too_large(max: usize) -> ApiError {
    ApiError::new(ErrorCode::PAYLOAD_TOO_LARGE, format!("the request body is over {max} bytes"))
}

/// An answer to the caller, streamed.
pub fn respond<S, E>(status: u16, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<axum::BoxError>,
{
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = response_headers(&headers);
    response
}

/// A DNS answer held only internal addresses.
#[derive(Debug)]
struct InternalAddress(String);

impl std::fmt::Display for InternalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to internal addresses", self.0)
    }
}

impl std::error::Error for InternalAddress {}

/// Resolves names with the system resolver and keeps only addresses the
/// proxy may reach: a name that pointed outside at registration and
/// inside now is refused at connect time.
struct GuardedResolver {
    allow_private: Arc<Vec<IpNet>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| rules::address_allowed(a.ip(), &allow)).collect();
            if allowed.is_empty() {
                return Err(Box::new(InternalAddress(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// How the proxy reaches instances at their public URLs.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    allow_private: Arc<Vec<IpNet>>,
}

/// The limits of one call to an instance.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the instance's response head.
    pub answer: Duration,
    /// Between two reads of the response body.
    pub read: Duration,
}

impl Upstream {
    pub fn new(allow_private: Vec<IpNet>, timeouts: Timeouts) -> Result<Self, String> {
        let allow_private = Arc::new(allow_private);
        let client = relayhub_core::http_client::builder()
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY and ALL_PROXY would send every call to the proxy,
            // which resolves the instance's name itself: past the guarded
            // resolver, to any internal address.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private: allow_private.clone() }))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| format!("building the proxy's HTTP client: {e}"))?;
        Ok(Self { client, allow_private })
    }

    /// Refuses a URL whose host is an internal address (a literal address
    /// never reaches the resolver).
    pub fn check_host(&self, url: &Url) -> Result<(), ApiError> {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !rules::address_allowed(ip, &self.allow_private) => Err(internal_refused()),
            _ => Ok(()),
        }
    }

    /// Refuses a public URL whose name resolves to an internal address now
    /// (checked again at every connect). A name that does not resolve yet
    /// is accepted: the instance may not be online.
    pub async fn check_resolves(&self, url: &Url) -> Result<(), ApiError> {
        let internal = || ApiError::invalid_field("public_url is an internal address (not in registry.allow_private)");
        self.check_host(url).map_err(|_| internal())?;
        let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
        let lookup = tokio::net::lookup_host((name, url.port_or_known_default().unwrap_or(80)));
        let Ok(Ok(found)) = tokio::time::timeout(Duration::from_secs(3), lookup).await else { return Ok(()) };
        let found: Vec<SocketAddr> = found.collect();
        if found.iter().any(|a| !rules::address_allowed(a.ip(), &self.allow_private)) {
            return Err(ApiError::invalid_field(format!("public_url's host {name} resolves to an internal address")));
        }
        Ok(())
    }

    /// Sends one request to an instance and streams its answer back.
    pub async fn forward<B>(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<B>,
        answer: Duration,
    ) -> Result<Response, ApiError>
    where
        B: Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static,
    {
        self.check_host(&url)?;
        let mut request = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(reqwest::Body::wrap_stream(body));
        }
        let sent = tokio::time::timeout(answer, request.send()).await;
        let response = match sent {
            Err(_) => return Err(ApiError::new(codes::INSTANCE_TIMEOUT, "the instance did not answer in time")),
            Ok(Err(err)) => return Err(failure(&err)),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok(respond(status, headers, response.bytes_stream().map_err(std::io::Error::other)))
    }
}

fn internal_refused() -> ApiError {
    ApiError::new(
        codes::TARGET_NOT_REGISTERED,
        "the instance's address is internal (loopback, private or link-local) and not in registry.allow_private",
    )
}

/// What a failed call to an instance means for the caller.
fn failure(err: &reqwest::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return api.clone();
        }
        if cause.downcast_ref::<InternalAddress>().is_some() {
            return internal_refused();
        }
        source = cause.source();
    }
    if err.is_timeout() {
        return ApiError::new(codes::INSTANCE_TIMEOUT, "the instance did not answer in time");
    }
    let what = if err.is_connect() { "could not connect to the instance" } else { "the instance dropped the request" };
    ApiError::new(codes::INSTANCE_UNREACHABLE, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_key_stay_behind() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-api-key", "rhk_key"),
            ("authorization", "Bearer rhk_key"),
            ("x-eckwms-target-url", "/a"),
            ("x-forwarded-for", "203.0.113.9"),
            ("content-type", "application/json"),
            ("x-device-id", "d"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let out = request_headers(&headers, "rhk_key", Some("198.51.100.7".parse().unwrap()));
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "x-device-id", "x-forwarded-for"], "{out:?}");
        assert_eq!(out["x-forwarded-for"], "203.0.113.9, 198.51.100.7");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer instance-own"));
        let out = request_headers(&headers, "rhk_key", None);
        assert_eq!(out[header::AUTHORIZATION], "Bearer instance-own", "the instance's own credential passes");
    }
}
