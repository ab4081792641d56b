//! PostgreSQL errors as the store reports them.

use relayhub_core::store::StoreError;

/// Connection loss, a restarting or overloaded server, serialization
/// failures: `Unavailable` (503, retry). Anything else: a bug.
pub(crate) fn from_sqlx(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // Connection exceptions, shutdown or not accepting yet, too many
            // connections, serialization failure, deadlock, read-only.
            Some(code) if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") => {
                StoreError::Unavailable(err.to_string())
            }
            // Certainly rolled back, safe to run again: serialization
            // failure, deadlock, a row inserted concurrently by another node.
            Some("40001" | "40P01" | "23505") => StoreError::Unavailable(format!("{ROLLED_BACK}: {err}")),
            Some("25006") => StoreError::Unavailable(err.to_string()),
            _ => StoreError::Internal(err.to_string()),
        },
        _ => StoreError::Internal(err.to_string()),
    }
}

/// Marks errors after which a transaction certainly did not commit.
pub(crate) const ROLLED_BACK: &str = "rolled back";

/// Whether a batch may simply be run again after this error (never after
/// a lost connection: the commit may have happened).
pub(crate) fn may_retry(err: &StoreError) -> bool {
    matches!(err, StoreError::Unavailable(detail) if detail.starts_with(ROLLED_BACK))
}

/// Whether an error is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// `?` on sqlx results inside store code.
pub(crate) trait SqlResult<T> {
    fn sql(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for Result<T, sqlx::Error> {
    fn sql(self) -> Result<T, StoreError> {
        self.map_err(from_sqlx)
    }
}
