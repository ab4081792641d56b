//! Opening the database file: pragmas, migrations.

use std::path::Path;
use std::time::Duration;

use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use crate::error::SqlResult;

const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../migrations/0001_init.sql")),
    M::up(include_str!("../migrations/0002_settings.sql")),
    M::up(include_str!("../migrations/0003_receipts_unindexed.sql")),
];

/// How long a statement waits for another process's lock (e.g. an
/// administration command) before the call fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the writer's connection, creating the file and running
/// migrations. `synchronous=FULL` makes every commit durable before the
/// caller is answered; WAL keeps readers from blocking the writer.
pub(crate) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let mut conn = Connection::open(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql()?;
    conn.pragma_update(None, "journal_mode", "WAL").sql()?;
    conn.pragma_update(None, "synchronous", "FULL").sql()?;
    conn.pragma_update(None, "foreign_keys", "ON").sql()?;
    conn.pragma_update(None, "cache_size", -65536).sql()?;
    conn.pragma_update(None, "temp_store", "MEMORY").sql()?;
    migrate(&mut conn).map_err(|e| StoreError::Internal(format!("migrating {}: {e}", path.display())))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.to_vec())
}

/// Brings the schema to the latest migration.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite_migration::Result<()> {
    migrations().to_latest(conn)
}

/// Opens a reading connection (after the writer created the file). Not
/// `SQLITE_OPEN_READ_ONLY`: a read-only connection cannot always map WAL's
/// shared memory; `query_only` refuses writes just the same.
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql()?;
    conn.pragma_update(None, "query_only", "ON").sql()?;
    conn.pragma_update(None, "cache_size", -16384).sql()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
