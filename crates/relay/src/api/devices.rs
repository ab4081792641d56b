//! The license's devices and the license itself.

use axum::extract::State;
use axum::http::StatusCode;
use relayhub_core::devices::DeviceRecord;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{Json, PageParams, Path, Query};
use relayhub_core::identity::{LicenseAuth, LicenseView};
use relayhub_core::ids::DeviceId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Relay;
use crate::model::DeviceInfo;

impl Relay {
    /// The back-office's view of devices: the core's records and their
    /// pending counts.
    pub(crate) async fn infos(&self, records: Vec<DeviceRecord>) -> Result<Vec<DeviceInfo>, ApiError> {
        let pks: Vec<_> = records.iter().map(|r| r.pk).collect();
        let counts = self.queue.pending_counts(&pks).await?;
        Ok(records
            .into_iter()
            .map(|r| {
                let pending = counts.get(&r.pk).copied().unwrap_or(0);
                DeviceInfo::new(r, pending)
            })
            .collect())
    }

    pub(crate) async fn info(&self, record: DeviceRecord) -> Result<DeviceInfo, ApiError> {
        let mut infos = self.infos(vec![record]).await?;
        infos.pop().ok_or_else(|| ApiError::new(ErrorCode::INTERNAL, "a device went missing"))
    }
}

/// A page of the license's devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
}

fn device_not_found(device: &DeviceId) -> ApiError {
    relayhub_core::devices::not_found(device)
}

/// This license's devices: `device_id`, `status`, `online`, `last_seen`,
/// `pending` (messages not yet acknowledged).
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    operation_id = "list_devices",
    tag = "devices",
    params(PageParams),
    responses((status = 200, body = DeviceList)),
    security(("bearer" = []))
)]
pub async fn list(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Query(page): Query<PageParams>,
) -> Result<Json<DeviceList>, ApiError> {
    let page = page.request()?;
    let found = relay.devices.devices(license.pk, page).await?;
    let devices = relay.infos(found.items).await?;
    Ok(Json(DeviceList { devices, page: page.page, size: page.size, total: found.total }))
}

/// One device of this license.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{device_id}",
    operation_id = "get_device",
    tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device's id")),
    responses(
        (status = 200, body = DeviceInfo),
        (status = 404, description = "No such device in this license", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
) -> Result<Json<DeviceInfo>, ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    let record = relay.devices.device(license.pk, &device_id).await?.ok_or_else(|| device_not_found(&device_id))?;
    Ok(Json(relay.info(record).await?))
}

/// Binds a device to this license in advance (201), or confirms it is (200).
#[utoipa::path(
    put,
    path = "/api/v1/devices/{device_id}",
    operation_id = "bind_device",
    tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device's id")),
    responses(
        (status = 201, description = "Bound now", body = DeviceInfo),
        (status = 200, description = "Was already bound", body = DeviceInfo),
        (status = 404, description = "The device belongs to another license", body = ErrorBody),
        (status = 409, description = "The license has no room for another device", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn bind(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
) -> Result<(StatusCode, Json<DeviceInfo>), ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    let (record, created) = relay.devices.bind(&license, &device_id).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(relay.info(record).await?)))
}

/// Unbinds a device: its queue is dropped, its connection closed (code
/// 4004), and it counts no more toward `max_devices`.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{device_id}",
    operation_id = "unbind_device",
    tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device's id")),
    responses(
        (status = 204, description = "Unbound"),
        (status = 404, description = "No such device in this license", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unbind(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    relay.devices.unbind(license.pk, &device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets a device's secret, so that its next connection (a reinstalled
/// app) gets a new one in `hello`. The connected device, if any, stays
/// connected until a new connection replaces it.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{device_id}/reset",
    operation_id = "reset_device",
    tag = "devices",
    params(("device_id" = DeviceId, Path, description = "The device's id")),
    responses(
        (status = 200, description = "Reset: `has_secret` is false", body = DeviceInfo),
        (status = 404, description = "No such device in this license", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reset(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
) -> Result<Json<DeviceInfo>, ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    let record = relay.devices.reset_secret(license.pk, &device_id).await?;
    tracing::info!(device = %device_id, license = %license.number, "device secret reset");
    Ok(Json(relay.info(record).await?))
}

/// This license's parameters and how many devices it uses.
#[utoipa::path(
    get,
    path = "/api/v1/license",
    operation_id = "get_license",
    tag = "license",
    responses((status = 200, body = LicenseView)),
    security(("bearer" = []))
)]
pub async fn license(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
) -> Result<Json<LicenseView>, ApiError> {
    let devices = relay.devices.device_count(license.pk).await?;
    Ok(Json(license.view(Some(devices))))
}
