//! Picks the storage backend from the database URL.

use anyhow::Context;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Bus;
use relayhub_core::metrics::Metrics;
use relayhub_postgres::PgOptions;

use crate::config::DatabaseUrl;

/// Opens the backend named by `url`, running its migrations. Committed
/// changes are published on `bus`. `pool_size` is the most connections a
/// PostgreSQL backend opens.
pub async fn open(url: &DatabaseUrl, bus: &Bus, metrics: &Metrics, pool_size: u32) -> anyhow::Result<Stores> {
    match url {
        DatabaseUrl::Sqlite(path) => relayhub_sqlite::open(path, bus, metrics)
            .with_context(|| format!("opening the SQLite database {}", path.display())),
        DatabaseUrl::Postgres(url) => {
            let options = PgOptions { max_connections: pool_size, ..PgOptions::default() };
            // The error never shows the URL: it may hold a password.
            relayhub_postgres::open(url, bus, metrics, options).await.context("opening the PostgreSQL database")
        }
    }
}
