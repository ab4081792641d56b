//! Operators, their tokens and the audit log on PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::identity::{CredentialInfo, NewCredential};
use relayhub_core::operators::{
    AuditEntry, AuditFilter, AuditLog, NewAuditEntry, NewOperator, Operator, OperatorSessions, OperatorStore,
    OperatorToken, refusals,
};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreResult};
use relayhub_core::time::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{SqlResult, is_unique_violation};
use crate::time::{at, time};
use crate::{Ctx, PgStore};

/// The operators module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "operators",
    steps: &[
        crate::schema::Step { sql: include_str!("../migrations/operators/0001_operators.sql"), was: None },
        crate::schema::Step { sql: include_str!("../migrations/operators/0002_console_sessions.sql"), was: None },
    ],
};

/// Offers the operator store and the audit log.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let operators = Arc::new(PgOperators { ctx: store.ctx.clone() });
    stores.provide::<dyn OperatorStore>(operators.clone());
    stores.provide::<dyn OperatorSessions>(operators.clone());
    stores.provide::<dyn AuditLog>(operators);
}

/// Operators and the audit log, over the shared handle.
struct PgOperators {
    ctx: Ctx,
}

fn operator_from_row(r: &PgRow) -> StoreResult<Operator> {
    Ok(Operator {
        id: r.try_get("id").sql()?,
        email: r.try_get("email").sql()?,
        name: r.try_get("name").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

fn entry_from_row(r: &PgRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get("id").sql()?,
        at: time(r.try_get("at").sql()?),
        actor: r.try_get("actor").sql()?,
        operator: r.try_get("operator_id").sql()?,
        action: r.try_get("action").sql()?,
        license: r.try_get("license").sql()?,
        target: r.try_get("target").sql()?,
        address: r.try_get("address").sql()?,
        detail: serde_json::from_str(r.try_get::<&str, _>("detail").sql()?).unwrap_or_default(),
    })
}

#[async_trait]
impl OperatorStore for PgOperators {
    async fn add_operator(&self, operator: NewOperator, when: Timestamp) -> StoreResult<Operator> {
        let inserted = sqlx::query(
            "INSERT INTO operators (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, email, name, created_at",
        )
        .bind(Uuid::new_v4())
        .bind(&operator.email)
        .bind(&operator.name)
        .bind(&operator.password_hash)
        .bind(at(when))
        .fetch_one(&self.ctx.pool)
        .await;
        match inserted {
            Ok(row) => operator_from_row(&row),
            Err(err) if is_unique_violation(&err) => Err(refusals::operator_exists(&operator.email)),
            Err(err) => Err(crate::error::from_sqlx(err)),
        }
    }

    async fn operators(&self) -> StoreResult<Vec<Operator>> {
        let rows = sqlx::query("SELECT id, email, name, created_at FROM operators ORDER BY created_at, email")
            .fetch_all(&self.ctx.pool)
            .await
            .sql()?;
        rows.iter().map(operator_from_row).collect()
    }

    async fn add_operator_token(&self, operator: Uuid, token: NewCredential) -> StoreResult<()> {
        let inserted = sqlx::query(
            "INSERT INTO operator_tokens (id, operator_id, hash, name, created_at)
             SELECT $1, id, $3, $4, $5 FROM operators WHERE id = $2",
        )
        .bind(&token.id)
        .bind(operator)
        .bind(token.hash.as_bytes().as_slice())
        .bind(&token.name)
        .bind(at(token.created_at))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        if inserted.rows_affected() == 0 {
            return Err(refusals::no_operator(operator));
        }
        Ok(())
    }

    async fn revoke_operator_token(&self, id: &str, when: Timestamp) -> StoreResult<()> {
        let found = sqlx::query("UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
            .bind(id)
            .bind(at(when))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        if found.rows_affected() == 0 {
            return Err(refusals::no_operator_token(id));
        }
        Ok(())
    }

    async fn operator_tokens(&self) -> StoreResult<Vec<OperatorToken>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at, operator_id FROM operator_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter()
            .map(|r| {
                let revoked: Option<chrono::DateTime<chrono::Utc>> = r.try_get("revoked_at").sql()?;
                let info = CredentialInfo {
                    id: r.try_get("id").sql()?,
                    name: r.try_get("name").sql()?,
                    created_at: time(r.try_get("created_at").sql()?),
                    revoked_at: revoked.map(time),
                };
                Ok(OperatorToken { operator: r.try_get("operator_id").sql()?, info })
            })
            .collect()
    }

    async fn operator_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Operator>> {
        let row = sqlx::query(
            "SELECT o.id, o.email, o.name, o.created_at
             FROM operator_tokens t JOIN operators o ON o.id = t.operator_id
             WHERE t.hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(operator_from_row).transpose()
    }
}

#[async_trait]
impl OperatorSessions for PgOperators {
    async fn operator_password(&self, email: &str) -> StoreResult<Option<(Operator, String)>> {
        let row = sqlx::query("SELECT id, email, name, created_at, password_hash FROM operators WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        row.map(|r| Ok((operator_from_row(&r)?, r.try_get("password_hash").sql()?))).transpose()
    }

    async fn start_operator_session(&self, operator: Uuid, hash: SecretHash, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT INTO operator_sessions (hash, operator_id, expires_at) VALUES ($1, $2, $3)")
            .bind(hash.as_bytes().as_slice())
            .bind(operator)
            .bind(at(expires_at))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(())
    }

    async fn operator_by_session(&self, hash: &SecretHash, now: Timestamp) -> StoreResult<Option<Operator>> {
        let row = sqlx::query(
            "SELECT o.id, o.email, o.name, o.created_at
             FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
             WHERE s.hash = $1 AND s.expires_at > $2",
        )
        .bind(hash.as_bytes().as_slice())
        .bind(at(now))
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(operator_from_row).transpose()
    }

    async fn end_operator_session(&self, hash: &SecretHash) -> StoreResult<()> {
        sqlx::query("DELETE FROM operator_sessions WHERE hash = $1")
            .bind(hash.as_bytes().as_slice())
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(())
    }

    async fn purge_operator_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let gone = sqlx::query("DELETE FROM operator_sessions WHERE expires_at <= $1")
            .bind(at(now))
            .execute(&self.ctx.pool)
            .await
            .sql()?
            .rows_affected();
        Ok(gone)
    }
}

#[async_trait]
impl AuditLog for PgOperators {
    async fn record(&self, entry: NewAuditEntry) -> StoreResult<()> {
        let (actor, operator, address) = entry.columns();
        sqlx::query(
            "INSERT INTO audit_log (at, actor, operator_id, action, license, target, address, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
        )
        .bind(at(entry.at))
        .bind(actor)
        .bind(operator)
        .bind(entry.action)
        .bind(&entry.license)
        .bind(&entry.target)
        .bind(address)
        .bind(entry.detail.to_string())
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(())
    }

    async fn entries(&self, filter: AuditFilter, page: PageRequest) -> StoreResult<Page<AuditEntry>> {
        let clause = "($1::text IS NULL OR license = $1) AND ($2::uuid IS NULL OR operator_id = $2)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_log WHERE {clause}"))
            .bind(&filter.license)
            .bind(filter.operator)
            .fetch_one(&self.ctx.pool)
            .await
            .sql()?;
        let rows = sqlx::query(&format!(
            "SELECT id, at, actor, operator_id, action, license, target, address, detail::text AS detail
             FROM audit_log WHERE {clause} ORDER BY id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(&filter.license)
        .bind(filter.operator)
        .bind(i64::from(page.size))
        .bind(page.offset() as i64)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        let items = rows.iter().map(entry_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, total: total.max(0) as u64 })
    }

    async fn purge_before(&self, before: Timestamp) -> StoreResult<u64> {
        let gone =
            sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(at(before)).execute(&self.ctx.pool).await.sql()?;
        Ok(gone.rows_affected())
    }
}
