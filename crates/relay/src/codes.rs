//! The stable strings only the relay answers with: its error codes
//! (the shared ones are the core's `ErrorCode::…`).
//! The server's test holds every capability's codes to be unique and listed
//! in docs/protocol/errors.md.

relayhub_core::error_codes! {
    /// No such message in this license.
    MESSAGE_NOT_FOUND => (NOT_FOUND, "message_not_found"),
    /// The device's queue holds its maximum of pending messages.
    QUEUE_FULL => (TOO_MANY_REQUESTS, "queue_full"),
    /// An acknowledgement for a message this device does not have.
    UNKNOWN_MESSAGE => (NOT_FOUND, "unknown_message"),
    /// A settings write based on a version whose changes conflict with
    /// newer ones; the current document comes with the error.
    SETTINGS_CONFLICT => (CONFLICT, "settings_conflict"),
    /// No account was linked to settings in this license.
    ACCOUNT_NOT_LINKED => (NOT_FOUND, "account_not_linked"),
    /// The feature needs configuration this server does not have.
    NOT_CONFIGURED => (NOT_IMPLEMENTED, "not_configured"),
}
