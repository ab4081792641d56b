//! The core's devices on PostgreSQL: binding to a license (by the shared
//! rule, [`relayhub_core::devices::resolve`]), presence across nodes,
//! listing.

use async_trait::async_trait;
use relayhub_core::bus::Event;
use relayhub_core::devices::{
    self, Attach, Attached, Binding, DeviceEvent, DeviceRecord, DeviceRef, DeviceStatus, DeviceStore, PresenceStore,
    Purpose, SecretStep,
};
use relayhub_core::gateway::ConnId;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, Row, Transaction};

use crate::error::SqlResult;
use crate::time::{opt_time, time};
use crate::{PgStore, notify};

/// Who holds a device: its pk and license, if it is bound.
pub(crate) async fn owner<'e>(
    db: impl PgExecutor<'e>,
    device: &DeviceId,
) -> StoreResult<Option<(DevicePk, LicensePk)>> {
    let found: Option<(i64, i64)> = sqlx::query_as("SELECT pk, license_pk FROM devices WHERE device_id = $1")
        .bind(device.as_str())
        .fetch_optional(db)
        .await
        .sql()?;
    Ok(found.map(|(pk, license)| (DevicePk(pk), LicensePk(license))))
}

/// Who holds a device, and its secret's hash if it has one.
async fn owner_and_secret<'e>(
    db: impl PgExecutor<'e>,
    device: &DeviceId,
) -> StoreResult<Option<(DevicePk, LicensePk, Option<SecretHash>)>> {
    let found: Option<(i64, i64, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT pk, license_pk, secret_hash FROM devices WHERE device_id = $1")
            .bind(device.as_str())
            .fetch_optional(db)
            .await
            .sql()?;
    Ok(found.map(|(pk, license, secret)| {
        (DevicePk(pk), LicensePk(license), secret.and_then(|s| SecretHash::from_slice(&s)))
    }))
}

/// Locks a license's row, so that `max_devices` holds however many nodes
/// bind at once, and counts its devices.
pub(crate) async fn lock_and_count(tx: &mut Transaction<'_, Postgres>, license: LicensePk) -> StoreResult<u64> {
    sqlx::query("SELECT 1 FROM licenses WHERE pk = $1 FOR UPDATE").bind(license.0).execute(&mut **tx).await.sql()?;
    count(&mut **tx, license).await
}

/// The device, bound to `license` now if it was bound to none. Refuses as
/// the shared rule says.
pub(crate) async fn resolve_or_bind(
    tx: &mut Transaction<'_, Postgres>,
    license: &License,
    device: &DeviceId,
    purpose: Purpose,
) -> StoreResult<(DevicePk, bool)> {
    let held = owner(&mut **tx, device).await?;
    if let Binding::Bound =
        devices::resolve(device, held.map(|(_, l)| l), license, purpose).map_err(StoreError::Rejected)?
    {
        return held.map(|(pk, _)| (pk, false)).ok_or_else(|| StoreError::Internal("lost a device".into()));
    }
    let used = if license.max_devices.is_some() { lock_and_count(tx, license.pk).await? } else { 0 };
    devices::check_room(license, used, 1).map_err(StoreError::Rejected)?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO devices (device_id, license_pk, bound_at) VALUES ($1, $2, now())
         ON CONFLICT (device_id) DO NOTHING RETURNING pk",
    )
    .bind(device.as_str())
    .bind(license.pk.0)
    .fetch_optional(&mut **tx)
    .await
    .sql()?;
    match inserted {
        Some(pk) => Ok((DevicePk(pk), true)),
        // Another node bound it a moment ago (the insert waited for it):
        // decide as if it had been there.
        None => {
            let held = owner(&mut **tx, device).await?;
            devices::resolve(device, held.map(|(_, l)| l), license, purpose).map_err(StoreError::Rejected)?;
            held.map(|(pk, _)| (pk, false)).ok_or_else(|| StoreError::Internal("lost a device".into()))
        }
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

/// A device that is not this license's, as a store refusal.
pub(crate) fn not_found(device: &DeviceId) -> StoreError {
    StoreError::Rejected(devices::not_found(device))
}

/// `SELECT` of a device's record and a filter, as one literal. Online =
/// held by a node that sent a heartbeat in the last 30 seconds (beats come
/// every 5).
macro_rules! select_record {
    ($filter:literal) => {
        concat!(
            "SELECT d.pk, d.device_id, d.active, d.last_seen, d.bound_at, d.secret_hash IS NOT NULL AS has_secret,
                    (d.online_node IS NOT NULL AND EXISTS (
                        SELECT 1 FROM nodes n WHERE n.id = d.online_node
                        AND n.seen_at > now() - interval '30 seconds')) AS online
             FROM devices d WHERE ",
            $filter
        )
    };
}

fn record_from_row(r: &PgRow) -> StoreResult<DeviceRecord> {
    let device_id: String = r.try_get("device_id").sql()?;
    Ok(DeviceRecord {
        pk: DevicePk(r.try_get("pk").sql()?),
        device_id: DeviceId::parse(&device_id).map_err(|e| StoreError::Internal(e.message))?,
        status: if r.try_get("active").sql()? { DeviceStatus::Active } else { DeviceStatus::Registered },
        online: r.try_get("online").sql()?,
        last_seen: opt_time(r.try_get("last_seen").sql()?),
        bound_at: time(r.try_get("bound_at").sql()?),
        has_secret: r.try_get("has_secret").sql()?,
    })
}

pub(crate) async fn record<'e>(
    db: impl PgExecutor<'e>,
    license: LicensePk,
    device: &DeviceId,
) -> StoreResult<Option<DeviceRecord>> {
    let found = sqlx::query(select_record!("d.device_id = $1 AND d.license_pk = $2"))
        .bind(device.as_str())
        .bind(license.0)
        .fetch_optional(db)
        .await
        .sql()?;
    found.as_ref().map(record_from_row).transpose()
}

pub(crate) async fn count<'e>(db: impl PgExecutor<'e>, license: LicensePk) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE license_pk = $1")
        .bind(license.0)
        .fetch_one(db)
        .await
        .sql()?;
    Ok(n.max(0) as u64)
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn bind(&self, license: &License, device: &DeviceId) -> StoreResult<(DeviceRecord, bool)> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let (_, created) = resolve_or_bind(&mut tx, license, device, Purpose::Queue).await?;
        let record = record(&mut *tx, license.pk, device).await?.ok_or_else(|| not_found(device))?;
        tx.commit().await.sql()?;
        Ok((record, created))
    }

    async fn attach(&self, request: Attach<'_>) -> StoreResult<Attached> {
        let Attach { license, device, presented, fresh, may_bind } = request;
        let attached =
            |pk, issued| Attached { device: DeviceRef { pk, license: license.pk, device_id: device.clone() }, issued };
        let secret = |stored: Option<SecretHash>| {
            devices::device_secret(device, license.binding, stored.as_ref(), presented.as_ref())
                .map_err(StoreError::Rejected)
        };
        // Reconnects of bound devices, by far the common case, need no write.
        match owner_and_secret(&self.ctx.pool, device).await? {
            Some((pk, held, stored)) => {
                devices::resolve(device, Some(held), license, Purpose::Connect).map_err(StoreError::Rejected)?;
                if secret(stored)? != SecretStep::Issue {
                    return Ok(attached(pk, false));
                }
            }
            None => {
                // Refused now (preregistered) before the new-binding rate is spent.
                devices::resolve(device, None, license, Purpose::Connect).map_err(StoreError::Rejected)?;
                may_bind().map_err(StoreError::Rejected)?;
            }
        }
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let (pk, _) = resolve_or_bind(&mut tx, license, device, Purpose::Connect).await?;
        // The row lock: of two connections of a device issued a secret at
        // once, on any nodes, the second sees the first's and is refused.
        let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT secret_hash FROM devices WHERE pk = $1 FOR UPDATE")
            .bind(pk.0)
            .fetch_one(&mut *tx)
            .await
            .sql()?;
        let issued = secret(stored.and_then(|s| SecretHash::from_slice(&s)))? == SecretStep::Issue;
        if issued {
            sqlx::query("UPDATE devices SET secret_hash = $2 WHERE pk = $1")
                .bind(pk.0)
                .bind(fresh.as_bytes().as_slice())
                .execute(&mut *tx)
                .await
                .sql()?;
        }
        tx.commit().await.sql()?;
        Ok(attached(pk, issued))
    }

    async fn reset_secret(&self, license: LicensePk, device: &DeviceId) -> StoreResult<DeviceRecord> {
        let pk = owned(&self.ctx.pool, license, device).await?.ok_or_else(|| not_found(device))?;
        sqlx::query("UPDATE devices SET secret_hash = NULL WHERE pk = $1")
            .bind(pk.0)
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        record(&self.ctx.pool, license, device).await?.ok_or_else(|| not_found(device))
    }

    async fn unbind(&self, license: LicensePk, device: &DeviceId) -> StoreResult<DevicePk> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let pk = owned(&mut *tx, license, device).await?.ok_or_else(|| not_found(device))?;
        sqlx::query("SELECT 1 FROM devices WHERE pk = $1 FOR UPDATE").bind(pk.0).execute(&mut *tx).await.sql()?;
        // Every capability module with per-device data has its line here.
        crate::relay::forget_device(&mut tx, pk).await?;
        sqlx::query("DELETE FROM devices WHERE pk = $1").bind(pk.0).execute(&mut *tx).await.sql()?;
        self.ctx.commit_with(tx, vec![Event::new(DeviceEvent::Unbound { device: pk })]).await?;
        Ok(pk)
    }

    async fn device(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        record(&self.ctx.pool, license, device).await
    }

    async fn devices(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceRecord>> {
        let total = count(&self.ctx.pool, license).await?;
        let rows = sqlx::query(select_record!("d.license_pk = $1 ORDER BY d.device_id LIMIT $2 OFFSET $3"))
            .bind(license.0)
            .bind(i64::from(page.size))
            .bind(page.offset() as i64)
            .fetch_all(&self.ctx.pool)
            .await
            .sql()?;
        Ok(Page { items: rows.iter().map(record_from_row).collect::<StoreResult<_>>()?, total })
    }

    async fn device_count(&self, license: LicensePk) -> StoreResult<u64> {
        count(&self.ctx.pool, license).await
    }

    async fn online_count(&self, license: LicensePk) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM devices d WHERE d.license_pk = $1 AND d.online_node IS NOT NULL AND EXISTS (
                 SELECT 1 FROM nodes n WHERE n.id = d.online_node AND n.seen_at > now() - interval '30 seconds')",
        )
        .bind(license.0)
        .fetch_one(&self.ctx.pool)
        .await
        .sql()?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl PresenceStore for PgStore {
    async fn set_online(&self, device: DevicePk, conn: ConnId) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        sqlx::query(
            "UPDATE devices SET online_node = $2, online_conn = $3, active = true, last_seen = now() WHERE pk = $1",
        )
        .bind(device.0)
        .bind(self.ctx.node.as_ref())
        .bind(conn.0 as i64)
        .execute(&mut *tx)
        .await
        .sql()?;
        // Other nodes close their older connection of this device; this
        // node's hub replaced it already.
        notify::send(&mut tx, &self.ctx.node, &[Event::new(DeviceEvent::ConnectedElsewhere { device })]).await?;
        tx.commit().await.sql()
    }

    fn set_offline(&self, device: DevicePk, conn: ConnId) {
        let (pool, node) = (self.ctx.pool.clone(), self.ctx.node.clone());
        // Tracked: shutdown waits for it before closing the pool.
        self.tasks.spawn(async move {
            let done = sqlx::query(
                "UPDATE devices SET online_node = NULL, online_conn = NULL, last_seen = now()
                 WHERE pk = $1 AND online_node = $2 AND online_conn = $3",
            )
            .bind(device.0)
            .bind(node.as_ref())
            .bind(conn.0 as i64)
            .execute(&pool)
            .await;
            if let Err(err) = done {
                tracing::debug!(%err, "could not record a device offline; its node's heartbeat will");
            }
        });
    }

    async fn is_current_connection(&self, device: DevicePk, conn: ConnId) -> StoreResult<bool> {
        let holder: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT online_node, online_conn FROM devices WHERE pk = $1")
                .bind(device.0)
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(matches!(holder, Some((Some(node), Some(c))) if *node == *self.ctx.node && c == conn.0 as i64))
    }
}
