//! Rail challenges and access tokens on PostgreSQL.

use super::*;

#[async_trait]
impl RailSessions for PgRail {
    async fn add_nonce(
        &self,
        nonce: &str,
        license: LicensePk,
        subject: Subject,
        expires: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO rail_nonces (nonce, license_pk, kind, subject, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(nonce)
        .bind(license.0)
        .bind(subject.kind())
        .bind(subject.id())
        .bind(at(expires))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(())
    }

    async fn take_nonce(&self, nonce: &str, subject: Subject, now: Timestamp) -> StoreResult<bool> {
        let taken =
            sqlx::query("DELETE FROM rail_nonces WHERE nonce = $1 AND kind = $2 AND subject = $3 AND expires_at > $4")
                .bind(nonce)
                .bind(subject.kind())
                .bind(subject.id())
                .bind(at(now))
                .execute(&self.ctx.pool)
                .await
                .sql()?
                .rows_affected();
        Ok(taken == 1)
    }

    async fn add_session(
        &self,
        token: SecretHash,
        license: LicensePk,
        subject: Subject,
        expires: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO rail_sessions (token, license_pk, kind, subject, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.as_bytes().as_slice())
        .bind(license.0)
        .bind(subject.kind())
        .bind(subject.id())
        .bind(at(expires))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(())
    }

    async fn session(&self, token: &SecretHash, now: Timestamp) -> StoreResult<Option<(LicensePk, Subject)>> {
        let found: Option<(i64, String, Uuid)> =
            sqlx::query_as("SELECT license_pk, kind, subject FROM rail_sessions WHERE token = $1 AND expires_at > $2")
                .bind(token.as_bytes().as_slice())
                .bind(at(now))
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(found.and_then(|(license, kind, id)| Some((LicensePk(license), Subject::from_parts(&kind, id)?))))
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        let nonces = sqlx::query("DELETE FROM rail_nonces WHERE expires_at <= $1")
            .bind(at(now))
            .execute(&self.ctx.pool)
            .await
            .sql()?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM rail_sessions WHERE expires_at <= $1")
            .bind(at(now))
            .execute(&self.ctx.pool)
            .await
            .sql()?
            .rows_affected();
        Ok(nonces + sessions)
    }
}
