//! SQLite errors as the store reports them.

use relayhub_core::store::StoreError;
use rusqlite::ErrorCode;

/// Busy, full, read-only or I/O failures are `Unavailable` (503, retry);
/// anything else is a bug or corruption.
pub(crate) fn from_sqlite(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen,
        ) => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Internal(err.to_string()),
    }
}

/// `?` on rusqlite results inside store code.
pub(crate) trait SqlResult<T> {
    fn sql(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T, StoreError> {
        self.map_err(from_sqlite)
    }
}
