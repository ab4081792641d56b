//! Devices: binding, presence, listing.

use relayhub_core::error::ErrorCode;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_relay::model::{DeviceInfo, DeviceStatus};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, Row, Transaction};

use crate::error::SqlResult;
use crate::time::{opt_time, time};

/// A bound device as writes see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceRow {
    pub pk: DevicePk,
    pub license: LicensePk,
    pub pending: i64,
}

/// Who asks: a producer gets 404 for another license's device (it must not
/// learn it exists), the device itself 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Queue,
    Connect,
}

pub(crate) fn not_found(device: &DeviceId) -> StoreError {
    StoreError::rejected(ErrorCode::DeviceNotFound, format!("no device {device} in this license"))
}

pub(crate) fn bound_elsewhere(device: &DeviceId) -> StoreError {
    StoreError::rejected(ErrorCode::DeviceBoundElsewhere, format!("device {device} is bound to another license"))
}

pub(crate) fn device_limit(license: &License, max: u32) -> StoreError {
    StoreError::rejected(
        ErrorCode::DeviceLimit,
        format!("license {} already has its maximum of {max} devices", license.number),
    )
}

fn row(r: &PgRow) -> StoreResult<DeviceRow> {
    Ok(DeviceRow {
        pk: DevicePk(r.try_get("pk").sql()?),
        license: LicensePk(r.try_get("license_pk").sql()?),
        pending: r.try_get("pending").sql()?,
    })
}

pub(crate) async fn find<'e>(db: impl PgExecutor<'e>, device: &DeviceId) -> StoreResult<Option<DeviceRow>> {
    let found = sqlx::query("SELECT pk, license_pk, pending FROM devices WHERE device_id = $1")
        .bind(device.as_str())
        .fetch_optional(db)
        .await
        .sql()?;
    found.as_ref().map(row).transpose()
}

/// The device, bound to `license` now if it was not bound to any. The
/// license row is locked while binding, so `max_devices` holds however many
/// nodes bind at once.
pub(crate) async fn resolve_or_bind(
    tx: &mut Transaction<'_, Postgres>,
    license: &License,
    device: &DeviceId,
    purpose: Purpose,
) -> StoreResult<(DeviceRow, bool)> {
    if let Some(found) = find(&mut **tx, device).await? {
        return match found.license == license.pk {
            true => Ok((found, false)),
            false if purpose == Purpose::Connect => Err(bound_elsewhere(device)),
            false => Err(not_found(device)),
        };
    }
    sqlx::query("SELECT 1 FROM licenses WHERE pk = $1 FOR UPDATE").bind(license.pk.0).execute(&mut **tx).await.sql()?;
    if let Some(max) = license.max_devices {
        let used: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE license_pk = $1")
            .bind(license.pk.0)
            .fetch_one(&mut **tx)
            .await
            .sql()?;
        if used >= i64::from(max) {
            return Err(device_limit(license, max));
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO devices (device_id, license_pk, bound_at) VALUES ($1, $2, now())
         ON CONFLICT (device_id) DO NOTHING RETURNING pk, license_pk, pending",
    )
    .bind(device.as_str())
    .bind(license.pk.0)
    .fetch_optional(&mut **tx)
    .await
    .sql()?;
    match inserted {
        Some(r) => Ok((row(&r)?, true)),
        // Another node bound it a moment ago (the insert waited for it):
        // decide as if it had been there.
        None => match find(&mut **tx, device).await? {
            Some(found) if found.license == license.pk => Ok((found, false)),
            Some(_) if purpose == Purpose::Connect => Err(bound_elsewhere(device)),
            _ => Err(not_found(device)),
        },
    }
}

/// A device's pk if it is bound to this license.
pub(crate) async fn owned<'e>(
    db: impl PgExecutor<'e>,
    license: LicensePk,
    device: &DeviceId,
) -> StoreResult<Option<DevicePk>> {
    let pk: Option<i64> = sqlx::query_scalar("SELECT pk FROM devices WHERE device_id = $1 AND license_pk = $2")
        .bind(device.as_str())
        .bind(license.0)
        .fetch_optional(db)
        .await
        .sql()?;
    Ok(pk.map(DevicePk))
}

/// `SELECT` of a device's public view and a filter, as one literal. Online
/// = held by a node that sent a heartbeat in the last 30 seconds (beats
/// come every 5).
macro_rules! select_info {
    ($filter:literal) => {
        concat!(
            "SELECT d.device_id, d.active, d.last_seen, d.pending, d.bound_at,
                    (d.online_node IS NOT NULL AND EXISTS (
                        SELECT 1 FROM nodes n WHERE n.id = d.online_node
                        AND n.seen_at > now() - interval '30 seconds')) AS online
             FROM devices d WHERE ",
            $filter
        )
    };
}

fn info_from_row(r: &PgRow) -> StoreResult<DeviceInfo> {
    let device_id: String = r.try_get("device_id").sql()?;
    Ok(DeviceInfo {
        device_id: DeviceId::parse(&device_id).map_err(|e| StoreError::Internal(e.message))?,
        status: if r.try_get("active").sql()? { DeviceStatus::Active } else { DeviceStatus::Registered },
        online: r.try_get("online").sql()?,
        last_seen: opt_time(r.try_get("last_seen").sql()?),
        pending: r.try_get::<i64, _>("pending").sql()?.max(0) as u64,
        bound_at: time(r.try_get("bound_at").sql()?),
    })
}

pub(crate) async fn info<'e>(
    db: impl PgExecutor<'e>,
    license: LicensePk,
    device: &DeviceId,
) -> StoreResult<Option<DeviceInfo>> {
    let found = sqlx::query(select_info!("d.device_id = $1 AND d.license_pk = $2"))
        .bind(device.as_str())
        .bind(license.0)
        .fetch_optional(db)
        .await
        .sql()?;
    found.as_ref().map(info_from_row).transpose()
}

pub(crate) async fn list(pool: &sqlx::PgPool, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceInfo>> {
    let total = count(pool, license).await?;
    let rows = sqlx::query(select_info!("d.license_pk = $1 ORDER BY d.device_id LIMIT $2 OFFSET $3"))
        .bind(license.0)
        .bind(i64::from(page.size))
        .bind(page.offset() as i64)
        .fetch_all(pool)
        .await
        .sql()?;
    Ok(Page { items: rows.iter().map(info_from_row).collect::<StoreResult<_>>()?, total })
}

pub(crate) async fn count<'e>(db: impl PgExecutor<'e>, license: LicensePk) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE license_pk = $1")
        .bind(license.0)
        .fetch_one(db)
        .await
        .sql()?;
    Ok(n.max(0) as u64)
}
