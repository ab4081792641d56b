//! The PostgreSQL schema, owned module by module: the core's tables, the
//! platform's (nodes, the bus's spill), and each capability's come with
//! their own migrations (`migrations/<module>/`), numbered on their own
//! and recorded in `schema_versions`. The database is migrated by looping
//! over the modules in one transaction under an advisory lock, so nodes
//! starting together migrate once.
//!
//! Databases made before modules had versions were migrated by sqlx as
//! one sequence (`_sqlx_migrations`); each step below says which of that
//! sequence's migrations it was, so such a database, however far it got,
//! starts every module at the steps it already has.

use sqlx::{PgPool, Row};

/// One migration of a module.
pub(crate) struct Step {
    pub sql: &'static str,
    /// Its number in the sequence databases were migrated by before
    /// modules had versions, if it was one.
    pub was: Option<i64>,
}

/// One module's tables: its name and its migrations, oldest first
/// (version N is the N-th).
pub(crate) struct Schema {
    pub module: &'static str,
    pub steps: &'static [Step],
}

/// The sequence databases were migrated by before modules had versions,
/// in its order: (its number, the SQL).
pub(crate) fn legacy_sequence(modules: &[Schema]) -> Vec<(i64, &'static str)> {
    let mut steps: Vec<(i64, &'static str)> =
        modules.iter().flat_map(|m| m.steps.iter().filter_map(|s| Some((s.was?, s.sql)))).collect();
    steps.sort_by_key(|(was, _)| *was);
    steps
}

/// Every node takes this lock before it migrates (and no other code does).
const MIGRATION_LOCK: i64 = 0x7265_6c61_7968_7562; // "relayhub"

/// Brings every module to its latest migration, in one transaction.
pub(crate) async fn migrate(pool: &PgPool, modules: &[Schema]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    let recorded: bool =
        sqlx::query("SELECT to_regclass('schema_versions') IS NOT NULL").fetch_one(&mut *tx).await?.get(0);
    if !recorded {
        sqlx::query("CREATE TABLE schema_versions (module TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let legacy: bool =
            sqlx::query("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&mut *tx).await?.get(0);
        let reached: Option<i64> = match legacy {
            true => {
                sqlx::query("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(&mut *tx).await?.get(0)
            }
            false => None,
        };
        if let Some(reached) = reached {
            for schema in modules {
                let held = schema.steps.iter().take_while(|s| s.was.is_some_and(|was| was <= reached)).count();
                sqlx::query("INSERT INTO schema_versions (module, version) VALUES ($1, $2)")
                    .bind(schema.module)
                    .bind(held as i32)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    for schema in modules {
        let at: Option<i32> = sqlx::query("SELECT version FROM schema_versions WHERE module = $1")
            .bind(schema.module)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get(0));
        let at = at.unwrap_or(0) as usize;
        if at > schema.steps.len() {
            return Err(sqlx::Error::Protocol(format!(
                "{} is at version {at}, newer than this release knows ({}); run the newer release",
                schema.module,
                schema.steps.len()
            )));
        }
        for (index, step) in schema.steps.iter().enumerate().skip(at) {
            sqlx::raw_sql(step.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_versions (module, version) VALUES ($1, $2)
                 ON CONFLICT (module) DO UPDATE SET version = excluded.version",
            )
            .bind(schema.module)
            .bind(index as i32 + 1)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}
