//! `relayhub backup DIR`: a copy of the embedded database that is itself a
//! data directory, taken while the server keeps serving.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;

use crate::admin::Output;
use crate::config::DatabaseUrl;

/// Copies the database `url` names into the directory `into`, which must
/// be new or empty (a backup never mixes with or replaces other files).
pub async fn run(url: &DatabaseUrl, into: PathBuf) -> anyhow::Result<Output> {
    let database = match url {
        DatabaseUrl::Sqlite(path) => path.clone(),
        DatabaseUrl::Postgres(_) => bail!(
            "relayhub backup copies the embedded SQLite database; back PostgreSQL up with its own tools \
             (pg_dump --format=custom, or continuous archiving)"
        ),
    };
    if !database.is_file() {
        bail!("no database at {}: nothing to back up (is --data right?)", database.display());
    }
    ensure_empty_dir(&into)?;
    // The same file name, so that `relayhub serve --data DIR` finds it.
    let file = into.join(database.file_name().context("the database path has no file name")?);
    let started = Instant::now();
    let snapshot = tokio::task::spawn_blocking(move || relayhub_sqlite::snapshot(&database, &file))
        .await
        .context("the backup thread failed")?
        .context("backing up")?;
    let seconds = started.elapsed().as_secs_f64();
    let partitions = match snapshot.partitions {
        0 => String::new(),
        1 => ", and 1 partition file beside it".into(),
        n => format!(", and {n} partition files beside it"),
    };
    let text = format!(
        "backed up to {} ({:.1} MiB, schema {}{partitions}) in {seconds:.1} s\nserve it with: relayhub serve --data {}",
        snapshot.file.display(),
        snapshot.bytes as f64 / (1024.0 * 1024.0),
        snapshot.schema_version,
        into.display()
    );
    let json = json!({
        "file": snapshot.file,
        "partitions": snapshot.partitions,
        "bytes": snapshot.bytes,
        "schema_version": snapshot.schema_version,
        "seconds": seconds,
    });
    Ok(Output { text, json })
}

/// Creates `dir` if needed; refuses one that holds anything.
fn ensure_empty_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    if entries.next().is_some() {
        bail!("{} is not empty: a backup goes into a new or empty directory; nothing was written", dir.display());
    }
    Ok(())
}
