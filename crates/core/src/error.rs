//! The one error shape of the HTTP API and the WebSocket `error` frames.
//!
//! Every failure a client can see is an [`ErrorCode`] — a stable snake_case
//! string with one HTTP status — plus a human message. Handlers return
//! [`ApiError`]; storage failures convert into it through one `From`, so no
//! handler maps a status by hand.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => ($status:ident, $code:literal), )*) => {
        /// Stable, documented error codes. Clients match on the string; never
        /// rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The snake_case string sent to clients.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }
        }
    };
}

error_codes! {
    /// The body or a frame is not valid JSON.
    MalformedJson => (BAD_REQUEST, "malformed_json"),
    /// A required header, query parameter or field is missing.
    MissingField => (BAD_REQUEST, "missing_field"),
    /// The request is not what this endpoint takes (e.g. not a WebSocket upgrade).
    BadRequest => (BAD_REQUEST, "bad_request"),
    /// No `Authorization: Bearer` header.
    MissingToken => (UNAUTHORIZED, "missing_token"),
    /// The bearer token is unknown or revoked.
    InvalidToken => (UNAUTHORIZED, "invalid_token"),
    /// The app API key is missing, unknown or revoked.
    InvalidApiKey => (UNAUTHORIZED, "invalid_api_key"),
    /// The license's expiry date has passed.
    LicenseExpired => (FORBIDDEN, "license_expired"),
    /// The device is bound to another license.
    DeviceBoundElsewhere => (FORBIDDEN, "device_bound_elsewhere"),
    /// The device has a secret and the connection did not present it, or
    /// presented another (`X-Device-Secret`); the connected device, if
    /// any, is not disturbed. The back office can reset it.
    InvalidDeviceSecret => (UNAUTHORIZED, "invalid_device_secret"),
    /// The license is `preregistered` and the back office has not bound
    /// this device id; nothing was bound.
    DeviceNotRegistered => (FORBIDDEN, "device_not_registered"),
    /// No such route.
    NotFound => (NOT_FOUND, "not_found"),
    /// No such license number.
    LicenseNotFound => (NOT_FOUND, "license_not_found"),
    /// No such device in this license.
    DeviceNotFound => (NOT_FOUND, "device_not_found"),
    /// No such message in this license.
    MessageNotFound => (NOT_FOUND, "message_not_found"),
    /// No such token or key.
    CredentialNotFound => (NOT_FOUND, "credential_not_found"),
    /// The route exists but not with this method.
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed"),
    /// The object already exists.
    AlreadyExists => (CONFLICT, "already_exists"),
    /// Binding one more device would exceed the license's `max_devices`.
    DeviceLimit => (CONFLICT, "device_limit"),
    /// The body or frame is larger than the configured limit.
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large"),
    /// A field has the wrong type or an invalid value.
    InvalidField => (UNPROCESSABLE_ENTITY, "invalid_field"),
    /// An idempotency key was reused for a different message.
    IdempotencyKeyReused => (UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    /// The device's queue holds its maximum of pending messages.
    QueueFull => (TOO_MANY_REQUESTS, "queue_full"),
    /// The storage backend cannot be reached; retry later.
    StorageUnavailable => (SERVICE_UNAVAILABLE, "storage_unavailable"),
    /// The server is shutting down; retry against another node or later.
    ShuttingDown => (SERVICE_UNAVAILABLE, "shutting_down"),
    /// Too many connections are waiting to show a credential (from this
    /// address, or in all); the connection was refused at once.
    Overloaded => (SERVICE_UNAVAILABLE, "overloaded"),
    /// The request did not arrive in time: a connection without a
    /// credential past `http.request_timeout`, or a body slower than
    /// `http.min_body_rate`; the connection is closed.
    RequestTimeout => (REQUEST_TIMEOUT, "request_timeout"),
    /// A bug on our side; the details are in the server log.
    Internal => (INTERNAL_SERVER_ERROR, "internal"),
    /// A WebSocket frame of a `type` this endpoint does not know.
    UnknownFrame => (BAD_REQUEST, "unknown_frame"),
    /// A binary WebSocket frame where JSON text is expected.
    UnsupportedFrame => (BAD_REQUEST, "unsupported_frame"),
    /// An acknowledgement for a message this device does not have.
    UnknownMessage => (NOT_FOUND, "unknown_message"),
    /// A settings write based on a version whose changes conflict with
    /// newer ones; the current document comes with the error.
    SettingsConflict => (CONFLICT, "settings_conflict"),
    /// No account was linked to settings in this license.
    AccountNotLinked => (NOT_FOUND, "account_not_linked"),
    /// An ID token that is not a signed JWT, or lacks a required claim.
    TokenMalformed => (UNAUTHORIZED, "token_malformed"),
    /// An ID token past its `exp`.
    TokenExpired => (UNAUTHORIZED, "token_expired"),
    /// An ID token issued for another client id (`aud`).
    TokenWrongAudience => (UNAUTHORIZED, "token_wrong_audience"),
    /// An ID token from an issuer that is not accepted (`iss`).
    TokenWrongIssuer => (UNAUTHORIZED, "token_wrong_issuer"),
    /// An ID token whose signature does not verify.
    TokenBadSignature => (UNAUTHORIZED, "token_bad_signature"),
    /// An ID token signed by a key (`kid`) the JWKS does not have.
    TokenUnknownKey => (UNAUTHORIZED, "token_unknown_key"),
    /// An ID token whose email is not verified.
    EmailUnverified => (UNAUTHORIZED, "email_unverified"),
    /// The feature needs configuration this server does not have.
    NotConfigured => (NOT_IMPLEMENTED, "not_configured"),
    /// The identity provider's signing keys cannot be fetched.
    JwksUnavailable => (SERVICE_UNAVAILABLE, "jwks_unavailable"),
    /// Signaling: the socket has not said who it is (`ADD_USER`) yet.
    NotRegistered => (FORBIDDEN, "not_registered"),
    /// Signaling: the frame names a user other than the socket's.
    WrongUser => (FORBIDDEN, "wrong_user"),
    /// Signaling: the frame's `userId` is not the signed-in user's id
    /// (`signal.require_user`); the frame had no effect.
    UserMismatch => (FORBIDDEN, "user_mismatch"),
    /// Signaling: the socket has added `signal.max_users_per_socket` users
    /// already; the `ADD_USER` had no effect.
    TooManyUsers => (CONFLICT, "too_many_users"),
    /// Signaling: the callee has no open socket.
    PeerUnavailable => (NOT_FOUND, "peer_unavailable"),
    /// Signaling: the callee is in, or being offered, another call.
    PeerBusy => (CONFLICT, "peer_busy"),
    /// Signaling: the caller is already in a call.
    AlreadyInCall => (CONFLICT, "already_in_call"),
    /// Signaling: the callee is calling the caller at the same moment; answer
    /// that call instead.
    Glare => (CONFLICT, "glare"),
    /// Signaling: there is no call for this frame (nothing to answer, or the
    /// call already ended).
    NoCall => (CONFLICT, "no_call"),
    /// Fleet: the email and password do not match a user (which of the two
    /// is wrong is not said).
    InvalidCredentials => (UNAUTHORIZED, "invalid_credentials"),
    /// Fleet: a refresh token that was already used: every token of its
    /// session is revoked (someone else may hold a copy).
    RefreshTokenReused => (UNAUTHORIZED, "refresh_token_reused"),
    /// The credential is valid but not enough for this (an admin's call).
    Forbidden => (FORBIDDEN, "forbidden"),
    /// Fleet: no such user in this license.
    UserNotFound => (NOT_FOUND, "user_not_found"),
    /// Fleet: no such robot, or not one this user may see.
    RobotNotFound => (NOT_FOUND, "robot_not_found"),
    /// Fleet: no pairing with this code.
    PairCodeNotFound => (NOT_FOUND, "pair_code_not_found"),
    /// Fleet: the pairing code's 15 minutes are over.
    PairCodeExpired => (GONE, "pair_code_expired"),
    /// Fleet: the pairing code was used already, or is taken.
    PairCodeUsed => (CONFLICT, "pair_code_used"),
    /// Fleet: polling faster than the `interval` it was given (RFC 8628).
    SlowDown => (TOO_MANY_REQUESTS, "slow_down"),
    /// Too many failed attempts from this user or address; see `Retry-After`.
    TooManyAttempts => (TOO_MANY_REQUESTS, "too_many_attempts"),
    /// Too many password checks (Argon2) are running and waiting on this
    /// node; nothing was checked, the attempt was not counted. Retry after
    /// `Retry-After`.
    PasswordChecksBusy => (SERVICE_UNAVAILABLE, "password_checks_busy"),
    /// Telemetry: a line of the body is not valid line protocol (the message
    /// names the first bad line); nothing of the body was stored.
    InvalidLineProtocol => (BAD_REQUEST, "invalid_line_protocol"),
    /// Telemetry: the write would take its robot past
    /// `fleet.telemetry.max_series_per_robot` distinct series (the message
    /// names a few of the new ones); nothing of the body was stored.
    TooManySeries => (UNPROCESSABLE_ENTITY, "too_many_series"),
    /// Telemetry: the license's store holds
    /// `fleet.telemetry.max_bytes_per_license` already; nothing of the body
    /// was stored. Space comes back as points pass their retention.
    TelemetryStoreFull => (CONFLICT, "telemetry_store_full"),
    /// A registered device still waits for an operator's approval.
    DevicePending => (FORBIDDEN, "device_pending"),
    /// A registered device was blocked by an operator.
    DeviceBlocked => (FORBIDDEN, "device_blocked"),
    /// A proxy target outside the public URL registered for the instance.
    TargetNotRegistered => (FORBIDDEN, "target_not_registered"),
    /// The device's instance has no public URL and no tunnel.
    InstanceUnknown => (NOT_FOUND, "instance_unknown"),
    /// The instance could not be reached (connection refused, reset, DNS).
    InstanceUnreachable => (BAD_GATEWAY, "instance_unreachable"),
    /// The instance did not answer within `registry.timeout`.
    InstanceTimeout => (GATEWAY_TIMEOUT, "instance_timeout"),
    /// Too many requests from one API key or address; wait `Retry-After`.
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited"),
    /// Rail: no store with this id in the license (or it was deleted).
    StoreNotFound => (NOT_FOUND, "store_not_found"),
    /// Rail: no item with this id in the license (or the caller's store).
    ItemNotFound => (NOT_FOUND, "item_not_found"),
    /// Rail: no task with this id for the caller.
    TaskNotFound => (NOT_FOUND, "task_not_found"),
    /// Rail: no ticket with this code in the license.
    TicketNotFound => (NOT_FOUND, "ticket_not_found"),
    /// Rail: the ticket was accepted already, by another robot or longer
    /// ago than `rail.ticket_recheck`; a ticket is accepted once.
    TicketUsed => (CONFLICT, "ticket_used"),
    /// Rail: the ticket is for another train than the robot's.
    TicketWrongTrain => (CONFLICT, "ticket_wrong_train"),
    /// Rail: the ticket is for another day (in `rail.time_zone`).
    TicketNotToday => (CONFLICT, "ticket_not_today"),
    /// Rail: a purchase would take an item's balance below zero; nothing
    /// was bought.
    InsufficientBalance => (CONFLICT, "insufficient_balance"),
    /// Rail: no engineer with this id in the license.
    EngineerNotFound => (NOT_FOUND, "engineer_not_found"),
    /// Rail: the challenge's nonce is unknown, used, expired or another's.
    NonceInvalid => (UNAUTHORIZED, "nonce_invalid"),
    /// Rail: the signature does not verify with the registered public key.
    SignatureInvalid => (UNAUTHORIZED, "signature_invalid"),
    /// Face: no enrolled face is within `rail.face.threshold`.
    NoMatch => (NOT_FOUND, "no_match"),
    /// Face: the passenger has `rail.face.max_per_user` faces already.
    FaceLimit => (CONFLICT, "face_limit"),
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
        Self::new(ErrorCode::InvalidField, message)
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
            ErrorCode::MissingToken | ErrorCode::InvalidToken | ErrorCode::RefreshTokenReused => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ErrorCode::StorageUnavailable
            | ErrorCode::ShuttingDown
            | ErrorCode::Overloaded
            | ErrorCode::PasswordChecksBusy => {
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
                ApiError::new(ErrorCode::StorageUnavailable, "storage is unavailable; retry shortly")
            }
            StoreError::Closed => ApiError::new(ErrorCode::ShuttingDown, "the server is shutting down; retry shortly"),
            StoreError::Internal(detail) => {
                // Logged once here, never shown: it may name tables or paths.
                tracing::error!(%detail, "storage error");
                ApiError::new(ErrorCode::Internal, "internal error; see the server log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_for_clients() {
        let doc = include_str!("../../../docs/protocol/errors.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(doc.contains(&row), "docs/protocol/errors.md lacks {row}");
        }
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate code {s}");
        }
    }
}
