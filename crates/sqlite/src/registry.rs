//! The registry's store traits on SQLite: registered devices and instance
//! tunnel tokens. Decisions are the registry's rules; this reads and writes.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_registry::model::{DeviceFilter, DeviceStatus, DeviceUuid, InstanceId, RegisteredDevice, Registration};
use relayhub_registry::rules;
use relayhub_registry::store::{DeviceRegistry, InstanceTokens};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// The registry module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "registry",
    migrations: &[include_str!("../migrations/registry/0001_baseline.sql")],
};

/// Offers the registry's store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let registry = Arc::new(SqliteRegistry { db: store.clone() });
    stores.provide::<dyn DeviceRegistry>(registry.clone());
    stores.provide::<dyn InstanceTokens>(registry);
}

/// The registry's stores, over the shared handle.
pub(crate) struct SqliteRegistry {
    db: Arc<SqliteStore>,
}

const COLUMNS: &str = "device_uuid, instance_id, public_url, status, last_seen, registered_at";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<RegisteredDevice> {
    let status: String = row.get(3)?;
    Ok(RegisteredDevice {
        device_uuid: DeviceUuid::stored(row.get(0)?),
        instance_id: InstanceId::stored(row.get(1)?),
        public_url: row.get(2)?,
        status: DeviceStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, "device status".into())
        })?,
        last_seen: columns::time(row, 4)?,
        registered_at: columns::time(row, 5)?,
    })
}

fn device(conn: &Connection, uuid: &str) -> StoreResult<Option<RegisteredDevice>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM registry_devices WHERE device_uuid = ?1"))
        .sql()?
        .query_row([uuid], device_from_row)
        .optional()
        .sql()
}

#[async_trait]
impl DeviceRegistry for SqliteRegistry {
    async fn register(&self, r: Registration) -> StoreResult<RegisteredDevice> {
        self.db.writer
            .write(move |conn, _| {
                let existing = device(conn, r.device_uuid.as_str())?;
                let before = existing.as_ref().map(|d| (d.status, d.placement()));
                let status = rules::registration_status(before, r.placement(), r.initial)
                    .map_err(StoreError::Rejected)?;
                conn.prepare_cached(
                    "INSERT INTO registry_devices (device_uuid, instance_id, public_url, status, last_seen, registered_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (device_uuid) DO UPDATE SET
                         instance_id = excluded.instance_id, public_url = excluded.public_url,
                         status = excluded.status, last_seen = excluded.last_seen",
                )
                .sql()?
                .execute(params![r.device_uuid.as_str(), r.instance_id.as_str(), r.public_url, status.as_str(), r.at.millis()])
                .sql()?;
                device(conn, r.device_uuid.as_str())?
                    .ok_or_else(|| relayhub_registry::refusals::no_registered_device(r.device_uuid.as_str()))
            })
            .await
    }

    async fn device(&self, device_uuid: &DeviceUuid) -> StoreResult<Option<RegisteredDevice>> {
        let uuid = device_uuid.to_string();
        self.db.readers.read(move |conn| device(conn, &uuid)).await
    }

    async fn devices(&self, filter: DeviceFilter, limit: usize) -> StoreResult<Vec<RegisteredDevice>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM registry_devices
                     WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR instance_id = ?2)
                     ORDER BY registered_at, device_uuid LIMIT ?3"
                ))
                .sql()?
                .query_map(
                    params![
                        filter.status.map(DeviceStatus::as_str),
                        filter.instance_id.as_ref().map(InstanceId::as_str),
                        limit as i64
                    ],
                    device_from_row,
                )
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }

    async fn set_status(&self, device_uuid: &DeviceUuid, status: DeviceStatus) -> StoreResult<RegisteredDevice> {
        let uuid = device_uuid.to_string();
        self.db
            .writer
            .write(move |conn, _| {
                let changed = conn
                    .prepare_cached("UPDATE registry_devices SET status = ?2 WHERE device_uuid = ?1")
                    .sql()?
                    .execute(params![uuid, status.as_str()])
                    .sql()?;
                if changed == 0 {
                    return Err(relayhub_registry::refusals::no_registered_device(&uuid));
                }
                device(conn, &uuid)?.ok_or_else(|| relayhub_registry::refusals::no_registered_device(&uuid))
            })
            .await
    }

    async fn touch(&self, device_uuid: &DeviceUuid, at: Timestamp) -> StoreResult<()> {
        let uuid = device_uuid.to_string();
        self.db
            .writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "UPDATE registry_devices SET last_seen = max(last_seen, ?2) WHERE device_uuid = ?1",
                )
                .sql()?
                .execute(params![uuid, at.millis()])
                .sql()?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl InstanceTokens for SqliteRegistry {
    async fn set_instance_token(&self, instance_id: &InstanceId, hash: SecretHash, at: Timestamp) -> StoreResult<()> {
        let instance = instance_id.to_string();
        self.db.writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO registry_instances (instance_id, token_hash, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (instance_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
                )
                .sql()?
                .execute(params![instance, hash.as_bytes().as_slice(), at.millis()])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn instance_token(&self, instance_id: &InstanceId) -> StoreResult<Option<SecretHash>> {
        let instance = instance_id.to_string();
        self.db
            .readers
            .read(move |conn| {
                let hash: Option<Vec<u8>> = conn
                    .prepare_cached("SELECT token_hash FROM registry_instances WHERE instance_id = ?1")
                    .sql()?
                    .query_row([instance], |row| row.get(0))
                    .optional()
                    .sql()?;
                Ok(hash.and_then(|h| SecretHash::from_slice(&h)))
            })
            .await
    }
}
