//! The fleet's decisions, written once: both backends load what a call
//! concerns, ask these functions, and write what they say.

use relayhub_core::error::ApiError;
use relayhub_core::ids::LicensePk;
use relayhub_core::time::Timestamp;

use crate::codes;
use crate::model::{Pairing, RefreshRow, Robot, RobotStatus, Role, User};

/// Pairing codes: 20 consonants, no vowels (no words), no look-alikes.
pub const CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a code.
pub const CODE_LEN: usize = 8;

/// A fresh random code (20^8 ≈ 2.6·10^10 of them).
pub fn generate_code() -> String {
    (0..CODE_LEN).map(|_| CODE_ALPHABET[rand::random_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// A code as people type it (any case, with or without the hyphen or
/// spaces) in its stored form: 8 letters of [`CODE_ALPHABET`].
pub fn normalize_code(raw: &str) -> Result<String, ApiError> {
    let code: String = raw.chars().filter(|c| *c != '-' && *c != ' ').map(|c| c.to_ascii_uppercase()).collect();
    if code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        Ok(code)
    } else {
        Err(ApiError::invalid_field("a pairing code is 8 letters of BCDFGHJKLMNPQRSTVWXZ, shown as XXXX-XXXX"))
    }
}

/// A code as shown to people: `BCDF-GHJK`.
pub fn display_code(code: &str) -> String {
    match code.get(..4).zip(code.get(4..)) {
        Some((a, b)) => format!("{a}-{b}"),
        None => code.to_owned(),
    }
}

/// Where a pairing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairState {
    /// Waiting for a user's confirmation.
    Pending,
    /// Confirmed; the robot has (or will get, once) its token.
    Confirmed,
    /// Not confirmed within its time.
    Expired,
}

pub fn pair_state(pairing: &Pairing, now: Timestamp) -> PairState {
    match pairing.confirmed_at {
        Some(_) => PairState::Confirmed,
        None if pairing.expires_at <= now => PairState::Expired,
        None => PairState::Pending,
    }
}

/// A user may confirm a pending, unexpired pairing, once.
pub fn confirm(pairing: &Pairing, now: Timestamp) -> Result<(), ApiError> {
    match pair_state(pairing, now) {
        PairState::Pending => Ok(()),
        PairState::Confirmed => Err(ApiError::new(codes::PAIR_CODE_USED, "this pairing code was used already")),
        PairState::Expired => Err(expired()),
    }
}

pub fn expired() -> ApiError {
    ApiError::new(codes::PAIR_CODE_EXPIRED, "this pairing code expired; start the pairing again on the robot")
}

/// What a refresh token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Spend it and issue the next of its chain.
    Rotate { user_id: i64, chain: String },
    /// Spent before: someone else may hold a copy. The whole chain ends.
    Reused { chain: String },
    /// Revoked or expired.
    Refused,
}

pub fn rotation(row: &RefreshRow, now: Timestamp) -> Rotation {
    if row.revoked_at.is_some() || row.expires_at <= now {
        Rotation::Refused
    } else if row.used_at.is_some() {
        Rotation::Reused { chain: row.chain.clone() }
    } else {
        Rotation::Rotate { user_id: row.user_id, chain: row.chain.clone() }
    }
}

/// Who may see a robot: its owner, and the admins of its license. Anyone
/// else is told it does not exist.
pub fn may_see(user: &User, robot: &Robot) -> bool {
    robot.license == Some(user.license) && (user.role == Role::Admin || robot.owner_id == Some(user.id))
}

/// The robots a listing covers: an admin's whole license, else the user's own.
pub fn listing(user: &User) -> (LicensePk, Option<i64>) {
    match user.role {
        Role::Admin => (user.license, None),
        Role::User => (user.license, Some(user.id)),
    }
}

/// A user may set a robot `active` or `inactive`; `pending` and `error`
/// are the server's.
pub fn settable_status(status: RobotStatus) -> Result<RobotStatus, ApiError> {
    match status {
        RobotStatus::Active | RobotStatus::Inactive => Ok(status),
        _ => Err(ApiError::invalid_field("status is active or inactive")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;
    use relayhub_core::secret::SecretHash;

    fn pairing(expires: i64, confirmed: Option<i64>) -> Pairing {
        Pairing {
            robot: Robot {
                id: 1,
                license: None,
                owner_id: None,
                name: "r".into(),
                hostname: "r".into(),
                ip_address: None,
                architecture: Some(Architecture::Arm64),
                status: RobotStatus::Pending,
                created_at: Timestamp::from_millis(0),
                last_seen_at: None,
            },
            code: "BCDFGHJK".into(),
            secret: SecretHash([0; 32]),
            expires_at: Timestamp::from_millis(expires),
            confirmed_at: confirmed.map(Timestamp::from_millis),
            token_delivered: false,
            observed_ip_address: None,
        }
    }

    #[test]
    fn codes_are_consonants_typed_any_way() {
        for _ in 0..200 {
            let code = generate_code();
            assert_eq!(normalize_code(&code).unwrap(), code);
            assert_eq!(normalize_code(&display_code(&code).to_lowercase()).unwrap(), code);
        }
        assert_eq!(display_code("BCDFGHJK"), "BCDF-GHJK");
        for bad in ["BCDFGHJ", "BCDFGHJKL", "ABCDEFGH", "BCDF-GHJ1", ""] {
            assert!(normalize_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pairing_is_confirmed_once_and_only_in_time() {
        assert!(confirm(&pairing(100, None), Timestamp::from_millis(50)).is_ok());
        assert_eq!(
            confirm(&pairing(100, None), Timestamp::from_millis(100)).unwrap_err().code,
            codes::PAIR_CODE_EXPIRED
        );
        assert_eq!(
            confirm(&pairing(100, Some(60)), Timestamp::from_millis(70)).unwrap_err().code,
            codes::PAIR_CODE_USED
        );
    }

    #[test]
    fn a_spent_refresh_token_ends_its_chain() {
        let row = |used: Option<i64>, revoked: Option<i64>, expires: i64| RefreshRow {
            user_id: 7,
            chain: "c".into(),
            expires_at: Timestamp::from_millis(expires),
            used_at: used.map(Timestamp::from_millis),
            revoked_at: revoked.map(Timestamp::from_millis),
        };
        let now = Timestamp::from_millis(10);
        assert_eq!(rotation(&row(None, None, 20), now), Rotation::Rotate { user_id: 7, chain: "c".into() });
        assert_eq!(rotation(&row(Some(5), None, 20), now), Rotation::Reused { chain: "c".into() });
        assert_eq!(rotation(&row(None, Some(5), 20), now), Rotation::Refused);
        assert_eq!(rotation(&row(None, None, 10), now), Rotation::Refused);
    }
}
