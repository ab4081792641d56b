//! `TIMESTAMPTZ` ↔ the API's millisecond timestamps.

use chrono::{DateTime, Utc};
use relayhub_core::time::Timestamp;

pub(crate) fn at(t: Timestamp) -> DateTime<Utc> {
    t.to_datetime()
}

pub(crate) fn opt_at(t: Option<Timestamp>) -> Option<DateTime<Utc>> {
    t.map(at)
}

pub(crate) fn time(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_millis(t.timestamp_millis())
}

pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(time)
}
