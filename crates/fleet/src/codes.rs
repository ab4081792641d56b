//! The stable strings only the robot fleet answers with: its error codes
//! (the shared ones are the core's `ErrorCode::…`) and the prefixes of its secrets.
//! The server's test holds every capability's codes to be unique and listed
//! in docs/protocol/errors.md, and every prefix to be unique.

use relayhub_core::secret::SecretKind;

relayhub_core::error_codes! {
    /// Polling faster than the `interval` it was given (RFC 8628).
    SLOW_DOWN => (TOO_MANY_REQUESTS, "slow_down"),
    /// Telemetry: a line of the body is not valid line protocol (the message
    /// names the first bad line); nothing of the body was stored.
    INVALID_LINE_PROTOCOL => (BAD_REQUEST, "invalid_line_protocol"),
    /// Telemetry: the write would take its robot past
    /// `fleet.telemetry.max_series_per_robot` distinct series (the message
    /// names a few of the new ones); nothing of the body was stored.
    TOO_MANY_SERIES => (UNPROCESSABLE_ENTITY, "too_many_series"),
    /// Telemetry: the license's store holds
    /// `fleet.telemetry.max_bytes_per_license` already; nothing of the body
    /// was stored. Space comes back as points pass their retention.
    TELEMETRY_STORE_FULL => (CONFLICT, "telemetry_store_full"),
    /// No pairing with this code.
    PAIR_CODE_NOT_FOUND => (NOT_FOUND, "pair_code_not_found"),
    /// The pairing code's 15 minutes are over.
    PAIR_CODE_EXPIRED => (GONE, "pair_code_expired"),
    /// The pairing code was used already, or is taken.
    PAIR_CODE_USED => (CONFLICT, "pair_code_used"),
}

/// `rhr_…`: a robot's personal token.
pub const ROBOT_TOKEN: SecretKind = SecretKind::new("rhr_", "rbt_");
/// `rhs_…`: a user's refresh token (sessions).
pub const REFRESH_TOKEN: SecretKind = SecretKind::new("rhs_", "ses_");
/// `rhp_…`: the secret a pairing robot polls with.
pub const POLL_SECRET: SecretKind = SecretKind::new("rhp_", "pol_");
/// `rhw_…`: a one-time password-reset link's token.
pub const PASSWORD_RESET: SecretKind = SecretKind::new("rhw_", "pwr_");

/// `rhq_…`: a user's read token, for dashboards (the Prometheus API).
pub const READ_TOKEN: SecretKind = SecretKind::new("rhq_", "rqt_");

/// Every kind of secret declared here.
pub const SECRET_KINDS: &[SecretKind] = &[ROBOT_TOKEN, REFRESH_TOKEN, POLL_SECRET, PASSWORD_RESET, READ_TOKEN];
