//! The fleet's store traits on SQLite: users, sessions, robots and their
//! pairing. Decisions are the fleet's rules; this module reads and writes.

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
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// The fleet module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "fleet",
    migrations: &[
        include_str!("../../migrations/fleet/0001_baseline.sql"),
        include_str!("../../migrations/fleet/0002_password_resets.sql"),
        include_str!("../../migrations/fleet/0003_read_tokens.sql"),
    ],
};

/// Offers the fleet's store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let fleet = Arc::new(SqliteFleet { db: store.clone() });
    stores.provide::<dyn UserStore>(fleet.clone());
    stores.provide::<dyn SessionStore>(fleet.clone());
    stores.provide::<dyn RobotStore>(fleet);
}

/// The fleet's stores, over the shared handle.
pub(crate) struct SqliteFleet {
    db: Arc<SqliteStore>,
}

fn bad(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, what.to_owned().into())
}

const USER_COLUMNS: &str = "id, license_pk, email, name, password_hash, role, is_active, created_at, updated_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(5)?;
    Ok(User {
        id: row.get(0)?,
        license: LicensePk(row.get(1)?),
        email: row.get(2)?,
        name: row.get(3)?,
        password_hash: row.get(4)?,
        role: Role::parse(&role).ok_or_else(|| bad(5, "role"))?,
        is_active: row.get(6)?,
        created_at: columns::time(row, 7)?,
        updated_at: columns::time(row, 8)?,
    })
}

fn user_where(conn: &Connection, filter: &str, value: impl rusqlite::ToSql) -> StoreResult<Option<User>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM fleet_users WHERE {filter}"))
        .sql()?
        .query_row([value], user_from_row)
        .optional()
        .sql()
}

/// Ends every session of a user.
fn end_sessions(conn: &Connection, user: i64, now: Timestamp) -> StoreResult<()> {
    conn.prepare_cached("UPDATE fleet_sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL")
        .sql()?
        .execute(params![user, now.millis()])
        .sql()?;
    Ok(())
}

#[async_trait]
impl UserStore for SqliteFleet {
    async fn create_user(&self, user: NewUser) -> StoreResult<User> {
        self.db.writer
            .write(move |conn, _| {
                if user_where(conn, "email = ?1", &user.email)?.is_some() {
                    return Err(relayhub_fleet::refusals::user_exists(&user.email));
                }
                let now = Timestamp::now().millis();
                conn.prepare_cached(
                    "INSERT INTO fleet_users (license_pk, email, name, password_hash, role, is_active, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
                )
                .sql()?
                .execute(params![user.license.0, user.email, user.name, user.password_hash, user.role.as_str(), now])
                .sql()?;
                user_where(conn, "id = ?1", conn.last_insert_rowid())?
                    .ok_or_else(|| StoreError::Internal("a new user vanished".into()))
            })
            .await
    }

    async fn user(&self, id: i64) -> StoreResult<Option<User>> {
        self.db.readers.read(move |conn| user_where(conn, "id = ?1", id)).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.db.readers.read(move |conn| user_where(conn, "email = ?1", &email)).await
    }

    async fn users(&self, license: LicensePk) -> StoreResult<Vec<User>> {
        self.db
            .readers
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {USER_COLUMNS} FROM fleet_users WHERE license_pk = ?1 ORDER BY id"
                    ))
                    .sql()?;
                let rows = stmt.query_map([license.0], user_from_row).sql()?;
                rows.collect::<rusqlite::Result<Vec<_>>>().sql()
            })
            .await
    }

    async fn update_user(&self, license: LicensePk, id: i64, patch: UserPatch) -> StoreResult<User> {
        self.db
            .writer
            .write(move |conn, _| {
                let user = user_where(conn, "id = ?1", id)?
                    .filter(|u| u.license == license)
                    .ok_or_else(|| relayhub_fleet::refusals::no_user(id))?;
                let now = Timestamp::now();
                conn.prepare_cached(
                    "UPDATE fleet_users SET name = ?2, role = ?3, is_active = ?4, updated_at = ?5 WHERE id = ?1",
                )
                .sql()?
                .execute(params![
                    id,
                    patch.name.unwrap_or(user.name),
                    patch.role.unwrap_or(user.role).as_str(),
                    patch.is_active.unwrap_or(user.is_active),
                    now.millis()
                ])
                .sql()?;
                if patch.is_active == Some(false) {
                    end_sessions(conn, id, now)?;
                }
                user_where(conn, "id = ?1", id)?.ok_or_else(|| relayhub_fleet::refusals::no_user(id))
            })
            .await
    }

    async fn set_password(&self, id: i64, password_hash: String) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                let now = Timestamp::now();
                let changed = conn
                    .prepare_cached("UPDATE fleet_users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")
                    .sql()?
                    .execute(params![id, password_hash, now.millis()])
                    .sql()?;
                if changed == 0 {
                    return Err(relayhub_fleet::refusals::no_user(id));
                }
                end_sessions(conn, id, now)
            })
            .await
    }

    async fn add_password_reset(&self, user: i64, token: SecretHash, expires_at: Timestamp) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO fleet_password_resets (user_id, hash, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, expires_at = excluded.expires_at",
                )
                .sql()?
                .execute(params![user, token.as_bytes().as_slice(), expires_at.millis()])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn password_reset_valid(&self, token: SecretHash, now: Timestamp) -> StoreResult<bool> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached("SELECT 1 FROM fleet_password_resets WHERE hash = ?1 AND expires_at > ?2")
                    .sql()?
                    .exists(params![token.as_bytes().as_slice(), now.millis()])
                    .sql()
            })
            .await
    }

    async fn use_password_reset(
        &self,
        token: SecretHash,
        password_hash: String,
        now: Timestamp,
    ) -> StoreResult<Option<i64>> {
        self.db
            .writer
            .write(move |conn, _| {
                let user: Option<i64> = conn
                    .prepare_cached(
                        "DELETE FROM fleet_password_resets WHERE hash = ?1 AND expires_at > ?2 RETURNING user_id",
                    )
                    .sql()?
                    .query_row(params![token.as_bytes().as_slice(), now.millis()], |row| row.get(0))
                    .optional()
                    .sql()?;
                let Some(user) = user else { return Ok(None) };
                conn.prepare_cached("UPDATE fleet_users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")
                    .sql()?
                    .execute(params![user, password_hash, now.millis()])
                    .sql()?;
                end_sessions(conn, user, now)?;
                Ok(Some(user))
            })
            .await
    }

    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                for sql in FORGET_LICENSE {
                    conn.prepare_cached(sql).sql()?.execute([license.0]).sql()?;
                }
                Ok(())
            })
            .await
    }

    async fn add_read_token(&self, user: i64, token: NewCredential) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO fleet_read_tokens (id, user_id, hash, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .sql()?
                .execute(params![
                    token.id,
                    user,
                    token.hash.as_bytes().as_slice(),
                    token.name,
                    token.created_at.millis()
                ])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn read_tokens(&self, user: i64) -> StoreResult<Vec<CredentialInfo>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, name, created_at, revoked_at FROM fleet_read_tokens WHERE user_id = ?1
                     ORDER BY created_at, id",
                )
                .sql()?
                .query_map([user], |row| {
                    Ok(CredentialInfo {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        created_at: columns::time(row, 2)?,
                        revoked_at: columns::opt_time(row, 3)?,
                    })
                })
                .sql()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .sql()
            })
            .await
    }

    async fn revoke_read_token(&self, user: i64, id: &str, at: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.db
            .writer
            .write(move |conn, _| {
                let found = conn
                    .prepare_cached(
                        "UPDATE fleet_read_tokens SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND user_id = ?2",
                    )
                    .sql()?
                    .execute(params![id, user, at.millis()])
                    .sql()?;
                if found == 0 {
                    return Err(relayhub_core::identity::refusals::no_token(&id));
                }
                Ok(())
            })
            .await
    }

    async fn user_by_read_token(&self, hash: &SecretHash) -> StoreResult<Option<i64>> {
        let hash = *hash;
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached("SELECT user_id FROM fleet_read_tokens WHERE hash = ?1 AND revoked_at IS NULL")
                    .sql()?
                    .query_row([hash.as_bytes().as_slice()], |row| row.get(0))
                    .optional()
                    .sql()
            })
            .await
    }
}

/// What a license delete takes of the fleet's tables, children first.
const FORGET_LICENSE: [&str; 5] = [
    "DELETE FROM fleet_read_tokens WHERE user_id IN (SELECT id FROM fleet_users WHERE license_pk = ?1)",
    "DELETE FROM fleet_password_resets WHERE user_id IN (SELECT id FROM fleet_users WHERE license_pk = ?1)",
    "DELETE FROM fleet_sessions WHERE user_id IN (SELECT id FROM fleet_users WHERE license_pk = ?1)",
    "DELETE FROM fleet_robots WHERE license_pk = ?1",
    "DELETE FROM fleet_users WHERE license_pk = ?1",
];

fn session(conn: &Connection, token: &SecretHash) -> StoreResult<Option<RefreshRow>> {
    conn.prepare_cached("SELECT user_id, chain, expires_at, used_at, revoked_at FROM fleet_sessions WHERE hash = ?1")
        .sql()?
        .query_row([token.as_bytes().as_slice()], |row| {
            Ok(RefreshRow {
                user_id: row.get(0)?,
                chain: row.get(1)?,
                expires_at: columns::time(row, 2)?,
                used_at: columns::opt_time(row, 3)?,
                revoked_at: columns::opt_time(row, 4)?,
            })
        })
        .optional()
        .sql()
}

fn insert_session(
    conn: &Connection,
    token: &SecretHash,
    user: i64,
    chain: &str,
    expires_at: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO fleet_sessions (hash, user_id, chain, expires_at) VALUES (?1, ?2, ?3, ?4)")
        .sql()?
        .execute(params![token.as_bytes().as_slice(), user, chain, expires_at.millis()])
        .sql()?;
    Ok(())
}

fn end_chain(conn: &Connection, chain: &str, now: Timestamp) -> StoreResult<()> {
    conn.prepare_cached("UPDATE fleet_sessions SET revoked_at = ?2 WHERE chain = ?1 AND revoked_at IS NULL")
        .sql()?
        .execute(params![chain, now.millis()])
        .sql()?;
    Ok(())
}

#[async_trait]
impl SessionStore for SqliteFleet {
    async fn start_session(&self, user: i64, token: SecretHash, expires_at: Timestamp) -> StoreResult<()> {
        let chain = uuid::Uuid::new_v4().simple().to_string();
        self.db.writer.write(move |conn, _| insert_session(conn, &token, user, &chain, expires_at)).await
    }

    async fn rotate(
        &self,
        token: SecretHash,
        next: SecretHash,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Option<Rotation>> {
        self.db
            .writer
            .write(move |conn, _| {
                let Some(row) = session(conn, &token)? else { return Ok(None) };
                let rotation = rules::rotation(&row, now);
                match &rotation {
                    Rotation::Rotate { user_id, chain } => {
                        conn.prepare_cached("UPDATE fleet_sessions SET used_at = ?2 WHERE hash = ?1")
                            .sql()?
                            .execute(params![token.as_bytes().as_slice(), now.millis()])
                            .sql()?;
                        insert_session(conn, &next, *user_id, chain, expires_at)?;
                    }
                    Rotation::Reused { chain } => end_chain(conn, chain, now)?,
                    Rotation::Refused => {}
                }
                Ok(Some(rotation))
            })
            .await
    }

    async fn session_user(&self, token: SecretHash, now: Timestamp) -> StoreResult<Option<(i64, Timestamp)>> {
        let row = self.db.readers.read(move |conn| session(conn, &token)).await?;
        Ok(row.and_then(|row| match rules::rotation(&row, now) {
            Rotation::Rotate { user_id, .. } => Some((user_id, row.expires_at)),
            Rotation::Reused { .. } | Rotation::Refused => None,
        }))
    }

    async fn end_session(&self, token: SecretHash) -> StoreResult<bool> {
        self.db
            .writer
            .write(move |conn, _| match session(conn, &token)? {
                Some(row) => end_chain(conn, &row.chain, Timestamp::now()).map(|()| true),
                None => Ok(false),
            })
            .await
    }

    async fn signing_key(&self) -> StoreResult<Vec<u8>> {
        self.db
            .writer
            .write(|conn, _| {
                let mut fresh = [0u8; 32];
                rand::fill(&mut fresh);
                conn.prepare_cached("INSERT OR IGNORE INTO fleet_secrets (name, value) VALUES ('access_tokens', ?1)")
                    .sql()?
                    .execute([fresh.as_slice()])
                    .sql()?;
                conn.prepare_cached("SELECT value FROM fleet_secrets WHERE name = 'access_tokens'")
                    .sql()?
                    .query_row([], |row| row.get(0))
                    .sql()
            })
            .await
    }
}

mod robots;
