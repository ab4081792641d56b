//! What the rail's and the face service's stores answer when they refuse,
//! and the limits they hold inside their transactions, written once for
//! every backend (which only store and fetch).

use std::fmt::Display;

use relayhub_core::error::ErrorCode;
use relayhub_core::store::StoreError;

use crate::codes;

pub fn no_passenger(id: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::USER_NOT_FOUND, format!("no passenger {id}"))
}

pub fn no_store(id: impl Display) -> StoreError {
    StoreError::rejected(codes::STORE_NOT_FOUND, format!("no store {id}"))
}

pub fn no_item(id: impl Display) -> StoreError {
    StoreError::rejected(codes::ITEM_NOT_FOUND, format!("no item {id}"))
}

pub fn no_task(id: impl Display) -> StoreError {
    StoreError::rejected(codes::TASK_NOT_FOUND, format!("no task {id} in this store"))
}

pub fn no_ticket() -> StoreError {
    StoreError::rejected(codes::TICKET_NOT_FOUND, "no ticket with this code")
}

pub fn no_engineer(id: impl Display) -> StoreError {
    StoreError::rejected(codes::ENGINEER_NOT_FOUND, format!("no engineer {id}"))
}

pub fn engineer_exists(login: &str) -> StoreError {
    StoreError::rejected(ErrorCode::ALREADY_EXISTS, format!("an engineer {login:?} exists"))
}

pub fn card_registered() -> StoreError {
    StoreError::rejected(ErrorCode::ALREADY_EXISTS, "this card is registered already")
}

/// Whether a passenger with `enrolled` faces may enrol one more
/// (`rail.face.max_per_user`).
pub fn check_face_limit(enrolled: i64, max_per_user: u32) -> Result<(), StoreError> {
    if enrolled >= i64::from(max_per_user) {
        return Err(StoreError::rejected(
            codes::FACE_LIMIT,
            format!("the passenger has {enrolled} faces enrolled; forget them first"),
        ));
    }
    Ok(())
}
