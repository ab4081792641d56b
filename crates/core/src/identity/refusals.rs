//! What the identity stores answer when they refuse, written once for
//! every backend (which only store and fetch).

use std::fmt::Display;

use crate::error::ErrorCode;
use crate::store::StoreError;

pub fn license_exists(number: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::ALREADY_EXISTS, format!("license {number} already exists"))
}

pub fn no_license(number: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::LICENSE_NOT_FOUND, format!("no license {number}"))
}

pub fn no_api_key(id: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::CREDENTIAL_NOT_FOUND, format!("no API key {id}"))
}

pub fn no_token(id: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::CREDENTIAL_NOT_FOUND, format!("no token {id} in this license"))
}
