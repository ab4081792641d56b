//! Typed reads of columns that hold validated values.

use relayhub_core::ids::DeviceId;
use relayhub_core::time::Timestamp;
use rusqlite::Row;
use rusqlite::types::Type;
use serde_json::value::RawValue;

fn bad(column: usize, err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(err))
}

pub(crate) fn device_id(row: &Row<'_>, column: usize) -> rusqlite::Result<DeviceId> {
    let raw: String = row.get(column)?;
    DeviceId::parse(&raw).map_err(|e| bad(column, e))
}

pub(crate) fn json(row: &Row<'_>, column: usize) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(row.get(column)?).map_err(|e| bad(column, e))
}

pub(crate) fn time(row: &Row<'_>, column: usize) -> rusqlite::Result<Timestamp> {
    row.get(column).map(Timestamp::from_millis)
}

pub(crate) fn opt_time(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<i64>>(column).map(|t| t.map(Timestamp::from_millis))
}

pub(crate) fn license_number(row: &Row<'_>, column: usize) -> rusqlite::Result<relayhub_core::ids::LicenseNumber> {
    let raw: String = row.get(column)?;
    relayhub_core::ids::LicenseNumber::parse(&raw).map_err(|e| bad(column, e))
}
