//! The registry's store traits on PostgreSQL: the same rows as on SQLite.
//! Statuses are read on every call, so a block reaches every node at once.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_registry::model::{DeviceFilter, DeviceStatus, DeviceUuid, InstanceId, RegisteredDevice, Registration};
use relayhub_registry::rules;
use relayhub_registry::store::{DeviceRegistry, InstanceTokens};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::error::SqlResult;
use crate::time::{at, time};
use crate::{Ctx, PgStore};

/// The registry module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "registry",
    steps: &[crate::schema::Step { sql: include_str!("../migrations/registry/0001_registry.sql"), was: Some(5) }],
};

/// Offers the registry's store traits.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let registry = Arc::new(PgRegistry { ctx: store.ctx.clone() });
    stores.provide::<dyn DeviceRegistry>(registry.clone());
    stores.provide::<dyn InstanceTokens>(registry);
}

struct PgRegistry {
    ctx: Ctx,
}

const COLUMNS: &str = "device_uuid, instance_id, public_url, status, last_seen, registered_at";

fn device_from_row(r: &PgRow) -> StoreResult<RegisteredDevice> {
    let status: String = r.try_get("status").sql()?;
    Ok(RegisteredDevice {
        device_uuid: DeviceUuid::stored(r.try_get("device_uuid").sql()?),
        instance_id: InstanceId::stored(r.try_get("instance_id").sql()?),
        public_url: r.try_get("public_url").sql()?,
        status: DeviceStatus::parse(&status).ok_or_else(|| StoreError::Internal(format!("device status {status}")))?,
        last_seen: time(r.try_get("last_seen").sql()?),
        registered_at: time(r.try_get("registered_at").sql()?),
    })
}

async fn device(db: impl PgExecutor<'_>, uuid: &str, lock: bool) -> StoreResult<Option<RegisteredDevice>> {
    let suffix = if lock { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM registry_devices WHERE device_uuid = $1{suffix}"))
        .bind(uuid)
        .fetch_optional(db)
        .await
        .sql()?;
    row.as_ref().map(device_from_row).transpose()
}

#[async_trait]
impl DeviceRegistry for PgRegistry {
    async fn register(&self, r: Registration) -> StoreResult<RegisteredDevice> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let existing = device(&mut *tx, r.device_uuid.as_str(), true).await?;
        let status =
            rules::registration_status(existing.as_ref().map(|d| (d.status, d.placement())), r.placement(), r.initial)
                .map_err(StoreError::Rejected)?;
        let row = sqlx::query(&format!(
            "INSERT INTO registry_devices (device_uuid, instance_id, public_url, status, last_seen, registered_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (device_uuid) DO UPDATE SET
                 instance_id = excluded.instance_id, public_url = excluded.public_url,
                 status = excluded.status, last_seen = excluded.last_seen
             RETURNING {COLUMNS}"
        ))
        .bind(r.device_uuid.as_str())
        .bind(r.instance_id.as_str())
        .bind(&r.public_url)
        .bind(status.as_str())
        .bind(at(r.at))
        .fetch_one(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()?;
        device_from_row(&row)
    }

    async fn device(&self, device_uuid: &DeviceUuid) -> StoreResult<Option<RegisteredDevice>> {
        device(&self.ctx.pool, device_uuid.as_str(), false).await
    }

    async fn devices(&self, filter: DeviceFilter, limit: usize) -> StoreResult<Vec<RegisteredDevice>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM registry_devices
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR instance_id = $2)
             ORDER BY registered_at, device_uuid LIMIT $3"
        ))
        .bind(filter.status.map(DeviceStatus::as_str))
        .bind(filter.instance_id.as_ref().map(InstanceId::as_str))
        .bind(limit as i64)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter().map(device_from_row).collect()
    }

    async fn set_status(&self, device_uuid: &DeviceUuid, status: DeviceStatus) -> StoreResult<RegisteredDevice> {
        let row =
            sqlx::query(&format!("UPDATE registry_devices SET status = $2 WHERE device_uuid = $1 RETURNING {COLUMNS}"))
                .bind(device_uuid.as_str())
                .bind(status.as_str())
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        row.as_ref()
            .map(device_from_row)
            .transpose()?
            .ok_or_else(|| relayhub_registry::refusals::no_registered_device(device_uuid.as_str()))
    }

    async fn touch(&self, device_uuid: &DeviceUuid, at_time: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE registry_devices SET last_seen = greatest(last_seen, $2) WHERE device_uuid = $1")
            .bind(device_uuid.as_str())
            .bind(at(at_time))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(())
    }
}

#[async_trait]
impl InstanceTokens for PgRegistry {
    async fn set_instance_token(
        &self,
        instance_id: &InstanceId,
        hash: SecretHash,
        at_time: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO registry_instances (instance_id, token_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (instance_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
        )
        .bind(instance_id.as_str())
        .bind(hash.as_bytes().as_slice())
        .bind(at(at_time))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(())
    }

    async fn instance_token(&self, instance_id: &InstanceId) -> StoreResult<Option<SecretHash>> {
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT token_hash FROM registry_instances WHERE instance_id = $1")
                .bind(instance_id.as_str())
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(hash.and_then(|h| SecretHash::from_slice(&h)))
    }
}
