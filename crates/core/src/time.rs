//! Time as the API shows it: RFC 3339 UTC with milliseconds
//! (`2026-11-21T20:57:37.123Z`), stored by backends as Unix milliseconds.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// An instant, millisecond precision, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-21T20:57:37.123Z")]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus a duration (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// This instant minus a duration (saturating).
    pub fn minus(self, d: std::time::Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Milliseconds from `earlier` to `self`, zero if negative.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0 - earlier.0).unwrap_or(0)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The RFC 3339 form used on the wire.
    pub fn rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The first instant after the whole UTC day `date`: a license that
    /// "expires 2026-12-31" is valid through that day.
    pub fn end_of_day(date: NaiveDate) -> Self {
        let next = date.succ_opt().unwrap_or(date);
        Self(next.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(i64::MAX))
    }

    /// The UTC day this instant ends, inverse of [`Timestamp::end_of_day`].
    pub fn last_day(self) -> NaiveDate {
        (self.to_datetime() - chrono::Duration::milliseconds(1)).date_naive()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw).map(|t| Timestamp(t.timestamp_millis())).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_rfc3339_millis_utc() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-18T11:06:40.123Z\"");
        let back: Timestamp = serde_json::from_str("\"2026-11-18T11:06:40.123Z\"").unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_license_date_covers_the_whole_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        let end = Timestamp::end_of_day(day);
        assert_eq!(end.rfc3339(), "2027-01-01T00:00:00.000Z");
        assert_eq!(end.last_day(), day);
    }
}
