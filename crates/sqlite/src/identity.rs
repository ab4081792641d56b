//! Licenses, bearer tokens and API keys on SQLite.

use async_trait::async_trait;
use relayhub_core::identity::{
    ApiKey, ApiKeys, BindingPolicy, CredentialInfo, Invalidated, KeyScope, License, LicenseTokens, LicenseUpdate,
    Licenses, NewCredential, NewLicense, Revocations,
};
use relayhub_core::ids::{LicenseNumber, LicensePk};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// The core module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "core",
    migrations: &[
        include_str!("../migrations/core/0001_baseline.sql"),
        include_str!("../migrations/core/0002_suspension.sql"),
        include_str!("../migrations/core/0003_license_pks.sql"),
    ],
};

const LICENSE_COLUMNS: &str = "pk, number, name, expires_at, max_devices, created_at, binding, suspended_at";

fn license_from_row(row: &Row<'_>) -> rusqlite::Result<License> {
    Ok(License {
        pk: LicensePk(row.get(0)?),
        number: columns::license_number(row, 1)?,
        name: row.get(2)?,
        expires_at: columns::opt_time(row, 3)?,
        max_devices: row.get(4)?,
        created_at: columns::time(row, 5)?,
        binding: binding(row, 6)?,
        suspended_at: columns::opt_time(row, 7)?,
    })
}

fn binding(row: &Row<'_>, i: usize) -> rusqlite::Result<BindingPolicy> {
    let raw: String = row.get(i)?;
    raw.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into()))
}

/// A key's row (`id, name, created_at, revoked_at, scoped`) with its scope.
fn api_key(conn: &Connection, row: (CredentialInfo, bool)) -> StoreResult<ApiKey> {
    let (info, scoped) = row;
    if !scoped {
        return Ok(ApiKey { info, scope: KeyScope::AllLicenses });
    }
    let licenses = conn
        .prepare_cached("SELECT license_pk FROM api_key_licenses WHERE key_id = ?1 ORDER BY license_pk")
        .sql()?
        .query_map([&info.id], |row| row.get(0).map(LicensePk))
        .sql()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .sql()?;
    Ok(ApiKey { info, scope: KeyScope::Licenses(licenses) })
}

fn key_row(row: &Row<'_>) -> rusqlite::Result<(CredentialInfo, bool)> {
    Ok((credential_from_row(row)?, row.get(4)?))
}

fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<CredentialInfo> {
    Ok(CredentialInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: columns::time(row, 2)?,
        revoked_at: columns::opt_time(row, 3)?,
    })
}

fn license_by_number(conn: &Connection, number: &str) -> StoreResult<Option<License>> {
    conn.prepare_cached(&format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE number = ?1"))
        .sql()?
        .query_row([number], license_from_row)
        .optional()
        .sql()
}

fn is_unique_violation(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

/// Lists as JSON arrays, for `IN (SELECT value FROM json_each(?))`: one
/// cached statement whatever the list's length.
fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl Licenses for SqliteStore {
    async fn create_license(&self, new: NewLicense, token: NewCredential) -> StoreResult<License> {
        let spread = self.partitions.spread();
        self.writer
            .write(move |conn, _| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO licenses (pk, number, name, expires_at, max_devices, created_at, binding)
                         VALUES (MAX((SELECT COALESCE(MAX(pk), 0) FROM licenses),
                                     (SELECT COALESCE(MAX(pk), 0) FROM license_pk_high)) + 1,
                                 ?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .sql()?
                    .execute(params![
                        new.number.as_str(),
                        new.name,
                        new.expires_at.map(Timestamp::millis),
                        new.max_devices,
                        token.created_at.millis(),
                        new.binding.as_str()
                    ]);
                match inserted {
                    Err(err) if is_unique_violation(&err) => {
                        return Err(relayhub_core::identity::refusals::license_exists(&new.number));
                    }
                    other => other.sql()?,
                };
                let pk = LicensePk(conn.last_insert_rowid());
                conn.prepare_cached("UPDATE licenses SET partition_index = ?2 WHERE pk = ?1")
                    .sql()?
                    .execute(params![pk.0, crate::partitions::partition_for_new_license(pk, spread) as i64])
                    .sql()?;
                insert_token(conn, pk, &token)?;
                license_by_number(conn, new.number.as_str())?
                    .ok_or_else(|| StoreError::Internal("license vanished after insert".into()))
            })
            .await
    }

    async fn update_license(&self, number: &LicenseNumber, update: LicenseUpdate) -> StoreResult<License> {
        let number = number.clone();
        self.writer
            .write(move |conn, _| {
                let current = license_by_number(conn, number.as_str())?
                    .ok_or_else(|| relayhub_core::identity::refusals::no_license(&number))?;
                let suspended_at = update.suspended_at(current.suspended_at, Timestamp::now());
                let name = update.name.unwrap_or(current.name);
                let expires_at = update.expires_at.unwrap_or(current.expires_at);
                let max_devices = update.max_devices.unwrap_or(current.max_devices);
                let binding = update.binding.unwrap_or(current.binding);
                conn.prepare_cached(
                    "UPDATE licenses SET name = ?2, expires_at = ?3, max_devices = ?4, binding = ?5, suspended_at = ?6
                     WHERE pk = ?1",
                )
                .sql()?
                .execute(params![
                    current.pk.0,
                    name,
                    expires_at.map(Timestamp::millis),
                    max_devices,
                    binding.as_str(),
                    suspended_at.map(Timestamp::millis)
                ])
                .sql()?;
                license_by_number(conn, number.as_str())?
                    .ok_or_else(|| StoreError::Internal("license vanished after update".into()))
            })
            .await
    }

    async fn license(&self, number: &LicenseNumber) -> StoreResult<Option<License>> {
        let number = number.clone();
        self.readers.read(move |conn| license_by_number(conn, number.as_str())).await
    }

    async fn license_by_pk(&self, pk: LicensePk) -> StoreResult<Option<License>> {
        self.readers
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE pk = ?1"))
                    .sql()?
                    .query_row([pk.0], license_from_row)
                    .optional()
                    .sql()
            })
            .await
    }

    async fn licenses(&self) -> StoreResult<Vec<License>> {
        self.readers
            .read(|conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY number")).sql()?;
                let rows = stmt.query_map([], license_from_row).sql()?;
                rows.collect::<rusqlite::Result<Vec<_>>>().sql()
            })
            .await
    }

    /// The license's own rows go (its tokens and key scopes with it); its
    /// pk is kept as the highest given, so it is never given again.
    async fn delete_license(&self, license: LicensePk) -> StoreResult<()> {
        self.writer
            .write(move |conn, _| {
                for sql in [
                    "DELETE FROM license_tokens WHERE license_pk = ?1",
                    "DELETE FROM api_key_licenses WHERE license_pk = ?1",
                    "DELETE FROM licenses WHERE pk = ?1",
                    "INSERT INTO license_pk_high (one, pk) VALUES (1, ?1)
                     ON CONFLICT (one) DO UPDATE SET pk = MAX(pk, excluded.pk)",
                ] {
                    conn.prepare_cached(sql).sql()?.execute([license.0]).sql()?;
                }
                Ok(())
            })
            .await?;
        self.forget_license_partition(license);
        Ok(())
    }

    async fn license_page(&self, page: PageRequest) -> StoreResult<Page<License>> {
        self.readers
            .read(move |conn| {
                let total: i64 =
                    conn.prepare_cached("SELECT COUNT(*) FROM licenses").sql()?.query_row([], |r| r.get(0)).sql()?;
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY number LIMIT ?1 OFFSET ?2"
                    ))
                    .sql()?;
                let rows = stmt.query_map(params![page.size, page.offset() as i64], license_from_row).sql()?;
                let items = rows.collect::<rusqlite::Result<Vec<_>>>().sql()?;
                Ok(Page { items, total: total.max(0) as u64 })
            })
            .await
    }
}

#[async_trait]
impl LicenseTokens for SqliteStore {
    async fn add_token(&self, license: LicensePk, token: NewCredential) -> StoreResult<()> {
        self.writer.write(move |conn, _| insert_token(conn, license, &token)).await
    }

    async fn revoke_token(&self, license: LicensePk, id: &str, at: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.writer
            .write(move |conn, _| {
                let found = conn
                    .prepare_cached(
                        "UPDATE license_tokens SET revoked_at = COALESCE(revoked_at, ?3)
                         WHERE id = ?1 AND license_pk = ?2",
                    )
                    .sql()?
                    .execute(params![id, license.0, at.millis()])
                    .sql()?;
                if found == 0 {
                    return Err(relayhub_core::identity::refusals::no_token(&id));
                }
                Ok(())
            })
            .await
    }

    async fn tokens(&self, license: LicensePk) -> StoreResult<Vec<CredentialInfo>> {
        self.readers
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, '', created_at, revoked_at FROM license_tokens
                         WHERE license_pk = ?1 ORDER BY created_at, id",
                    )
                    .sql()?;
                let rows = stmt.query_map([license.0], credential_from_row).sql()?;
                rows.collect::<rusqlite::Result<Vec<_>>>().sql()
            })
            .await
    }

    async fn license_by_token(&self, hash: &SecretHash) -> StoreResult<Option<License>> {
        let hash = *hash;
        self.readers
            .read_inline(move |conn| {
                // Looked up by the hash of the presented token: timing
                // reveals nothing about any stored secret.
                conn.prepare_cached(
                    "SELECT l.pk, l.number, l.name, l.expires_at, l.max_devices, l.created_at, l.binding, l.suspended_at
                     FROM license_tokens t JOIN licenses l ON l.pk = t.license_pk
                     WHERE t.hash = ?1 AND t.revoked_at IS NULL",
                )
                .sql()?
                .query_row([hash.as_bytes().as_slice()], license_from_row)
                .optional()
                .sql()
            })
            .await
    }
}

#[async_trait]
impl ApiKeys for SqliteStore {
    async fn add_api_key(&self, key: NewCredential, scope: &KeyScope) -> StoreResult<()> {
        let scope = scope.clone();
        self.writer
            .write(move |conn, _| {
                let scoped = matches!(scope, KeyScope::Licenses(_));
                conn.prepare_cached(
                    "INSERT INTO api_keys (id, name, hash, created_at, scoped) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .sql()?
                .execute(params![key.id, key.name, key.hash.as_bytes().as_slice(), key.created_at.millis(), scoped])
                .sql()?;
                if let KeyScope::Licenses(licenses) = scope {
                    let mut insert = conn
                        .prepare_cached("INSERT OR IGNORE INTO api_key_licenses (key_id, license_pk) VALUES (?1, ?2)")
                        .sql()?;
                    for license in licenses {
                        insert.execute(params![key.id, license.0]).sql()?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.writer
            .write(move |conn, _| {
                let found = conn
                    .prepare_cached("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")
                    .sql()?
                    .execute(params![id, at.millis()])
                    .sql()?;
                if found == 0 {
                    return Err(relayhub_core::identity::refusals::no_api_key(&id));
                }
                Ok(())
            })
            .await
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.readers
            .read(|conn| {
                let rows = conn
                    .prepare_cached(
                        "SELECT id, name, created_at, revoked_at, scoped FROM api_keys ORDER BY created_at, id",
                    )
                    .sql()?
                    .query_map([], key_row)
                    .sql()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .sql()?;
                rows.into_iter().map(|row| api_key(conn, row)).collect()
            })
            .await
    }

    async fn api_key_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>> {
        let hash = *hash;
        self.readers
            .read_inline(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT id, name, created_at, revoked_at, scoped FROM api_keys
                         WHERE hash = ?1 AND revoked_at IS NULL",
                    )
                    .sql()?
                    .query_row([hash.as_bytes().as_slice()], key_row)
                    .optional()
                    .sql()?;
                row.map(|row| api_key(conn, row)).transpose()
            })
            .await
    }
}

#[async_trait]
impl Revocations for SqliteStore {
    async fn invalidated(
        &self,
        licenses: &[LicensePk],
        api_keys: &[String],
        now: Timestamp,
    ) -> StoreResult<Invalidated> {
        let licenses = json_list(&licenses.iter().map(|l| l.0).collect::<Vec<_>>());
        let keys = json_list(api_keys);
        self.readers
            .read(move |conn| {
                let expired = conn
                    .prepare_cached(
                        "SELECT pk FROM licenses
                         WHERE pk IN (SELECT value FROM json_each(?1))
                           AND (expires_at <= ?2 OR suspended_at IS NOT NULL)",
                    )
                    .sql()?
                    .query_map(params![licenses, now.millis()], |row| row.get(0).map(LicensePk))
                    .sql()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .sql()?;
                let revoked = conn
                    .prepare_cached(
                        "SELECT value FROM json_each(?1)
                         WHERE value NOT IN (SELECT id FROM api_keys WHERE revoked_at IS NULL)",
                    )
                    .sql()?
                    .query_map([keys], |row| row.get(0))
                    .sql()?
                    .collect::<rusqlite::Result<Vec<String>>>()
                    .sql()?;
                Ok(Invalidated { licenses: expired, api_keys: revoked })
            })
            .await
    }
}

fn insert_token(conn: &Connection, license: LicensePk, token: &NewCredential) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO license_tokens (id, license_pk, hash, created_at) VALUES (?1, ?2, ?3, ?4)")
        .sql()?
        .execute(params![token.id, license.0, token.hash.as_bytes().as_slice(), token.created_at.millis()])
        .sql()?;
    Ok(())
}
