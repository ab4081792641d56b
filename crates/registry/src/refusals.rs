//! What the registry's stores answer when they refuse, written once for
//! every backend (which only store and fetch).

use std::fmt::Display;

use relayhub_core::error::ErrorCode;
use relayhub_core::store::StoreError;

pub fn no_registered_device(uuid: impl Display) -> StoreError {
    StoreError::rejected(ErrorCode::DEVICE_NOT_FOUND, format!("no registered device {uuid}"))
}
