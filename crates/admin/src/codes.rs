//! The stable strings only the operator plane answers with: its error
//! codes (the shared ones are the core's `ErrorCode::…`) and the prefixes
//! of its secrets. The server's test holds every capability's codes to be
//! unique and listed in docs/protocol/errors.md, and every prefix unique.

use relayhub_core::secret::SecretKind;

relayhub_core::error_codes! {
    /// A license delete whose `confirm` does not repeat the license number.
    CONFIRMATION_MISMATCH => (UNPROCESSABLE_ENTITY, "confirmation_mismatch"),
}

/// `rhc_…`: an operator's console session (its cookie).
pub const CONSOLE_SESSION: SecretKind = SecretKind::new("rhc_", "ocs_");

/// Every kind of secret declared here.
pub const SECRET_KINDS: &[SecretKind] = &[CONSOLE_SESSION];
