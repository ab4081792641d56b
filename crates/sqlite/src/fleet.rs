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
        include_str!("../migrations/fleet/0001_baseline.sql"),
        include_str!("../migrations/fleet/0002_password_resets.sql"),
        include_str!("../migrations/fleet/0003_read_tokens.sql"),
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

const ROBOT_COLUMNS: &str = "id, license_pk, owner_id, name, hostname, ip_address, architecture, status, created_at, \
                             last_seen_at, pair_code, poll_secret, pair_expires_at, paired_at, token_delivered, \
                             pair_observed_ip";

fn robot_from_row(row: &Row<'_>) -> rusqlite::Result<Robot> {
    let architecture: Option<String> = row.get(6)?;
    let status: String = row.get(7)?;
    Ok(Robot {
        id: row.get(0)?,
        license: row.get::<_, Option<i64>>(1)?.map(LicensePk),
        owner_id: row.get(2)?,
        name: row.get(3)?,
        hostname: row.get(4)?,
        ip_address: row.get(5)?,
        architecture: architecture.map(|a| Architecture::parse(&a).map_err(|_| bad(6, "architecture"))).transpose()?,
        status: RobotStatus::parse(&status).ok_or_else(|| bad(7, "status"))?,
        created_at: columns::time(row, 8)?,
        last_seen_at: columns::opt_time(row, 9)?,
    })
}

fn pairing_from_row(row: &Row<'_>) -> rusqlite::Result<Pairing> {
    let secret: Vec<u8> = row.get(11)?;
    Ok(Pairing {
        robot: robot_from_row(row)?,
        code: row.get(10)?,
        secret: SecretHash::from_slice(&secret).ok_or_else(|| bad(11, "poll secret"))?,
        expires_at: columns::time(row, 12)?,
        confirmed_at: columns::opt_time(row, 13)?,
        token_delivered: row.get(14)?,
        observed_ip_address: row.get(15)?,
    })
}

fn pairing(conn: &Connection, code: &str) -> StoreResult<Option<Pairing>> {
    conn.prepare_cached(&format!("SELECT {ROBOT_COLUMNS} FROM fleet_robots WHERE pair_code = ?1"))
        .sql()?
        .query_row([code], pairing_from_row)
        .optional()
        .sql()
}

fn robot_where(conn: &Connection, id: i64, license: Option<LicensePk>) -> StoreResult<Option<Robot>> {
    let robot = conn
        .prepare_cached(&format!("SELECT {ROBOT_COLUMNS} FROM fleet_robots WHERE id = ?1"))
        .sql()?
        .query_row([id], robot_from_row)
        .optional()
        .sql()?;
    Ok(robot.filter(|r| license.is_none() || r.license == license))
}

fn changed(robot: i64) -> Event {
    Event::new(FleetEvent::RobotChanged { robot })
}

#[async_trait]
impl RobotStore for SqliteFleet {
    async fn start_pairing(&self, new: NewPairing) -> StoreResult<Robot> {
        self.db
            .writer
            .write(move |conn, _| {
                let now = Timestamp::now();
                if let Some(held) = pairing(conn, &new.code)? {
                    // A code is free again once its pairing expired unconfirmed.
                    if rules::pair_state(&held, now) != rules::PairState::Expired {
                        return Err(relayhub_fleet::refusals::pairing_code_taken());
                    }
                    conn.prepare_cached("DELETE FROM fleet_robots WHERE id = ?1")
                        .sql()?
                        .execute([held.robot.id])
                        .sql()?;
                }
                conn.prepare_cached(
                    "INSERT INTO fleet_robots (name, hostname, ip_address, architecture, status, created_at,
                                               pair_code, poll_secret, pair_expires_at, pair_observed_ip)
                     VALUES (?1, ?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8)",
                )
                .sql()?
                .execute(params![
                    new.hostname,
                    new.ip_address,
                    new.architecture.map(Architecture::as_str),
                    now.millis(),
                    new.code,
                    new.secret.as_bytes().as_slice(),
                    new.expires_at.millis(),
                    new.observed_ip_address
                ])
                .sql()?;
                robot_where(conn, conn.last_insert_rowid(), None)?
                    .ok_or_else(|| StoreError::Internal("a new robot vanished".into()))
            })
            .await
    }

    async fn pairing(&self, code: &str) -> StoreResult<Option<Pairing>> {
        let code = code.to_owned();
        self.db.readers.read(move |conn| pairing(conn, &code)).await
    }

    async fn confirm_pairing(&self, code: &str, user: &User, now: Timestamp) -> StoreResult<Robot> {
        let (code, user) = (code.to_owned(), user.clone());
        self.db.writer
            .write(move |conn, events| {
                let found = pairing(conn, &code)?;
                let held = found.ok_or_else(relayhub_fleet::refusals::no_pairing)?;
                rules::confirm(&held, now).map_err(StoreError::Rejected)?;
                conn.prepare_cached(
                    "UPDATE fleet_robots SET license_pk = ?2, owner_id = ?3, status = 'active', paired_at = ?4 WHERE id = ?1",
                )
                .sql()?
                .execute(params![held.robot.id, user.license.0, user.id, now.millis()])
                .sql()?;
                events.push(changed(held.robot.id));
                robot_where(conn, held.robot.id, None)?.ok_or_else(|| relayhub_fleet::refusals::no_robot(held.robot.id))
            })
            .await
    }

    async fn deliver_token(&self, code: &str, token: SecretHash) -> StoreResult<bool> {
        let code = code.to_owned();
        self.db
            .writer
            .write(move |conn, events| {
                let Some(held) = pairing(conn, &code)? else { return Ok(false) };
                let delivered = conn
                    .prepare_cached(
                        "UPDATE fleet_robots SET token_hash = ?2, token_delivered = 1
                         WHERE id = ?1 AND paired_at IS NOT NULL AND token_delivered = 0",
                    )
                    .sql()?
                    .execute(params![held.robot.id, token.as_bytes().as_slice()])
                    .sql()?;
                if delivered == 1 {
                    events.push(changed(held.robot.id));
                }
                Ok(delivered == 1)
            })
            .await
    }

    async fn robots(&self, license: LicensePk, owner: Option<i64>) -> StoreResult<Vec<Robot>> {
        self.db
            .readers
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {ROBOT_COLUMNS} FROM fleet_robots
                         WHERE license_pk = ?1 AND (?2 IS NULL OR owner_id = ?2) ORDER BY id"
                    ))
                    .sql()?;
                let rows = stmt.query_map(params![license.0, owner], robot_from_row).sql()?;
                rows.collect::<rusqlite::Result<Vec<_>>>().sql()
            })
            .await
    }

    async fn robot(&self, license: LicensePk, id: i64) -> StoreResult<Option<Robot>> {
        self.db.readers.read(move |conn| robot_where(conn, id, Some(license))).await
    }

    async fn update_robot(&self, license: LicensePk, id: i64, patch: RobotPatch) -> StoreResult<Robot> {
        self.db
            .writer
            .write(move |conn, events| {
                let robot =
                    robot_where(conn, id, Some(license))?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))?;
                conn.prepare_cached("UPDATE fleet_robots SET name = ?2, status = ?3 WHERE id = ?1")
                    .sql()?
                    .execute(params![
                        id,
                        patch.name.unwrap_or(robot.name),
                        patch.status.unwrap_or(robot.status).as_str()
                    ])
                    .sql()?;
                events.push(changed(id));
                robot_where(conn, id, None)?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))
            })
            .await
    }

    async fn delete_robot(&self, license: LicensePk, id: i64) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, events| {
                robot_where(conn, id, Some(license))?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))?;
                conn.prepare_cached("DELETE FROM fleet_robots WHERE id = ?1").sql()?.execute([id]).sql()?;
                // Its telemetry goes with it.
                conn.prepare_cached("DELETE FROM telemetry_chunks WHERE robot_id = ?1").sql()?.execute([id]).sql()?;
                events.push(changed(id));
                Ok(())
            })
            .await
    }

    async fn robot_by_token(&self, token: SecretHash) -> StoreResult<Option<Robot>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {ROBOT_COLUMNS} FROM fleet_robots WHERE token_hash = ?1"))
                    .sql()?
                    .query_row([token.as_bytes().as_slice()], robot_from_row)
                    .optional()
                    .sql()
            })
            .await
    }

    async fn sweep_pairings(&self, now: Timestamp, keep: Duration) -> StoreResult<u64> {
        let before = now.minus(keep).millis();
        self.db
            .writer
            .write(move |conn, _| {
                let dropped = conn
                    .prepare_cached("DELETE FROM fleet_robots WHERE paired_at IS NULL AND pair_expires_at < ?1")
                    .sql()?
                    .execute([before])
                    .sql()?;
                let forgotten = conn
                    .prepare_cached(
                        "UPDATE fleet_robots SET pair_code = NULL, poll_secret = NULL
                         WHERE pair_code IS NOT NULL AND pair_expires_at < ?1",
                    )
                    .sql()?
                    .execute([before])
                    .sql()?;
                Ok((dropped + forgotten) as u64)
            })
            .await
    }
}
