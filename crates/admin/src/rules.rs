//! The admin capability's rules, as pure functions.

use chrono::NaiveDate;
use relayhub_core::error::ApiError;
use relayhub_core::time::Timestamp;

/// A license's expiry as people write it: the last valid day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expires(pub NaiveDate);

impl Expires {
    /// `YYYY-MM-DD`, else 422.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(Expires)
            .map_err(|_| ApiError::invalid_field(format!("expires: {raw:?} is not a date (YYYY-MM-DD)")))
    }

    /// The first instant the license no longer works: the end of the day.
    pub fn at(self) -> Option<Timestamp> {
        Some(Timestamp::end_of_day(self.0))
    }
}

/// The largest device limit: what every client's 32-bit signed integer
/// holds (the document says so too).
pub const MAX_DEVICE_LIMIT: u32 = i32::MAX as u32;

/// A license's device limit, else 422.
pub fn device_limit(limit: u32) -> Result<u32, ApiError> {
    if limit > MAX_DEVICE_LIMIT {
        return Err(ApiError::invalid_field(format!("max_devices is at most {MAX_DEVICE_LIMIT}")));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_a_day_and_lasts_to_its_end() {
        let day = Expires::parse("2027-03-31").unwrap();
        let end = day.at().unwrap();
        assert_eq!(end.last_day().to_string(), "2027-03-31");
        assert!(Expires::parse("31.03.2027").is_err());
        assert!(Expires::parse("2027-02-30").is_err());
    }
}
