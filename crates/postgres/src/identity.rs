//! Licenses, bearer tokens and API keys on PostgreSQL.

use async_trait::async_trait;
use relayhub_core::identity::{
    ApiKey, ApiKeys, CredentialInfo, Invalidated, KeyScope, License, LicenseTokens, LicenseUpdate, Licenses,
    NewCredential, NewLicense, Revocations,
};
use relayhub_core::ids::{LicenseNumber, LicensePk};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::PgStore;
use crate::error::{SqlResult, is_unique_violation};
use crate::time::{at, opt_at, opt_time, time};

/// `SELECT … FROM licenses` and a tail, as one literal (sqlx accepts only
/// audited or literal SQL).
macro_rules! select_license {
    ($tail:literal) => {
        concat!(
            "SELECT pk, number, name, expires_at, max_devices, created_at, binding, suspended_at FROM licenses ",
            $tail
        )
    };
}

/// The core module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "core",
    steps: &[
        crate::schema::Step { sql: include_str!("../migrations/core/0001_init.sql"), was: Some(1) },
        crate::schema::Step { sql: include_str!("../migrations/core/0002_device_credentials.sql"), was: Some(10) },
        crate::schema::Step { sql: include_str!("../migrations/core/0003_suspension.sql"), was: None },
    ],
};

fn license_from_row(row: &PgRow) -> StoreResult<License> {
    let number: String = row.try_get(1).sql()?;
    Ok(License {
        pk: LicensePk(row.try_get(0).sql()?),
        number: LicenseNumber::parse(&number).map_err(|e| StoreError::Internal(e.message))?,
        name: row.try_get(2).sql()?,
        expires_at: opt_time(row.try_get(3).sql()?),
        max_devices: row.try_get::<Option<i32>, _>(4).sql()?.map(|n| n.max(0) as u32),
        created_at: time(row.try_get(5).sql()?),
        binding: row.try_get::<String, _>(6).sql()?.parse().map_err(StoreError::Internal)?,
        suspended_at: opt_time(row.try_get(7).sql()?),
    })
}

/// `SELECT` of a key with its scope, and a tail.
macro_rules! select_key {
    ($tail:literal) => {
        concat!(
            "SELECT k.id, k.name, k.created_at, k.revoked_at, k.scoped,
                    ARRAY(SELECT license_pk FROM api_key_licenses s WHERE s.key_id = k.id ORDER BY license_pk)
             FROM api_keys k ",
            $tail
        )
    };
}

fn key_from_row(row: &PgRow) -> StoreResult<ApiKey> {
    let scoped: bool = row.try_get(4).sql()?;
    let licenses: Vec<i64> = row.try_get(5).sql()?;
    let scope =
        if scoped { KeyScope::Licenses(licenses.into_iter().map(LicensePk).collect()) } else { KeyScope::AllLicenses };
    Ok(ApiKey { info: credential_from_row(row)?, scope })
}

fn credential_from_row(row: &PgRow) -> StoreResult<CredentialInfo> {
    Ok(CredentialInfo {
        id: row.try_get(0).sql()?,
        name: row.try_get(1).sql()?,
        created_at: time(row.try_get(2).sql()?),
        revoked_at: opt_time(row.try_get(3).sql()?),
    })
}

async fn license_by_number<'e>(db: impl PgExecutor<'e>, number: &str) -> StoreResult<Option<License>> {
    let row = sqlx::query(select_license!("WHERE number = $1")).bind(number).fetch_optional(db).await.sql()?;
    row.as_ref().map(license_from_row).transpose()
}

fn max_devices(n: Option<u32>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

async fn insert_token<'e>(db: impl PgExecutor<'e>, license: LicensePk, token: &NewCredential) -> StoreResult<()> {
    sqlx::query("INSERT INTO license_tokens (id, license_pk, hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&token.id)
        .bind(license.0)
        .bind(token.hash.as_bytes().as_slice())
        .bind(at(token.created_at))
        .execute(db)
        .await
        .sql()?;
    Ok(())
}

#[async_trait]
impl Licenses for PgStore {
    async fn create_license(&self, new: NewLicense, token: NewCredential) -> StoreResult<License> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let inserted = sqlx::query(
            "INSERT INTO licenses (number, name, expires_at, max_devices, created_at, binding)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING pk",
        )
        .bind(new.number.as_str())
        .bind(&new.name)
        .bind(opt_at(new.expires_at))
        .bind(max_devices(new.max_devices))
        .bind(at(token.created_at))
        .bind(new.binding.as_str())
        .fetch_one(&mut *tx)
        .await;
        let pk = match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(relayhub_core::identity::refusals::license_exists(&new.number));
            }
            other => LicensePk(other.sql()?.try_get(0).sql()?),
        };
        insert_token(&mut *tx, pk, &token).await?;
        let license = license_by_number(&mut *tx, new.number.as_str())
            .await?
            .ok_or_else(|| StoreError::Internal("license vanished after insert".into()))?;
        tx.commit().await.sql()?;
        Ok(license)
    }

    async fn update_license(&self, number: &LicenseNumber, update: LicenseUpdate) -> StoreResult<License> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let current = license_by_number(&mut *tx, number.as_str())
            .await?
            .ok_or_else(|| relayhub_core::identity::refusals::no_license(number))?;
        let suspended_at = update.suspended_at(current.suspended_at, Timestamp::now());
        sqlx::query(
            "UPDATE licenses SET name = $2, expires_at = $3, max_devices = $4, binding = $5, suspended_at = $6
             WHERE pk = $1",
        )
        .bind(current.pk.0)
        .bind(update.name.unwrap_or(current.name))
        .bind(opt_at(update.expires_at.unwrap_or(current.expires_at)))
        .bind(max_devices(update.max_devices.unwrap_or(current.max_devices)))
        .bind(update.binding.unwrap_or(current.binding).as_str())
        .bind(opt_at(suspended_at))
        .execute(&mut *tx)
        .await
        .sql()?;
        let license = license_by_number(&mut *tx, number.as_str())
            .await?
            .ok_or_else(|| StoreError::Internal("license vanished after update".into()))?;
        tx.commit().await.sql()?;
        Ok(license)
    }

    async fn license(&self, number: &LicenseNumber) -> StoreResult<Option<License>> {
        license_by_number(&self.ctx.pool, number.as_str()).await
    }

    async fn license_by_pk(&self, pk: LicensePk) -> StoreResult<Option<License>> {
        let row =
            sqlx::query(select_license!("WHERE pk = $1")).bind(pk.0).fetch_optional(&self.ctx.pool).await.sql()?;
        row.as_ref().map(license_from_row).transpose()
    }

    async fn licenses(&self) -> StoreResult<Vec<License>> {
        let rows = sqlx::query(select_license!("ORDER BY number")).fetch_all(&self.ctx.pool).await.sql()?;
        rows.iter().map(license_from_row).collect()
    }

    async fn license_page(&self, page: PageRequest) -> StoreResult<Page<License>> {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses").fetch_one(&self.ctx.pool).await.sql()?;
        let rows = sqlx::query(select_license!("ORDER BY number LIMIT $1 OFFSET $2"))
            .bind(i64::from(page.size))
            .bind(page.offset() as i64)
            .fetch_all(&self.ctx.pool)
            .await
            .sql()?;
        let items = rows.iter().map(license_from_row).collect::<StoreResult<_>>()?;
        Ok(Page { items, total: total.max(0) as u64 })
    }

    /// Its tokens and key scopes go with it (`ON DELETE CASCADE`); a
    /// BIGSERIAL pk is never given again.
    async fn delete_license(&self, license: LicensePk) -> StoreResult<()> {
        sqlx::query("DELETE FROM licenses WHERE pk = $1").bind(license.0).execute(&self.ctx.pool).await.sql()?;
        Ok(())
    }
}

#[async_trait]
impl LicenseTokens for PgStore {
    async fn add_token(&self, license: LicensePk, token: NewCredential) -> StoreResult<()> {
        insert_token(&self.ctx.pool, license, &token).await
    }

    async fn revoke_token(&self, license: LicensePk, id: &str, when: Timestamp) -> StoreResult<()> {
        let found = sqlx::query(
            "UPDATE license_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND license_pk = $2",
        )
        .bind(id)
        .bind(license.0)
        .bind(at(when))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        if found.rows_affected() == 0 {
            return Err(relayhub_core::identity::refusals::no_token(id));
        }
        Ok(())
    }

    async fn tokens(&self, license: LicensePk) -> StoreResult<Vec<CredentialInfo>> {
        let rows = sqlx::query(
            "SELECT id, '' AS name, created_at, revoked_at FROM license_tokens WHERE license_pk = $1 ORDER BY created_at, id",
        )
        .bind(license.0)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn license_by_token(&self, hash: &SecretHash) -> StoreResult<Option<License>> {
        // Looked up by the hash of the presented token: timing reveals
        // nothing about any stored secret.
        let row = sqlx::query(
            "SELECT l.pk, l.number, l.name, l.expires_at, l.max_devices, l.created_at, l.binding, l.suspended_at
             FROM license_tokens t JOIN licenses l ON l.pk = t.license_pk
             WHERE t.hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(license_from_row).transpose()
    }
}

#[async_trait]
impl ApiKeys for PgStore {
    async fn add_api_key(&self, key: NewCredential, scope: &KeyScope) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        sqlx::query("INSERT INTO api_keys (id, name, hash, created_at, scoped) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.id)
            .bind(&key.name)
            .bind(key.hash.as_bytes().as_slice())
            .bind(at(key.created_at))
            .bind(matches!(scope, KeyScope::Licenses(_)))
            .execute(&mut *tx)
            .await
            .sql()?;
        if let KeyScope::Licenses(licenses) = scope {
            let pks: Vec<i64> = licenses.iter().map(|l| l.0).collect();
            sqlx::query(
                "INSERT INTO api_key_licenses (key_id, license_pk) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
            )
            .bind(&key.id)
            .bind(&pks)
            .execute(&mut *tx)
            .await
            .sql()?;
        }
        tx.commit().await.sql()
    }

    async fn revoke_api_key(&self, id: &str, when: Timestamp) -> StoreResult<()> {
        let found = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
            .bind(id)
            .bind(at(when))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        if found.rows_affected() == 0 {
            return Err(relayhub_core::identity::refusals::no_api_key(id));
        }
        Ok(())
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(select_key!("ORDER BY k.created_at, k.id")).fetch_all(&self.ctx.pool).await.sql()?;
        rows.iter().map(key_from_row).collect()
    }

    async fn api_key_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(select_key!("WHERE k.hash = $1 AND k.revoked_at IS NULL"))
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        row.as_ref().map(key_from_row).transpose()
    }
}

#[async_trait]
impl Revocations for PgStore {
    async fn invalidated(
        &self,
        licenses: &[LicensePk],
        api_keys: &[String],
        now: Timestamp,
    ) -> StoreResult<Invalidated> {
        let pks: Vec<i64> = licenses.iter().map(|l| l.0).collect();
        let expired: Vec<i64> = sqlx::query_scalar(
            "SELECT pk FROM licenses WHERE pk = ANY($1) AND (expires_at <= $2 OR suspended_at IS NOT NULL)",
        )
        .bind(&pks)
        .bind(at(now))
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        let revoked: Vec<String> = sqlx::query_scalar(
            "SELECT k FROM unnest($1::text[]) AS k
             WHERE k NOT IN (SELECT id FROM api_keys WHERE revoked_at IS NULL)",
        )
        .bind(api_keys)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        Ok(Invalidated { licenses: expired.into_iter().map(LicensePk).collect(), api_keys: revoked })
    }
}
