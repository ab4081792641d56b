//! The stable strings only the passenger robots (rail and face) answer with: its error codes
//! (the shared ones are the core's `ErrorCode::…`) and the prefixes of its secrets.
//! The server's test holds every capability's codes to be unique and listed
//! in docs/protocol/errors.md, and every prefix to be unique.

use relayhub_core::secret::SecretKind;

relayhub_core::error_codes! {
    /// No store with this id in the license (or it was deleted).
    STORE_NOT_FOUND => (NOT_FOUND, "store_not_found"),
    /// No item with this id in the license (or the caller's store).
    ITEM_NOT_FOUND => (NOT_FOUND, "item_not_found"),
    /// No task with this id for the caller.
    TASK_NOT_FOUND => (NOT_FOUND, "task_not_found"),
    /// No ticket with this code in the license.
    TICKET_NOT_FOUND => (NOT_FOUND, "ticket_not_found"),
    /// The ticket was accepted already, by another robot or longer
    /// ago than `rail.ticket_recheck`; a ticket is accepted once.
    TICKET_USED => (CONFLICT, "ticket_used"),
    /// The ticket is for another train than the robot's.
    TICKET_WRONG_TRAIN => (CONFLICT, "ticket_wrong_train"),
    /// The ticket is for another day (in `rail.time_zone`).
    TICKET_NOT_TODAY => (CONFLICT, "ticket_not_today"),
    /// A purchase would take an item's balance below zero; nothing
    /// was bought.
    INSUFFICIENT_BALANCE => (CONFLICT, "insufficient_balance"),
    /// No engineer with this id in the license.
    ENGINEER_NOT_FOUND => (NOT_FOUND, "engineer_not_found"),
    /// The challenge's nonce is unknown, used, expired or another's.
    NONCE_INVALID => (UNAUTHORIZED, "nonce_invalid"),
    /// The signature does not verify with the registered public key.
    SIGNATURE_INVALID => (UNAUTHORIZED, "signature_invalid"),
    /// No enrolled face is within `rail.face.threshold`.
    NO_MATCH => (NOT_FOUND, "no_match"),
    /// The passenger has `rail.face.max_per_user` faces already.
    FACE_LIMIT => (CONFLICT, "face_limit"),
}

/// `rht_…`: a rail robot's or store's access token, from a signed challenge.
pub const RAIL_TOKEN: SecretKind = SecretKind::new("rht_", "rat_");
/// `rhm_…`: a store staff's store token.
pub const STORE_TOKEN: SecretKind = SecretKind::new("rhm_", "stk_");

/// Every kind of secret declared here.
pub const SECRET_KINDS: &[SecretKind] = &[RAIL_TOKEN, STORE_TOKEN];
