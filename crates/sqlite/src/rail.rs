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
use relayhub_rail::store::{BaseStore, RailSessions, ShopStore};
use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use uuid::Uuid;

use crate::error::SqlResult;
use crate::{SqliteStore, columns};

/// Offers the rail capability's store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    stores.provide::<dyn BaseStore>(store.clone());
    stores.provide::<dyn ShopStore>(store.clone());
    stores.provide::<dyn RailSessions>(store.clone());
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

fn store_not_found(id: Uuid) -> StoreError {
    refused(ErrorCode::StoreNotFound, format!("no store {id}"))
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
        .ok_or_else(|| refused(ErrorCode::ItemNotFound, format!("no item {id}")))
}

fn task(conn: &Connection, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
    one(
        conn,
        &format!("SELECT {TASK} FROM rail_tasks WHERE license_pk = ?1 AND id = ?2"),
        params![license.0, id],
        task_row,
    )
}

#[async_trait]
impl BaseStore for SqliteStore {
    async fn add_robot(&self, license: LicensePk, robot: NewRobot) -> StoreResult<Robot> {
        self.writer
            .write(move |conn, _| {
                let row = Robot {
                    id: Uuid::new_v4(),
                    robot_model_id: robot.robot_model_id,
                    robot_model_name: robot.robot_model_name,
                    public_key: robot.public_key,
                    created_at: Timestamp::now(),
                };
                conn.prepare_cached(&format!(
                    "INSERT INTO rail_robots (license_pk, {ROBOT}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ))
                .sql()?
                .execute(params![
                    license.0,
                    row.id,
                    row.robot_model_id,
                    row.robot_model_name,
                    row.public_key,
                    row.created_at.millis()
                ])
                .sql()?;
                Ok(row)
            })
            .await
    }

    async fn robot(&self, id: Uuid) -> StoreResult<Option<(LicensePk, Robot)>> {
        self.readers
            .read(move |conn| {
                one(conn, &format!("SELECT {ROBOT}, license_pk FROM rail_robots WHERE id = ?1"), [id], |r| {
                    Ok((LicensePk(r.get(5)?), robot_row(r)?))
                })
            })
            .await
    }

    async fn robots(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Robot>> {
        self.readers
            .read(move |conn| {
                page(
                    conn,
                    ROBOT,
                    "FROM rail_robots WHERE license_pk = ?1",
                    "created_at, id",
                    [license.0],
                    req,
                    robot_row,
                )
            })
            .await
    }

    async fn add_passenger(&self, license: LicensePk, name: &str) -> StoreResult<Passenger> {
        let name = name.to_owned();
        self.writer.write(move |conn, _| insert_passenger(conn, license, name)).await
    }

    async fn passenger(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Passenger>> {
        self.readers.read(move |conn| passenger(conn, license, id)).await
    }

    async fn passengers(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Passenger>> {
        self.readers
            .read(move |conn| {
                page(
                    conn,
                    PASSENGER,
                    "FROM rail_users WHERE license_pk = ?1",
                    "created_at, id",
                    [license.0],
                    req,
                    passenger_row,
                )
            })
            .await
    }

    async fn passenger_by_subject(&self, license: LicensePk, subject: &str, name: &str) -> StoreResult<Passenger> {
        let (subject, name) = (subject.to_owned(), name.to_owned());
        self.writer
            .write(move |conn, _| {
                let known = one(
                    conn,
                    "SELECT user_id FROM rail_keycloak_users WHERE license_pk = ?1 AND subject = ?2",
                    params![license.0, subject],
                    |r| r.get::<_, Uuid>(0),
                )?;
                if let Some(id) = known {
                    return passenger(conn, license, id)?
                        .ok_or_else(|| refused(ErrorCode::UserNotFound, "passenger gone"));
                }
                let user = insert_passenger(conn, license, name)?;
                conn.prepare_cached(
                    "INSERT INTO rail_keycloak_users (id, license_pk, subject, user_id) VALUES (?1, ?2, ?3, ?4)",
                )
                .sql()?
                .execute(params![Uuid::new_v4(), license.0, subject, user.id])
                .sql()?;
                Ok(user)
            })
            .await
    }

    async fn add_ticket(&self, license: LicensePk, t: NewTicket) -> StoreResult<Ticket> {
        self.writer
            .write(move |conn, _| {
                if passenger(conn, license, t.user_id)?.is_none() {
                    return Err(refused(ErrorCode::UserNotFound, format!("no passenger {}", t.user_id)));
                }
                let id = Uuid::new_v4();
                conn.prepare_cached(&format!(
                    "INSERT INTO rail_tickets (license_pk, {TICKET}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0)"
                ))
                .sql()?
                .execute(params![
                    license.0, id, t.user_id, t.train_number, t.wagon_number, t.place_number, t.date.millis(),
                    t.station_id, t.destination_id, t.start_date.millis(), t.code
                ])
                .sql()?;
                Ok(Ticket {
                    id,
                    user_id: t.user_id,
                    train_number: t.train_number,
                    wagon_number: t.wagon_number,
                    place_number: t.place_number,
                    date: t.date,
                    station_id: t.station_id,
                    destination_id: t.destination_id,
                    start_date: t.start_date,
                    code: t.code,
                    used: false,
                })
            })
            .await
    }

    async fn tickets(&self, license: LicensePk, user: Option<Uuid>, req: PageRequest) -> StoreResult<Page<Ticket>> {
        self.readers
            .read(move |conn| {
                let clause = "FROM rail_tickets WHERE license_pk = ?1 AND (?2 IS NULL OR user_id = ?2)";
                page(conn, TICKET, clause, "start_date, id", params![license.0, user], req, ticket_row)
            })
            .await
    }

    async fn use_ticket(&self, license: LicensePk, code: &str) -> StoreResult<Ticket> {
        let code = code.to_owned();
        self.writer
            .write(move |conn, _| {
                let sql = format!("SELECT {TICKET} FROM rail_tickets WHERE license_pk = ?1 AND code = ?2");
                let ticket = one(conn, &sql, params![license.0, code], ticket_row)?
                    .ok_or_else(|| refused(ErrorCode::TicketNotFound, "no ticket with this code"))?;
                if ticket.used {
                    return Err(refused(ErrorCode::TicketUsed, "this ticket was already accepted"));
                }
                conn.prepare_cached("UPDATE rail_tickets SET used = 1 WHERE id = ?1")
                    .sql()?
                    .execute([ticket.id])
                    .sql()?;
                Ok(Ticket { used: true, ..ticket })
            })
            .await
    }

    async fn add_engineer(&self, license: LicensePk, e: NewEngineer) -> StoreResult<Engineer> {
        self.writer
            .write(move |conn, _| {
                let taken = one(
                    conn,
                    "SELECT 1 FROM rail_engineers WHERE license_pk = ?1 AND login = ?2",
                    params![license.0, e.login],
                    |_| Ok(()),
                )?;
                if taken.is_some() {
                    return Err(refused(ErrorCode::AlreadyExists, format!("an engineer {:?} exists", e.login)));
                }
                let row = Engineer {
                    id: Uuid::new_v4(),
                    login: e.login,
                    privileges: e.privileges,
                    created_at: Timestamp::now(),
                };
                conn.prepare_cached(&format!(
                    "INSERT INTO rail_engineers (license_pk, {ENGINEER}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ))
                .sql()?
                .execute(params![
                    license.0,
                    row.id,
                    row.login,
                    row.privileges,
                    row.created_at.millis(),
                    e.password_hash
                ])
                .sql()?;
                Ok(row)
            })
            .await
    }

    async fn engineers(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Engineer>> {
        self.readers
            .read(move |conn| {
                page(
                    conn,
                    ENGINEER,
                    "FROM rail_engineers WHERE license_pk = ?1",
                    "created_at, id",
                    [license.0],
                    req,
                    engineer_row,
                )
            })
            .await
    }

    async fn engineer_by_login(&self, license: LicensePk, login: &str) -> StoreResult<Option<(Engineer, String)>> {
        let login = login.to_owned();
        self.readers
            .read(move |conn| {
                let sql = format!("SELECT {ENGINEER} FROM rail_engineers WHERE license_pk = ?1 AND login = ?2");
                one(conn, &sql, params![license.0, login], |r| Ok((engineer_row(r)?, r.get(4)?)))
            })
            .await
    }

    async fn add_card(&self, license: LicensePk, engineer: Uuid, key: SecretHash) -> StoreResult<AuthCard> {
        self.writer
            .write(move |conn, _| {
                let known = one(conn, "SELECT 1 FROM rail_engineers WHERE license_pk = ?1 AND id = ?2", params![license.0, engineer], |_| Ok(()))?;
                if known.is_none() {
                    return Err(refused(ErrorCode::EngineerNotFound, format!("no engineer {engineer}")));
                }
                let taken = one(conn, "SELECT 1 FROM rail_auth_cards WHERE license_pk = ?1 AND key = ?2", params![license.0, key.as_bytes()], |_| Ok(()))?;
                if taken.is_some() {
                    return Err(refused(ErrorCode::AlreadyExists, "this card is registered already"));
                }
                let card = AuthCard { id: Uuid::new_v4(), engineer_id: engineer, created_at: Timestamp::now() };
                conn.prepare_cached("INSERT INTO rail_auth_cards (id, license_pk, engineer_id, key, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .sql()?
                    .execute(params![card.id, license.0, engineer, key.as_bytes(), card.created_at.millis()])
                    .sql()?;
                Ok(card)
            })
            .await
    }

    async fn engineer_by_card(&self, license: LicensePk, key: &SecretHash) -> StoreResult<Option<Engineer>> {
        let key = *key;
        self.readers
            .read(move |conn| {
                let sql = "SELECT e.id, e.login, e.privileges, e.created_at FROM rail_auth_cards c
                           JOIN rail_engineers e ON e.id = c.engineer_id
                           WHERE c.license_pk = ?1 AND c.key = ?2";
                one(conn, sql, params![license.0, key.as_bytes()], engineer_row)
            })
            .await
    }

    async fn add_place(&self, license: LicensePk, kind: PlaceKind, p: NewPlace) -> StoreResult<Place> {
        self.writer
            .write(move |conn, _| {
                let row = Place {
                    id: Uuid::new_v4(),
                    name: p.name,
                    description: p.description,
                    logo_url: p.logo_url,
                    destination_id: p.destination_id,
                    created_at: Timestamp::now(),
                };
                conn.prepare_cached(&format!(
                    "INSERT INTO {} (license_pk, {PLACE}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    kind.table()
                ))
                .sql()?
                .execute(params![
                    license.0,
                    row.id,
                    row.name,
                    row.description,
                    row.logo_url,
                    row.destination_id,
                    row.created_at.millis()
                ])
                .sql()?;
                Ok(row)
            })
            .await
    }

    async fn places(
        &self,
        license: LicensePk,
        kind: PlaceKind,
        destination: Option<&str>,
        req: PageRequest,
    ) -> StoreResult<Page<Place>> {
        let destination = destination.map(str::to_owned);
        self.readers
            .read(move |conn| {
                let clause =
                    format!("FROM {} WHERE license_pk = ?1 AND (?2 IS NULL OR destination_id = ?2)", kind.table());
                page(conn, PLACE, &clause, "name, id", params![license.0, destination], req, place_row)
            })
            .await
    }

    async fn add_train_store(
        &self,
        license: LicensePk,
        store: Uuid,
        train_number: i32,
        train_date: Timestamp,
    ) -> StoreResult<TrainStore> {
        self.writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| store_not_found(store))?;
                let row = TrainStore { id: Uuid::new_v4(), store_id: store, train_number, train_date };
                conn.prepare_cached(&format!(
                    "INSERT INTO rail_train_stores (license_pk, {TRAIN_STORE}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ))
                .sql()?
                .execute(params![license.0, row.id, store, train_number, train_date.millis()])
                .sql()?;
                Ok(row)
            })
            .await
    }

    async fn train_stores(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<TrainStore>> {
        self.readers
            .read(move |conn| {
                page(
                    conn,
                    TRAIN_STORE,
                    "FROM rail_train_stores WHERE license_pk = ?1",
                    "train_date, train_number, id",
                    [license.0],
                    req,
                    train_store_row,
                )
            })
            .await
    }

    async fn stores_on_train(
        &self,
        license: LicensePk,
        train_number: i32,
        from: Timestamp,
        until: Timestamp,
        req: PageRequest,
    ) -> StoreResult<Page<Store>> {
        self.readers
            .read(move |conn| {
                let clause = "FROM rail_stores s WHERE s.license_pk = ?1 AND s.deleted_at IS NULL AND s.id IN
                              (SELECT store_id FROM rail_train_stores
                               WHERE license_pk = ?1 AND train_number = ?2 AND train_date >= ?3 AND train_date < ?4)";
                page(
                    conn,
                    STORE,
                    clause,
                    "s.name, s.id",
                    params![license.0, train_number, from.millis(), until.millis()],
                    req,
                    store_row,
                )
            })
            .await
    }
}

fn insert_passenger(conn: &Connection, license: LicensePk, name: String) -> StoreResult<Passenger> {
    let row = Passenger { id: Uuid::new_v4(), name, created_at: Timestamp::now() };
    conn.prepare_cached(&format!("INSERT INTO rail_users (license_pk, {PASSENGER}) VALUES (?1, ?2, ?3, ?4)"))
        .sql()?
        .execute(params![license.0, row.id, row.name, row.created_at.millis()])
        .sql()?;
    Ok(row)
}

#[async_trait]
impl ShopStore for SqliteStore {
    async fn add_store(&self, license: LicensePk, s: NewStore) -> StoreResult<Store> {
        self.writer
            .write(move |conn, _| {
                let row = Store {
                    id: Uuid::new_v4(),
                    name: s.name,
                    description: s.description,
                    logo_url: s.logo_url,
                    store_type: s.store_type,
                    created_at: Timestamp::now(),
                };
                conn.prepare_cached(
                    "INSERT INTO rail_stores (license_pk, id, name, description, logo_url, store_type, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .sql()?
                .execute(params![
                    license.0,
                    row.id,
                    row.name,
                    row.description,
                    row.logo_url,
                    row.store_type.as_str(),
                    row.created_at.millis()
                ])
                .sql()?;
                Ok(row)
            })
            .await
    }

    async fn stores(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Store>> {
        self.readers
            .read(move |conn| {
                page(
                    conn,
                    STORE,
                    "FROM rail_stores s WHERE s.license_pk = ?1 AND s.deleted_at IS NULL",
                    "s.created_at, s.id",
                    [license.0],
                    req,
                    store_row,
                )
            })
            .await
    }

    async fn store(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Store>> {
        self.readers.read(move |conn| live_store(conn, license, id)).await
    }

    async fn delete_store(&self, license: LicensePk, id: Uuid, at: Timestamp) -> StoreResult<()> {
        self.writer
            .write(move |conn, _| {
                live_store(conn, license, id)?.ok_or_else(|| store_not_found(id))?;
                conn.prepare_cached("UPDATE rail_stores SET deleted_at = ?2, token = NULL WHERE id = ?1")
                    .sql()?
                    .execute(params![id, at.millis()])
                    .sql()?;
                conn.prepare_cached(
                    "UPDATE rail_store_items SET deleted_at = ?2 WHERE store_id = ?1 AND deleted_at IS NULL",
                )
                .sql()?
                .execute(params![id, at.millis()])
                .sql()?;
                conn.prepare_cached("DELETE FROM rail_active_stores WHERE id = ?1").sql()?.execute([id]).sql()?;
                conn.prepare_cached("DELETE FROM rail_sessions WHERE kind = 'store' AND subject = ?1")
                    .sql()?
                    .execute([id])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn set_store_token(&self, license: LicensePk, store: Uuid, token: SecretHash) -> StoreResult<()> {
        self.writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| store_not_found(store))?;
                conn.prepare_cached("UPDATE rail_stores SET token = ?2 WHERE id = ?1")
                    .sql()?
                    .execute(params![store, token.as_bytes()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn store_by_token(&self, token: &SecretHash) -> StoreResult<Option<(LicensePk, Uuid)>> {
        let token = *token;
        self.readers
            .read(move |conn| {
                one(
                    conn,
                    "SELECT license_pk, id FROM rail_stores WHERE token = ?1 AND deleted_at IS NULL",
                    [token.as_bytes()],
                    |r| Ok((LicensePk(r.get(0)?), r.get(1)?)),
                )
            })
            .await
    }

    async fn set_store_key(&self, license: LicensePk, store: Uuid, public_key: &str) -> StoreResult<()> {
        let key = public_key.to_owned();
        self.writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| store_not_found(store))?;
                conn.prepare_cached(
                    "INSERT INTO rail_active_stores (id, license_pk, public_key, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, created_at = excluded.created_at",
                )
                .sql()?
                .execute(params![store, license.0, key, Timestamp::now().millis()])
                .sql()?;
                Ok(())
            })
            .await
    }

    async fn store_key(&self, store: Uuid) -> StoreResult<Option<(LicensePk, String)>> {
        self.readers
            .read(move |conn| {
                one(conn, "SELECT license_pk, public_key FROM rail_active_stores WHERE id = ?1", [store], |r| {
                    Ok((LicensePk(r.get(0)?), r.get(1)?))
                })
            })
            .await
    }

    async fn items(&self, license: LicensePk, store: Option<Uuid>, req: PageRequest) -> StoreResult<Page<Item>> {
        self.readers
            .read(move |conn| {
                let clause = "FROM rail_store_items WHERE license_pk = ?1 AND (?2 IS NULL OR store_id = ?2) AND deleted_at IS NULL";
                page(conn, ITEM, clause, "created_at, id", params![license.0, store], req, item_row)
            })
            .await
    }

    async fn item(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>> {
        self.readers.read(move |conn| item(conn, license, id)).await
    }

    async fn add_item(&self, license: LicensePk, store: Uuid, f: ItemFields) -> StoreResult<Item> {
        self.writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| store_not_found(store))?;
                let id = Uuid::new_v4();
                let now = Timestamp::now();
                conn.prepare_cached(&format!(
                    "INSERT INTO rail_store_items (license_pk, {ITEM}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))
                .sql()?
                .execute(params![
                    license.0,
                    id,
                    store,
                    f.name,
                    f.description,
                    f.logo_url,
                    f.balance,
                    f.price_penny,
                    f.category,
                    now.millis()
                ])
                .sql()?;
                item(conn, license, id)?.ok_or_else(|| StoreError::Internal("item vanished".into()))
            })
            .await
    }

    async fn update_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, f: ItemFields) -> StoreResult<Item> {
        self.writer
            .write(move |conn, _| {
                own_item(conn, license, store, id)?;
                conn.prepare_cached(
                    "UPDATE rail_store_items SET name = ?2, description = ?3, logo_url = ?4, balance = ?5, price_penny = ?6, category = ?7
                     WHERE id = ?1",
                )
                .sql()?
                .execute(params![id, f.name, f.description, f.logo_url, f.balance, f.price_penny, f.category])
                .sql()?;
                item(conn, license, id)?.ok_or_else(|| StoreError::Internal("item vanished".into()))
            })
            .await
    }

    async fn delete_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, at: Timestamp) -> StoreResult<()> {
        self.writer
            .write(move |conn, _| {
                own_item(conn, license, store, id)?;
                conn.prepare_cached("UPDATE rail_store_items SET deleted_at = ?2 WHERE id = ?1")
                    .sql()?
                    .execute(params![id, at.millis()])
                    .sql()?;
                Ok(())
            })
            .await
    }

    async fn purchase(&self, license: LicensePk, p: NewPurchase, at: Timestamp) -> StoreResult<Purchase> {
        self.writer
            .write(move |conn, _| {
                // Everything is read and checked before the first write: the
                // writer runs one job at a time, so no other purchase can
                // change a balance in between.
                let mut items = Vec::with_capacity(p.lines.len());
                for line in &p.lines {
                    let found = item(conn, license, line.item_id)?
                        .ok_or_else(|| refused(ErrorCode::ItemNotFound, format!("no item {}", line.item_id)))?;
                    items.push(found);
                }
                let store = rules::purchase_store(&items).map_err(StoreError::Rejected)?;
                rules::check_balances(&items, &p.lines).map_err(StoreError::Rejected)?;
                let purchase = Purchase {
                    id: Uuid::new_v4(),
                    store_id: store,
                    user_id: p.user_id,
                    items: p.lines.clone(),
                    date: at,
                    task_id: Uuid::new_v4(),
                };
                for line in &p.lines {
                    conn.prepare_cached("UPDATE rail_store_items SET balance = balance - ?2 WHERE id = ?1")
                        .sql()?
                        .execute(params![line.item_id, line.count])
                        .sql()?;
                }
                conn.prepare_cached("INSERT INTO rail_purchases (id, license_pk, store_id, user_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .sql()?
                    .execute(params![purchase.id, license.0, store, p.user_id, at.millis()])
                    .sql()?;
                for line in &p.lines {
                    conn.prepare_cached("INSERT INTO rail_purchase_items (id, purchase_id, store_item_id, count) VALUES (?1, ?2, ?3, ?4)")
                        .sql()?
                        .execute(params![Uuid::new_v4(), purchase.id, line.item_id, line.count])
                        .sql()?;
                }
                conn.prepare_cached(&format!("INSERT INTO rail_tasks (license_pk, {TASK}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"))
                    .sql()?
                    .execute(params![
                        license.0, purchase.task_id, store, p.user_id, purchase.id, p.is_default_ready,
                        rules::task_data(&purchase).to_string(), at.millis(), p.robot_id
                    ])
                    .sql()?;
                Ok(purchase)
            })
            .await
    }

    async fn tasks(
        &self,
        license: LicensePk,
        store: Uuid,
        is_ready: Option<bool>,
        req: PageRequest,
    ) -> StoreResult<Page<Task>> {
        self.readers
            .read(move |conn| {
                let clause =
                    "FROM rail_tasks WHERE license_pk = ?1 AND store_id = ?2 AND (?3 IS NULL OR is_ready = ?3)";
                page(conn, TASK, clause, "created_at, id", params![license.0, store, is_ready], req, task_row)
            })
            .await
    }

    async fn task(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
        self.readers.read(move |conn| task(conn, license, id)).await
    }

    async fn task_ready(&self, license: LicensePk, store: Uuid, id: Uuid) -> StoreResult<Task> {
        self.writer
            .write(move |conn, _| {
                task(conn, license, id)?
                    .filter(|t| t.store_id == store)
                    .ok_or_else(|| refused(ErrorCode::TaskNotFound, format!("no task {id} in this store")))?;
                conn.prepare_cached("UPDATE rail_tasks SET is_ready = 1 WHERE id = ?1").sql()?.execute([id]).sql()?;
                task(conn, license, id)?.ok_or_else(|| StoreError::Internal("task vanished".into()))
            })
            .await
    }
}

#[async_trait]
impl RailSessions for SqliteStore {
    async fn add_nonce(
        &self,
        nonce: &str,
        license: LicensePk,
        subject: Subject,
        expires: Timestamp,
    ) -> StoreResult<()> {
        let nonce = nonce.to_owned();
        self.writer
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
        self.writer
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
        self.writer
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
        self.readers
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
        self.writer
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
