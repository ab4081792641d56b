//! Seed 004's base rows on PostgreSQL: robots, passengers, tickets, engineers, places.

use super::*;

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
        found.map(Some).ok_or_else(|| refused(ErrorCode::USER_NOT_FOUND, "passenger gone"))
    }
}

#[async_trait]
impl RailRobots for PgRail {
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
}

#[async_trait]
impl Passengers for PgRail {
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
}

#[async_trait]
impl Tickets for PgRail {
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
            return Err(relayhub_rail::refusals::no_passenger(t.user_id));
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

    async fn use_ticket(&self, license: LicensePk, code: &str, scan: TicketScan) -> StoreResult<Scanned> {
        // The row lock orders concurrent scans of one ticket, on every node:
        // each is decided on what the one before it left.
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let row = sqlx::query(&format!(
            "SELECT {TICKET}, used_by, used_at FROM rail_tickets WHERE license_pk = $1 AND code = $2 FOR UPDATE"
        ))
        .bind(license.0)
        .bind(code)
        .fetch_optional(&mut *tx)
        .await
        .sql()?
        .ok_or_else(relayhub_rail::refusals::no_ticket)?;
        let ticket = ticket_from_row(&row)?;
        let by: Option<Uuid> = row.try_get("used_by").sql()?;
        let when: Option<chrono::DateTime<chrono::Utc>> = row.try_get("used_at").sql()?;
        let accepted = by.zip(when).map(|(robot, when)| TicketAcceptance { robot, at: time(when) });
        match rules::ticket_verdict(&ticket, accepted, &scan).map_err(StoreError::Rejected)? {
            rules::TicketVerdict::Repeat => Ok(Scanned { ticket, repeat: true }),
            rules::TicketVerdict::Accept => {
                sqlx::query("UPDATE rail_tickets SET used = true, used_by = $2, used_at = $3 WHERE id = $1")
                    .bind(ticket.id)
                    .bind(scan.robot)
                    .bind(at(scan.at))
                    .execute(&mut *tx)
                    .await
                    .sql()?;
                tx.commit().await.sql()?;
                Ok(Scanned { ticket: Ticket { used: true, ..ticket }, repeat: false })
            }
        }
    }
}

#[async_trait]
impl Engineers for PgRail {
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
            Err(err) if is_unique_violation(&err) => Err(relayhub_rail::refusals::engineer_exists(&row.login)),
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
            Ok(done) if done.rows_affected() == 0 => Err(relayhub_rail::refusals::no_engineer(engineer)),
            Ok(_) => Ok(card),
            Err(err) if is_unique_violation(&err) => Err(relayhub_rail::refusals::card_registered()),
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
}

#[async_trait]
impl Places for PgRail {
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
