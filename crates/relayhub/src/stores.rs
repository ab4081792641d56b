//! Picks the storage backend from the database URL.

use anyhow::Context;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Bus;
use relayhub_core::metrics::Metrics;
use relayhub_postgres::PgOptions;

use crate::config::DatabaseUrl;

/// How a backend is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most connections a PostgreSQL backend opens.
    pub pool_size: u32,
    /// Files (with a writer each) the embedded database spreads new
    /// licenses' relay data over.
    pub partitions: usize,
}

impl StoreOptions {
    /// For administration commands: few connections, and the partitions
    /// the server spreads new licenses over (a license created here goes
    /// where the server would put it).
    pub fn admin(partitions: usize) -> Self {
        Self { pool_size: 2, partitions }
    }
}

/// Opens the backend named by `url`, running its migrations. Committed
/// changes are published on `bus`.
pub async fn open(url: &DatabaseUrl, bus: &Bus, metrics: &Metrics, options: StoreOptions) -> anyhow::Result<Stores> {
    match url {
        DatabaseUrl::Sqlite(path) => relayhub_sqlite::open(path, options.partitions, bus, metrics)
            .with_context(|| format!("opening the SQLite database {}", path.display())),
        DatabaseUrl::Postgres(url) => {
            let options = PgOptions { max_connections: options.pool_size, ..PgOptions::default() };
            // The error never shows the URL: it may hold a password.
            relayhub_postgres::open(url, bus, metrics, options).await.context("opening the PostgreSQL database")
        }
    }
}
