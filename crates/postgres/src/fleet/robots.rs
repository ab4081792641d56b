//! The fleet's robots and their pairings on PostgreSQL: a robot's record, pairing by code, its token.

use super::*;

macro_rules! select_robot {
    ($filter:literal) => {
        concat!(
            "SELECT ",
            robot_columns!(),
            ", pair_code, poll_secret, pair_expires_at, paired_at, token_delivered, pair_observed_ip FROM fleet_robots WHERE ",
            $filter
        )
    };
}

fn robot_from_row(r: &PgRow) -> StoreResult<Robot> {
    let architecture: Option<String> = r.try_get("architecture").sql()?;
    let status: String = r.try_get("status").sql()?;
    Ok(Robot {
        id: r.try_get("id").sql()?,
        license: r.try_get::<Option<i64>, _>("license_pk").sql()?.map(LicensePk),
        owner_id: r.try_get("owner_id").sql()?,
        name: r.try_get("name").sql()?,
        hostname: r.try_get("hostname").sql()?,
        ip_address: r.try_get("ip_address").sql()?,
        architecture: architecture.map(|a| Architecture::parse(&a).map_err(|_| corrupt("architecture"))).transpose()?,
        status: RobotStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        created_at: time(r.try_get("created_at").sql()?),
        last_seen_at: opt_time(r.try_get("last_seen_at").sql()?),
    })
}

fn pairing_from_row(r: &PgRow) -> StoreResult<Pairing> {
    let secret: Vec<u8> = r.try_get("poll_secret").sql()?;
    Ok(Pairing {
        robot: robot_from_row(r)?,
        code: r.try_get("pair_code").sql()?,
        secret: SecretHash::from_slice(&secret).ok_or_else(|| corrupt("poll secret"))?,
        expires_at: time(r.try_get("pair_expires_at").sql()?),
        confirmed_at: opt_time(r.try_get("paired_at").sql()?),
        token_delivered: r.try_get("token_delivered").sql()?,
        observed_ip_address: r.try_get("pair_observed_ip").sql()?,
    })
}

async fn locked_pairing(tx: &mut Transaction<'_, Postgres>, code: &str) -> StoreResult<Option<Pairing>> {
    let row =
        sqlx::query(select_robot!("pair_code = $1 FOR UPDATE")).bind(code).fetch_optional(&mut **tx).await.sql()?;
    row.as_ref().map(pairing_from_row).transpose()
}

fn changed(robot: i64) -> Event {
    Event::new(FleetEvent::RobotChanged { robot })
}

impl PgFleet {
    async fn locked_robot(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        license: LicensePk,
        id: i64,
    ) -> StoreResult<Robot> {
        let row = sqlx::query(select_robot!("id = $1 AND license_pk = $2 FOR UPDATE"))
            .bind(id)
            .bind(license.0)
            .fetch_optional(&mut **tx)
            .await
            .sql()?;
        row.as_ref().map(robot_from_row).transpose()?.ok_or_else(|| relayhub_fleet::refusals::no_robot(id))
    }
}

#[async_trait]
impl RobotStore for PgFleet {
    async fn start_pairing(&self, new: NewPairing) -> StoreResult<Robot> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        if let Some(held) = locked_pairing(&mut tx, &new.code).await? {
            // A code is free again once its pairing expired unconfirmed.
            if rules::pair_state(&held, Timestamp::now()) != rules::PairState::Expired {
                return Err(relayhub_fleet::refusals::pairing_code_taken());
            }
            sqlx::query("DELETE FROM fleet_robots WHERE id = $1").bind(held.robot.id).execute(&mut *tx).await.sql()?;
        }
        let inserted = sqlx::query(concat!(
            "INSERT INTO fleet_robots (name, hostname, ip_address, architecture, status, created_at,
                                       pair_code, poll_secret, pair_expires_at, pair_observed_ip)
             VALUES ($1, $1, $2, $3, 'pending', now(), $4, $5, $6, $7)
             RETURNING ",
            robot_columns!()
        ))
        .bind(&new.hostname)
        .bind(&new.ip_address)
        .bind(new.architecture.map(Architecture::as_str))
        .bind(&new.code)
        .bind(new.secret.as_bytes().as_slice())
        .bind(at(new.expires_at))
        .bind(&new.observed_ip_address)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            // Another node took the same code a moment ago.
            Err(err) if is_unique_violation(&err) => {
                return Err(relayhub_fleet::refusals::pairing_code_taken());
            }
            Err(err) => return Err(crate::error::from_sqlx(err)),
        };
        tx.commit().await.sql()?;
        robot_from_row(&row)
    }

    async fn pairing(&self, code: &str) -> StoreResult<Option<Pairing>> {
        let row = sqlx::query(select_robot!("pair_code = $1")).bind(code).fetch_optional(&self.ctx.pool).await.sql()?;
        row.as_ref().map(pairing_from_row).transpose()
    }

    async fn confirm_pairing(&self, code: &str, user: &User, now: Timestamp) -> StoreResult<Robot> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let held = locked_pairing(&mut tx, code).await?.ok_or_else(relayhub_fleet::refusals::no_pairing)?;
        rules::confirm(&held, now).map_err(StoreError::Rejected)?;
        let row = sqlx::query(concat!(
            "UPDATE fleet_robots SET license_pk = $2, owner_id = $3, status = 'active', paired_at = $4 WHERE id = $1
             RETURNING ",
            robot_columns!()
        ))
        .bind(held.robot.id)
        .bind(user.license.0)
        .bind(user.id)
        .bind(at(now))
        .fetch_one(&mut *tx)
        .await
        .sql()?;
        self.ctx.commit_with(tx, vec![changed(held.robot.id)]).await?;
        robot_from_row(&row)
    }

    async fn deliver_token(&self, code: &str, token: SecretHash) -> StoreResult<bool> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let Some(held) = locked_pairing(&mut tx, code).await? else { return Ok(false) };
        let delivered = sqlx::query(
            "UPDATE fleet_robots SET token_hash = $2, token_delivered = true
             WHERE id = $1 AND paired_at IS NOT NULL AND NOT token_delivered",
        )
        .bind(held.robot.id)
        .bind(token.as_bytes().as_slice())
        .execute(&mut *tx)
        .await
        .sql()?
        .rows_affected()
            == 1;
        let events = if delivered { vec![changed(held.robot.id)] } else { Vec::new() };
        self.ctx.commit_with(tx, events).await?;
        Ok(delivered)
    }

    async fn robots(&self, license: LicensePk, owner: Option<i64>) -> StoreResult<Vec<Robot>> {
        let rows = sqlx::query(select_robot!("license_pk = $1 AND ($2::bigint IS NULL OR owner_id = $2) ORDER BY id"))
            .bind(license.0)
            .bind(owner)
            .fetch_all(&self.ctx.pool)
            .await
            .sql()?;
        rows.iter().map(robot_from_row).collect()
    }

    async fn robot(&self, license: LicensePk, id: i64) -> StoreResult<Option<Robot>> {
        let row = sqlx::query(select_robot!("id = $1 AND license_pk = $2"))
            .bind(id)
            .bind(license.0)
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        row.as_ref().map(robot_from_row).transpose()
    }

    async fn update_robot(&self, license: LicensePk, id: i64, patch: RobotPatch) -> StoreResult<Robot> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let robot = self.locked_robot(&mut tx, license, id).await?;
        let row = sqlx::query(concat!(
            "UPDATE fleet_robots SET name = $2, status = $3 WHERE id = $1
             RETURNING ",
            robot_columns!()
        ))
        .bind(id)
        .bind(patch.name.unwrap_or(robot.name))
        .bind(patch.status.unwrap_or(robot.status).as_str())
        .fetch_one(&mut *tx)
        .await
        .sql()?;
        self.ctx.commit_with(tx, vec![changed(id)]).await?;
        robot_from_row(&row)
    }

    async fn delete_robot(&self, license: LicensePk, id: i64) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        self.locked_robot(&mut tx, license, id).await?;
        sqlx::query("DELETE FROM fleet_robots WHERE id = $1").bind(id).execute(&mut *tx).await.sql()?;
        // Its telemetry goes with it.
        sqlx::query("DELETE FROM telemetry_chunks WHERE robot_id = $1").bind(id).execute(&mut *tx).await.sql()?;
        self.ctx.commit_with(tx, vec![changed(id)]).await
    }

    async fn robot_by_token(&self, token: SecretHash) -> StoreResult<Option<Robot>> {
        let row = sqlx::query(select_robot!("token_hash = $1"))
            .bind(token.as_bytes().as_slice())
            .fetch_optional(&self.ctx.pool)
            .await
            .sql()?;
        row.as_ref().map(robot_from_row).transpose()
    }

    async fn sweep_pairings(&self, now: Timestamp, keep: Duration) -> StoreResult<u64> {
        let before = at(now.minus(keep));
        let dropped = sqlx::query("DELETE FROM fleet_robots WHERE paired_at IS NULL AND pair_expires_at < $1")
            .bind(before)
            .execute(&self.ctx.pool)
            .await
            .sql()?;
        let forgotten = sqlx::query(
            "UPDATE fleet_robots SET pair_code = NULL, poll_secret = NULL WHERE pair_code IS NOT NULL AND pair_expires_at < $1",
        )
        .bind(before)
        .execute(&self.ctx.pool)
        .await
        .sql()?;
        Ok(dropped.rows_affected() + forgotten.rows_affected())
    }
}
