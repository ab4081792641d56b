//! Opening the database file: pragmas, migrations.

use std::path::Path;
use std::time::Duration;

use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::M;

use crate::error::SqlResult;
use crate::schema;

/// The whole-file sequence files were migrated by before each module had
/// its own versions (see [`crate::schema`]); frozen: a change is a module's
/// next migration.
pub(crate) const LEGACY: &[M<'static>] = &[
    M::up(include_str!("../migrations/legacy/0001_init.sql")),
    M::up(include_str!("../migrations/legacy/0002_settings.sql")),
    M::up(include_str!("../migrations/legacy/0003_receipts_unindexed.sql")),
    M::up(include_str!("../migrations/legacy/0004_fleet.sql")),
    M::up(include_str!("../migrations/legacy/0005_telemetry.sql")),
    M::up(include_str!("../migrations/legacy/0006_registry.sql")),
    M::up(include_str!("../migrations/legacy/0007_rail.sql")),
    M::up(include_str!("../migrations/legacy/0008_faces.sql")),
    M::up(include_str!("../migrations/legacy/0009_queue_heads.sql")),
    M::up(include_str!("../migrations/legacy/0010_partitions.sql")),
    M::up(include_str!("../migrations/legacy/0011_pair_observed_ip.sql")),
    M::up(include_str!("../migrations/legacy/0012_telemetry_series.sql")),
    M::up(include_str!("../migrations/legacy/0013_device_credentials.sql")),
    M::up(include_str!("../migrations/legacy/0014_rail_retries.sql")),
];

/// The name a partition file's connection gives the main file.
pub(crate) const HUB: &str = "hub";

/// How long a statement waits for another process's lock (e.g. an
/// administration command) before the call fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the writer's connection, creating the file and running
/// migrations. `synchronous=FULL` makes every commit durable before the
/// caller is answered; WAL keeps readers from blocking the writer.
pub(crate) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let mut conn = open_for_writing(path)?;
    migrate(&mut conn).map_err(|e| StoreError::Internal(format!("migrating {}: {e}", path.display())))?;
    Ok(conn)
}

/// Opens the writer's connection to partition file `path`, creating and
/// migrating it, with the main file `hub` attached for reading bindings.
/// Its writer must not begin with `BEGIN IMMEDIATE`, which would take the
/// write lock of every attached file, the main one included, and
/// serialise the partitions behind the main writer (`Begin::ThisFileOnly`).
pub(crate) fn open_partition_writer(path: &Path, hub: &Path) -> StoreResult<Connection> {
    let mut conn = open_for_writing(path)?;
    schema::migrate(&mut conn, &crate::PARTITION_FILE)
        .map_err(|e| StoreError::Internal(format!("migrating {}: {e}", path.display())))?;
    attach_hub(&conn, hub)?;
    Ok(conn)
}

fn open_for_writing(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql()?;
    conn.pragma_update(None, "journal_mode", "WAL").sql()?;
    conn.pragma_update(None, "synchronous", "FULL").sql()?;
    conn.pragma_update(None, "foreign_keys", "ON").sql()?;
    // 16 MiB, not more: a B-tree balance parks a page under the lock-byte
    // page's number (1 GiB into the file) while it swaps pages, and in a
    // database under 1 GiB every commit after such a swap walks the whole
    // page-cache hash table to drop it (`pcache1TruncateUnsafe`: 4 % of
    // the writer at 64 MiB). The writer's hot pages fit; the rest is in the
    // OS page cache.
    conn.pragma_update(None, "cache_size", -16384).sql()?;
    conn.pragma_update(None, "temp_store", "MEMORY").sql()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Attaches the main file as [`HUB`].
fn attach_hub(conn: &Connection, hub: &Path) -> StoreResult<()> {
    let hub = hub.to_str().ok_or_else(|| StoreError::Unavailable(format!("{}: not UTF-8", hub.display())))?;
    conn.execute(&format!("ATTACH DATABASE ?1 AS {HUB}"), [hub]).sql()?;
    Ok(())
}

/// Partition `index`'s file beside the main file: `relayhub.db` →
/// `relayhub.p1.db`. Partition 0 is the main file itself.
pub fn partition_path(main: &Path, index: usize) -> std::path::PathBuf {
    if index == 0 {
        return main.to_owned();
    }
    let stem = main.file_stem().unwrap_or_default().to_string_lossy();
    let name = match main.extension() {
        Some(ext) => format!("{stem}.p{index}.{}", ext.to_string_lossy()),
        None => format!("{stem}.p{index}"),
    };
    main.with_file_name(name)
}

/// Brings every module of the main file to its latest migration.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), String> {
    schema::migrate(conn, &crate::MAIN_FILE)
}

/// Locks `<database>.lock` for this process, with its pid in it, or says
/// which process holds it. The lock goes with the file handle (and with
/// the process, however it ends).
pub(crate) fn lock_for_serving(database: &Path) -> StoreResult<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let mut name = database.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let path = database.with_file_name(name);
    let unavailable = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(unavailable)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(unavailable)?;
            file.rewind().map_err(unavailable)?;
            writeln!(file, "{}", std::process::id()).map_err(unavailable)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let dir = database.parent().unwrap_or(database);
            Err(StoreError::Unavailable(format!(
                "{} is in use by another relayhub server (process {}); stop that one, or give this one its own --data",
                dir.display(),
                holder.trim()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(unavailable(e)),
    }
}

/// Opens a reading connection (after the writer created the file). Not
/// `SQLITE_OPEN_READ_ONLY`: a read-only connection cannot always map WAL's
/// shared memory; `query_only` refuses writes just the same.
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    open_reader_with(path, None)
}

/// Opens a reading connection to a partition file, with the main file
/// attached as [`HUB`].
pub(crate) fn open_partition_reader(path: &Path, hub: &Path) -> StoreResult<Connection> {
    open_reader_with(path, Some(hub))
}

fn open_reader_with(path: &Path, hub: Option<&Path>) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql()?;
    if let Some(hub) = hub {
        attach_hub(&conn, hub)?;
    }
    conn.pragma_update(None, "query_only", "ON").sql()?;
    conn.pragma_update(None, "cache_size", -16384).sql()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(rusqlite_migration::Migrations::new(super::LEGACY.to_vec()).validate().is_ok());
    }
}
