//! Rail challenges and access tokens on SQLite.

use super::*;

#[async_trait]
impl RailSessions for SqliteRail {
    async fn add_nonce(
        &self,
        nonce: &str,
        license: LicensePk,
        subject: Subject,
        expires: Timestamp,
    ) -> StoreResult<()> {
        let nonce = nonce.to_owned();
        self.db.writer
            .write(move |conn, _| {
                conn.prepare_cached("INSERT INTO rail_nonces (nonce, license_pk, kind, subject, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .sql()?
                    .execute(params![nonce, license.0, subject.kind(), subject.id(), expires.millis()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn take_nonce(&self, nonce: &str, subject: Subject, now: Timestamp) -> StoreResult<bool> {
        let nonce = nonce.to_owned();
        self.db
            .writer
            .write(move |conn, _| {
                let taken = conn
                    .prepare_cached(
                        "DELETE FROM rail_nonces WHERE nonce = ?1 AND kind = ?2 AND subject = ?3 AND expires_at > ?4",
                    )
                    .sql()?
                    .execute(params![nonce, subject.kind(), subject.id(), now.millis()])
                    .sql()?;
                Ok(taken == 1)
            })
            .await
    }

    async fn add_session(
        &self,
        token: SecretHash,
        license: LicensePk,
        subject: Subject,
        expires: Timestamp,
    ) -> StoreResult<()> {
        self.db.writer
            .write(move |conn, _| {
                conn.prepare_cached("INSERT INTO rail_sessions (token, license_pk, kind, subject, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .sql()?
                    .execute(params![token.as_bytes(), license.0, subject.kind(), subject.id(), expires.millis()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn session(&self, token: &SecretHash, now: Timestamp) -> StoreResult<Option<(LicensePk, Subject)>> {
        let token = *token;
        self.db
            .readers
            .read(move |conn| {
                let found = one(
                    conn,
                    "SELECT license_pk, kind, subject FROM rail_sessions WHERE token = ?1 AND expires_at > ?2",
                    params![token.as_bytes(), now.millis()],
                    |r| Ok((LicensePk(r.get(0)?), r.get::<_, String>(1)?, r.get::<_, Uuid>(2)?)),
                )?;
                Ok(found.and_then(|(license, kind, id)| Some((license, Subject::from_parts(&kind, id)?))))
            })
            .await
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        self.db
            .writer
            .write(move |conn, _| {
                let nonces = conn
                    .prepare_cached("DELETE FROM rail_nonces WHERE expires_at <= ?1")
                    .sql()?
                    .execute([now.millis()])
                    .sql()?;
                let sessions = conn
                    .prepare_cached("DELETE FROM rail_sessions WHERE expires_at <= ?1")
                    .sql()?
                    .execute([now.millis()])
                    .sql()?;
                Ok((nonces + sessions) as u64)
            })
            .await
    }
}
