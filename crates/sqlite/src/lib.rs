//! The embedded default backend: one SQLite file in WAL mode, zero set-up.
//!
//! Writes go through one thread that commits whatever is waiting in one
//! transaction (group commit, `synchronous=FULL`: durable before anyone is
//! answered); callers are answered from a second thread, and reads run on a
//! few reader threads with their own connections — except the credential
//! lookup every request makes, which runs on the caller's thread when a
//! connection for it is free (`Readers::read_inline`).

mod backup;
mod columns;
mod conn;
mod devices;
mod error;
mod face;
mod fleet;
mod identity;
mod operators;
mod partitions;
mod rail;
mod readers;
mod registry;
mod relay;
mod schema;
mod signal;
mod telemetry;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::{Backend, Stores};
use relayhub_core::bus::Bus;
use relayhub_core::metrics::{CommitMetrics, Metrics};
use relayhub_core::store::{StoreError, StoreResult};

pub use crate::backup::{Snapshot, snapshot};
pub use crate::conn::partition_path;
pub use crate::partitions::{MAX_PARTITIONS, default_partitions};

use crate::partitions::Partitions;
use crate::readers::Readers;
use crate::writer::{Begin, Writer};

/// The main file: every module's tables, the core's first (the others
/// refer to them).
pub(crate) const MAIN_FILE: schema::FileKind = schema::FileKind {
    modules: &[
        identity::SCHEMA,
        operators::SCHEMA,
        relay::SCHEMA,
        fleet::SCHEMA,
        telemetry::SCHEMA,
        registry::SCHEMA,
        rail::SCHEMA,
        face::SCHEMA,
    ],
    legacy: conn::LEGACY,
    legacy_version: conn::LEGACY.len() as i64,
    legacy_modules: &["core", "relay", "fleet", "telemetry", "registry", "rail", "face"],
};

/// A partition file: the relay's tables only. Its one legacy migration was
/// the relay's first.
pub(crate) const PARTITION_FILE: schema::FileKind =
    schema::FileKind { modules: &[relay::SCHEMA], legacy: &[], legacy_version: 1, legacy_modules: &["relay"] };

/// Reader threads; reads are short, two cores are the target machine.
const READERS: usize = 4;

/// The SQLite store's shared handle — the main file's writer and readers,
/// the partition files, the bus — which implements the core's store
/// traits. Each capability module wraps it in a struct of its own
/// (`SqliteRelay`, `SqliteFleet`, …) that implements that capability's.
pub struct SqliteStore {
    /// The main file's writer and readers (partition 0).
    writer: Writer,
    readers: Readers,
    partitions: Partitions,
    bus: Bus,
    path: PathBuf,
    /// Held while serving: one server per data directory.
    serving: std::sync::Mutex<Option<std::fs::File>>,
}

/// Opens (creating if needed) the database file and the partition files
/// beside it (`partitions` of them at least, the main file counted; see
/// [`default_partitions`]), runs migrations, and hands back its store
/// traits. Committed changes are published on `bus`.
pub fn open(path: &Path, partitions: usize, bus: &Bus, metrics: &Metrics) -> StoreResult<Stores> {
    let store = SqliteStore::open(path, partitions, bus, metrics)?;
    let mut stores = Stores::new(store.clone(), store.clone(), store.clone(), store.clone());
    // One line per module of this backend.
    operators::provide(&store, &mut stores);
    relay::provide(&store, &mut stores);
    signal::provide(&store, &mut stores);
    fleet::provide(&store, &mut stores);
    telemetry::provide(&store, &mut stores);
    registry::provide(&store, &mut stores);
    rail::provide(&store, &mut stores);
    face::provide(&store, &mut stores);
    Ok(stores)
}

impl SqliteStore {
    fn open(path: &Path, partitions: usize, bus: &Bus, metrics: &Metrics) -> StoreResult<Arc<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let writer_conn = conn::open_writer(path)?;
        let readers = Readers::start(path, READERS)?;
        let stats = CommitMetrics::new(metrics);
        let partitions = Partitions::open(path, partitions, bus, &stats)?;
        let writer = Writer::start(writer_conn, Begin::Immediate, "sqlite-writer".into(), bus.clone(), stats);
        let serving = std::sync::Mutex::default();
        Ok(Arc::new(Self { writer, readers, partitions, bus: bus.clone(), path: path.to_owned(), serving }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Backend for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    /// Takes the data directory for this process (a second server on it
    /// would serve devices this one never hears of), then forgets
    /// presence that did not end cleanly.
    async fn start_serving(&self) -> StoreResult<()> {
        let lock = conn::lock_for_serving(&self.path)?;
        *self.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
        for partition in self.every_partition().skip(1) {
            let forgotten = partition.writer.write(|conn, _| relay::forget_unbound(conn)).await?;
            if forgotten > 0 {
                tracing::info!(partition = partition.index, devices = forgotten, "forgot the data of unbound devices");
            }
        }
        self.writer.write(|conn, _| devices::forget_presence(conn)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.readers.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(error::from_sqlite)).await
    }

    async fn close(&self) {
        self.partitions.close().await;
        self.writer.close().await;
        self.readers.close();
        self.serving.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
