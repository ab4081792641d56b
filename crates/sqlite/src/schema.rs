//! The embedded database's schema, owned module by module: the core's
//! tables, the relay's, the fleet's, telemetry's, the registry's, the
//! rail's and the faces' each come with their own migrations
//! (`migrations/<module>/`), numbered on their own and recorded in
//! `schema_versions`. A file is migrated by looping over the modules it
//! holds (the main file all of them, a partition file the relay's), so a
//! module's change touches its own directory and nothing else.
//!
//! Files made before modules had versions carry one number for the whole
//! file (`PRAGMA user_version`, the sequence now frozen in
//! `migrations/legacy/`). Such a file is first brought to the end of that
//! sequence, and then each module's first migration, the schema that
//! sequence left, counts as applied.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

/// One module's tables: its name and its migrations, oldest first
/// (version N is the N-th).
pub(crate) struct Schema {
    pub module: &'static str,
    pub migrations: &'static [&'static str],
}

/// A kind of file, and the whole-file sequence its files were migrated by
/// before modules had versions.
pub(crate) struct FileKind {
    /// The modules it holds, in the order their tables are created.
    pub modules: &'static [Schema],
    /// The frozen sequence (empty: its legacy files need nothing more).
    pub legacy: &'static [M<'static>],
    /// How far that sequence went: a legacy file at it holds the first
    /// migration of each of `legacy_modules`, and a new file says it is at
    /// it (`user_version`), so that the release before this one can
    /// still open a file whose modules are all at their first version.
    pub legacy_version: i64,
    pub legacy_modules: &'static [&'static str],
}

/// Brings every module of the file to its latest migration, each in a
/// transaction of its own.
pub(crate) fn migrate(conn: &mut Connection, kind: &FileKind) -> Result<(), String> {
    let recorded: bool = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'", [], |_| Ok(true))
        .optional()
        .map_err(|e| e.to_string())?
        .is_some();
    if !recorded {
        let legacy: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| e.to_string())?;
        if legacy > 0 && !kind.legacy.is_empty() {
            Migrations::new(kind.legacy.to_vec()).to_latest(conn).map_err(|e| format!("the legacy sequence: {e}"))?;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_versions (module TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        )
        .map_err(|e| e.to_string())?;
        if legacy > 0 {
            for module in kind.legacy_modules {
                tx.execute("INSERT OR IGNORE INTO schema_versions (module, version) VALUES (?1, 1)", [module])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.pragma_update(None, "user_version", kind.legacy_version).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    for schema in kind.modules {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
        let at: i64 = tx
            .query_row("SELECT version FROM schema_versions WHERE module = ?1", [schema.module], |r| r.get(0))
            .optional()
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        if at > schema.migrations.len() {
            return Err(format!(
                "{} is at version {at}, newer than this release knows ({}); run the newer release",
                schema.module,
                schema.migrations.len()
            ));
        }
        for (index, sql) in schema.migrations.iter().enumerate().skip(at) {
            tx.execute_batch(sql).map_err(|e| format!("{} migration {}: {e}", schema.module, index + 1))?;
            tx.execute(
                "INSERT INTO schema_versions (module, version) VALUES (?1, ?2)
                 ON CONFLICT (module) DO UPDATE SET version = excluded.version",
                rusqlite::params![schema.module, index as i64 + 1],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Each module's version in a file.
#[cfg(test)]
pub(crate) fn versions(conn: &Connection) -> Vec<(String, i64)> {
    let mut stmt = conn.prepare("SELECT module, version FROM schema_versions ORDER BY module").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::LEGACY;
    use crate::{MAIN_FILE, PARTITION_FILE};

    /// The file's tables and indexes as created, comments and layout aside.
    fn objects(conn: &Connection, tables: Option<&[&str]>) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name <> 'schema_versions'",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)));
        let mut found: Vec<(String, String)> = rows
            .unwrap()
            .map(Result::unwrap)
            .filter(|(_, table, _)| tables.is_none_or(|t| t.contains(&table.as_str())))
            .map(|(name, _, sql)| {
                let code: String = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect();
                (name, code.chars().filter(|c| !c.is_whitespace() && *c != '"').collect())
            })
            .collect();
        found.sort();
        found
    }

    fn legacy_file(up_to: usize) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        Migrations::new(LEGACY[..up_to].to_vec()).to_latest(&mut conn).unwrap();
        conn
    }

    #[test]
    fn a_new_file_has_the_schema_an_upgraded_one_has() {
        let mut new = Connection::open_in_memory().unwrap();
        migrate(&mut new, &MAIN_FILE).unwrap();
        for up_to in [LEGACY.len(), 8, 1] {
            let mut old = legacy_file(up_to);
            migrate(&mut old, &MAIN_FILE).unwrap();
            assert_eq!(objects(&old, None), objects(&new, None), "a file of legacy version {up_to}, upgraded");
            assert_eq!(versions(&old), versions(&new));
        }
        // Each module at its latest version: the core at 3 (licenses'
        // suspension, pks never given again), the fleet at 3 (password
        // resets, read tokens), operators (added after the legacy files)
        // at 2 (console sessions).
        let latest: Vec<(String, i64)> = [
            ("core", 3),
            ("face", 1),
            ("fleet", 3),
            ("operators", 2),
            ("rail", 1),
            ("registry", 1),
            ("relay", 1),
            ("telemetry", 1),
        ]
        .map(|(m, v)| (m.to_owned(), v))
        .into();
        assert_eq!(versions(&new), latest);
        let user_version: i64 = new.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(user_version, LEGACY.len() as i64, "the release before this one opens it as its own");
    }

    #[test]
    fn a_partition_file_has_the_relay_tables_of_the_main_file() {
        let mut main = Connection::open_in_memory().unwrap();
        migrate(&mut main, &MAIN_FILE).unwrap();
        let mut partition = Connection::open_in_memory().unwrap();
        migrate(&mut partition, &PARTITION_FILE).unwrap();
        let relay = ["queues", "messages", "inbox", "settings", "settings_history", "accounts"];
        assert_eq!(objects(&partition, None), objects(&main, Some(&relay)));
        assert_eq!(versions(&partition), [("relay".to_owned(), 1)]);

        // A partition file from before: its one migration was the relay's first.
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(crate::relay::SCHEMA.migrations[0]).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        migrate(&mut old, &PARTITION_FILE).unwrap();
        assert_eq!(objects(&old, None), objects(&partition, None));
        assert_eq!(versions(&old), [("relay".to_owned(), 1)]);
    }

    #[test]
    fn a_module_migration_runs_once_and_a_newer_file_is_refused() {
        const FIRST: &[&str] = &["CREATE TABLE notes (id INTEGER PRIMARY KEY)"];
        const SECOND: &[&str] =
            &["CREATE TABLE notes (id INTEGER PRIMARY KEY)", "ALTER TABLE notes ADD COLUMN body TEXT"];
        let kind = |migrations: &'static [&'static str]| FileKind {
            modules: std::slice::from_ref(Box::leak(Box::new(Schema { module: "notes", migrations }))),
            legacy: &[],
            legacy_version: 1,
            legacy_modules: &[],
        };
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &kind(FIRST)).unwrap();
        conn.execute("INSERT INTO notes (id) VALUES (1)", []).unwrap();
        migrate(&mut conn, &kind(SECOND)).unwrap();
        migrate(&mut conn, &kind(SECOND)).unwrap();
        assert_eq!(versions(&conn), [("notes".to_owned(), 2)]);
        let kept: i64 = conn.query_row("SELECT count(*) FROM notes WHERE body IS NULL", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1, "the row is kept and the column added once");
        let refused = migrate(&mut conn, &kind(FIRST)).unwrap_err();
        assert!(refused.contains("newer than this release knows"), "{refused}");
    }
}
