//! The admin capability's rules, as pure functions.

use chrono::NaiveDate;
use relayhub_core::error::ApiError;
use relayhub_core::ids::LicenseNumber;
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

/// A delete goes ahead only when its confirmation names the license
/// exactly (as typed, case and all), else 422 `confirmation_mismatch`.
pub fn confirms_delete(number: &LicenseNumber, confirm: &str) -> Result<(), ApiError> {
    if confirm != number.as_str() {
        return Err(ApiError::new(
            crate::codes::CONFIRMATION_MISMATCH,
            format!("confirm must repeat the license number ({number}) to delete it with all its data"),
        ));
    }
    Ok(())
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

    #[test]
    fn a_delete_is_confirmed_only_by_the_exact_number() {
        let number = LicenseNumber::parse("LIC-7").unwrap();
        assert!(confirms_delete(&number, "LIC-7").is_ok());
        for wrong in ["", "lic-7", "LIC-7 ", "LIC-70", "yes"] {
            assert!(confirms_delete(&number, wrong).is_err(), "{wrong:?}");
        }
    }
}
