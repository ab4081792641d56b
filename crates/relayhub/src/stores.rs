//! Picks the storage backend from the database URL.

use std::sync::Arc;

use anyhow::Context;
use relayhub_core::identity::IdentityStore;
use relayhub_core::metrics::Metrics;
use relayhub_postgres::{PgOptions, PgStore};
use relayhub_relay::settings::SettingsStore;
use relayhub_relay::store::{RelayEvents, RelayStore};
use relayhub_sqlite::SqliteStore;

use crate::config::DatabaseUrl;

/// One backend, seen through each capability's store trait.
#[derive(Clone)]
pub struct Stores {
    pub identity: Arc<dyn IdentityStore>,
    pub relay: Arc<dyn RelayStore>,
    pub settings: Arc<dyn SettingsStore>,
}

impl Stores {
    /// Opens the backend named by `url`, running its migrations. Committed
    /// changes are reported to `events`.
    /// `pool_size` is the most connections a PostgreSQL backend opens.
    pub async fn open(
        url: &DatabaseUrl,
        events: Arc<dyn RelayEvents>,
        metrics: &Metrics,
        pool_size: u32,
    ) -> anyhow::Result<Self> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let store = SqliteStore::open(path, events, metrics)
                    .with_context(|| format!("opening the SQLite database {}", path.display()))?;
                Ok(Self { identity: store.clone(), relay: store.clone(), settings: store })
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgOptions { max_connections: pool_size, ..PgOptions::default() };
                // The error never shows the URL: it may hold a password.
                let store =
                    PgStore::open(url, events, metrics, options).await.context("opening the PostgreSQL database")?;
                Ok(Self { identity: store.clone(), relay: store.clone(), settings: store })
            }
        }
    }

    /// Commits what is pending and closes the backend.
    pub async fn close(&self) {
        self.relay.close().await;
    }
}
