//! The face service's store on PostgreSQL. An enrolment locks its
//! passenger's row, so concurrent enrolments cannot pass the per-passenger
//! limit together; other nodes learn of enrolments and forgettings through
//! the bus (the event carries ids; they read the vector from here).

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Event;
use relayhub_core::ids::LicensePk;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_rail::face::{Face, FaceEvent, StoredFace, from_bytes, to_bytes};
use relayhub_rail::store::FaceStore;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{SqlResult, from_sqlx};
use crate::time::{at, time};
use crate::{Ctx, PgStore};

/// The face module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "face",
    steps: &[crate::schema::Step { sql: include_str!("../migrations/face/0001_faces.sql"), was: Some(7) }],
};

/// Offers the face store.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    stores.provide::<dyn FaceStore>(Arc::new(PgFaces { ctx: store.ctx.clone() }));
}

struct PgFaces {
    ctx: Ctx,
}

fn stored(r: &PgRow) -> StoreResult<StoredFace> {
    let bytes: Vec<u8> = r.try_get("embedding").sql()?;
    Ok(StoredFace {
        license: LicensePk(r.try_get("license_pk").sql()?),
        id: r.try_get("id").sql()?,
        user_id: r.try_get("user_id").sql()?,
        embedding: from_bytes(&bytes).ok_or_else(|| StoreError::Internal("a stored embedding is not f32s".into()))?,
    })
}

impl PgFaces {
    async fn try_enrol(
        &self,
        license: LicensePk,
        user: Uuid,
        embedding: &[f32],
        max_per_user: u32,
        when: Timestamp,
    ) -> StoreResult<Face> {
        let mut tx = self.ctx.pool.begin().await.map_err(from_sqlx)?;
        let known = sqlx::query("SELECT 1 FROM rail_users WHERE license_pk = $1 AND id = $2 FOR UPDATE")
            .bind(license.0)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .sql()?;
        if known.is_none() {
            return Err(relayhub_rail::refusals::no_passenger(user));
        }
        let count: i64 = sqlx::query("SELECT count(*) FROM rail_faces WHERE license_pk = $1 AND user_id = $2")
            .bind(license.0)
            .bind(user)
            .fetch_one(&mut *tx)
            .await
            .sql()?
            .try_get(0)
            .sql()?;
        relayhub_rail::refusals::check_face_limit(count, max_per_user)?;
        let face = Face { id: Uuid::new_v4(), user_id: user, created_at: when };
        sqlx::query(
            "INSERT INTO rail_faces (id, license_pk, user_id, embedding, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(face.id)
        .bind(license.0)
        .bind(user)
        .bind(to_bytes(embedding))
        .bind(at(when))
        .execute(&mut *tx)
        .await
        .sql()?;
        let event = FaceEvent::Enrolled { license, id: face.id, user_id: user, embedding: Some(embedding.to_vec()) };
        self.ctx.commit_with(tx, vec![Event::new(event)]).await?;
        Ok(face)
    }
}

#[async_trait]
impl FaceStore for PgFaces {
    async fn enrol(
        &self,
        license: LicensePk,
        user: Uuid,
        embedding: Vec<f32>,
        max_per_user: u32,
        when: Timestamp,
    ) -> StoreResult<Face> {
        self.ctx.retrying(|| self.try_enrol(license, user, &embedding, max_per_user, when)).await
    }

    async fn faces_of(&self, license: LicensePk, user: Uuid) -> StoreResult<Vec<Face>> {
        let rows = sqlx::query(
            "SELECT id, user_id, created_at FROM rail_faces WHERE license_pk = $1 AND user_id = $2
             ORDER BY created_at, id",
        )
        .bind(license.0)
        .bind(user)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter()
            .map(|r| {
                Ok(Face {
                    id: r.try_get(0).sql()?,
                    user_id: r.try_get(1).sql()?,
                    created_at: time(r.try_get(2).sql()?),
                })
            })
            .collect()
    }

    async fn face(&self, id: Uuid) -> StoreResult<Option<StoredFace>> {
        let row = sqlx::query("SELECT license_pk, id, user_id, embedding FROM rail_faces WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        row.as_ref().map(stored).transpose()
    }

    async fn forget(&self, license: LicensePk, user: Uuid) -> StoreResult<u64> {
        let mut tx = self.ctx.pool.begin().await.map_err(from_sqlx)?;
        let deleted = sqlx::query("DELETE FROM rail_faces WHERE license_pk = $1 AND user_id = $2")
            .bind(license.0)
            .bind(user)
            .execute(&mut *tx)
            .await
            .sql()?
            .rows_affected();
        let events =
            if deleted > 0 { vec![Event::new(FaceEvent::Forgotten { license, user_id: user })] } else { vec![] };
        self.ctx.commit_with(tx, events).await?;
        Ok(deleted)
    }

    async fn forget_license(&self, license: LicensePk) -> StoreResult<u64> {
        let mut tx = self.ctx.pool.begin().await.map_err(from_sqlx)?;
        let users: Vec<Uuid> = sqlx::query_scalar("DELETE FROM rail_faces WHERE license_pk = $1 RETURNING user_id")
            .bind(license.0)
            .fetch_all(&mut *tx)
            .await
            .sql()?;
        let deleted = users.len() as u64;
        let events = relayhub_rail::face::forgotten(license, users);
        self.ctx.commit_with(tx, events).await?;
        Ok(deleted)
    }

    async fn faces_after(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<StoredFace>> {
        let rows = sqlx::query(
            "SELECT license_pk, id, user_id, embedding FROM rail_faces
             WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.ctx.pool)
        .await
        .sql()?;
        rows.iter().map(stored).collect()
    }
}
