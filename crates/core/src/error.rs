//! The one error shape of the HTTP API and the WebSocket `error` frames.
//!
//! Every failure a client can see is an [`ErrorCode`] — a stable snake_case
//! string with one HTTP status — plus a human message. Handlers return
//! [`ApiError`]; storage failures convert into it through one `From`, so no
//! handler maps a status by hand.

pub use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// A stable, documented error code: the snake_case string clients match
/// on, the one HTTP status it is answered with, and what it means. The
/// core declares the codes capabilities share (`ErrorCode::INVALID_FIELD`);
/// a capability declares its own with [`error_codes!`](crate::error_codes)
/// in its `codes` module and lists them in
/// [`Spec::ERROR_CODES`](crate::capability::Spec::ERROR_CODES), so adding
/// one touches no list outside it. Clients match on the string; never
/// rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    code: &'static str,
    status: u16,
    doc: &'static str,
}

impl ErrorCode {
    /// A code answered with `status`; `doc` says what it means (its doc
    /// comment, which docs/protocol/errors.md says in its own words).
    pub const fn new(code: &'static str, status: StatusCode, doc: &'static str) -> Self {
        Self { code, status: status.as_u16(), doc }
    }

    /// The snake_case string sent to clients.
    pub fn as_str(self) -> &'static str {
        self.code
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// What it means, for documentation.
    pub fn doc(self) -> &'static str {
        self.doc.trim()
    }
}

/// Declares error codes as constants, each `NAME => (STATUS, "code")` after
/// its doc comment, and `ALL`, the list of them (a capability's
/// [`Spec::ERROR_CODES`](crate::capability::Spec::ERROR_CODES)). Inside
/// `impl ErrorCode`, `impl;` first declares the core's shared ones.
#[macro_export]
macro_rules! error_codes {
    (@code $(#[doc = $doc:literal])* $name:ident $status:ident $code:literal) => {
        $(#[doc = $doc])*
        pub const $name: $crate::error::ErrorCode =
            $crate::error::ErrorCode::new($code, $crate::error::StatusCode::$status, concat!($($doc),*));
    };
    (impl; $( $(#[doc = $doc:literal])* $name:ident => ($status:ident, $code:literal), )*) => {
        $( $crate::error_codes!(@code $(#[doc = $doc])* $name $status $code); )*
        /// Every code the core declares, shared by the capabilities.
        pub const SHARED: &'static [$crate::error::ErrorCode] = &[$(Self::$name),*];
    };
    ($( $(#[doc = $doc:literal])* $name:ident => ($status:ident, $code:literal), )*) => {
        $( $crate::error_codes!(@code $(#[doc = $doc])* $name $status $code); )*
        /// Every code declared here.
        pub const ALL: &[$crate::error::ErrorCode] = &[$($name),*];
    };
}

impl ErrorCode {
    error_codes! { impl;
        /// The body or a frame is not valid JSON.
        MALFORMED_JSON => (BAD_REQUEST, "malformed_json"),
        /// A required header, query parameter or field is missing.
        MISSING_FIELD => (BAD_REQUEST, "missing_field"),
        /// The request is not what this endpoint takes (e.g. not a WebSocket upgrade).
        BAD_REQUEST => (BAD_REQUEST, "bad_request"),
        /// No `Authorization: Bearer` header.
        MISSING_TOKEN => (UNAUTHORIZED, "missing_token"),
        /// The bearer token is unknown or revoked.
        INVALID_TOKEN => (UNAUTHORIZED, "invalid_token"),
        /// The app API key is missing, unknown or revoked.
        INVALID_API_KEY => (UNAUTHORIZED, "invalid_api_key"),
        /// The license's expiry date has passed.
        LICENSE_EXPIRED => (FORBIDDEN, "license_expired"),
        /// An operator suspended the license; its data is kept.
        LICENSE_SUSPENDED => (FORBIDDEN, "license_suspended"),
        /// The device is bound to another license.
        DEVICE_BOUND_ELSEWHERE => (FORBIDDEN, "device_bound_elsewhere"),
        /// The device has a secret and the connection did not present it, or
        /// presented another (`X-Device-Secret`); the connected device, if
        /// any, is not disturbed. The back office can reset it.
        INVALID_DEVICE_SECRET => (UNAUTHORIZED, "invalid_device_secret"),
        /// The license is `preregistered` and the back office has not bound
        /// this device id; nothing was bound.
        DEVICE_NOT_REGISTERED => (FORBIDDEN, "device_not_registered"),
        /// No such route.
        NOT_FOUND => (NOT_FOUND, "not_found"),
        /// No such license number.
        LICENSE_NOT_FOUND => (NOT_FOUND, "license_not_found"),
        /// No such device in this license.
        DEVICE_NOT_FOUND => (NOT_FOUND, "device_not_found"),
        /// No such token or key.
        CREDENTIAL_NOT_FOUND => (NOT_FOUND, "credential_not_found"),
        /// The route exists but not with this method.
        METHOD_NOT_ALLOWED => (METHOD_NOT_ALLOWED, "method_not_allowed"),
        /// The object already exists.
        ALREADY_EXISTS => (CONFLICT, "already_exists"),
        /// Binding one more device would exceed the license's `max_devices`.
        DEVICE_LIMIT => (CONFLICT, "device_limit"),
        /// The body or frame is larger than the configured limit.
        PAYLOAD_TOO_LARGE => (PAYLOAD_TOO_LARGE, "payload_too_large"),
        /// A field has the wrong type or an invalid value.
        INVALID_FIELD => (UNPROCESSABLE_ENTITY, "invalid_field"),
        /// An idempotency key was reused for a different message.
        IDEMPOTENCY_KEY_REUSED => (UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
        /// The storage backend cannot be reached; retry later.
        STORAGE_UNAVAILABLE => (SERVICE_UNAVAILABLE, "storage_unavailable"),
        /// The server is shutting down; retry against another node or later.
        SHUTTING_DOWN => (SERVICE_UNAVAILABLE, "shutting_down"),
        /// Too many connections are waiting to show a credential (from this
        /// address, or in all); the connection was refused at once.
        OVERLOADED => (SERVICE_UNAVAILABLE, "overloaded"),
        /// The request did not arrive in time: a connection without a
        /// credential past `http.request_timeout`, or a body slower than
        /// `http.min_body_rate`; the connection is closed.
        REQUEST_TIMEOUT => (REQUEST_TIMEOUT, "request_timeout"),
        /// A bug on our side; the details are in the server log.
        INTERNAL => (INTERNAL_SERVER_ERROR, "internal"),
        /// A WebSocket frame of a `type` this endpoint does not know.
        UNKNOWN_FRAME => (BAD_REQUEST, "unknown_frame"),
        /// A binary WebSocket frame where JSON text is expected.
        UNSUPPORTED_FRAME => (BAD_REQUEST, "unsupported_frame"),
        /// An ID token that is not a signed JWT, or lacks a required claim.
        TOKEN_MALFORMED => (UNAUTHORIZED, "token_malformed"),
        /// An ID token past its `exp`.
        TOKEN_EXPIRED => (UNAUTHORIZED, "token_expired"),
        /// An ID token issued for another client id (`aud`).
        TOKEN_WRONG_AUDIENCE => (UNAUTHORIZED, "token_wrong_audience"),
        /// An ID token from an issuer that is not accepted (`iss`).
        TOKEN_WRONG_ISSUER => (UNAUTHORIZED, "token_wrong_issuer"),
        /// An ID token whose signature does not verify.
        TOKEN_BAD_SIGNATURE => (UNAUTHORIZED, "token_bad_signature"),
        /// An ID token signed by a key (`kid`) the JWKS does not have.
        TOKEN_UNKNOWN_KEY => (UNAUTHORIZED, "token_unknown_key"),
        /// An ID token whose email is not verified.
        EMAIL_UNVERIFIED => (UNAUTHORIZED, "email_unverified"),
        /// The identity provider's signing keys cannot be fetched.
        JWKS_UNAVAILABLE => (SERVICE_UNAVAILABLE, "jwks_unavailable"),
        /// Fleet: the email and password do not match a user (which of the two
        /// is wrong is not said).
        INVALID_CREDENTIALS => (UNAUTHORIZED, "invalid_credentials"),
        /// Fleet: a refresh token that was already used: every token of its
        /// session is revoked (someone else may hold a copy).
        REFRESH_TOKEN_REUSED => (UNAUTHORIZED, "refresh_token_reused"),
        /// The credential is valid but not enough for this (an admin's call).
        FORBIDDEN => (FORBIDDEN, "forbidden"),
        /// Fleet: no such user in this license.
        USER_NOT_FOUND => (NOT_FOUND, "user_not_found"),
        /// Fleet: no such robot, or not one this user may see.
        ROBOT_NOT_FOUND => (NOT_FOUND, "robot_not_found"),
        /// Too many failed attempts from this user or address; see `Retry-After`.
        TOO_MANY_ATTEMPTS => (TOO_MANY_REQUESTS, "too_many_attempts"),
        /// Too many password checks (Argon2) are running and waiting on this
        /// node; nothing was checked, the attempt was not counted. Retry after
        /// `Retry-After`.
        PASSWORD_CHECKS_BUSY => (SERVICE_UNAVAILABLE, "password_checks_busy"),
        /// Too many requests from one API key or address; wait `Retry-After`.
        RATE_LIMITED => (TOO_MANY_REQUESTS, "rate_limited"),
    }
}

/// The JSON body of every error: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `queue_full`.
    #[schema(example = "queue_full")]
    pub code: &'static str,
    /// Human-readable explanation; wording may change.
    pub message: String,
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds a client should wait before trying again (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    /// Says how long to wait before trying again.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::INVALID_FIELD, message)
    }

    /// The body as sent on the wire.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.as_str(), message: self.message.clone() } }
    }

    /// The status line this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        match self.code {
            ErrorCode::MISSING_TOKEN | ErrorCode::INVALID_TOKEN | ErrorCode::REFRESH_TOKEN_REUSED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorCode::STORAGE_UNAVAILABLE
            | ErrorCode::SHUTTING_DOWN
            | ErrorCode::OVERLOADED
            | ErrorCode::PASSWORD_CHECKS_BUSY => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after.unwrap_or(1)));
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Rejected(api) => api,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::new(ErrorCode::STORAGE_UNAVAILABLE, "storage is unavailable; retry shortly")
            }
            StoreError::Closed => ApiError::new(ErrorCode::SHUTTING_DOWN, "the server is shutting down; retry shortly"),
            StoreError::Internal(detail) => {
                // Logged once here, never shown: it may name tables or paths.
                tracing::error!(%detail, "storage error");
                ApiError::new(ErrorCode::INTERNAL, "internal error; see the server log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::SHARED {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate code {s}");
        }
    }
}
