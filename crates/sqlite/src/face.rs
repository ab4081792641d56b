//! The face service's store on SQLite. Forgetting overwrites the deleted
//! rows' bytes in the database file (`secure_delete` for that job) and
//! empties the write-ahead log, so an embedding does not linger on disk.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Event;
use relayhub_core::ids::LicensePk;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use relayhub_rail::face::{Face, FaceEvent, StoredFace, from_bytes, to_bytes};
use relayhub_rail::store::FaceStore;
use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

use crate::SqliteStore;
use crate::error::SqlResult;

/// The face module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema =
    crate::schema::Schema { module: "face", migrations: &[include_str!("../migrations/face/0001_baseline.sql")] };

/// Offers the face store.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let face = Arc::new(SqliteFaces { db: store.clone() });
    stores.provide::<dyn FaceStore>(face);
}

/// The face store, over the shared handle.
pub(crate) struct SqliteFaces {
    db: Arc<SqliteStore>,
}

fn stored(r: &Row<'_>) -> rusqlite::Result<StoredFace> {
    let bytes: Vec<u8> = r.get(3)?;
    Ok(StoredFace {
        license: LicensePk(r.get(0)?),
        id: r.get(1)?,
        user_id: r.get(2)?,
        embedding: from_bytes(&bytes).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Blob, "embedding".into())
        })?,
    })
}

/// The write-ahead log still holds the forgotten rows' pages as they were
/// before: a checkpoint copies the zeroed pages into the database and
/// empties the log. Retried while other connections are in the way.
fn truncate_wal(conn: &rusqlite::Connection) -> StoreResult<()> {
    for _ in 0..5 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).sql()?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::warn!("the write-ahead log could not be emptied after forgetting faces; the next checkpoint does it");
    Ok(())
}

#[async_trait]
impl FaceStore for SqliteFaces {
    async fn enrol(
        &self,
        license: LicensePk,
        user: Uuid,
        embedding: Vec<f32>,
        max_per_user: u32,
        at: Timestamp,
    ) -> StoreResult<Face> {
        self.db.writer
            .write(move |conn, events| {
                let known = conn
                    .prepare_cached("SELECT 1 FROM rail_users WHERE license_pk = ?1 AND id = ?2")
                    .sql()?
                    .query_row(params![license.0, user], |_| Ok(()))
                    .optional()
                    .sql()?;
                if known.is_none() {
                    return Err(relayhub_rail::refusals::no_passenger(user));
                }
                let count: i64 = conn
                    .prepare_cached("SELECT count(*) FROM rail_faces WHERE license_pk = ?1 AND user_id = ?2")
                    .sql()?
                    .query_row(params![license.0, user], |r| r.get(0))
                    .sql()?;
                relayhub_rail::refusals::check_face_limit(count, max_per_user)?;
                let face = Face { id: Uuid::new_v4(), user_id: user, created_at: at };
                conn.prepare_cached(
                    "INSERT INTO rail_faces (id, license_pk, user_id, embedding, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .sql()?
                .execute(params![face.id, license.0, user, to_bytes(&embedding), at.millis()])
                .sql()?;
                events.push(Event::new(FaceEvent::Enrolled {
                    license,
                    id: face.id,
                    user_id: user,
                    embedding: Some(embedding),
                }));
                Ok(face)
            })
            .await
    }

    async fn faces_of(&self, license: LicensePk, user: Uuid) -> StoreResult<Vec<Face>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, user_id, created_at FROM rail_faces
                     WHERE license_pk = ?1 AND user_id = ?2 ORDER BY created_at, id",
                )
                .sql()?
                .query_map(params![license.0, user], |r| {
                    Ok(Face { id: r.get(0)?, user_id: r.get(1)?, created_at: Timestamp::from_millis(r.get(2)?) })
                })
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }

    async fn face(&self, id: Uuid) -> StoreResult<Option<StoredFace>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached("SELECT license_pk, id, user_id, embedding FROM rail_faces WHERE id = ?1")
                    .sql()?
                    .query_row([id], stored)
                    .optional()
                    .sql()
            })
            .await
    }

    async fn forget(&self, license: LicensePk, user: Uuid) -> StoreResult<u64> {
        let deleted = self
            .db
            .writer
            .write(move |conn, events| {
                conn.pragma_update(None, "secure_delete", true).sql()?;
                let deleted = conn
                    .prepare_cached("DELETE FROM rail_faces WHERE license_pk = ?1 AND user_id = ?2")
                    .sql()?
                    .execute(params![license.0, user]);
                // Back to the cheaper default for every other job, whatever happened.
                conn.pragma_update(None, "secure_delete", false).sql()?;
                let deleted = deleted.sql()?;
                if deleted > 0 {
                    events.push(Event::new(FaceEvent::Forgotten { license, user_id: user }));
                }
                Ok(deleted as u64)
            })
            .await?;
        if deleted > 0 {
            self.db.readers.read(truncate_wal).await?;
        }
        Ok(deleted)
    }

    async fn forget_license(&self, license: LicensePk) -> StoreResult<u64> {
        let deleted = self
            .db
            .writer
            .write(move |conn, events| {
                conn.pragma_update(None, "secure_delete", true).sql()?;
                let users = conn
                    .prepare_cached("DELETE FROM rail_faces WHERE license_pk = ?1 RETURNING user_id")
                    .sql()
                    .and_then(|mut stmt| {
                        stmt.query_map([license.0], |row| row.get::<_, Uuid>(0))
                            .sql()?
                            .collect::<Result<Vec<_>, _>>()
                            .sql()
                    });
                conn.pragma_update(None, "secure_delete", false).sql()?;
                let users = users?;
                let deleted = users.len() as u64;
                events.extend(relayhub_rail::face::forgotten(license, users));
                Ok(deleted)
            })
            .await?;
        if deleted > 0 {
            self.db.readers.read(truncate_wal).await?;
        }
        Ok(deleted)
    }

    async fn faces_after(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<StoredFace>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT license_pk, id, user_id, embedding FROM rail_faces
                     WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
                )
                .sql()?
                .query_map(params![after, limit as i64], stored)
                .sql()?
                .collect::<Result<_, _>>()
                .sql()
            })
            .await
    }
}
