//! What the fleet's stores answer when they refuse, written once for every
//! backend (which only store and fetch).

use std::fmt::Display;

use relayhub_core::error::ErrorCode;
use relayhub_core::store::StoreError;

use crate::codes;

pub fn user_exists(email: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::ALREADY_EXISTS, format!("a user with the email {email} exists"))
}

pub fn no_user(id: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::USER_NOT_FOUND, format!("no user {id} in this license"))
}

pub fn no_robot(id: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::ROBOT_NOT_FOUND, format!("no robot {id} of yours"))
}

pub fn no_pairing() -> StoreError {
    StoreError::rejected(codes::PAIR_CODE_NOT_FOUND, "no pairing with this code")
}

pub fn pairing_code_taken() -> StoreError {
    StoreError::rejected(codes::PAIR_CODE_USED, "this pairing code is taken")
}
