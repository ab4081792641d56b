//! Call signaling across nodes: the state lives in PostgreSQL, so users
//! connected to different nodes call each other as on one. A step takes
//! one advisory lock (steps of every node run one at a time — signaling is
//! a few frames a second per call, not a hot path), loads the part of the
//! state it concerns (its users, their peers, their offers and sockets),
//! runs the shared state machine on it, writes back what changed, and sends
//! the frames for sockets on other nodes with the commit (NOTIFY); this
//! node's frames go to its bus once committed.
//!
//! Sockets of a node that died without closing them are detached by the
//! next step that finds them (the node's heartbeat is 30 s old), which
//! starts their users' reconnect grace.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Event;
use relayhub_core::error::ApiError;
use relayhub_core::gateway::ConnId;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_signal::overview::Overview;
use relayhub_signal::protocol::Route;
use relayhub_signal::state::{Census, Effects, Env, Offer, State, Step, User};
use relayhub_signal::store::{Frames, SignalStore};
use sqlx::{Postgres, Row, Transaction};

use crate::error::SqlResult;
use crate::{Ctx, PgStore, notify};

/// The signal module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "signal",
    steps: &[crate::schema::Step { sql: include_str!("../migrations/signal/0001_state.sql"), was: Some(2) }],
};

/// The advisory lock every step holds ("relaysig").
const LOCK: i64 = 0x7265_6c61_7973_6967;

/// Sockets whose node has not beaten for this long are gone.
const NODE_ALIVE: &str = "30 seconds";

/// Rounds of loading referenced users; a step needs at most three (a user,
/// its peer, the peer's other offer).
const LOAD_ROUNDS: usize = 4;

/// Offers the signal capability's store.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let signal = PgSignal { ctx: store.ctx.clone(), turn: tokio::sync::Mutex::new(()) };
    stores.provide::<dyn SignalStore>(Arc::new(signal));
}

struct PgSignal {
    ctx: Ctx,
    /// This node's steps one at a time, publishing included, so that its
    /// own sockets get frames in the order the steps committed.
    turn: tokio::sync::Mutex<()>,
}

/// What a step loaded, as it was: to write back only what changed.
#[derive(Default)]
struct Loaded {
    sockets: HashMap<ConnId, (String, Option<String>)>,
    users: HashMap<String, serde_json::Value>,
    offers: HashMap<String, serde_json::Value>,
    /// Names looked up and not found.
    absent: HashSet<String>,
}

fn internal(err: serde_json::Error) -> StoreError {
    StoreError::Internal(format!("signaling state: {err}"))
}

#[async_trait]
impl SignalStore for PgSignal {
    async fn step(&self, step: Step, env: Env) -> StoreResult<Result<Effects, ApiError>> {
        let _turn = self.turn.lock().await;
        if matches!(step, Step::Expire { .. }) && !self.anything_due(env.now).await? {
            return Ok(Ok(Effects::default()));
        }
        self.ctx.retrying(|| self.attempt(step.clone(), &env)).await
    }

    async fn census(&self) -> StoreResult<Census> {
        let (users, ringing, in_call): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(DISTINCT user_id) FROM signal_sockets WHERE user_id IS NOT NULL),
                    (SELECT count(*) FROM signal_offers),
                    (SELECT count(*) FROM signal_users WHERE doc->>'status' = 'in_call') / 2",
        )
        .fetch_one(&self.ctx.pool)
        .await
        .sql()?;
        Ok(Census { users: users.max(0) as usize, ringing: ringing.max(0) as usize, in_call: in_call.max(0) as usize })
    }

    async fn overview(&self, license: i64) -> StoreResult<Overview> {
        // One snapshot of every node's state, without holding up the steps.
        let mut tx = self.ctx.pool.begin().await.sql()?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await.sql()?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM signal_users WHERE doc->>'license' = $1 ORDER BY user_id LIMIT $2")
                .bind(license.to_string())
                .bind(OVERVIEW_USERS)
                .fetch_all(&mut *tx)
                .await
                .sql()?;
        let mut state = State::new();
        load(&mut tx, &mut state, &mut Loaded::default(), names).await?;
        tx.commit().await.sql()?;
        Ok(Overview::of(&state, license))
    }
}

/// The most users of one license the console's overview reads.
const OVERVIEW_USERS: i64 = 5_000;

impl PgSignal {
    /// Whether an expiry step would find anything to do.
    async fn anything_due(&self, now: i64) -> StoreResult<bool> {
        sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM signal_offers WHERE deadline <= $1)
                 OR EXISTS (SELECT 1 FROM signal_users WHERE grace_until <= $1)
                 OR EXISTS (SELECT 1 FROM signal_sockets s WHERE NOT EXISTS (
                        SELECT 1 FROM nodes n WHERE n.id = s.node AND n.seen_at > now() - interval '{NODE_ALIVE}'))"
        ))
        .bind(now)
        .fetch_one(&self.ctx.pool)
        .await
        .sql()
    }

    async fn attempt(&self, step: Step, env: &Env) -> StoreResult<Result<Effects, ApiError>> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *tx).await.sql()?;
        let mut state = State::new();
        let mut loaded = Loaded::default();
        let (step, seeds) = self.seeds(&mut tx, step, env, &mut state, &mut loaded).await?;
        load(&mut tx, &mut state, &mut loaded, seeds).await?;
        if let Step::Frame(_, frame) = &step
            && frame.route == Route::Offer
        {
            let call: i64 = sqlx::query_scalar("SELECT nextval('signal_calls')").fetch_one(&mut *tx).await.sql()?;
            state.next_call = call as u64;
        }
        let result = state.apply(step, env);
        let frames = std::mem::take(&mut state.outgoing);
        self.write_back(&mut tx, &state, &loaded).await?;
        // Frames for sockets of other nodes leave with the commit.
        let remote: Vec<(ConnId, String)> = frames
            .iter()
            .filter(|(conn, _)| loaded.sockets.get(conn).is_some_and(|(node, _)| *node != *self.ctx.node))
            .cloned()
            .collect();
        if !remote.is_empty() {
            notify::send(&mut tx, &self.ctx.node, &[Event::new(Frames(remote))]).await?;
        }
        tx.commit().await.sql()?;
        if !frames.is_empty() {
            self.ctx.bus.publish([Event::new(Frames(frames))]);
        }
        Ok(result)
    }

    /// The step's socket and the users it names; for an expiry, the sockets
    /// of dead nodes (detached by the step) and whoever has a deadline due.
    async fn seeds(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        step: Step,
        env: &Env,
        state: &mut State,
        loaded: &mut Loaded,
    ) -> StoreResult<(Step, Vec<String>)> {
        let conn = match &step {
            Step::Attach(conn) | Step::Detach(conn) | Step::Frame(conn, _) => Some(*conn),
            Step::Expire { .. } => None,
        };
        let mut socket_user = None;
        if let Some(conn) = conn {
            let row: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT node, user_id FROM signal_sockets WHERE conn = $1")
                    .bind(conn.0 as i64)
                    .fetch_optional(&mut **tx)
                    .await
                    .sql()?;
            if let Some((node, user)) = row {
                socket_user = user.clone();
                state.sockets.insert(conn, user.clone());
                loaded.sockets.insert(conn, (node, user));
            }
        }
        if !matches!(step, Step::Expire { .. }) {
            let seeds = State::seeds(&step, socket_user.as_deref());
            return Ok((step, seeds));
        }
        let gone: Vec<(i64, String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT conn, node, user_id FROM signal_sockets s WHERE NOT EXISTS (
                 SELECT 1 FROM nodes n WHERE n.id = s.node AND n.seen_at > now() - interval '{NODE_ALIVE}')"
        ))
        .fetch_all(&mut **tx)
        .await
        .sql()?;
        let mut seeds: Vec<String> = sqlx::query_scalar(
            "SELECT callee FROM signal_offers WHERE deadline <= $1
             UNION SELECT caller FROM signal_offers WHERE deadline <= $1
             UNION SELECT user_id FROM signal_users WHERE grace_until <= $1",
        )
        .bind(env.now)
        .fetch_all(&mut **tx)
        .await
        .sql()?;
        let mut conns = Vec::with_capacity(gone.len());
        for (conn, node, user) in gone {
            let conn = ConnId(conn as u64);
            seeds.extend(user.clone());
            state.sockets.insert(conn, user.clone());
            loaded.sockets.insert(conn, (node, user));
            conns.push(conn);
        }
        Ok((Step::Expire { gone: conns }, seeds))
    }

    async fn write_back(&self, tx: &mut Transaction<'_, Postgres>, state: &State, loaded: &Loaded) -> StoreResult<()> {
        for (conn, user) in &state.sockets {
            let unchanged = loaded.sockets.get(conn).is_some_and(|(_, was)| was == user);
            if !unchanged {
                sqlx::query(
                    "INSERT INTO signal_sockets (conn, node, user_id) VALUES ($1, $2, $3)
                     ON CONFLICT (conn) DO UPDATE SET user_id = $3",
                )
                .bind(conn.0 as i64)
                .bind(self.ctx.node.as_ref())
                .bind(user)
                .execute(&mut **tx)
                .await
                .sql()?;
            }
        }
        let closed: Vec<i64> =
            loaded.sockets.keys().filter(|c| !state.sockets.contains_key(c)).map(|c| c.0 as i64).collect();
        if !closed.is_empty() {
            sqlx::query("DELETE FROM signal_sockets WHERE conn = ANY($1)")
                .bind(&closed)
                .execute(&mut **tx)
                .await
                .sql()?;
        }
        for (name, user) in &state.users {
            let doc = serde_json::to_value(user).map_err(internal)?;
            if loaded.users.get(name) != Some(&doc) {
                sqlx::query(
                    "INSERT INTO signal_users (user_id, doc, grace_until) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE SET doc = $2, grace_until = $3",
                )
                .bind(name)
                .bind(&doc)
                .bind(user.grace_until)
                .execute(&mut **tx)
                .await
                .sql()?;
            }
        }
        let forgotten: Vec<&String> = loaded.users.keys().filter(|n| !state.users.contains_key(*n)).collect();
        if !forgotten.is_empty() {
            sqlx::query("DELETE FROM signal_users WHERE user_id = ANY($1)")
                .bind(&forgotten)
                .execute(&mut **tx)
                .await
                .sql()?;
        }
        for (callee, offer) in &state.waiting {
            let doc = serde_json::to_value(offer).map_err(internal)?;
            if loaded.offers.get(callee) != Some(&doc) {
                sqlx::query(
                    "INSERT INTO signal_offers (callee, caller, deadline, doc) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (callee) DO UPDATE SET caller = $2, deadline = $3, doc = $4",
                )
                .bind(callee)
                .bind(&offer.caller)
                .bind(offer.deadline)
                .bind(&doc)
                .execute(&mut **tx)
                .await
                .sql()?;
            }
        }
        let ended: Vec<&String> = loaded.offers.keys().filter(|c| !state.waiting.contains_key(*c)).collect();
        if !ended.is_empty() {
            sqlx::query("DELETE FROM signal_offers WHERE callee = ANY($1)")
                .bind(&ended)
                .execute(&mut **tx)
                .await
                .sql()?;
        }
        Ok(())
    }
}

/// Loads the users named, then those they refer to, with their offers and
/// sockets, until the state refers to no one it lacks.
async fn load(
    tx: &mut Transaction<'_, Postgres>,
    state: &mut State,
    loaded: &mut Loaded,
    seeds: Vec<String>,
) -> StoreResult<()> {
    let mut want = seeds;
    for _ in 0..LOAD_ROUNDS {
        want.retain(|name| !state.users.contains_key(name) && !loaded.absent.contains(name));
        want.sort_unstable();
        want.dedup();
        if want.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query("SELECT user_id, doc FROM signal_users WHERE user_id = ANY($1)")
            .bind(&want)
            .fetch_all(&mut **tx)
            .await
            .sql()?;
        for row in rows {
            let name: String = row.try_get("user_id").sql()?;
            let doc: serde_json::Value = row.try_get("doc").sql()?;
            let user: User = serde_json::from_value(doc.clone()).map_err(internal)?;
            loaded.users.insert(name.clone(), doc);
            state.users.insert(name, user);
        }
        for name in &want {
            if !state.users.contains_key(name) {
                loaded.absent.insert(name.clone());
            }
        }
        let offers = sqlx::query("SELECT callee, doc FROM signal_offers WHERE callee = ANY($1) OR caller = ANY($1)")
            .bind(&want)
            .fetch_all(&mut **tx)
            .await
            .sql()?;
        for row in offers {
            let callee: String = row.try_get("callee").sql()?;
            let doc: serde_json::Value = row.try_get("doc").sql()?;
            let offer: Offer = serde_json::from_value(doc.clone()).map_err(internal)?;
            loaded.offers.insert(callee.clone(), doc);
            state.waiting.insert(callee, offer);
        }
        let sockets: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT conn, node, user_id FROM signal_sockets WHERE user_id = ANY($1)")
                .bind(&want)
                .fetch_all(&mut **tx)
                .await
                .sql()?;
        for (conn, node, user) in sockets {
            let conn = ConnId(conn as u64);
            if let Some(u) = user.as_ref().and_then(|name| state.users.get_mut(name)) {
                u.sockets.insert(conn);
            }
            state.sockets.entry(conn).or_insert_with(|| user.clone());
            loaded.sockets.entry(conn).or_insert((node, user));
        }
        want = state.missing();
    }
    Ok(())
}
