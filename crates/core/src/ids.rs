//! Validated identifiers, parsed once at the edge so the core never sees a
//! raw string.

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ApiError;

/// Internal row key of a license. Never shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LicensePk(pub i64);

/// Internal row key of a bound device. Never shown to clients; a device
/// that is unbound and bound again gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevicePk(pub i64);

fn is_id_char(c: char, extra: &str) -> bool {
    c.is_ascii_alphanumeric() || "-_.".contains(c) || extra.contains(c)
}

/// A license number as the accounting system knows it: 1–64 characters of
/// letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LicenseNumber(String);

impl LicenseNumber {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let ok = !raw.is_empty() && raw.len() <= 64 && raw.chars().all(|c| is_id_char(c, ""));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid_field("a license number is 1-64 characters of letters, digits, '-', '_' and '.'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a device id looks like, as a JSON Schema pattern (ECMA 262): a
/// UUID in braces, or 1-128 of letters, digits, `-_.:` with at least one
/// letter or digit (an id of dots alone would not survive a URL).
pub const DEVICE_ID_PATTERN: &str = r"^(\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}|[A-Za-z0-9._:-]*[A-Za-z0-9][A-Za-z0-9._:-]*)$";

/// What a license number looks like, as a JSON Schema pattern.
pub const LICENSE_NUMBER_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";

/// A device's identifier, generated on the device (a UUID on Android).
///
/// 1–128 characters of letters, digits, `-`, `_`, `.` and `:`, at least one
/// of them a letter or digit. A UUID in any
/// case, with or without braces (`{…}` as some Windows accounting systems
/// write them), is normalised to the lowercase hyphenated form, so the phone
/// and the back-office agree on one spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let unbraced = raw.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(raw);
        if unbraced.len() == 36
            && let Ok(uuid) = uuid::Uuid::parse_str(unbraced)
        {
            return Ok(Self(uuid.hyphenated().to_string()));
        }
        let ok = raw.len() <= 128
            && raw.chars().all(|c| is_id_char(c, ":"))
            && raw.chars().any(|c| c.is_ascii_alphanumeric());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid_field(
                "a device id is a UUID or 1-128 characters of letters, digits, '-', '_', '.' and ':' \
                 (at least one letter or digit)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string schema with the id's rule, so every use documents it once.
fn id_schema(pattern: &str, max: usize, about: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(Some(max))
        .description(Some(about))
        .examples([serde_json::json!(example)])
        .into()
}

impl PartialSchema for DeviceId {
    fn schema() -> RefOr<Schema> {
        let about = "A device's id: its UUID (any case, braces allowed), or 1-128 letters, digits, \
                     `-`, `_`, `.` and `:` with at least one letter or digit";
        id_schema(DEVICE_ID_PATTERN, 128, about, "0b5e4c1e-8a43-4d59-9a0e-5d1a3c2f7b11")
    }
}

impl ToSchema for DeviceId {}

impl PartialSchema for LicenseNumber {
    fn schema() -> RefOr<Schema> {
        id_schema(LICENSE_NUMBER_PATTERN, 64, "A license number: 1-64 letters, digits, `-`, `_` and `.`", "LIC-0001")
    }
}

impl ToSchema for LicenseNumber {}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = ApiError;
            fn try_from(raw: String) -> Result<Self, ApiError> {
                Self::parse(&raw)
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_newtype_impls!(LicenseNumber);
string_newtype_impls!(DeviceId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_device_ids_are_normalised() {
        let want = "0b5e4c1e-8a43-4d59-9a0e-5d1a3c2f7b11";
        for raw in [want, "0B5E4C1E-8A43-4D59-9A0E-5D1A3C2F7B11", "{0B5E4C1E-8A43-4D59-9A0E-5D1A3C2F7B11}"] {
            assert_eq!(DeviceId::parse(raw).unwrap().as_str(), want);
        }
    }

    #[test]
    fn other_device_ids_are_kept_verbatim_or_refused() {
        assert_eq!(DeviceId::parse("robot-7:arm").unwrap().as_str(), "robot-7:arm");
        for bad in ["", "a b", "x/y", "ä", &"x".repeat(129), ".", "..", "-:_"] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_documented_patterns_accept_exactly_what_is_parsed() {
        let device = regex::Regex::new(DEVICE_ID_PATTERN).unwrap();
        let samples = [
            "0b5e4c1e-8a43-4d59-9a0e-5d1a3c2f7b11",
            "{0B5E4C1E-8A43-4D59-9A0E-5D1A3C2F7B11}",
            "{0b5e4c1e-8a43-4d59-9a0e-5d1a3c2f7bXX}",
            "{}",
            "robot-7:arm",
            ".",
            "..",
            "-",
            "a",
            "a b",
            "ä",
            "x/y",
        ];
        for raw in samples.iter().copied().chain([&*"x".repeat(128), &*"x".repeat(129)]) {
            let documented = device.is_match(raw) && raw.chars().count() <= 128;
            assert_eq!(documented, DeviceId::parse(raw).is_ok(), "{raw:?}");
        }
        let license = regex::Regex::new(LICENSE_NUMBER_PATTERN).unwrap();
        for raw in ["LIC-1", "a.b_c", "", "a:b", &"L".repeat(64), &"L".repeat(65)] {
            assert_eq!(license.is_match(raw), LicenseNumber::parse(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn license_numbers_are_validated() {
        assert!(LicenseNumber::parse("LIC-0001").is_ok());
        assert!(LicenseNumber::parse("a:b").is_err());
        assert!(LicenseNumber::parse("").is_err());
    }
}
