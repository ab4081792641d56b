//! The embedded default backend: one SQLite file in WAL mode, zero set-up.
//!
//! Writes go through one thread that commits whatever is waiting in one
//! transaction (group commit, `synchronous=FULL`: durable before anyone is
//! answered); reads run on a few reader threads with their own connections.

mod columns;
mod conn;
mod error;
mod identity;
mod readers;
mod relay;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use relayhub_core::metrics::{CommitMetrics, Metrics};
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_relay::store::RelayEvents;

use crate::readers::Readers;
use crate::writer::Writer;

/// Reader threads; reads are short, two cores are the target machine.
const READERS: usize = 4;

/// The SQLite store: implements the identity and relay store traits.
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    sent: relay::SentMarks,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    /// Committed changes are reported to `events`.
    pub fn open(path: &Path, events: Arc<dyn RelayEvents>, metrics: &Metrics) -> StoreResult<Arc<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let writer_conn = conn::open_writer(path)?;
        let readers = Readers::start(path, READERS)?;
        let writer = Writer::start(writer_conn, events, CommitMetrics::new(metrics));
        Ok(Arc::new(Self { writer, readers, sent: relay::SentMarks::default(), path: path.to_owned() }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
