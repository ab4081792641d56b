//! The registry in the operator API, `/api/admin/v1/registry/devices`:
//! registered devices listed, approved, blocked and unblocked by an
//! operator's token, through the same method as `relayhub registry`, each
//! change recorded in the audit log.

use axum::extract::State;
use axum::http::request::Parts;
use relayhub_core::error::{ApiError, ErrorBody};
use relayhub_core::http::{Json, Path, Query};
use relayhub_core::operators::{Auditor, OperatorAuth};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Registry;
use crate::model::{DeviceFilter, DeviceStatus, RegisteredDevice};
use crate::rules;

/// The most devices one answer lists.
const MAX_LIMIT: usize = 1000;

/// Which devices to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Only devices in this status.
    pub status: Option<DeviceStatus>,
    /// Only devices of this instance.
    #[param(max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub instance: Option<String>,
    /// How many, 1–1000 (default 100), from the earliest registered.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Registered devices, earliest registered first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryDeviceList {
    pub items: Vec<RegisteredDevice>,
    /// More devices match than `limit`: narrow by status or instance.
    pub truncated: bool,
}

/// The status to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryStatusChange {
    /// `active` approves a pending device or unblocks a blocked one;
    /// `blocked` refuses it everywhere from its next call.
    pub status: DeviceStatus,
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/registry/devices",
    operation_id = "admin_list_registry_devices",
    tag = "admin",
    security(("operator" = [])),
    params(DeviceQuery),
    responses((status = 200, description = "Devices registered with the server's instances", body = RegistryDeviceList))
)]
pub async fn list_devices(
    State(registry): State<Registry>,
    _: OperatorAuth,
    Query(query): Query<DeviceQuery>,
) -> Result<Json<RegistryDeviceList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(format!("limit is 1-{MAX_LIMIT}")));
    }
    let instance_id = query.instance.as_deref().map(rules::instance_id).transpose()?;
    let mut items = registry.devices.devices(DeviceFilter { status: query.status, instance_id }, limit + 1).await?;
    let truncated = items.len() > limit;
    items.truncate(limit);
    Ok(Json(RegistryDeviceList { items, truncated }))
}

#[utoipa::path(
    patch,
    path = "/api/admin/v1/registry/devices/{device_uuid}",
    operation_id = "admin_update_registry_device",
    tag = "admin",
    security(("operator" = [])),
    params(("device_uuid" = String, Path, description = "The device's UUID", max_length = 64)),
    request_body = RegistryStatusChange,
    responses(
        (status = 200, description = "The device as it is now (setting the status it has answers the same)", body = RegisteredDevice),
        (status = 404, description = "No such device (`device_not_found`)", body = ErrorBody),
        (status = 422, description = "Not a UUID, or `pending` (a device is never sent back to waiting)", body = ErrorBody),
    )
)]
pub async fn update_device(
    State(registry): State<Registry>,
    operator: OperatorAuth,
    parts: Parts,
    Path(device_uuid): Path<String>,
    Json(change): Json<RegistryStatusChange>,
) -> Result<Json<RegisteredDevice>, ApiError> {
    if change.status == DeviceStatus::Pending {
        return Err(ApiError::invalid_field("status: active (approve, unblock) or blocked"));
    }
    let auditor = Auditor::operator(registry.audit.clone(), operator, &parts);
    Ok(Json(registry.set_device_status(&auditor, &device_uuid, change.status).await?))
}
