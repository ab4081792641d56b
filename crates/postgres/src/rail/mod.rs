//! The rail capability's store traits on PostgreSQL: the same rows as on
//! SQLite. Several nodes share the database, so the races of seed 004 are
//! decided by it: a ticket is locked while a scan of it is decided, a
//! purchase locks its items (in item order, so purchases never deadlock),
//! finds out whether its idempotency key was used, and lowers their
//! balances in one transaction, a nonce is taken by one
//! `DELETE`, a store is locked while something is added to it so that it
//! cannot be deleted meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::error::ErrorCode;
use relayhub_core::ids::LicensePk;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_rail::model::*;
use relayhub_rail::rules;
use relayhub_rail::store::*;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::error::{SqlResult, from_sqlx, is_unique_violation};
use crate::time::{at, time};
use crate::{Ctx, PgStore};

mod base;
mod sessions;
mod shop;

/// The rail module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "rail",
    steps: &[
        crate::schema::Step { sql: include_str!("../../migrations/rail/0001_rail.sql"), was: Some(6) },
        crate::schema::Step { sql: include_str!("../../migrations/rail/0002_retries.sql"), was: Some(11) },
    ],
};

/// Offers the rail capability's store traits.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let rail = Arc::new(PgRail { ctx: store.ctx.clone() });
    stores.provide::<dyn BaseStore>(rail.clone());
    stores.provide::<dyn ShopStore>(rail.clone());
    stores.provide::<dyn RailSessions>(rail.clone());
    stores.provide::<dyn RailData>(rail);
}

#[async_trait]
impl RailData for PgRail {
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        for sql in LICENSE_TABLES {
            sqlx::query(&sql.replace("{license}", "$1")).bind(license.0).execute(&mut *tx).await.sql()?;
        }
        tx.commit().await.sql()
    }
}

struct PgRail {
    ctx: Ctx,
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// One page of `FROM … WHERE …` (`clause`, whose parameters `bind` binds),
/// ordered by `order`: the total and the rows.
async fn page<'e, T>(
    db: impl PgExecutor<'e> + Copy,
    columns: &str,
    clause: &str,
    order: &str,
    req: PageRequest,
    bind: impl for<'q> Fn(PgQuery<'q>) -> PgQuery<'q>,
    map: fn(&PgRow) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let count = format!("SELECT count(*) {clause}");
    let total: i64 = bind(sqlx::query(&count)).fetch_one(db).await.sql()?.try_get(0).sql()?;
    let sql = format!("SELECT {columns} {clause} ORDER BY {order} LIMIT {} OFFSET {}", req.size, req.offset());
    let rows = bind(sqlx::query(&sql)).fetch_all(db).await.sql()?;
    Ok(Page { items: rows.iter().map(map).collect::<StoreResult<_>>()?, total: total.max(0) as u64 })
}

fn refused(code: ErrorCode, message: impl Into<String>) -> StoreError {
    StoreError::rejected(code, message)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("a stored {what} is not valid"))
}

const ROBOT: &str = "id, robot_model_id, robot_model_name, public_key, created_at";
fn robot_from_row(r: &PgRow) -> StoreResult<Robot> {
    Ok(Robot {
        id: r.try_get("id").sql()?,
        robot_model_id: r.try_get("robot_model_id").sql()?,
        robot_model_name: r.try_get("robot_model_name").sql()?,
        public_key: r.try_get("public_key").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

const PASSENGER: &str = "id, name, created_at";
fn passenger_from_row(r: &PgRow) -> StoreResult<Passenger> {
    Ok(Passenger {
        id: r.try_get("id").sql()?,
        name: r.try_get("name").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

const TICKET: &str = "id, user_id, train_number, wagon_number, place_number, date, station_id, destination_id, \
                      start_date, code, used";
fn ticket_from_row(r: &PgRow) -> StoreResult<Ticket> {
    Ok(Ticket {
        id: r.try_get("id").sql()?,
        user_id: r.try_get("user_id").sql()?,
        train_number: r.try_get("train_number").sql()?,
        wagon_number: r.try_get("wagon_number").sql()?,
        place_number: r.try_get("place_number").sql()?,
        date: time(r.try_get("date").sql()?),
        station_id: r.try_get("station_id").sql()?,
        destination_id: r.try_get("destination_id").sql()?,
        start_date: time(r.try_get("start_date").sql()?),
        code: r.try_get("code").sql()?,
        used: r.try_get("used").sql()?,
    })
}

const ENGINEER: &str = "id, login, privileges, created_at";
fn engineer_from_row(r: &PgRow) -> StoreResult<Engineer> {
    Ok(Engineer {
        id: r.try_get("id").sql()?,
        login: r.try_get("login").sql()?,
        privileges: r.try_get("privileges").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

const PLACE: &str = "id, name, description, logo_url, destination_id, created_at";
fn place_from_row(r: &PgRow) -> StoreResult<Place> {
    Ok(Place {
        id: r.try_get("id").sql()?,
        name: r.try_get("name").sql()?,
        description: r.try_get("description").sql()?,
        logo_url: r.try_get("logo_url").sql()?,
        destination_id: r.try_get("destination_id").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

const TRAIN_STORE: &str = "id, store_id, train_number, train_date";
fn train_store_from_row(r: &PgRow) -> StoreResult<TrainStore> {
    Ok(TrainStore {
        id: r.try_get("id").sql()?,
        store_id: r.try_get("store_id").sql()?,
        train_number: r.try_get("train_number").sql()?,
        train_date: time(r.try_get("train_date").sql()?),
    })
}

const STORE: &str = "s.id, s.name, s.description, s.logo_url, s.store_type, s.created_at";
fn store_from_row(r: &PgRow) -> StoreResult<Store> {
    let kind: String = r.try_get("store_type").sql()?;
    Ok(Store {
        id: r.try_get("id").sql()?,
        name: r.try_get("name").sql()?,
        description: r.try_get("description").sql()?,
        logo_url: r.try_get("logo_url").sql()?,
        store_type: StoreType::parse(&kind).ok_or_else(|| corrupt("store type"))?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

const ITEM: &str = "id, store_id, name, description, logo_url, balance, price_penny, category, created_at";
fn item_from_row(r: &PgRow) -> StoreResult<Item> {
    Ok(Item {
        id: r.try_get("id").sql()?,
        store_id: r.try_get("store_id").sql()?,
        name: r.try_get("name").sql()?,
        description: r.try_get("description").sql()?,
        logo_url: r.try_get("logo_url").sql()?,
        balance: r.try_get("balance").sql()?,
        price_penny: r.try_get("price_penny").sql()?,
        category: r.try_get("category").sql()?,
        created_at: time(r.try_get("created_at").sql()?),
    })
}

const TASK: &str = "id, store_id, user_id, purchase_id, is_ready, additional_data::text AS additional_data, \
                    created_at, robot_id";
fn task_from_row(r: &PgRow) -> StoreResult<Task> {
    let data: String = r.try_get("additional_data").sql()?;
    Ok(Task {
        id: r.try_get("id").sql()?,
        store_id: r.try_get("store_id").sql()?,
        user_id: r.try_get("user_id").sql()?,
        purchase_id: r.try_get("purchase_id").sql()?,
        is_ready: r.try_get("is_ready").sql()?,
        additional_data: serde_json::from_str(&data).unwrap_or_default(),
        created_at: time(r.try_get("created_at").sql()?),
        robot_id: r.try_get("robot_id").sql()?,
    })
}

async fn passenger<'e>(db: impl PgExecutor<'e>, license: LicensePk, id: Uuid) -> StoreResult<Option<Passenger>> {
    let row = sqlx::query(&format!("SELECT {PASSENGER} FROM rail_users WHERE license_pk = $1 AND id = $2"))
        .bind(license.0)
        .bind(id)
        .fetch_optional(db)
        .await
        .sql()?;
    row.as_ref().map(passenger_from_row).transpose()
}

/// Locks a store (not deleted) against deletion until `tx` ends: what is
/// added to it meanwhile is hidden with it, or refused once it is gone.
async fn lock_live_store(tx: &mut Transaction<'_, Postgres>, license: LicensePk, id: Uuid) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM rail_stores WHERE license_pk = $1 AND id = $2 AND deleted_at IS NULL FOR SHARE")
        .bind(license.0)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .sql()?
        .map(|_| ())
        .ok_or_else(|| relayhub_rail::refusals::no_store(id))
}

async fn item<'e>(db: impl PgExecutor<'e>, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>> {
    let row = sqlx::query(&format!(
        "SELECT {ITEM} FROM rail_store_items WHERE license_pk = $1 AND id = $2 AND deleted_at IS NULL"
    ))
    .bind(license.0)
    .bind(id)
    .fetch_optional(db)
    .await
    .sql()?;
    row.as_ref().map(item_from_row).transpose()
}

async fn task<'e>(db: impl PgExecutor<'e>, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
    let row = sqlx::query(&format!("SELECT {TASK} FROM rail_tasks WHERE license_pk = $1 AND id = $2"))
        .bind(license.0)
        .bind(id)
        .fetch_optional(db)
        .await
        .sql()?;
    row.as_ref().map(task_from_row).transpose()
}

async fn insert_passenger<'e>(db: impl PgExecutor<'e>, license: LicensePk, name: &str) -> StoreResult<Passenger> {
    let row = Passenger { id: Uuid::new_v4(), name: name.to_owned(), created_at: Timestamp::now() };
    sqlx::query(&format!("INSERT INTO rail_users (license_pk, {PASSENGER}) VALUES ($1, $2, $3, $4)"))
        .bind(license.0)
        .bind(row.id)
        .bind(&row.name)
        .bind(at(row.created_at))
        .execute(db)
        .await
        .sql()?;
    Ok(row)
}
