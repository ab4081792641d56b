//! `GET /ws/device`: the device's WebSocket. Everything that can be refused
//! is checked before the upgrade, so a refusal is an ordinary HTTP error.

mod account;
pub mod frames;
mod session;
mod uplink;

pub use session::Handshake;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use relayhub_core::devices::Attach;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::Query;
use relayhub_core::identity::ApiKeyAuth;
use relayhub_core::ids::{DeviceId, LicenseNumber};
use relayhub_core::secret::{Secret, SecretKind};
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::Relay;

/// Credentials for clients that cannot set headers on a WebSocket request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectParams {
    /// The app API key (else header `X-Api-Key`).
    pub api_key: Option<String>,
    /// The device's UUID (else header `X-Device-Id`).
    #[param(value_type = Option<DeviceId>)]
    pub device_id: Option<String>,
    /// The license number (else header `X-License`).
    #[param(value_type = Option<LicenseNumber>)]
    pub license: Option<String>,
    /// The settings version the device already has (else header
    /// `X-Settings-Version`); without it the current settings are sent
    /// after `hello`.
    #[param(minimum = 0)]
    pub settings_version: Option<i64>,
    /// The device's own secret, from its first `hello` (else header
    /// `X-Device-Secret`).
    pub device_secret: Option<String>,
}

/// A value from its header, else from the query; an empty header counts as
/// none.
fn pick_optional<'a>(headers: &'a HeaderMap, header: &str, query: Option<&'a str>) -> Option<&'a str> {
    let present = |v: &&str| !v.trim().is_empty();
    headers.get(header).and_then(|v| v.to_str().ok()).filter(present).or(query.filter(present)).map(str::trim)
}

/// [`pick_optional`], refusing when neither is there.
fn pick<'a>(headers: &'a HeaderMap, header: &str, query: Option<&'a str>, what: &str) -> Result<&'a str, ApiError> {
    pick_optional(headers, header, query)
        .ok_or_else(|| ApiError::new(ErrorCode::MISSING_FIELD, format!("send the {what} as '{header}'")))
}

/// The refusal of a device that may not bind now.
fn too_many_new_devices(wait: &governor::NotUntil<governor::clock::QuantaInstant>, per_minute: u32) -> ApiError {
    let seconds = relayhub_core::rate::retry_seconds(wait);
    ApiError::new(
        ErrorCode::RATE_LIMITED,
        format!(
            "this app key bound {per_minute} new devices into this license in the last minute \
             (relay.new_devices_per_minute); retry in {seconds} s"
        ),
    )
    .retry_after(seconds)
}

/// Opens a device's WebSocket.
///
/// Frames are JSON text with a `type`. Server → device: `hello` (first),
/// `settings` (after `hello`, and whenever they change), `message` (in
/// `seq` order), `published`, `linked`, `error`, `pong`. Device → server:
/// `ack` (`id` or `ids`), `publish` (`ref`, `data`), `settings` (`version`,
/// `settings`), `link_account` / `restore` (`id_token`), `ping`. A
/// device connecting again replaces its older connection (closed with code
/// 4000). Unless its license is `open`, a device's first connection gets
/// its `device_secret` in `hello`, and every later one must present it.
/// Close codes: 1001 shutdown or idle, 4001 key revoked, 4003
/// license expired, 4004 device unbound.
#[utoipa::path(
    get,
    path = "/ws/device",
    operation_id = "connect_device",
    tag = "device",
    params(
        ConnectParams,
        ("X-Api-Key" = Option<String>, Header, description = "The app API key"),
        ("X-Device-Id" = Option<DeviceId>, Header, description = "The device's UUID, generated on the device"),
        ("X-License" = Option<LicenseNumber>, Header, description = "The license number"),
        ("X-Settings-Version" = Option<i64>, Header, description = "The settings version the device has", minimum = 0),
        ("X-Device-Secret" = Option<String>, Header, description = "The device's own secret, from its first `hello`"),
    ),
    responses(
        (status = 101, description = "Upgraded; the server sends `hello` first"),
        (status = 400, description = "Not a WebSocket upgrade, or a header is missing", body = relayhub_core::error::ErrorBody),
        (status = 401, description = "`invalid_api_key`: missing, unknown or revoked API key; `invalid_device_secret`: the device has a secret and it was not presented, or another was", body = relayhub_core::error::ErrorBody),
        (status = 403, description = "`device_bound_elsewhere`: the device is bound to another license; `device_not_registered`: the license is `preregistered` and the back office has not bound this id", body = relayhub_core::error::ErrorBody),
        (status = 404, description = "`license_not_found`: the license is unknown, expired or outside the app key's licenses (one answer for all)", body = relayhub_core::error::ErrorBody),
        (status = 409, description = "The license has no room for another device", body = relayhub_core::error::ErrorBody),
        (status = 429, description = "`rate_limited`: this app key bound `relay.new_devices_per_minute` new devices into the license in the last minute", body = relayhub_core::error::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn connect(
    State(relay): State<Relay>,
    ApiKeyAuth(key): ApiKeyAuth,
    Query(params): Query<ConnectParams>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let device_id = DeviceId::parse(pick(&headers, "x-device-id", params.device_id.as_deref(), "device id")?)?;
    let number = LicenseNumber::parse(pick(&headers, "x-license", params.license.as_deref(), "license number")?)?;
    // An unknown and an expired license read alike: the app key is in
    // every phone, so its holder learns no more than "not usable here";
    // the back office tells its users why. The log keeps the reason.
    let unusable =
        || ApiError::new(ErrorCode::LICENSE_NOT_FOUND, format!("license {number} is unknown or not in force"));
    let license = match relay.identity.license(&number).await? {
        Some(license) => license,
        None => {
            tracing::info!(license = %number, reason = "unknown", "device refused");
            return Err(unusable());
        }
    };
    if !key.scope.admits(license.pk) {
        tracing::info!(license = %number, reason = "outside the app key's licenses", key = %key.info.id, "device refused");
        return Err(unusable());
    }
    if let Err(err) = license.ensure_active(Timestamp::now()) {
        tracing::info!(license = %number, reason = %err.message, "device refused");
        return Err(unusable());
    }
    let upgrade = upgrade.map_err(|rejection| ApiError::new(ErrorCode::BAD_REQUEST, rejection.body_text()))?;
    let presented =
        pick_optional(&headers, "x-device-secret", params.device_secret.as_deref()).map(|s| Secret::new(s).hash());
    let fresh = Secret::generate(SecretKind::DEVICE_SECRET);
    let (limiter, per_minute, bucket) =
        (relay.new_devices.clone(), relay.config.new_devices_per_minute, (key.info.id.clone(), license.pk));
    let may_bind = move || limiter.check_key(&bucket).map_err(|wait| too_many_new_devices(&wait, per_minute));
    let request = Attach { license: &license, device: &device_id, presented, fresh: fresh.hash(), may_bind: &may_bind };
    let attached = relay.devices.attach(request).await.inspect_err(|err| {
        if let relayhub_core::store::StoreError::Rejected(err) = err {
            tracing::info!(device = %device_id, license = %number, code = err.code.as_str(), "device refused");
        }
    })?;
    let device = attached.device;
    let device_secret = attached.issued.then_some(fresh);
    let pending = relay.queue.pending_counts(&[device.pk]).await?.get(&device.pk).copied().unwrap_or(0);
    let settings_version = match headers.get("x-settings-version") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| ApiError::invalid_field("X-Settings-Version must be a number"))?,
        ),
        None => params.settings_version,
    };
    // Boxed: the upgrade task keeps its callback's room for the socket's
    // whole life, so the callback holds two pointers, not the handshake.
    let handshake =
        Box::new(Handshake { device, pending, license: number, api_key: key.info.id, settings_version, device_secret });
    let gateway = relay.gateway.clone();
    let heartbeat = gateway.default_heartbeat();
    Ok(gateway.accept(upgrade, "device", heartbeat, move |conn| session::run(relay, conn, *handshake)))
}
