//! The fleet's store traits on PostgreSQL: users, sessions, robots and
//! their pairing. Decisions are the fleet's rules; rows a decision reads
//! are locked (`FOR UPDATE`) so that nodes decide one after the other.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Event;
use relayhub_core::identity::{CredentialInfo, NewCredential};
use relayhub_core::ids::LicensePk;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_fleet::model::{
    Architecture, NewPairing, NewUser, Pairing, RefreshRow, Robot, RobotPatch, RobotStatus, Role, User, UserPatch,
};
use relayhub_fleet::rules::{self, Rotation};
use relayhub_fleet::store::{FleetEvent, RobotStore, SessionStore, UserStore};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, Row, Transaction};

use crate::error::{SqlResult, is_unique_violation};
use crate::time::{at, opt_time, time};
use crate::{Ctx, PgStore};

/// The fleet module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "fleet",
    steps: &[
        crate::schema::Step { sql: include_str!("../../migrations/fleet/0001_fleet.sql"), was: Some(3) },
        crate::schema::Step { sql: include_str!("../../migrations/fleet/0002_pair_observed_ip.sql"), was: Some(8) },
        crate::schema::Step { sql: include_str!("../../migrations/fleet/0003_password_resets.sql"), was: None },
        crate::schema::Step { sql: include_str!("../../migrations/fleet/0004_read_tokens.sql"), was: None },
    ],
};

/// Offers the fleet's store traits.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let fleet = Arc::new(PgFleet { ctx: store.ctx.clone() });
    stores.provide::<dyn UserStore>(fleet.clone());
    stores.provide::<dyn SessionStore>(fleet.clone());
    stores.provide::<dyn RobotStore>(fleet);
}

struct PgFleet {
    ctx: Ctx,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("a stored {what} is not valid"))
}

/// The columns a [`User`] is read from, in `user_from_row`'s order.
macro_rules! user_columns {
    () => {
        "id, license_pk, email, name, password_hash, role, is_active, created_at, updated_at"
    };
}

/// The columns a [`Robot`] is read from, in `robot_from_row`'s order.
macro_rules! robot_columns {
    () => {
        "id, license_pk, owner_id, name, hostname, ip_address, architecture, status, created_at, last_seen_at"
    };
}

macro_rules! select_user {
    ($filter:literal) => {
        concat!("SELECT ", user_columns!(), " FROM fleet_users WHERE ", $filter)
    };
}

fn user_from_row(r: &PgRow) -> StoreResult<User> {
    let role: String = r.try_get("role").sql()?;
    Ok(User {
        id: r.try_get("id").sql()?,
        license: LicensePk(r.try_get("license_pk").sql()?),
        email: r.try_get("email").sql()?,
        name: r.try_get("name").sql()?,
        password_hash: r.try_get("password_hash").sql()?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role"))?,
        is_active: r.try_get("is_active").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
        updated_at: time(r.try_get("updated_at").sql()?),
    })
}

async fn end_sessions<'e>(db: impl PgExecutor<'e>, user: i64) -> StoreResult<()> {
    sqlx::query("UPDATE fleet_sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .execute(db)
        .await
        .sql()?;
    Ok(())
}

#[async_trait]
impl UserStore for PgFleet {
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO fleet_users (license_pk, email, name, password_hash, role, is_active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, true, now(), now())
             RETURNING ",
            user_columns!()
        ))
        .bind(user.license.0)
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .fetch_one(&self.ctx.pool)
        .await;
        match inserted {
            Ok(row) => user_from_row(&row),
            Err(err) if is_unique_violation(&err) => Err(relayhub_fleet::refusals::user_exists(&user.email)),
            Err(err) => Err(crate::error::from_sqlx(err)),
        }
    }

    async fn user(&self, id: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query(select_user!("id = $1")).bind(id).fetch_optional(&self.ctx.pool).await.sql()?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(select_user!("email = $1")).bind(email).fetch_optional(&self.ctx.pool).await.sql()?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn users(&self, license: LicensePk) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(select_user!("license_pk = $1 ORDER BY id"))
            .bind(license.0)
            .fetch_all(&self.ctx.pool)
            .await
            .sql()?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(&self, license: LicensePk, id: i64, patch: UserPatch) -> StoreResult<User> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let row = sqlx::query(select_user!("id = $1 AND license_pk = $2 FOR UPDATE"))
            .bind(id)
            .bind(license.0)
            .fetch_optional(&mut *tx)
            .await
            .sql()?;
        let user = row.as_ref().map(user_from_row).transpose()?.ok_or_else(|| relayhub_fleet::refusals::no_user(id))?;
        let row = sqlx::query(concat!(
            "UPDATE fleet_users SET name = $2, role = $3, is_active = $4, updated_at = now() WHERE id = $1
             RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(patch.name.unwrap_or(user.name))
        .bind(patch.role.unwrap_or(user.role).as_str())
        .bind(patch.is_active.unwrap_or(user.is_active))
        .fetch_one(&mut *tx)
        .await
        .sql()?;
        if patch.is_active == Some(false) {
            end_sessions(&mut *tx, id).await?;
        }
        tx.commit().await.sql()?;
        user_from_row(&row)
    }

    async fn set_password(&self, id: i64, password_hash: String) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let changed = sqlx::query("UPDATE fleet_users SET password_hash = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await
            .sql()?;
        if changed.rows_affected() == 0 {
            return Err(relayhub_fleet::refusals::no_user(id));
        }
        end_sessions(&mut *tx, id).await?;
        tx.commit().await.sql()
    }

    async fn add_password_reset(&self, user: i64, token: SecretHash, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO fleet_password_resets (user_id, hash, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, expires_at = excluded.expires_at",
        )
        .bind(user)
        .bind(token.as_bytes().as_slice())
        .bind(at(expires_at))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(())
    }

    async fn password_reset_valid(&self, token: SecretHash, now: Timestamp) -> StoreResult<bool> {
        let found = sqlx::query("SELECT 1 FROM fleet_password_resets WHERE hash = $1 AND expires_at > $2")
            .bind(token.as_bytes().as_slice())
            .bind(at(now))
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        Ok(found.is_some())
    }

    async fn use_password_reset(
        &self,
        token: SecretHash,
        password_hash: String,
        now: Timestamp,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let user: Option<i64> = sqlx::query_scalar(
            "DELETE FROM fleet_password_resets WHERE hash = $1 AND expires_at > $2 RETURNING user_id",
        )
        .bind(token.as_bytes().as_slice())
        .bind(at(now))
        .fetch_optional(&mut *tx)
        .await
        .sql()?;
        let Some(user) = user else { return Ok(None) };
        sqlx::query("UPDATE fleet_users SET password_hash = $2, updated_at = now() WHERE id = $1")
            .bind(user)
            .bind(password_hash)
            .execute(&mut *tx)
            .await
            .sql()?;
        end_sessions(&mut *tx, user).await?;
        tx.commit().await.sql()?;
        Ok(Some(user))
    }

    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        for sql in FORGET_LICENSE {
            sqlx::query(sql).bind(license.0).execute(&mut *tx).await.sql()?;
        }
        tx.commit().await.sql()
    }

    async fn add_read_token(&self, user: i64, token: NewCredential) -> StoreResult<()> {
        sqlx::query("INSERT INTO fleet_read_tokens (id, user_id, hash, name, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&token.id)
            .bind(user)
            .bind(token.hash.as_bytes().as_slice())
            .bind(&token.name)
            .bind(at(token.created_at))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(())
    }

    async fn read_tokens(&self, user: i64) -> StoreResult<Vec<CredentialInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at FROM fleet_read_tokens WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter()
            .map(|r| {
                Ok(CredentialInfo {
                    id: r.try_get("id").sql()?,
                    name: r.try_get("name").sql()?,
                    created_at: time(r.try_get("created_at").sql()?),
                    revoked_at: opt_time(r.try_get("revoked_at").sql()?),
                })
            })
            .collect()
    }

    async fn revoke_read_token(&self, user: i64, id: &str, when: Timestamp) -> StoreResult<()> {
        let found = sqlx::query(
            "UPDATE fleet_read_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user)
        .bind(at(when))
        .execute(&self.ctx.pool)
        .await
        .sql()?
        .rows_affected();
        if found == 0 {
            return Err(relayhub_core::identity::refusals::no_token(id));
        }
        Ok(())
    }

    async fn user_by_read_token(&self, hash: &SecretHash) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT user_id FROM fleet_read_tokens WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()
    }
}

/// What a license delete takes of the fleet's tables, children first.
const FORGET_LICENSE: [&str; 5] = [
    "DELETE FROM fleet_read_tokens WHERE user_id IN (SELECT id FROM fleet_users WHERE license_pk = $1)",
    "DELETE FROM fleet_password_resets WHERE user_id IN (SELECT id FROM fleet_users WHERE license_pk = $1)",
    "DELETE FROM fleet_sessions WHERE user_id IN (SELECT id FROM fleet_users WHERE license_pk = $1)",
    "DELETE FROM fleet_robots WHERE license_pk = $1",
    "DELETE FROM fleet_users WHERE license_pk = $1",
];

async fn session(tx: &mut Transaction<'_, Postgres>, token: &SecretHash) -> StoreResult<Option<RefreshRow>> {
    read_session(&mut **tx, token, " FOR UPDATE").await
}

/// A refresh token's row; `lock` is `" FOR UPDATE"` when it is to be spent.
async fn read_session<'e>(db: impl PgExecutor<'e>, token: &SecretHash, lock: &str) -> StoreResult<Option<RefreshRow>> {
    let sql =
        format!("SELECT user_id, chain, expires_at, used_at, revoked_at FROM fleet_sessions WHERE hash = $1{lock}");
    let row = sqlx::query(&sql).bind(token.as_bytes().as_slice()).fetch_optional(db).await.sql()?;
    row.map(|r| {
        Ok(RefreshRow {
            user_id: r.try_get("user_id").sql()?,
            chain: r.try_get("chain").sql()?,
            expires_at: time(r.try_get("expires_at").sql()?),
            used_at: opt_time(r.try_get("used_at").sql()?),
            revoked_at: opt_time(r.try_get("revoked_at").sql()?),
        })
    })
    .transpose()
}

async fn insert_session<'e>(
    db: impl PgExecutor<'e>,
    token: &SecretHash,
    user: i64,
    chain: &str,
    expires_at: Timestamp,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO fleet_sessions (hash, user_id, chain, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token.as_bytes().as_slice())
        .bind(user)
        .bind(chain)
        .bind(at(expires_at))
        .execute(db)
        .await
        .sql()?;
    Ok(())
}

async fn end_chain<'e>(db: impl PgExecutor<'e>, chain: &str) -> StoreResult<()> {
    sqlx::query("UPDATE fleet_sessions SET revoked_at = now() WHERE chain = $1 AND revoked_at IS NULL")
        .bind(chain)
        .execute(db)
        .await
        .sql()?;
    Ok(())
}

#[async_trait]
impl SessionStore for PgFleet {
    async fn start_session(&self, user: i64, token: SecretHash, expires_at: Timestamp) -> StoreResult<()> {
        let chain = uuid::Uuid::new_v4().simple().to_string();
        insert_session(&self.ctx.pool, &token, user, &chain, expires_at).await
    }

    async fn rotate(
        &self,
        token: SecretHash,
        next: SecretHash,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Option<Rotation>> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let Some(row) = session(&mut tx, &token).await? else { return Ok(None) };
        let rotation = rules::rotation(&row, now);
        match &rotation {
            Rotation::Rotate { user_id, chain } => {
                sqlx::query("UPDATE fleet_sessions SET used_at = $2 WHERE hash = $1")
                    .bind(token.as_bytes().as_slice())
                    .bind(at(now))
                    .execute(&mut *tx)
                    .await
                    .sql()?;
                insert_session(&mut *tx, &next, *user_id, chain, expires_at).await?;
            }
            Rotation::Reused { chain } => end_chain(&mut *tx, chain).await?,
            Rotation::Refused => {}
        }
        tx.commit().await.sql()?;
        Ok(Some(rotation))
    }

    async fn session_user(&self, token: SecretHash, now: Timestamp) -> StoreResult<Option<(i64, Timestamp)>> {
        let row = read_session(&self.ctx.pool, &token, "").await?;
        Ok(row.and_then(|row| match rules::rotation(&row, now) {
            Rotation::Rotate { user_id, .. } => Some((user_id, row.expires_at)),
            Rotation::Reused { .. } | Rotation::Refused => None,
        }))
    }

    async fn end_session(&self, token: SecretHash) -> StoreResult<bool> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let Some(row) = session(&mut tx, &token).await? else { return Ok(false) };
        end_chain(&mut *tx, &row.chain).await?;
        tx.commit().await.sql()?;
        Ok(true)
    }

    async fn signing_key(&self) -> StoreResult<Vec<u8>> {
        let mut fresh = [0u8; 32];
        rand::fill(&mut fresh);
        sqlx::query(
            "INSERT INTO fleet_secrets (name, value) VALUES ('access_tokens', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(fresh.as_slice())
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        sqlx::query_scalar("SELECT value FROM fleet_secrets WHERE name = 'access_tokens'")
            .fetch_one(&self.ctx.pool)
            .await
            .sql()
    }
}

mod robots;
