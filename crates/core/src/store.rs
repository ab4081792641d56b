//! What every storage backend reports back, whatever the capability.

use crate::error::{ApiError, ErrorCode};

/// A storage call's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A rule of the domain refused the call (queue full, device limit,
    /// unknown object…). Nothing was written.
    #[error("{0}")]
    Rejected(ApiError),
    /// The database cannot be reached or is busy past its timeout. Nothing
    /// was acknowledged; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store has been shut down.
    #[error("storage is closed")]
    Closed,
    /// Anything else: a bug or a corrupt database.
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Shorthand for a domain refusal.
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        StoreError::Rejected(ApiError::new(code, message))
    }

    /// The refusal's code, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            StoreError::Rejected(api) => Some(api.code),
            _ => None,
        }
    }
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A page request as the seeds use it: `page` from 1, `size` at most 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub size: u32,
}

impl PageRequest {
    pub const MAX_SIZE: u32 = 100;
    /// The last page number accepted (a 32-bit signed integer, as the
    /// document says).
    pub const MAX_PAGE: u32 = i32::MAX as u32;

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page.saturating_sub(1)) * u64::from(self.size)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { page: 1, size: Self::MAX_SIZE }
    }
}

/// One page of results and the total count.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}
