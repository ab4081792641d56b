//! The rail capability's store traits on PostgreSQL: the same rows as on
//! SQLite. Several nodes share the database, so the races of seed 004 are
//! decided by it: a ticket is marked used by one conditional `UPDATE`, a
//! purchase locks its items (in item order, so purchases never deadlock)
//! and lowers their balances in one transaction, a nonce is taken by one
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
use relayhub_rail::store::{BaseStore, RailSessions, ShopStore};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgExecutor, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::error::{SqlResult, from_sqlx, is_unique_violation};
use crate::time::{at, time};
use crate::{Ctx, PgStore};

/// Offers the rail capability's store traits.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let rail = Arc::new(PgRail { ctx: store.ctx.clone() });
    stores.provide::<dyn BaseStore>(rail.clone());
    stores.provide::<dyn ShopStore>(rail.clone());
    stores.provide::<dyn RailSessions>(rail);
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

fn store_not_found(id: Uuid) -> StoreError {
    refused(ErrorCode::StoreNotFound, format!("no store {id}"))
}

fn item_not_found(id: Uuid) -> StoreError {
    refused(ErrorCode::ItemNotFound, format!("no item {id}"))
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
        .ok_or_else(|| store_not_found(id))
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

impl PgRail {
    /// The passenger `subject` maps to, if it maps to one.
    async fn mapped(&self, license: LicensePk, subject: &str) -> StoreResult<Option<Passenger>> {
        let known: Option<Uuid> =
            sqlx::query_scalar("SELECT user_id FROM rail_keycloak_users WHERE license_pk = $1 AND subject = $2")
                .bind(license.0)
                .bind(subject)
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        let Some(id) = known else { return Ok(None) };
        let found = passenger(&self.ctx.pool, license, id).await?;
        found.map(Some).ok_or_else(|| refused(ErrorCode::UserNotFound, "passenger gone"))
    }

    /// One attempt at a purchase: locks the lines' items in item order,
    /// checks them, lowers their balances and records the purchase and its
    /// task.
    async fn try_purchase(&self, license: LicensePk, p: &NewPurchase, now: Timestamp) -> StoreResult<Purchase> {
        let mut ids: Vec<Uuid> = p.lines.iter().map(|l| l.item_id).collect();
        ids.sort_unstable();
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let rows = sqlx::query(&format!(
            "SELECT {ITEM} FROM rail_store_items
             WHERE license_pk = $1 AND id = ANY($2) AND deleted_at IS NULL ORDER BY id FOR UPDATE"
        ))
        .bind(license.0)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .sql()?;
        let found =
            rows.iter().map(|r| item_from_row(r).map(|i| (i.id, i))).collect::<StoreResult<HashMap<Uuid, Item>>>()?;
        let items = p
            .lines
            .iter()
            .map(|l| found.get(&l.item_id).cloned().ok_or_else(|| item_not_found(l.item_id)))
            .collect::<StoreResult<Vec<Item>>>()?;
        let store = rules::purchase_store(&items).map_err(StoreError::Rejected)?;
        rules::check_balances(&items, &p.lines).map_err(StoreError::Rejected)?;
        let purchase = Purchase {
            id: Uuid::new_v4(),
            store_id: store,
            user_id: p.user_id,
            items: p.lines.clone(),
            date: now,
            task_id: Uuid::new_v4(),
        };
        let lines: Vec<Uuid> = p.lines.iter().map(|_| Uuid::new_v4()).collect();
        let line_items: Vec<Uuid> = p.lines.iter().map(|l| l.item_id).collect();
        let counts: Vec<i32> = p.lines.iter().map(|l| l.count).collect();
        sqlx::query(
            "UPDATE rail_store_items i SET balance = i.balance - l.count
             FROM unnest($1::uuid[], $2::int4[]) AS l(id, count) WHERE i.id = l.id",
        )
        .bind(&line_items)
        .bind(&counts)
        .execute(&mut *tx)
        .await
        .sql()?;
        sqlx::query(
            "INSERT INTO rail_purchases (id, license_pk, store_id, user_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(purchase.id)
        .bind(license.0)
        .bind(store)
        .bind(p.user_id)
        .bind(at(now))
        .execute(&mut *tx)
        .await
        .sql()?;
        sqlx::query(
            "INSERT INTO rail_purchase_items (id, purchase_id, store_item_id, count)
             SELECT l.id, $1, l.item, l.count FROM unnest($2::uuid[], $3::uuid[], $4::int4[]) AS l(id, item, count)",
        )
        .bind(purchase.id)
        .bind(&lines)
        .bind(&line_items)
        .bind(&counts)
        .execute(&mut *tx)
        .await
        .sql()?;
        sqlx::query(
            "INSERT INTO rail_tasks
                 (license_pk, id, store_id, user_id, purchase_id, is_ready, additional_data, created_at, robot_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
        )
        .bind(license.0)
        .bind(purchase.task_id)
        .bind(store)
        .bind(p.user_id)
        .bind(purchase.id)
        .bind(p.is_default_ready)
        .bind(rules::task_data(&purchase).to_string())
        .bind(at(now))
        .bind(p.robot_id)
        .execute(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()?;
        Ok(purchase)
    }
}

#[async_trait]
impl BaseStore for PgRail {
    async fn add_robot(&self, license: LicensePk, robot: NewRobot) -> StoreResult<Robot> {
        let row = Robot {
            id: Uuid::new_v4(),
            robot_model_id: robot.robot_model_id,
            robot_model_name: robot.robot_model_name,
            public_key: robot.public_key,
            created_at: Timestamp::now(),
        };
        sqlx::query(&format!("INSERT INTO rail_robots (license_pk, {ROBOT}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(license.0)
            .bind(row.id)
            .bind(&row.robot_model_id)
            .bind(&row.robot_model_name)
            .bind(&row.public_key)
            .bind(at(row.created_at))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(row)
    }

    async fn robot(&self, id: Uuid) -> StoreResult<Option<(LicensePk, Robot)>> {
        let row = sqlx::query(&format!("SELECT {ROBOT}, license_pk FROM rail_robots WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        row.map(|r| Ok((LicensePk(r.try_get("license_pk").sql()?), robot_from_row(&r)?))).transpose()
    }

    async fn robots(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Robot>> {
        let clause = "FROM rail_robots WHERE license_pk = $1";
        page(&self.ctx.pool, ROBOT, clause, "created_at, id", req, |q| q.bind(license.0), robot_from_row).await
    }

    async fn add_passenger(&self, license: LicensePk, name: &str) -> StoreResult<Passenger> {
        insert_passenger(&self.ctx.pool, license, name).await
    }

    async fn passenger(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Passenger>> {
        passenger(&self.ctx.pool, license, id).await
    }

    async fn passengers(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Passenger>> {
        let clause = "FROM rail_users WHERE license_pk = $1";
        page(&self.ctx.pool, PASSENGER, clause, "created_at, id", req, |q| q.bind(license.0), passenger_from_row).await
    }

    async fn passenger_by_subject(&self, license: LicensePk, subject: &str, name: &str) -> StoreResult<Passenger> {
        if let Some(known) = self.mapped(license, subject).await? {
            return Ok(known);
        }
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let user = insert_passenger(&mut *tx, license, name).await?;
        // Of concurrent first sights, one maps the subject; the others wait
        // for it here, then find its passenger.
        let mapped = sqlx::query(
            "INSERT INTO rail_keycloak_users (id, license_pk, subject, user_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (license_pk, subject) DO NOTHING",
        )
        .bind(Uuid::new_v4())
        .bind(license.0)
        .bind(subject)
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .sql()?
        .rows_affected()
            == 1;
        if mapped {
            tx.commit().await.sql()?;
            return Ok(user);
        }
        tx.rollback().await.sql()?;
        self.mapped(license, subject).await?.ok_or_else(|| StoreError::Internal("a passenger mapping vanished".into()))
    }

    async fn add_ticket(&self, license: LicensePk, t: NewTicket) -> StoreResult<Ticket> {
        let id = Uuid::new_v4();
        // Inserted only if the passenger is in the license.
        let added = sqlx::query(&format!(
            "INSERT INTO rail_tickets (license_pk, {TICKET})
             SELECT $1, $2, u.id, $4, $5, $6, $7, $8, $9, $10, $11, false FROM rail_users u
             WHERE u.license_pk = $1 AND u.id = $3"
        ))
        .bind(license.0)
        .bind(id)
        .bind(t.user_id)
        .bind(t.train_number)
        .bind(t.wagon_number)
        .bind(t.place_number)
        .bind(at(t.date))
        .bind(&t.station_id)
        .bind(&t.destination_id)
        .bind(at(t.start_date))
        .bind(&t.code)
        .execute(&self.ctx.pool)
        .await
        .sql()?
        .rows_affected();
        if added == 0 {
            return Err(refused(ErrorCode::UserNotFound, format!("no passenger {}", t.user_id)));
        }
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
    }

    async fn tickets(&self, license: LicensePk, user: Option<Uuid>, req: PageRequest) -> StoreResult<Page<Ticket>> {
        let clause = "FROM rail_tickets WHERE license_pk = $1 AND ($2::uuid IS NULL OR user_id = $2)";
        page(&self.ctx.pool, TICKET, clause, "start_date, id", req, |q| q.bind(license.0).bind(user), ticket_from_row)
            .await
    }

    async fn use_ticket(&self, license: LicensePk, code: &str) -> StoreResult<Ticket> {
        // One statement decides: of concurrent calls, one finds it unused.
        let row = sqlx::query(&format!(
            "UPDATE rail_tickets SET used = true WHERE license_pk = $1 AND code = $2 AND NOT used RETURNING {TICKET}"
        ))
        .bind(license.0)
        .bind(code)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        if let Some(row) = row {
            return ticket_from_row(&row);
        }
        let known = sqlx::query("SELECT 1 FROM rail_tickets WHERE license_pk = $1 AND code = $2")
            .bind(license.0)
            .bind(code)
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        Err(match known {
            Some(_) => refused(ErrorCode::TicketUsed, "this ticket was already accepted"),
            None => refused(ErrorCode::TicketNotFound, "no ticket with this code"),
        })
    }

    async fn add_engineer(&self, license: LicensePk, e: NewEngineer) -> StoreResult<Engineer> {
        let row =
            Engineer { id: Uuid::new_v4(), login: e.login, privileges: e.privileges, created_at: Timestamp::now() };
        let inserted = sqlx::query(&format!(
            "INSERT INTO rail_engineers (license_pk, {ENGINEER}, password) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(license.0)
        .bind(row.id)
        .bind(&row.login)
        .bind(row.privileges)
        .bind(at(row.created_at))
        .bind(&e.password_hash)
        .execute(&self.ctx.pool)
        .await;
        match inserted {
            Ok(_) => Ok(row),
            Err(err) if is_unique_violation(&err) => {
                Err(refused(ErrorCode::AlreadyExists, format!("an engineer {:?} exists", row.login)))
            }
            Err(err) => Err(from_sqlx(err)),
        }
    }

    async fn engineers(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Engineer>> {
        let clause = "FROM rail_engineers WHERE license_pk = $1";
        page(&self.ctx.pool, ENGINEER, clause, "created_at, id", req, |q| q.bind(license.0), engineer_from_row).await
    }

    async fn engineer_by_login(&self, license: LicensePk, login: &str) -> StoreResult<Option<(Engineer, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {ENGINEER}, password FROM rail_engineers WHERE license_pk = $1 AND login = $2"
        ))
        .bind(license.0)
        .bind(login)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.map(|r| Ok((engineer_from_row(&r)?, r.try_get("password").sql()?))).transpose()
    }

    async fn add_card(&self, license: LicensePk, engineer: Uuid, key: SecretHash) -> StoreResult<AuthCard> {
        let card = AuthCard { id: Uuid::new_v4(), engineer_id: engineer, created_at: Timestamp::now() };
        // Inserted only if the engineer is in the license.
        let inserted = sqlx::query(
            "INSERT INTO rail_auth_cards (id, license_pk, engineer_id, key, created_at)
             SELECT $1, $2, e.id, $4, $5 FROM rail_engineers e WHERE e.license_pk = $2 AND e.id = $3",
        )
        .bind(card.id)
        .bind(license.0)
        .bind(engineer)
        .bind(key.as_bytes().as_slice())
        .bind(at(card.created_at))
        .execute(&self.ctx.pool)
        .await;
        match inserted {
            Ok(done) if done.rows_affected() == 0 => {
                Err(refused(ErrorCode::EngineerNotFound, format!("no engineer {engineer}")))
            }
            Ok(_) => Ok(card),
            Err(err) if is_unique_violation(&err) => {
                Err(refused(ErrorCode::AlreadyExists, "this card is registered already"))
            }
            Err(err) => Err(from_sqlx(err)),
        }
    }

    async fn engineer_by_card(&self, license: LicensePk, key: &SecretHash) -> StoreResult<Option<Engineer>> {
        let row = sqlx::query(
            "SELECT e.id, e.login, e.privileges, e.created_at FROM rail_auth_cards c
             JOIN rail_engineers e ON e.id = c.engineer_id
             WHERE c.license_pk = $1 AND c.key = $2",
        )
        .bind(license.0)
        .bind(key.as_bytes().as_slice())
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(engineer_from_row).transpose()
    }

    async fn add_place(&self, license: LicensePk, kind: PlaceKind, p: NewPlace) -> StoreResult<Place> {
        let row = Place {
            id: Uuid::new_v4(),
            name: p.name,
            description: p.description,
            logo_url: p.logo_url,
            destination_id: p.destination_id,
            created_at: Timestamp::now(),
        };
        sqlx::query(&format!("INSERT INTO {} (license_pk, {PLACE}) VALUES ($1, $2, $3, $4, $5, $6, $7)", kind.table()))
            .bind(license.0)
            .bind(row.id)
            .bind(&row.name)
            .bind(&row.description)
            .bind(&row.logo_url)
            .bind(&row.destination_id)
            .bind(at(row.created_at))
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        Ok(row)
    }

    async fn places(
        &self,
        license: LicensePk,
        kind: PlaceKind,
        destination: Option<&str>,
        req: PageRequest,
    ) -> StoreResult<Page<Place>> {
        let destination = destination.map(str::to_owned);
        let clause =
            format!("FROM {} WHERE license_pk = $1 AND ($2::text IS NULL OR destination_id = $2)", kind.table());
        // Names in byte order, as SQLite sorts them, whatever the collation.
        let order = "name COLLATE \"C\", id";
        page(
            &self.ctx.pool,
            PLACE,
            &clause,
            order,
            req,
            |q| q.bind(license.0).bind(destination.clone()),
            place_from_row,
        )
        .await
    }

    async fn add_train_store(
        &self,
        license: LicensePk,
        store: Uuid,
        train_number: i32,
        train_date: Timestamp,
    ) -> StoreResult<TrainStore> {
        let row = TrainStore { id: Uuid::new_v4(), store_id: store, train_number, train_date };
        let mut tx = self.ctx.pool.begin().await.sql()?;
        lock_live_store(&mut tx, license, store).await?;
        sqlx::query(&format!("INSERT INTO rail_train_stores (license_pk, {TRAIN_STORE}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(license.0)
            .bind(row.id)
            .bind(store)
            .bind(train_number)
            .bind(at(train_date))
            .execute(&mut *tx)
            .await
            .sql()?;
        tx.commit().await.sql()?;
        Ok(row)
    }

    async fn train_stores(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<TrainStore>> {
        let clause = "FROM rail_train_stores WHERE license_pk = $1";
        let order = "train_date, train_number, id";
        page(&self.ctx.pool, TRAIN_STORE, clause, order, req, |q| q.bind(license.0), train_store_from_row).await
    }

    async fn stores_on_train(
        &self,
        license: LicensePk,
        train_number: i32,
        from: Timestamp,
        until: Timestamp,
        req: PageRequest,
    ) -> StoreResult<Page<Store>> {
        let clause = "FROM rail_stores s WHERE s.license_pk = $1 AND s.deleted_at IS NULL AND s.id IN
                      (SELECT store_id FROM rail_train_stores
                       WHERE license_pk = $1 AND train_number = $2 AND train_date >= $3 AND train_date < $4)";
        let (from, until) = (at(from), at(until));
        let order = "s.name COLLATE \"C\", s.id";
        page(
            &self.ctx.pool,
            STORE,
            clause,
            order,
            req,
            |q| q.bind(license.0).bind(train_number).bind(from).bind(until),
            store_from_row,
        )
        .await
    }
}

#[async_trait]
impl ShopStore for PgRail {
    async fn add_store(&self, license: LicensePk, s: NewStore) -> StoreResult<Store> {
        let row = Store {
            id: Uuid::new_v4(),
            name: s.name,
            description: s.description,
            logo_url: s.logo_url,
            store_type: s.store_type,
            created_at: Timestamp::now(),
        };
        sqlx::query(
            "INSERT INTO rail_stores (license_pk, id, name, description, logo_url, store_type, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(license.0)
        .bind(row.id)
        .bind(&row.name)
        .bind(&row.description)
        .bind(&row.logo_url)
        .bind(row.store_type.as_str())
        .bind(at(row.created_at))
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(row)
    }

    async fn stores(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Store>> {
        let clause = "FROM rail_stores s WHERE s.license_pk = $1 AND s.deleted_at IS NULL";
        page(&self.ctx.pool, STORE, clause, "s.created_at, s.id", req, |q| q.bind(license.0), store_from_row).await
    }

    async fn store(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Store>> {
        let row = sqlx::query(&format!(
            "SELECT {STORE} FROM rail_stores s WHERE s.license_pk = $1 AND s.id = $2 AND s.deleted_at IS NULL"
        ))
        .bind(license.0)
        .bind(id)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(store_from_row).transpose()
    }

    async fn delete_store(&self, license: LicensePk, id: Uuid, when: Timestamp) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let deleted = sqlx::query(
            "UPDATE rail_stores SET deleted_at = $3, token = NULL
             WHERE license_pk = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(license.0)
        .bind(id)
        .bind(at(when))
        .execute(&mut *tx)
        .await
        .sql()?
        .rows_affected();
        if deleted == 0 {
            return Err(store_not_found(id));
        }
        sqlx::query("UPDATE rail_store_items SET deleted_at = $2 WHERE store_id = $1 AND deleted_at IS NULL")
            .bind(id)
            .bind(at(when))
            .execute(&mut *tx)
            .await
            .sql()?;
        sqlx::query("DELETE FROM rail_active_stores WHERE id = $1").bind(id).execute(&mut *tx).await.sql()?;
        sqlx::query("DELETE FROM rail_sessions WHERE kind = 'store' AND subject = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .sql()?;
        tx.commit().await.sql()
    }

    async fn set_store_token(&self, license: LicensePk, store: Uuid, token: SecretHash) -> StoreResult<()> {
        let set =
            sqlx::query("UPDATE rail_stores SET token = $3 WHERE license_pk = $1 AND id = $2 AND deleted_at IS NULL")
                .bind(license.0)
                .bind(store)
                .bind(token.as_bytes().as_slice())
                .execute(&self.ctx.pool)
                .await
                .sql()?
                .rows_affected();
        if set == 0 {
            return Err(store_not_found(store));
        }
        Ok(())
    }

    async fn store_by_token(&self, token: &SecretHash) -> StoreResult<Option<(LicensePk, Uuid)>> {
        let found: Option<(i64, Uuid)> =
            sqlx::query_as("SELECT license_pk, id FROM rail_stores WHERE token = $1 AND deleted_at IS NULL")
                .bind(token.as_bytes().as_slice())
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(found.map(|(license, id)| (LicensePk(license), id)))
    }

    async fn set_store_key(&self, license: LicensePk, store: Uuid, public_key: &str) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        lock_live_store(&mut tx, license, store).await?;
        sqlx::query(
            "INSERT INTO rail_active_stores (id, license_pk, public_key, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, created_at = excluded.created_at",
        )
        .bind(store)
        .bind(license.0)
        .bind(public_key)
        .bind(at(Timestamp::now()))
        .execute(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()
    }

    async fn store_key(&self, store: Uuid) -> StoreResult<Option<(LicensePk, String)>> {
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT license_pk, public_key FROM rail_active_stores WHERE id = $1")
                .bind(store)
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(found.map(|(license, key)| (LicensePk(license), key)))
    }

    async fn items(&self, license: LicensePk, store: Option<Uuid>, req: PageRequest) -> StoreResult<Page<Item>> {
        let clause = "FROM rail_store_items
                      WHERE license_pk = $1 AND ($2::uuid IS NULL OR store_id = $2) AND deleted_at IS NULL";
        page(&self.ctx.pool, ITEM, clause, "created_at, id", req, |q| q.bind(license.0).bind(store), item_from_row)
            .await
    }

    async fn item(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>> {
        item(&self.ctx.pool, license, id).await
    }

    async fn add_item(&self, license: LicensePk, store: Uuid, f: ItemFields) -> StoreResult<Item> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        lock_live_store(&mut tx, license, store).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO rail_store_items (license_pk, {ITEM}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             RETURNING {ITEM}"
        ))
        .bind(license.0)
        .bind(Uuid::new_v4())
        .bind(store)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.logo_url)
        .bind(f.balance)
        .bind(f.price_penny)
        .bind(&f.category)
        .bind(at(Timestamp::now()))
        .fetch_one(&mut *tx)
        .await
        .sql()?;
        tx.commit().await.sql()?;
        item_from_row(&row)
    }

    async fn update_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, f: ItemFields) -> StoreResult<Item> {
        let row = sqlx::query(&format!(
            "UPDATE rail_store_items
             SET name = $4, description = $5, logo_url = $6, balance = $7, price_penny = $8, category = $9
             WHERE license_pk = $1 AND id = $2 AND ($3::uuid IS NULL OR store_id = $3) AND deleted_at IS NULL
             RETURNING {ITEM}"
        ))
        .bind(license.0)
        .bind(id)
        .bind(store)
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.logo_url)
        .bind(f.balance)
        .bind(f.price_penny)
        .bind(&f.category)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref().map(item_from_row).transpose()?.ok_or_else(|| item_not_found(id))
    }

    async fn delete_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, when: Timestamp) -> StoreResult<()> {
        let deleted = sqlx::query(
            "UPDATE rail_store_items SET deleted_at = $4
             WHERE license_pk = $1 AND id = $2 AND ($3::uuid IS NULL OR store_id = $3) AND deleted_at IS NULL",
        )
        .bind(license.0)
        .bind(id)
        .bind(store)
        .bind(at(when))
        .execute(&self.ctx.pool)
        .await
        .sql()?
        .rows_affected();
        if deleted == 0 {
            return Err(item_not_found(id));
        }
        Ok(())
    }

    async fn purchase(&self, license: LicensePk, p: NewPurchase, when: Timestamp) -> StoreResult<Purchase> {
        self.ctx.retrying(|| self.try_purchase(license, &p, when)).await
    }

    async fn tasks(
        &self,
        license: LicensePk,
        store: Uuid,
        is_ready: Option<bool>,
        req: PageRequest,
    ) -> StoreResult<Page<Task>> {
        let clause =
            "FROM rail_tasks WHERE license_pk = $1 AND store_id = $2 AND ($3::boolean IS NULL OR is_ready = $3)";
        page(
            &self.ctx.pool,
            TASK,
            clause,
            "created_at, id",
            req,
            |q| q.bind(license.0).bind(store).bind(is_ready),
            task_from_row,
        )
        .await
    }

    async fn task(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>> {
        task(&self.ctx.pool, license, id).await
    }

    async fn task_ready(&self, license: LicensePk, store: Uuid, id: Uuid) -> StoreResult<Task> {
        let row = sqlx::query(&format!(
            "UPDATE rail_tasks SET is_ready = true WHERE license_pk = $1 AND id = $2 AND store_id = $3 RETURNING {TASK}"
        ))
        .bind(license.0)
        .bind(id)
        .bind(store)
        .fetch_optional(&self.ctx.pool)
        .await
        .sql()?;
        row.as_ref()
            .map(task_from_row)
            .transpose()?
            .ok_or_else(|| refused(ErrorCode::TaskNotFound, format!("no task {id} in this store")))
    }
}

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
