//! The fleet's robots and their pairings on SQLite: a robot's record, pairing by code, its token.

use super::*;

const ROBOT_COLUMNS: &str = "id, license_pk, owner_id, name, hostname, ip_address, architecture, status, created_at, \
                             last_seen_at, pair_code, poll_secret, pair_expires_at, paired_at, token_delivered, \
                             pair_observed_ip";

fn robot_from_row(row: &Row<'_>) -> rusqlite::Result<Robot> {
    let architecture: Option<String> = row.get(6)?;
    let status: String = row.get(7)?;
    Ok(Robot {
        id: row.get(0)?,
        license: row.get::<_, Option<i64>>(1)?.map(LicensePk),
        owner_id: row.get(2)?,
        name: row.get(3)?,
        hostname: row.get(4)?,
        ip_address: row.get(5)?,
        architecture: architecture.map(|a| Architecture::parse(&a).map_err(|_| bad(6, "architecture"))).transpose()?,
        status: RobotStatus::parse(&status).ok_or_else(|| bad(7, "status"))?,
        created_at: columns::time(row, 8)?,
        last_seen_at: columns::opt_time(row, 9)?,
    })
}

fn pairing_from_row(row: &Row<'_>) -> rusqlite::Result<Pairing> {
    let secret: Vec<u8> = row.get(11)?;
    Ok(Pairing {
        robot: robot_from_row(row)?,
        code: row.get(10)?,
        secret: SecretHash::from_slice(&secret).ok_or_else(|| bad(11, "poll secret"))?,
        expires_at: columns::time(row, 12)?,
        confirmed_at: columns::opt_time(row, 13)?,
        token_delivered: row.get(14)?,
        observed_ip_address: row.get(15)?,
    })
}

fn pairing(conn: &Connection, code: &str) -> StoreResult<Option<Pairing>> {
    conn.prepare_cached(&format!("SELECT {ROBOT_COLUMNS} FROM fleet_robots WHERE pair_code = ?1"))
        .sql()?
        .query_row([code], pairing_from_row)
        .optional()
        .sql()
}

fn robot_where(conn: &Connection, id: i64, license: Option<LicensePk>) -> StoreResult<Option<Robot>> {
    let robot = conn
        .prepare_cached(&format!("SELECT {ROBOT_COLUMNS} FROM fleet_robots WHERE id = ?1"))
        .sql()?
        .query_row([id], robot_from_row)
        .optional()
        .sql()?;
    Ok(robot.filter(|r| license.is_none() || r.license == license))
}

fn changed(robot: i64) -> Event {
    Event::new(FleetEvent::RobotChanged { robot })
}

#[async_trait]
impl RobotStore for SqliteFleet {
    async fn start_pairing(&self, new: NewPairing) -> StoreResult<Robot> {
        self.db
            .writer
            .write(move |conn, _| {
                let now = Timestamp::now();
                if let Some(held) = pairing(conn, &new.code)? {
                    // A code is free again once its pairing expired unconfirmed.
                    if rules::pair_state(&held, now) != rules::PairState::Expired {
                        return Err(relayhub_fleet::refusals::pairing_code_taken());
                    }
                    conn.prepare_cached("DELETE FROM fleet_robots WHERE id = ?1")
                        .sql()?
                        .execute([held.robot.id])
                        .sql()?;
                }
                conn.prepare_cached(
                    "INSERT INTO fleet_robots (name, hostname, ip_address, architecture, status, created_at,
                                               pair_code, poll_secret, pair_expires_at, pair_observed_ip)
                     VALUES (?1, ?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8)",
                )
                .sql()?
                .execute(params![
                    new.hostname,
                    new.ip_address,
                    new.architecture.map(Architecture::as_str),
                    now.millis(),
                    new.code,
                    new.secret.as_bytes().as_slice(),
                    new.expires_at.millis(),
                    new.observed_ip_address
                ])
                .sql()?;
                robot_where(conn, conn.last_insert_rowid(), None)?
                    .ok_or_else(|| StoreError::Internal("a new robot vanished".into()))
            })
            .await
    }

    async fn pairing(&self, code: &str) -> StoreResult<Option<Pairing>> {
        let code = code.to_owned();
        self.db.readers.read(move |conn| pairing(conn, &code)).await
    }

    async fn confirm_pairing(&self, code: &str, user: &User, now: Timestamp) -> StoreResult<Robot> {
        let (code, user) = (code.to_owned(), user.clone());
        self.db.writer
            .write(move |conn, events| {
                let found = pairing(conn, &code)?;
                let held = found.ok_or_else(relayhub_fleet::refusals::no_pairing)?;
                rules::confirm(&held, now).map_err(StoreError::Rejected)?;
                conn.prepare_cached(
                    "UPDATE fleet_robots SET license_pk = ?2, owner_id = ?3, status = 'active', paired_at = ?4 WHERE id = ?1",
                )
                .sql()?
                .execute(params![held.robot.id, user.license.0, user.id, now.millis()])
                .sql()?;
                events.push(changed(held.robot.id));
                robot_where(conn, held.robot.id, None)?.ok_or_else(|| relayhub_fleet::refusals::no_robot(held.robot.id))
            })
            .await
    }

    async fn deliver_token(&self, code: &str, token: SecretHash) -> StoreResult<bool> {
        let code = code.to_owned();
        self.db
            .writer
            .write(move |conn, events| {
                let Some(held) = pairing(conn, &code)? else { return Ok(false) };
                let delivered = conn
                    .prepare_cached(
                        "UPDATE fleet_robots SET token_hash = ?2, token_delivered = 1
                         WHERE id = ?1 AND paired_at IS NOT NULL AND token_delivered = 0",
                    )
                    .sql()?
                    .execute(params![held.robot.id, token.as_bytes().as_slice()])
                    .sql()?;
                if delivered == 1 {
                    events.push(changed(held.robot.id));
                }
                Ok(delivered == 1)
            })
            .await
    }

    async fn robots(&self, license: LicensePk, owner: Option<i64>) -> StoreResult<Vec<Robot>> {
        self.db
            .readers
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {ROBOT_COLUMNS} FROM fleet_robots
                         WHERE license_pk = ?1 AND (?2 IS NULL OR owner_id = ?2) ORDER BY id"
                    ))
                    .sql()?;
                let rows = stmt.query_map(params![license.0, owner], robot_from_row).sql()?;
                rows.collect::<rusqlite::Result<Vec<_>>>().sql()
            })
            .await
    }

    async fn robot(&self, license: LicensePk, id: i64) -> StoreResult<Option<Robot>> {
        self.db.readers.read(move |conn| robot_where(conn, id, Some(license))).await
    }

    async fn update_robot(&self, license: LicensePk, id: i64, patch: RobotPatch) -> StoreResult<Robot> {
        self.db
            .writer
            .write(move |conn, events| {
                let robot =
                    robot_where(conn, id, Some(license))?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))?;
                conn.prepare_cached("UPDATE fleet_robots SET name = ?2, status = ?3 WHERE id = ?1")
                    .sql()?
                    .execute(params![
                        id,
                        patch.name.unwrap_or(robot.name),
                        patch.status.unwrap_or(robot.status).as_str()
                    ])
                    .sql()?;
                events.push(changed(id));
                robot_where(conn, id, None)?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))
            })
            .await
    }

    async fn delete_robot(&self, license: LicensePk, id: i64) -> StoreResult<()> {
        self.db
            .writer
            .write(move |conn, events| {
                robot_where(conn, id, Some(license))?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))?;
                conn.prepare_cached("DELETE FROM fleet_robots WHERE id = ?1").sql()?.execute([id]).sql()?;
                // Its telemetry goes with it.
                conn.prepare_cached("DELETE FROM telemetry_chunks WHERE robot_id = ?1").sql()?.execute([id]).sql()?;
                events.push(changed(id));
                Ok(())
            })
            .await
    }

    async fn robot_by_token(&self, token: SecretHash) -> StoreResult<Option<Robot>> {
        self.db
            .readers
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {ROBOT_COLUMNS} FROM fleet_robots WHERE token_hash = ?1"))
                    .sql()?
                    .query_row([token.as_bytes().as_slice()], robot_from_row)
                    .optional()
                    .sql()
            })
            .await
    }

    async fn sweep_pairings(&self, now: Timestamp, keep: Duration) -> StoreResult<u64> {
        let before = now.minus(keep).millis();
        self.db
            .writer
            .write(move |conn, _| {
                let dropped = conn
                    .prepare_cached("DELETE FROM fleet_robots WHERE paired_at IS NULL AND pair_expires_at < ?1")
                    .sql()?
                    .execute([before])
                    .sql()?;
                let forgotten = conn
                    .prepare_cached(
                        "UPDATE fleet_robots SET pair_code = NULL, poll_secret = NULL
                         WHERE pair_code IS NOT NULL AND pair_expires_at < ?1",
                    )
                    .sql()?
                    .execute([before])
                    .sql()?;
                Ok((dropped + forgotten) as u64)
            })
            .await
    }
}
