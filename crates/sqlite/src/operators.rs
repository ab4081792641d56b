//! Operators, their tokens and the audit log on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::identity::{CredentialInfo, NewCredential};
use relayhub_core::operators::{
    AuditEntry, AuditFilter, AuditLog, NewAuditEntry, NewOperator, Operator, OperatorSessions, OperatorStore,
    OperatorToken, refusals,
};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// The operators module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "operators",
    migrations: &[
        include_str!("../migrations/operators/0001_operators.sql"),
        include_str!("../migrations/operators/0002_console_sessions.sql"),
    ],
};

/// Offers the operator store and the audit log.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let operators = Arc::new(SqliteOperators { db: store.clone() });
    stores.provide::<dyn OperatorStore>(operators.clone());
    stores.provide::<dyn OperatorSessions>(operators.clone());
    stores.provide::<dyn AuditLog>(operators);
}

/// Operators and the audit log, over the shared handle.
pub(crate) struct SqliteOperators {
    db: Arc<SqliteStore>,
}

fn operator_from_row(row: &Row<'_>) -> rusqlite::Result<Operator> {
    Ok(Operator { id: row.get(0)?, email: row.get(1)?, name: row.get(2)?, created_at: columns::time(row, 3)? })
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let detail: String = row.get(8)?;
    Ok(AuditEntry {
        id: row.get(0)?,
        at: columns::time(row, 1)?,
        actor: row.get(2)?,
        operator: row.get(3)?,
        action: row.get(4)?,
        license: row.get(5)?,
        target: row.get(6)?,
        address: row.get(7)?,
        detail: serde_json::from_str(&detail).unwrap_or_default(),
    })
}

#[async_trait]
impl OperatorStore for SqliteOperators {
    async fn add_operator(&self, operator: NewOperator, at: Timestamp) -> StoreResult<Operator> {
        self.db
            .writer
            .write(move |conn, _| {
                let taken: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM operators WHERE email = ?1")
                    .sql()?
                    .query_row([&operator.email], |row| row.get(0))
                    .optional()
                    .sql()?;
                if taken.is_some() {
                    return Err(refusals::operator_exists(&operator.email));
                }
                let id = Uuid::new_v4();
                conn.prepare_cached(
                    "INSERT INTO operators (id, email, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .sql()?
                .execute(params![id, operator.email, operator.name, operator.password_hash, at.millis()])
                .sql()?;
                Ok(Operator { id, email: operator.email, name: operator.name, created_at: at })
            })
            .await
    }

    async fn operators(&self) -> StoreResult<Vec<Operator>> {
        self.db
            .readers
            .read(|conn| {
                conn.prepare_cached("SELECT id, email, name, created_at FROM operators ORDER BY created_at, email")
                    .sql()?
                    .query_map([], operator_from_row)
                    .sql()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .sql()
            })
            .await
    }

    async fn add_operator_token(&self, operator: Uuid, token: NewCredential) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                let known: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM operators WHERE id = ?1")
                    .sql()?
                    .query_row([operator], |row| row.get(0))
                    .optional()
                    .sql()?;
                if known.is_none() {
                    return Err(refusals::no_operator(operator));
                }
                conn.prepare_cached(
                    "INSERT INTO operator_tokens (id, operator_id, hash, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .sql()?
                .execute(params![
                    token.id,
                    operator,
                    token.hash.as_bytes().as_slice(),
                    token.name,
                    token.created_at.millis()
                ])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn revoke_operator_token(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        let id = id.to_owned();
        self.db
            .writer
            .write(move |conn, _| {
                let found = conn
                    .prepare_cached("UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")
                    .sql()?
                    .execute(params![id, at.millis()])
                    .sql()?;
                if found == 0 {
                    return Err(refusals::no_operator_token(&id));
                }
                Ok(())
            })
            .await
    }

    async fn operator_tokens(&self) -> StoreResult<Vec<OperatorToken>> {
        self.db
            .readers
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT id, name, created_at, revoked_at, operator_id FROM operator_tokens ORDER BY created_at, id",
                )
                .sql()?
                .query_map([], |row| {
                    let info = CredentialInfo {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        created_at: columns::time(row, 2)?,
                        revoked_at: columns::opt_time(row, 3)?,
                    };
                    Ok(OperatorToken { operator: row.get(4)?, info })
                })
                .sql()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .sql()
            })
            .await
    }

    async fn operator_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Operator>> {
        let hash = *hash;
        self.db
            .readers
            .read(move |conn| {
                // Looked up by the hash of the presented token: timing
                // reveals nothing about any stored secret.
                conn.prepare_cached(
                    "SELECT o.id, o.email, o.name, o.created_at
                     FROM operator_tokens t JOIN operators o ON o.id = t.operator_id
                     WHERE t.hash = ?1 AND t.revoked_at IS NULL",
                )
                .sql()?
                .query_row([hash.as_bytes().as_slice()], operator_from_row)
                .optional()
                .sql()
            })
            .await
    }
}

#[async_trait]
impl OperatorSessions for SqliteOperators {
    async fn operator_password(&self, email: &str) -> StoreResult<Option<(Operator, String)>> {
        let email = email.to_owned();
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached("SELECT id, email, name, created_at, password_hash FROM operators WHERE email = ?1")
                    .sql()?
                    .query_row([email], |row| Ok((operator_from_row(row)?, row.get(4)?)))
                    .optional()
                    .sql()
            })
            .await
    }

    async fn start_operator_session(&self, operator: Uuid, hash: SecretHash, expires_at: Timestamp) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO operator_sessions (hash, operator_id, expires_at) VALUES (?1, ?2, ?3)",
                )
                .sql()?
                .execute(params![hash.as_bytes().as_slice(), operator, expires_at.millis()])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn operator_by_session(&self, hash: &SecretHash, now: Timestamp) -> StoreResult<Option<Operator>> {
        let hash = *hash;
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT o.id, o.email, o.name, o.created_at
                     FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
                     WHERE s.hash = ?1 AND s.expires_at > ?2",
                )
                .sql()?
                .query_row(params![hash.as_bytes().as_slice(), now.millis()], operator_from_row)
                .optional()
                .sql()
            })
            .await
    }

    async fn end_operator_session(&self, hash: &SecretHash) -> StoreResult<()> {
        let hash = *hash;
        self.db
            .writer
            .write(move |conn, _| {
                conn.prepare_cached("DELETE FROM operator_sessions WHERE hash = ?1")
                    .sql()?
                    .execute([hash.as_bytes().as_slice()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn purge_operator_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.db
            .writer
            .write(move |conn, _| {
                let gone = conn
                    .prepare_cached("DELETE FROM operator_sessions WHERE expires_at <= ?1")
                    .sql()?
                    .execute([now.millis()])
                    .sql()?;
                Ok(gone as u64)
            })
            .await
    }
}

#[async_trait]
impl AuditLog for SqliteOperators {
    async fn record(&self, entry: NewAuditEntry) -> StoreResult<()> {
        let (actor, operator, address) = entry.columns();
        let detail = entry.detail.to_string();
        self.db
            .writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO audit_log (at, actor, operator_id, action, license, target, address, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .sql()?
                .execute(params![
                    entry.at.millis(),
                    actor,
                    operator,
                    entry.action,
                    entry.license,
                    entry.target,
                    address,
                    detail
                ])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn entries(&self, filter: AuditFilter, page: PageRequest) -> StoreResult<Page<AuditEntry>> {
        self.db
            .readers
            .read(move |conn| {
                let clause = "(?1 IS NULL OR license = ?1) AND (?2 IS NULL OR operator_id = ?2)";
                let total: i64 = conn
                    .prepare_cached(&format!("SELECT COUNT(*) FROM audit_log WHERE {clause}"))
                    .sql()?
                    .query_row(params![filter.license, filter.operator], |row| row.get(0))
                    .sql()?;
                let items = conn
                    .prepare_cached(&format!(
                        "SELECT id, at, actor, operator_id, action, license, target, address, detail
                         FROM audit_log WHERE {clause} ORDER BY id DESC LIMIT ?3 OFFSET ?4"
                    ))
                    .sql()?
                    .query_map(
                        params![filter.license, filter.operator, page.size, page.offset() as i64],
                        entry_from_row,
                    )
                    .sql()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .sql()?;
                Ok(Page { items, total: u64::try_from(total).map_err(|_| StoreError::Internal("a count".into()))? })
            })
            .await
    }

    async fn purge_before(&self, before: Timestamp) -> StoreResult<u64> {
        self.db
            .writer
            .write(move |conn, _| {
                let gone = conn
                    .prepare_cached("DELETE FROM audit_log WHERE at < ?1")
                    .sql()?
                    .execute([before.millis()])
                    .sql()?;
                Ok(gone as u64)
            })
            .await
    }
}
