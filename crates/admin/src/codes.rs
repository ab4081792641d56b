//! The stable strings only the operator API answers with (the shared ones
//! are the core's `ErrorCode::…`). The server's test holds every
//! capability's codes to be unique and listed in docs/protocol/errors.md.

relayhub_core::error_codes! {
    /// A license delete whose `confirm` does not repeat the license number.
    CONFIRMATION_MISMATCH => (UNPROCESSABLE_ENTITY, "confirmation_mismatch"),
}
