//! A consistent copy of the database, partition files included, while a
//! server keeps writing to it.
//!
//! `VACUUM INTO` reads the whole database inside one read transaction, so
//! the copy is the database as of one commit, however busy the writer is
//! (in WAL mode the writer goes on meanwhile), and it comes out compacted.
//! SQLite's online-backup API was the other choice: it restarts whenever
//! another connection writes, so under steady traffic it may never finish.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};

use crate::conn::partition_path;
use crate::error::SqlResult;

/// How long the copy waits for a lock (e.g. a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`snapshot`] wrote.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The copy of the main file: a database a server opens as it is,
    /// with its partition files beside it.
    pub file: PathBuf,
    /// Partition files copied beside it (`relayhub.p1.db`, …).
    pub partitions: usize,
    /// Their size on disk, all files together.
    pub bytes: u64,
    /// The migration the copied main file was at.
    pub schema_version: i64,
}

/// Copies `database` and its partition files into the new file `into` and
/// partition files beside it, each consistently, durably and checked (see
/// [`copy_file`]). Partitions are copied before the main file: every
/// device a partition's copy holds data for is then bound in the main
/// file's copy, and what the copy lacks is what a crash at that moment
/// would lack. Never creates or migrates `database`; on failure removes
/// what it copied.
pub fn snapshot(database: &Path, into: &Path) -> StoreResult<Snapshot> {
    let mut copied: Vec<PathBuf> = Vec::new();
    let mut bytes = 0;
    let mut partitions = 0;
    let result = (|| {
        if !database.is_file() {
            return Err(unavailable(database, "no such database"));
        }
        for index in 1.. {
            let source = partition_path(database, index);
            if !source.exists() {
                break;
            }
            let target = partition_path(into, index);
            copy_file(&source, &target)?;
            copied.push(target.clone());
            bytes += size(&target)?;
            partitions = index;
        }
        let schema_version = copy_file(database, into)?;
        copied.push(into.to_owned());
        bytes += size(into)?;
        if let Some(dir) = into.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The renames themselves are durable only once the directory is.
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| unavailable(dir, e))?;
        }
        Ok(schema_version)
    })();
    match result {
        Ok(schema_version) => Ok(Snapshot { file: into.to_owned(), partitions, bytes, schema_version }),
        Err(err) => {
            for file in copied {
                let _ = std::fs::remove_file(file);
            }
            Err(err)
        }
    }
}

fn size(file: &Path) -> StoreResult<u64> {
    Ok(std::fs::metadata(file).map_err(|e| unavailable(file, e))?.len())
}

/// Copies one database file into the new file `into`: written under a
/// temporary name next to `into`, fsynced, verified with `PRAGMA
/// quick_check`, and only then renamed, so `into` never names half a copy.
/// Returns the file's migration number.
fn copy_file(database: &Path, into: &Path) -> StoreResult<i64> {
    if into.exists() {
        return Err(unavailable(into, "exists already; nothing was written"));
    }
    // Without SQLITE_OPEN_CREATE: a mistyped path must not leave an empty
    // database behind. Not `query_only` either: it refuses VACUUM INTO.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let source = Connection::open_with_flags(database, flags).map_err(|e| unavailable(database, e))?;
    source.busy_timeout(BUSY_TIMEOUT).sql()?;
    let schema_version: i64 = source.pragma_query_value(None, "user_version", |row| row.get(0)).sql()?;
    if schema_version == 0 {
        return Err(unavailable(database, "not a relayhub database"));
    }

    let partial = partial_name(into);
    let _ = std::fs::remove_file(&partial);
    let target = partial.to_str().ok_or_else(|| unavailable(&partial, "not UTF-8"))?;
    let copied = source.execute("VACUUM INTO ?1", [target]).sql().and_then(|_| {
        File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| unavailable(&partial, e))?;
        check(&partial)
    });
    if let Err(err) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, into).map_err(|e| unavailable(into, e))?;
    Ok(schema_version)
}

/// A file that could not be opened, read or written.
fn unavailable(path: &Path, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {err}", path.display()))
}

/// `into` with `.partial` added to its file name.
fn partial_name(into: &Path) -> PathBuf {
    let mut name = into.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    into.with_file_name(name)
}

/// Reads the copy back: every page and index is where it should be.
fn check(copy: &Path) -> StoreResult<()> {
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| unavailable(copy, e))?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0)).sql()?;
    if verdict == "ok" { Ok(()) } else { Err(StoreError::Internal(format!("the copy failed its check: {verdict}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_database_is_neither_created_nor_copied() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("relayhub.db");
        let into = dir.path().join("copy.db");
        assert!(snapshot(&missing, &into).is_err());
        assert!(!missing.exists(), "the source was created");
        assert!(!into.exists() && !partial_name(&into).exists());
    }

    #[test]
    fn a_copy_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("relayhub.db");
        crate::conn::open_writer(&database).unwrap();
        let into = dir.path().join("copy.db");
        std::fs::write(&into, b"keep me").unwrap();
        assert!(snapshot(&database, &into).is_err());
        assert_eq!(std::fs::read(&into).unwrap(), b"keep me");
    }

    #[test]
    fn a_copy_is_at_the_latest_migration_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("relayhub.db");
        crate::conn::open_writer(&database).unwrap();
        let into = dir.path().join("copy.db");
        let snapshot = snapshot(&database, &into).unwrap();
        assert_eq!(snapshot.schema_version, crate::conn::LEGACY.len() as i64);
        assert!(snapshot.bytes > 0);
        assert!(!partial_name(&into).exists());
        crate::conn::open_writer(&into).expect("a server opens the copy");
    }
}
