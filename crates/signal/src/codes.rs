//! The stable strings only call signaling answers with: its error codes
//! (the shared ones are the core's `ErrorCode::…`).
//! The server's test holds every capability's codes to be unique and listed
//! in docs/protocol/errors.md.

relayhub_core::error_codes! {
    /// The socket has not said who it is (`ADD_USER`) yet.
    NOT_REGISTERED => (FORBIDDEN, "not_registered"),
    /// The frame names a user other than the socket's.
    WRONG_USER => (FORBIDDEN, "wrong_user"),
    /// The frame's `userId` is not the signed-in user's id
    /// (`signal.require_user`); the frame had no effect.
    USER_MISMATCH => (FORBIDDEN, "user_mismatch"),
    /// The socket has added `signal.max_users_per_socket` users
    /// already; the `ADD_USER` had no effect.
    TOO_MANY_USERS => (CONFLICT, "too_many_users"),
    /// The callee has no open socket.
    PEER_UNAVAILABLE => (NOT_FOUND, "peer_unavailable"),
    /// The callee is in, or being offered, another call.
    PEER_BUSY => (CONFLICT, "peer_busy"),
    /// The caller is already in a call.
    ALREADY_IN_CALL => (CONFLICT, "already_in_call"),
    /// The callee is calling the caller at the same moment; answer
    /// that call instead.
    GLARE => (CONFLICT, "glare"),
    /// There is no call for this frame (nothing to answer, or the
    /// call already ended).
    NO_CALL => (CONFLICT, "no_call"),
}
