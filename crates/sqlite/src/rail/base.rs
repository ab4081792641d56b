//! Seed 004's base rows on SQLite: robots, passengers, tickets, engineers, places.

use super::*;

#[async_trait]
impl RailRobots for SqliteRail {
    async fn add_robot(&self, license: LicensePk, robot: NewRobot) -> StoreResult<Robot> {
        self.db
            .writer
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
        self.db
            .readers
            .read(move |conn| {
                one(conn, &format!("SELECT {ROBOT}, license_pk FROM rail_robots WHERE id = ?1"), [id], |r| {
                    Ok((LicensePk(r.get(5)?), robot_row(r)?))
                })
            })
            .await
    }

    async fn robots(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Robot>> {
        self.db
            .readers
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
}

#[async_trait]
impl Passengers for SqliteRail {
    async fn add_passenger(&self, license: LicensePk, name: &str) -> StoreResult<Passenger> {
        let name = name.to_owned();
        self.db.writer.write(move |conn, _| insert_passenger(conn, license, name)).await
    }

    async fn passenger(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Passenger>> {
        self.db.readers.read(move |conn| passenger(conn, license, id)).await
    }

    async fn passengers(&self, license: LicensePk, req: PageRequest) -> StoreResult<Page<Passenger>> {
        self.db
            .readers
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
        self.db
            .writer
            .write(move |conn, _| {
                let known = one(
                    conn,
                    "SELECT user_id FROM rail_keycloak_users WHERE license_pk = ?1 AND subject = ?2",
                    params![license.0, subject],
                    |r| r.get::<_, Uuid>(0),
                )?;
                if let Some(id) = known {
                    return passenger(conn, license, id)?
                        .ok_or_else(|| refused(ErrorCode::USER_NOT_FOUND, "passenger gone"));
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
}

#[async_trait]
impl Tickets for SqliteRail {
    async fn add_ticket(&self, license: LicensePk, t: NewTicket) -> StoreResult<Ticket> {
        self.db.writer
            .write(move |conn, _| {
                if passenger(conn, license, t.user_id)?.is_none() {
                    return Err(relayhub_rail::refusals::no_passenger(t.user_id));
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
        self.db
            .readers
            .read(move |conn| {
                let clause = "FROM rail_tickets WHERE license_pk = ?1 AND (?2 IS NULL OR user_id = ?2)";
                page(conn, TICKET, clause, "start_date, id", params![license.0, user], req, ticket_row)
            })
            .await
    }

    async fn use_ticket(&self, license: LicensePk, code: &str, scan: TicketScan) -> StoreResult<Scanned> {
        let code = code.to_owned();
        self.db
            .writer
            .write(move |conn, _| {
                // The writer runs one job at a time: nothing marks the ticket
                // between this read and the update.
                let sql =
                    format!("SELECT {TICKET}, used_by, used_at FROM rail_tickets WHERE license_pk = ?1 AND code = ?2");
                let (ticket, accepted) = one(conn, &sql, params![license.0, code], |r| {
                    let by: Option<Uuid> = r.get(11)?;
                    let at: Option<i64> = r.get(12)?;
                    let accepted =
                        by.zip(at).map(|(robot, at)| TicketAcceptance { robot, at: Timestamp::from_millis(at) });
                    Ok((ticket_row(r)?, accepted))
                })?
                .ok_or_else(relayhub_rail::refusals::no_ticket)?;
                match rules::ticket_verdict(&ticket, accepted, &scan).map_err(StoreError::Rejected)? {
                    rules::TicketVerdict::Repeat => Ok(Scanned { ticket, repeat: true }),
                    rules::TicketVerdict::Accept => {
                        conn.prepare_cached(
                            "UPDATE rail_tickets SET used = 1, used_by = ?2, used_at = ?3 WHERE id = ?1",
                        )
                        .sql()?
                        .execute(params![ticket.id, scan.robot, scan.at.millis()])
                        .sql()?;
                        Ok(Scanned { ticket: Ticket { used: true, ..ticket }, repeat: false })
                    }
                }
            })
            .await
    }
}

#[async_trait]
impl Engineers for SqliteRail {
    async fn add_engineer(&self, license: LicensePk, e: NewEngineer) -> StoreResult<Engineer> {
        self.db
            .writer
            .write(move |conn, _| {
                let taken = one(
                    conn,
                    "SELECT 1 FROM rail_engineers WHERE license_pk = ?1 AND login = ?2",
                    params![license.0, e.login],
                    |_| Ok(()),
                )?;
                if taken.is_some() {
                    return Err(relayhub_rail::refusals::engineer_exists(&e.login));
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
        self.db
            .readers
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
        self.db
            .readers
            .read(move |conn| {
                let sql = format!("SELECT {ENGINEER} FROM rail_engineers WHERE license_pk = ?1 AND login = ?2");
                one(conn, &sql, params![license.0, login], |r| Ok((engineer_row(r)?, r.get(4)?)))
            })
            .await
    }

    async fn add_card(&self, license: LicensePk, engineer: Uuid, key: SecretHash) -> StoreResult<AuthCard> {
        self.db.writer
            .write(move |conn, _| {
                let known = one(conn, "SELECT 1 FROM rail_engineers WHERE license_pk = ?1 AND id = ?2", params![license.0, engineer], |_| Ok(()))?;
                if known.is_none() {
                    return Err(relayhub_rail::refusals::no_engineer(engineer));
                }
                let taken = one(conn, "SELECT 1 FROM rail_auth_cards WHERE license_pk = ?1 AND key = ?2", params![license.0, key.as_bytes()], |_| Ok(()))?;
                if taken.is_some() {
                    return Err(relayhub_rail::refusals::card_registered());
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
        self.db
            .readers
            .read(move |conn| {
                let sql = "SELECT e.id, e.login, e.privileges, e.created_at FROM rail_auth_cards c
                           JOIN rail_engineers e ON e.id = c.engineer_id
                           WHERE c.license_pk = ?1 AND c.key = ?2";
                one(conn, sql, params![license.0, key.as_bytes()], engineer_row)
            })
            .await
    }
}

#[async_trait]
impl Places for SqliteRail {
    async fn add_place(&self, license: LicensePk, kind: PlaceKind, p: NewPlace) -> StoreResult<Place> {
        self.db
            .writer
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
        self.db
            .readers
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
        self.db
            .writer
            .write(move |conn, _| {
                live_store(conn, license, store)?.ok_or_else(|| relayhub_rail::refusals::no_store(store))?;
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
        self.db
            .readers
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
        self.db
            .readers
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
