//! Seed 001's routes: `GET /ECK/HEALTH`, `POST /ECK/API/DEVICE/REGISTER`,
//! `POST /ECK/PROXY`, and the tunnel instances behind NAT hold,
//! `GET /ws/instance`. Errors on `/ECK/` use seed 001's shape,
//! `{"success":false,"error":{"code","message"}}`.

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::Credentials;
use relayhub_core::http::parse_json;
use relayhub_core::identity::{check_api_key, presented_api_key};
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Registry;
use crate::codes;
use crate::model::{DeviceStatus, RegisteredDevice, Registration};
use crate::proxy::{self, from_pairs, to_pairs};
use crate::rules;
use crate::tunnel::hub::TunnelRequest;

/// The largest registration body.
const MAX_REGISTER_BODY: usize = 16 * 1024;
/// How often a proxying device's `last_seen` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// An error in seed 001's shape.
#[derive(Debug)]
pub struct EckError(pub ApiError);

impl From<ApiError> for EckError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<relayhub_core::store::StoreError> for EckError {
    fn from(error: relayhub_core::store::StoreError) -> Self {
        Self(error.into())
    }
}

/// Seed 001's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct EckErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: relayhub_core::error::ErrorDetail,
}

impl IntoResponse for EckError {
    /// The platform's answer for this error (its status, `Retry-After`,
    /// `WWW-Authenticate`, JSON), with seed 001's body.
    fn into_response(self) -> Response {
        let body = EckErrorBody { success: false, error: self.0.body().error };
        let mut response = self.0.into_response();
        *response.body_mut() = axum::body::Body::from(serde_json::to_vec(&body).unwrap_or_default());
        response
    }
}

/// The credential of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.trim())
}

/// The app API key: `X-Api-Key`, `Authorization: Bearer`, or `?api_key=`.
fn presented_key(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    presented_api_key(headers, uri).or_else(|| bearer(headers).map(str::to_owned))
}

impl Registry {
    /// The caller's valid API key (its id, and the key itself), within the
    /// rate limits.
    async fn admit(&self, parts: &axum::http::request::Parts) -> Result<(String, String), ApiError> {
        let address = relayhub_core::http::client_ip(parts);
        let raw = presented_key(&parts.headers, &parts.uri).ok_or_else(|| {
            ApiError::new(ErrorCode::INVALID_API_KEY, "send the app API key as 'X-Api-Key' or 'Authorization: Bearer'")
        })?;
        // Addresses are limited before the key is checked: guessing keys
        // costs the guesser its budget too.
        if let Some(address) = address {
            self.limits.check_address(relayhub_core::client::address_key(address))?;
        }
        let key = check_api_key(self.identity.as_ref(), &raw).await?;
        // A valid key: its uploads are no longer held to the deadline of
        // connections without a credential.
        relayhub_core::admission::Connection::of(parts).authenticated();
        self.limits.check_key(&key.info.id)?;
        Ok((key.info.id, raw))
    }
}

/// `GET /ECK/HEALTH`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EckHealth {
    /// `ok`, or `degraded` when storage does not answer.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    pub version: &'static str,
}

/// Whether the registry and its database answer. Needs no key.
#[utoipa::path(
    get,
    path = "/ECK/HEALTH",
    operation_id = "eck_health",
    tag = "registry",
    responses(
        (status = 200, description = "Serving, database reachable", body = EckHealth),
        (status = 503, description = "The database does not answer", body = EckHealth),
    )
)]
pub async fn health(State(registry): State<Registry>) -> Response {
    let ping = tokio::time::timeout(Duration::from_secs(2), registry.backend.ping()).await;
    let up = matches!(ping, Ok(Ok(())));
    let body = EckHealth {
        status: if up { "ok" } else { "degraded" },
        database: if up { "ok" } else { "unavailable" },
        version: env!("CARGO_PKG_VERSION"),
    };
    let status = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// A device's registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// A UUID; any usual spelling (hyphenated, simple, braced, URN) is
    /// accepted and kept hyphenated, lowercase.
    #[schema(example = "6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10", format = Uuid)]
    pub device_uuid: String,
    /// The instance (warehouse server) the device belongs to.
    #[schema(
        example = "warehouse-berlin",
        min_length = 1,
        max_length = 128,
        pattern = r"^\s*[A-Za-z0-9._:-]{1,128}\s*$"
    )]
    pub instance_id: String,
    /// Where the instance is reached (`http`/`https`); leave out for an
    /// instance that holds a tunnel.
    #[schema(example = "https://wh-berlin.example.com", max_length = 2048)]
    #[serde(default)]
    pub public_url: Option<String>,
}

/// A registration's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// Always `true`.
    pub success: bool,
    pub device: RegisteredDevice,
}

/// Registers a device with its instance, or refreshes a known one. New
/// devices start `pending` (or `active` with `registry.auto_approve`).
#[utoipa::path(
    post,
    path = "/ECK/API/DEVICE/REGISTER",
    operation_id = "eck_register_device",
    tag = "registry",
    request_body = RegisterRequest,
    params(("X-Api-Key" = Option<String>, Header, description = "The app API key (or `Authorization: Bearer`)")),
    responses(
        (status = 200, description = "Registered (or refreshed)", body = RegisterResponse),
        (status = 400, description = "Malformed JSON or a missing field", body = EckErrorBody),
        (status = 401, description = "No API key, or a revoked one", body = EckErrorBody),
        (status = 403, description = "`device_blocked`", body = EckErrorBody),
        (status = 413, description = "The body is over 16 KiB", body = EckErrorBody),
        (status = 422, description = "A field is not valid (UUID, instance id, URL, internal address)", body = EckErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = EckErrorBody),
        (status = 503, description = "Storage unavailable", body = EckErrorBody),
    )
)]
pub async fn register(State(registry): State<Registry>, request: Request) -> Result<Response, EckError> {
    let (parts, body) = request.into_parts();
    registry.admit(&parts).await?;
    let bytes = axum::body::to_bytes(body, MAX_REGISTER_BODY).await.map_err(|_| {
        ApiError::new(ErrorCode::PAYLOAD_TOO_LARGE, format!("a registration is at most {MAX_REGISTER_BODY} bytes"))
    })?;
    let asked: RegisterRequest = parse_json(&bytes)?;
    let device_uuid = rules::device_uuid(&asked.device_uuid)?;
    let instance_id = rules::instance_id(&asked.instance_id)?;
    let public_url = match asked.public_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(raw) => {
            let url = rules::public_url(raw)?;
            registry.upstream.check_resolves(&url).await?;
            Some(rules::url_text(&url))
        }
        None => None,
    };
    let initial = if registry.config.auto_approve { DeviceStatus::Active } else { DeviceStatus::Pending };
    let device = registry
        .devices
        .register(Registration { device_uuid, instance_id, public_url, initial, at: Timestamp::now() })
        .await?;
    Ok(axum::Json(RegisterResponse { success: true, device }).into_response())
}

/// Carries a device's request to its instance and streams the answer
/// back: the target in `X-eckWMS-Target-Url` (a path under the instance's
/// public URL, or a full URL under it), the method in
/// `X-eckWMS-Target-Method` (default `POST`), the body and end-to-end
/// headers as sent. Hop-by-hop headers and the API key stay here;
/// `X-Forwarded-For` gets the caller's address.
#[utoipa::path(
    post,
    path = "/ECK/PROXY",
    operation_id = "eck_proxy",
    tag = "registry",
    params(
        ("X-Api-Key" = Option<String>, Header, description = "The app API key (or `Authorization: Bearer`)"),
        ("X-Device-Id" = uuid::Uuid, Header, description = "The registered device making the call (a UUID)"),
        ("X-eckWMS-Target-Url" = String, Header, description = "A path (`/api/items?x=1`) or a full URL under the instance's public URL"),
        ("X-eckWMS-Target-Method" = Option<String>, Header, description = "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS; default POST"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "Sent to the instance as is, streamed; at most `registry.max_body_bytes`"),
    responses(
        (status = 200, description = "The instance's answer: its status, end-to-end headers and body, whatever they are"),
        (status = 400, description = "A missing or malformed header", body = EckErrorBody),
        (status = 401, description = "No API key, or a revoked one", body = EckErrorBody),
        (status = 403, description = "`device_pending`, `device_blocked` or `target_not_registered`", body = EckErrorBody),
        (status = 404, description = "`device_not_found` or `instance_unknown`", body = EckErrorBody),
        (status = 413, description = "The body is over `registry.max_body_bytes`", body = EckErrorBody),
        (status = 422, description = "`X-Device-Id` is not a UUID", body = EckErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = EckErrorBody),
        (status = 502, description = "`instance_unreachable`", body = EckErrorBody),
        (status = 503, description = "Storage unavailable, or the tunnel is busy", body = EckErrorBody),
        (status = 504, description = "`instance_timeout`", body = EckErrorBody),
    )
)]
pub async fn proxy(State(registry): State<Registry>, request: Request) -> Result<Response, EckError> {
    let (parts, body) = request.into_parts();
    let (_, raw_key) = registry.admit(&parts).await?;
    let headers = &parts.headers;
    let text = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim));
    let device_id = match text("x-device-id") {
        Some(Ok(id)) => rules::device_uuid(id)?,
        _ => return Err(ApiError::new(ErrorCode::MISSING_FIELD, "send the device's UUID in X-Device-Id").into()),
    };
    let target = match text("x-eckwms-target-url") {
        Some(Ok(target)) => target.to_owned(),
        _ => return Err(ApiError::new(ErrorCode::MISSING_FIELD, "send the target in X-eckWMS-Target-Url").into()),
    };
    let method = match text("x-eckwms-target-method") {
        None => Method::POST,
        Some(Ok(name)) => target_method(name)?,
        Some(Err(_)) => return Err(target_method("?").unwrap_err().into()),
    };
    let max = registry.config.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(proxy::too_large(max).into());
    }
    let device = registry
        .devices
        .device(&device_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::DEVICE_NOT_FOUND, "no device registered with this UUID"))?;
    rules::may_proxy(device.status)?;
    if Timestamp::now().millis_since(device.last_seen) >= TOUCH_EVERY.as_millis() as u64 {
        registry.devices.touch(&device.device_uuid, Timestamp::now()).await?;
    }
    // The client as trusted proxies report it, not our own nginx.
    let peer = relayhub_core::http::client_ip(&parts);
    let forwarded = proxy::request_headers(headers, &raw_key, peer);
    let body = proxy::has_body(headers).then(|| proxy::limited(body, max));
    let answer = registry.config.timeout;
    registry.metrics.proxied.inc();
    if let Some(public_url) = &device.public_url {
        let base = rules::public_url(public_url)?;
        let url = rules::target(&base, &target)?;
        return Ok(registry.upstream.forward(method, url, forwarded, body, answer).await?);
    }
    let Some(path) = rules::path_form(&target) else {
        return Err(ApiError::new(
            codes::TARGET_NOT_REGISTERED,
            "this instance is reached through its tunnel: name the target as a path",
        )
        .into());
    };
    let Some(tunnel) = registry.tunnels.get(&device.instance_id) else {
        let known = registry.tokens.instance_token(&device.instance_id).await?.is_some();
        return Err(if known {
            ApiError::new(codes::INSTANCE_UNREACHABLE, "the instance's tunnel is not connected to this node")
        } else {
            ApiError::new(codes::INSTANCE_UNKNOWN, "the instance has no public URL and no tunnel")
        }
        .into());
    };
    let request = TunnelRequest {
        method: method.to_string(),
        path: path.to_owned(),
        headers: to_pairs(&forwarded),
        body,
        timeout: answer,
    };
    let (head, body) = tunnel.request(request).await?;
    Ok(proxy::respond(head.status, from_pairs(&head.headers), body))
}

/// The methods the proxy carries.
fn target_method(name: &str) -> Result<Method, ApiError> {
    const CARRIED: [Method; 7] =
        [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
    CARRIED.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(name)).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BAD_REQUEST,
            "X-eckWMS-Target-Method must be GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
        )
    })
}

/// An instance behind NAT opens its tunnel: the app API key, its id and
/// its tunnel token (`relayhub registry instance-token`). A newer tunnel
/// of the same instance replaces an older one (close 4000).
#[utoipa::path(
    get,
    path = "/ws/instance",
    operation_id = "instance_tunnel",
    tag = "registry",
    params(
        ("X-Api-Key" = Option<String>, Header, description = "The app API key"),
        ("X-Instance-Id" = String, Header, description = "The instance's id, as its devices register it"),
        ("Authorization" = String, Header, description = "`Bearer <instance token>`"),
    ),
    responses(
        (status = 101, description = "The tunnel is open (frames: docs/protocol/tunnel.md)"),
        (status = 400, description = "Not a WebSocket upgrade", body = EckErrorBody),
        (status = 401, description = "No valid API key or instance token", body = EckErrorBody),
        (status = 422, description = "X-Instance-Id is not valid", body = EckErrorBody),
        (status = 429, description = "Rate limited", body = EckErrorBody),
    )
)]
pub async fn tunnel(State(registry): State<Registry>, request: Request) -> Result<Response, EckError> {
    let (mut parts, _) = request.into_parts();
    let address = relayhub_core::http::client_ip(&parts);
    if let Some(address) = address {
        registry.limits.check_address(address)?;
    }
    // Authorization carries the instance's token here, never the key.
    let raw = presented_api_key(&parts.headers, &parts.uri)
        .ok_or_else(|| ApiError::new(ErrorCode::INVALID_API_KEY, "send the app API key as 'X-Api-Key'"))?;
    let key = check_api_key(registry.identity.as_ref(), &raw).await?;
    let token = bearer(&parts.headers).map(|v| Secret::new(v).hash()).ok_or_else(|| {
        ApiError::new(ErrorCode::MISSING_TOKEN, "send the instance's tunnel token as 'Authorization: Bearer'")
    })?;
    let instance = parts.headers.get("x-instance-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let instance = rules::instance_id(instance)?;
    let stored = registry.tokens.instance_token(&instance).await?;
    if !stored.is_some_and(|stored| token.ct_eq(&stored)) {
        return Err(ApiError::new(ErrorCode::INVALID_TOKEN, "the instance's tunnel token is not valid").into());
    }
    let upgrade = <WebSocketUpgrade as axum::extract::FromRequestParts<()>>::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| ApiError::new(ErrorCode::BAD_REQUEST, "GET /ws/instance must be a WebSocket upgrade"))?;
    let tunnels = registry.tunnels.clone();
    let max_streams = registry.config.tunnel_streams;
    let gateway = &registry.gateway;
    Ok(gateway.accept(upgrade, "instance", gateway.default_heartbeat(), move |conn| async move {
        // Revoking the key closes the tunnel (4001), as it does devices'.
        conn.depend_on(Credentials { api_key: Some(key.info.id), ..Credentials::default() });
        tunnels.serve(conn, instance, token, max_streams).await;
    }))
}
