//! The rail capability's store traits on SQLite (seed 004's base and store
//! tables). The single writer serialises every write, so the races of seed
//! 004 are decided there: a purchase reads the balances and lowers them in
//! one job, a ticket is checked and marked in one job. Jobs refuse before
//! they write (the writer's rule).

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
use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use uuid::Uuid;

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

mod base;
mod sessions;
mod shop;

/// The rail module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema =
    crate::schema::Schema { module: "rail", migrations: &[include_str!("../../migrations/rail/0001_baseline.sql")] };

/// Offers the rail capability's store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let rail = Arc::new(SqliteRail { db: store.clone() });
    stores.provide::<dyn BaseStore>(rail.clone());
    stores.provide::<dyn ShopStore>(rail.clone());
    stores.provide::<dyn RailSessions>(rail.clone());
    stores.provide::<dyn RailData>(rail);
}

#[async_trait]
impl RailData for SqliteRail {
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, _| {
                for sql in LICENSE_TABLES {
                    conn.prepare_cached(&sql.replace("{license}", "?1")).sql()?.execute([license.0]).sql()?;
                }
                Ok(())
            })
            .await
    }
}

/// The rail services' stores, over the shared handle.
pub(crate) struct SqliteRail {
    db: Arc<SqliteStore>,
}

/// One page of `FROM … WHERE …` (`clause`, parameters `?1…`), ordered by
/// `order`: the total and the rows.
fn page<T, P: Params + Clone>(
    conn: &Connection,
    columns: &str,
    clause: &str,
    order: &str,
    args: P,
    page: PageRequest,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Page<T>> {
    let total: i64 =
        conn.prepare_cached(&format!("SELECT count(*) {clause}")).sql()?.query_row(args.clone(), |r| r.get(0)).sql()?;
    let sql = format!("SELECT {columns} {clause} ORDER BY {order} LIMIT {} OFFSET {}", page.size, page.offset());
    let items = conn.prepare_cached(&sql).sql()?.query_map(args, map).sql()?.collect::<Result<_, _>>().sql()?;
    Ok(Page { items, total: total.max(0) as u64 })
}

fn one<T, P: Params>(
    conn: &Connection,
    sql: &str,
    args: P,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    conn.prepare_cached(sql).sql()?.query_row(args, map).optional().sql()
}

fn refused(code: ErrorCode, message: impl Into<String>) -> StoreError {
    StoreError::rejected(code, message)
}

const ROBOT: &str = "id, robot_model_id, robot_model_name, public_key, created_at";
fn robot_row(r: &Row<'_>) -> rusqlite::Result<Robot> {
    Ok(Robot {
        id: r.get(0)?,
        robot_model_id: r.get(1)?,
        robot_model_name: r.get(2)?,
        public_key: r.get(3)?,
        created_at: columns::time(r, 4)?,
    })
}

const PASSENGER: &str = "id, name, created_at";
fn passenger_row(r: &Row<'_>) -> rusqlite::Result<Passenger> {
    Ok(Passenger { id: r.get(0)?, name: r.get(1)?, created_at: columns::time(r, 2)? })
}

const TICKET: &str = "id, user_id, train_number, wagon_number, place_number, date, station_id, destination_id, \
                      start_date, code, used";
fn ticket_row(r: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: r.get(0)?,
        user_id: r.get(1)?,
        train_number: r.get(2)?,
        wagon_number: r.get(3)?,
        place_number: r.get(4)?,
        date: columns::time(r, 5)?,
        station_id: r.get(6)?,
        destination_id: r.get(7)?,
        start_date: columns::time(r, 8)?,
        code: r.get(9)?,
        used: r.get(10)?,
    })
}

const ENGINEER: &str = "id, login, privileges, created_at, password";
fn engineer_row(r: &Row<'_>) -> rusqlite::Result<Engineer> {
    Ok(Engineer { id: r.get(0)?, login: r.get(1)?, privileges: r.get(2)?, created_at: columns::time(r, 3)? })
}

const PLACE: &str = "id, name, description, logo_url, destination_id, created_at";
fn place_row(r: &Row<'_>) -> rusqlite::Result<Place> {
    Ok(Place {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        logo_url: r.get(3)?,
        destination_id: r.get(4)?,
        created_at: columns::time(r, 5)?,
    })
}

const TRAIN_STORE: &str = "id, store_id, train_number, train_date";
fn train_store_row(r: &Row<'_>) -> rusqlite::Result<TrainStore> {
    Ok(TrainStore { id: r.get(0)?, store_id: r.get(1)?, train_number: r.get(2)?, train_date: columns::time(r, 3)? })
}

const STORE: &str = "s.id, s.name, s.description, s.logo_url, s.store_type, s.created_at";
fn store_row(r: &Row<'_>) -> rusqlite::Result<Store> {
    let kind: String = r.get(4)?;
    Ok(Store {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        logo_url: r.get(3)?,
        store_type: StoreType::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, "store type".into())
        })?,
        created_at: columns::time(r, 5)?,
    })
}

const ITEM: &str = "id, store_id, name, description, logo_url, balance, price_penny, category, created_at";
fn item_row(r: &Row<'_>) -> rusqlite::Result<Item> {
    Ok(Item {
        id: r.get(0)?,
        store_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        logo_url: r.get(4)?,
        balance: r.get(5)?,
        price_penny: r.get(6)?,
        category: r.get(7)?,
        created_at: columns::time(r, 8)?,
    })
}

const TASK: &str = "id, store_id, user_id, purchase_id, is_ready, additional_data, created_at, robot_id";
fn task_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let data: String = r.get(5)?;
    Ok(Task {
        id: r.get(0)?,
        store_id: r.get(1)?,
        user_id: r.get(2)?,
        purchase_id: r.get(3)?,
        is_ready: r.get(4)?,
        additional_data: serde_json::from_str(&data).unwrap_or_default(),
        created_at: columns::time(r, 6)?,
        robot_id: r.get(7)?,
    })
}

fn passenger(conn: &Connection, license: LicensePk, id: Uuid) -> StoreResult<Option<Passenger>> {
    one(
        conn,
        &format!("SELECT {PASSENGER} FROM rail_users WHERE license_pk = ?1 AND id = ?2"),
        params![license.0, id],
        passenger_row,
    )
}

fn live_store(conn: &Connection, license: LicensePk, id: Uuid) -> StoreResult<Option<Store>> {
    one(
        conn,
        &format!("SELECT {STORE} FROM rail_stores s WHERE s.license_pk = ?1 AND s.id = ?2 AND s.deleted_at IS NULL"),
        params![license.0, id],
        store_row,
    )
}

fn item(conn: &Connection, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>> {
    one(
        conn,
        &format!("SELECT {ITEM} FROM rail_store_items WHERE license_pk = ?1 AND id = ?2 AND deleted_at IS NULL"),
        params![license.0, id],
        item_row,
    )
}

/// An item the caller may change: in the license, and in `store` if given.
fn own_item(conn: &Connection, license: LicensePk, store: Option<Uuid>, id: Uuid) -> StoreResult<Item> {
    item(conn, license, id)?
        .filter(|i| store.is_none_or(|s| s == i.store_id))
        .ok_or_else(|| relayhub_rail::refusals::no_item(id))
}

fn task(conn: &Connection, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
    one(
        conn,
        &format!("SELECT {TASK} FROM rail_tasks WHERE license_pk = ?1 AND id = ?2"),
        params![license.0, id],
        task_row,
    )
}

/// The purchase the caller made with this key before: `None` when the key
/// is new, `idempotency_key_reused` when that purchase was another.
fn keyed_purchase(conn: &Connection, license: LicensePk, key: &PurchaseKey) -> StoreResult<Option<Purchase>> {
    let sql = "SELECT p.id, p.store_id, p.user_id, p.created_at, p.fingerprint, t.id
               FROM rail_purchases p JOIN rail_tasks t ON t.purchase_id = p.id
               WHERE p.license_pk = ?1 AND p.caller = ?2 AND p.idempotency_key = ?3";
    let found = one(conn, sql, params![license.0, key.caller, key.key], |r| {
        let fingerprint: Vec<u8> = r.get(4)?;
        let purchase = Purchase {
            id: r.get(0)?,
            store_id: r.get(1)?,
            user_id: r.get(2)?,
            items: Vec::new(),
            date: columns::time(r, 3)?,
            task_id: r.get(5)?,
        };
        Ok((purchase, fingerprint))
    })?;
    let Some((mut purchase, fingerprint)) = found else { return Ok(None) };
    if fingerprint != key.fingerprint {
        return Err(StoreError::Rejected(relayhub_core::http::idempotency_key_reused(&key.key, "purchase")));
    }
    // Lines in item order, as the purchase was made (merged and sorted).
    purchase.items = conn
        .prepare_cached(
            "SELECT store_item_id, count FROM rail_purchase_items WHERE purchase_id = ?1 ORDER BY store_item_id",
        )
        .sql()?
        .query_map([purchase.id], |r| Ok(PurchaseLine { item_id: r.get(0)?, count: r.get(1)? }))
        .sql()?
        .collect::<Result<_, _>>()
        .sql()?;
    Ok(Some(purchase))
}
