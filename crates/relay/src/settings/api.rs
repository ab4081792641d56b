//! `GET/PUT /api/v1/devices/{device_id}/settings` for the back-office.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{Body, Json, Path, integral, parse_json};
use relayhub_core::identity::LicenseAuth;
use relayhub_core::ids::DeviceId;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{Author, Document, Outcome, Proposal, Settings, Target};
use crate::Relay;
use crate::codes;

/// A settings write: the whole document as it should be, and the version
/// it was based on (0 for a device that has none yet).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsWrite {
    /// The version the document was based on (0 for none yet).
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "integral::required")]
    pub version: i64,
    #[schema(value_type = Object)]
    pub settings: Document,
}

/// A stored write: the resulting document and whether it had to be merged
/// with changes made since `version` of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsWritten {
    #[serde(flatten)]
    pub settings: Settings,
    pub merged: bool,
}

/// The 409 body: the error, the current document and the conflicting paths.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsConflict {
    pub error: relayhub_core::error::ErrorDetail,
    pub current: Settings,
    pub conflicts: Vec<String>,
}

fn with_etag(settings: &Settings, mut response: Response) -> Response {
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", settings.version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// Parses and size-checks a settings write (`limit` bytes of document).
pub fn parse_write(bytes: &[u8], limit: usize) -> Result<SettingsWrite, ApiError> {
    let write: SettingsWrite = parse_json(bytes)?;
    check(&write.settings, write.version, limit)?;
    Ok(write)
}

/// A document within `limit` bytes and a version that is not negative.
pub fn check(document: &Document, version: i64, limit: usize) -> Result<(), ApiError> {
    if version < 0 {
        return Err(ApiError::invalid_field("version: must be 0 or more"));
    }
    let size = serde_json::to_vec(document).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > limit {
        return Err(ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("settings of {size} bytes exceed the limit of {limit}"),
        ));
    }
    Ok(())
}

/// A device's settings and their version (also as the `ETag`).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{device_id}/settings",
    operation_id = "get_settings",
    tag = "settings",
    params(("device_id" = DeviceId, Path, description = "The device's id")),
    responses(
        (status = 200, body = Settings),
        (status = 404, description = "No such device in this license", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
) -> Result<Response, ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    let settings = relay.settings.settings(license.pk, &device_id).await?;
    Ok(with_etag(&settings, Json(&settings).into_response()))
}

/// Writes a device's settings; an online device gets them at once, an
/// offline one when it next connects. A device not yet bound is bound to
/// this license, as by a message.
///
/// The write names the version it was based on. If the settings changed
/// since, changes to different keys (at any depth) are merged and
/// `merged` is true; changes to the same key are refused with 409
/// `settings_conflict`, the current document and the conflicting paths.
#[utoipa::path(
    put,
    path = "/api/v1/devices/{device_id}/settings",
    operation_id = "put_settings",
    tag = "settings",
    params(("device_id" = DeviceId, Path, description = "The device's id")),
    request_body = SettingsWrite,
    responses(
        (status = 200, description = "Stored (merged if `merged`)", body = SettingsWritten),
        (status = 404, description = "The device belongs to another license", body = ErrorBody),
        (status = 409, description = "Conflicting changes; the current document is returned", body = SettingsConflict),
        (status = 413, description = "Settings over the size limit (default 64 KiB)", body = ErrorBody),
        (status = 422, description = "Not an object, or a bad version", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let device = DeviceId::parse(&device_id)?;
    let write = parse_write(&body, relay.config.settings_limit)?;
    let proposal = Proposal { base_version: write.version, document: write.settings, author: Author::BackOffice };
    match relay.settings.write_settings(Target::BackOffice { license, device }, proposal).await? {
        Outcome::Applied { settings, merged } => {
            let response = Json(SettingsWritten { settings: settings.clone(), merged }).into_response();
            Ok(with_etag(&settings, response))
        }
        Outcome::Conflict { current, paths, reason } => {
            let error = ApiError::new(codes::SETTINGS_CONFLICT, reason);
            let body = json!({"error": error.body().error, "current": current, "conflicts": paths});
            Ok((StatusCode::CONFLICT, Json(body)).into_response())
        }
    }
}
