//! The PostgreSQL backend: several relayhub nodes share one database.
//!
//! - Writes on the hot paths (queueing, delivery bookkeeping, publishing)
//!   are group-committed: whatever is waiting goes into one transaction of a
//!   few set-based statements. A 202 still means committed.
//! - Nodes learn of each other's commits by LISTEN/NOTIFY ([`notify`]); a
//!   node reports its own commits to its hub directly, with the data.
//! - Each node keeps a heartbeat row; a device counts as online while the
//!   node holding its socket is alive.

mod batch;
mod devices;
mod error;
mod face;
mod fleet;
mod identity;
mod notify;
mod operators;
mod rail;
mod registry;
mod relay;
mod schema;
mod signal;
mod telemetry;
mod time;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use relayhub_core::backend::{Backend, Stores};
use relayhub_core::bus::{Bus, Event};
use relayhub_core::metrics::{CommitMetrics, Metrics};
use relayhub_core::store::{StoreError, StoreResult};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::Batcher;
use crate::error::may_retry;

/// Jobs per group commit, at most.
const MAX_BATCH: usize = 1024;
/// Attempts of a batch whose transaction certainly rolled back (deadlock,
/// serialization failure, a device bound by another node meanwhile).
const ATTEMPTS: usize = 3;

/// Connection pool settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails with 503
    /// (short, so that callers learn of an outage quickly).
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(3) }
    }
}

/// What every batch and task of the store shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub pool: PgPool,
    /// This process's node id, unique per start.
    pub node: Arc<str>,
    pub bus: Bus,
}

impl Ctx {
    /// Commits `tx` with `events`: to the other nodes with the transaction,
    /// to this node's bus once committed.
    pub(crate) async fn commit_with(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        events: Vec<Event>,
    ) -> StoreResult<()> {
        notify::send(&mut tx, &self.node, &events).await?;
        tx.commit().await.map_err(error::from_sqlx)?;
        self.bus.publish(events);
        Ok(())
    }

    /// Runs `attempt` again while it fails in a way that certainly rolled
    /// back — never after a lost connection, when the commit may have
    /// happened.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(err) if tries < ATTEMPTS && may_retry(&err) => tries += 1,
                done => return done,
            }
        }
    }
}

/// The PostgreSQL store's shared handle — the pool, this node's id, the
/// bus, the commit metrics — which implements the core's store traits.
/// Each capability module wraps its [`Ctx`] in a struct of its own
/// (`PgRelay`, `PgFleet`, …) that implements that capability's.
pub struct PgStore {
    ctx: Ctx,
    commits: CommitMetrics,
    /// Modules' work in flight, committed before the pool closes.
    drains: std::sync::Mutex<Vec<Arc<dyn Drain>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// A module's work in flight that must be committed before the pool
/// closes (the relay's group-commit batches).
#[async_trait]
pub(crate) trait Drain: Send + Sync + 'static {
    async fn drain(&self);
}

/// A group-commit batcher of `run` over the pool, timed in the commit
/// metrics.
pub(crate) fn batcher<J, F, Fut>(ctx: &Ctx, metrics: &CommitMetrics, run: F) -> Batcher<J>
where
    J: Send + 'static,
    F: Fn(Ctx, Vec<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (ctx, metrics) = (ctx.clone(), metrics.clone());
    Batcher::start(MAX_BATCH, move |jobs: Vec<J>| {
        let (ctx, metrics, started, size) = (ctx.clone(), metrics.clone(), Instant::now(), jobs.len());
        let batch = run(ctx, jobs);
        async move {
            batch.await;
            metrics.observe(size, started);
        }
    })
}

/// Connects, runs the migrations (safe when several nodes start at once:
/// they take an advisory lock), and hands back the store traits. Committed
/// changes are published on `bus`, and on the other nodes' once serving.
pub async fn open(url: &str, bus: &Bus, metrics: &Metrics, options: PgOptions) -> StoreResult<Stores> {
    let store = PgStore::open(url, bus, metrics, options).await?;
    let mut stores = Stores::new(store.clone(), store.clone(), store.clone(), store.clone());
    // One line per module of this backend.
    operators::provide(&store, &mut stores);
    relay::provide(&store, &mut stores);
    signal::provide(&store, &mut stores);
    fleet::provide(&store, &mut stores);
    registry::provide(&store, &mut stores);
    rail::provide(&store, &mut stores);
    face::provide(&store, &mut stores);
    telemetry::provide(&store, &mut stores);
    Ok(stores)
}

/// Every module's tables, the core's first (the others refer to them).
const MODULES: &[schema::Schema] = &[
    identity::SCHEMA,
    notify::SCHEMA,
    operators::SCHEMA,
    relay::SCHEMA,
    signal::SCHEMA,
    fleet::SCHEMA,
    telemetry::SCHEMA,
    registry::SCHEMA,
    rail::SCHEMA,
    face::SCHEMA,
];

/// The migrations of the release before each module had versions, in the
/// order it ran them (its numbers in `_sqlx_migrations`): for the tests
/// that make a database as that release left it and upgrade it.
pub fn legacy_sequence() -> Vec<(i64, &'static str)> {
    schema::legacy_sequence(MODULES)
}

impl PgStore {
    async fn open(url: &str, bus: &Bus, metrics: &Metrics, options: PgOptions) -> StoreResult<Arc<Self>> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to PostgreSQL: {e}")))?;
        schema::migrate(&pool, MODULES)
            .await
            .map_err(|e| StoreError::Internal(format!("migrating the PostgreSQL schema: {e}")))?;
        let node: Arc<str> = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]).into();
        let ctx = Ctx { pool, node, bus: bus.clone() };
        Ok(Arc::new(Self {
            ctx,
            commits: CommitMetrics::new(metrics),
            drains: std::sync::Mutex::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }))
    }

    /// Has `drain` committed before the pool closes.
    pub(crate) fn drain_on_close(&self, drain: Arc<dyn Drain>) {
        self.drains.lock().unwrap_or_else(|e| e.into_inner()).push(drain);
    }

    /// This node's id (as in the `nodes` table and the logs).
    pub fn node(&self) -> &str {
        &self.ctx.node
    }

    /// Joins the other nodes: a heartbeat row, and their events.
    async fn join(&self) -> StoreResult<()> {
        sqlx::query("INSERT INTO nodes (id, started_at, seen_at) VALUES ($1, now(), now())")
            .bind(self.ctx.node.as_ref())
            .execute(&self.ctx.pool)
            .await
            .map_err(error::from_sqlx)?;
        tracing::info!(node = %self.ctx.node, "joined the nodes sharing this database");
        let ctx = &self.ctx;
        self.tasks.spawn(notify::listen(ctx.pool.clone(), ctx.node.to_string(), ctx.bus.clone(), self.stop.clone()));
        self.tasks.spawn(notify::heartbeat(ctx.pool.clone(), ctx.node.to_string(), self.stop.clone()));
        ctx.bus.set_remote(Arc::new(notify::PgRemote {
            pool: ctx.pool.clone(),
            node: ctx.node.clone(),
            order: Arc::default(),
        }));
        Ok(())
    }

    /// Commits what is queued, leaves the other nodes, closes the pool.
    async fn shutdown(&self) {
        let drains = std::mem::take(&mut *self.drains.lock().unwrap_or_else(|e| e.into_inner()));
        for drain in drains {
            drain.drain().await;
        }
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.ctx.pool.close().await;
    }
}

#[async_trait]
impl Backend for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn start_serving(&self) -> StoreResult<()> {
        self.join().await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.ctx.pool).await.map_err(error::from_sqlx)?;
        Ok(())
    }

    async fn close(&self) {
        self.shutdown().await;
    }
}
