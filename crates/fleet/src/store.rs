//! What the fleet needs from storage, in small traits per concern. The
//! decisions are [`crate::rules`]'; backends load, ask, and write.

use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::bus::Topic;
use relayhub_core::identity::{CredentialInfo, NewCredential};
use relayhub_core::ids::LicensePk;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;

use crate::model::{NewPairing, NewUser, Pairing, Robot, RobotPatch, User, UserPatch};
use crate::rules::Rotation;

/// What the fleet announces after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetEvent {
    /// A robot's token, status or existence changed: whatever a node keeps
    /// of it (its token) must be read again.
    RobotChanged { robot: i64 },
}

impl Topic for FleetEvent {
    const NAME: &'static str = "fleet";

    fn encode(&self) -> Option<String> {
        match self {
            FleetEvent::RobotChanged { robot } => Some(format!("r{robot}")),
        }
    }

    fn decode(wire: &str) -> Option<Self> {
        let robot = wire.strip_prefix('r')?.parse().ok()?;
        Some(FleetEvent::RobotChanged { robot })
    }
}

/// Users.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// `already_exists` when the email is taken (on the whole server).
    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user(&self, id: i64) -> StoreResult<Option<User>>;
    /// By email, lowercase.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// A license's users, by id.
    async fn users(&self, license: LicensePk) -> StoreResult<Vec<User>>;
    /// `user_not_found` unless the user is this license's. Deactivating a
    /// user ends its sessions.
    async fn update_user(&self, license: LicensePk, id: i64, patch: UserPatch) -> StoreResult<User>;
    /// A new password hash; every session of the user ends.
    async fn set_password(&self, id: i64, password_hash: String) -> StoreResult<()>;
    /// A password-reset link for `user` (its secret's hash), valid until
    /// `expires_at`; it replaces the user's earlier link.
    async fn add_password_reset(&self, user: i64, token: SecretHash, expires_at: Timestamp) -> StoreResult<()>;
    /// Whether a reset link is known and valid at `now` (asked before a
    /// password is hashed for it, so a stranger's guesses cost no Argon2).
    async fn password_reset_valid(&self, token: SecretHash, now: Timestamp) -> StoreResult<bool>;
    /// Spends a reset link still valid at `now`: the user's password
    /// becomes `password_hash` and every session of the user ends, at once
    /// with the link forgotten. `None` for an unknown, spent or expired one.
    async fn use_password_reset(
        &self,
        token: SecretHash,
        password_hash: String,
        now: Timestamp,
    ) -> StoreResult<Option<i64>>;
    /// Deletes a license's users with their sessions, reset links and read
    /// tokens, and its robots (their telemetry gone first), in one commit.
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()>;
    /// A new read token of `user` (its secret's hash only).
    async fn add_read_token(&self, user: i64, token: NewCredential) -> StoreResult<()>;
    /// A user's read tokens, revoked ones too, oldest first.
    async fn read_tokens(&self, user: i64) -> StoreResult<Vec<CredentialInfo>>;
    /// `credential_not_found` unless the token is the user's.
    async fn revoke_read_token(&self, user: i64, id: &str, at: Timestamp) -> StoreResult<()>;
    /// The user of a valid (unrevoked) read token.
    async fn user_by_read_token(&self, hash: &SecretHash) -> StoreResult<Option<i64>>;
}

/// User sessions: chains of single-use refresh tokens, and the key access
/// tokens are signed with.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// A new session (a chain) with its first refresh token.
    async fn start_session(&self, user: i64, token: SecretHash, expires_at: Timestamp) -> StoreResult<()>;
    /// Spends `token` as [`crate::rules::rotation`] decides: on `Rotate`,
    /// `next` joins the chain; on `Reused`, the chain ends. `None` for an
    /// unknown token.
    async fn rotate(
        &self,
        token: SecretHash,
        next: SecretHash,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Option<Rotation>>;
    /// The user of the session `token` opens, and when it expires, without
    /// spending it: the console's cookie, which many requests present at
    /// once. `None` when it is unknown, spent, revoked or expired.
    async fn session_user(&self, token: SecretHash, now: Timestamp) -> StoreResult<Option<(i64, Timestamp)>>;
    /// Ends the session `token` belongs to; `false` if it is unknown.
    async fn end_session(&self, token: SecretHash) -> StoreResult<bool>;
    /// The key access tokens are signed with: made once, shared by every
    /// node of the database.
    async fn signing_key(&self) -> StoreResult<Vec<u8>>;
}

/// Robots and their pairing.
#[async_trait]
pub trait RobotStore: Send + Sync + 'static {
    /// A pending robot with its pairing; `pair_code_used` when the code is
    /// taken by a pairing still in use.
    async fn start_pairing(&self, pairing: NewPairing) -> StoreResult<Robot>;
    async fn pairing(&self, code: &str) -> StoreResult<Option<Pairing>>;
    /// Confirms a pairing as [`crate::rules::confirm`] decides: the robot
    /// joins `user`'s license, owned by it, `active`.
    async fn confirm_pairing(&self, code: &str, user: &User, now: Timestamp) -> StoreResult<Robot>;
    /// Gives the confirmed robot its token (by hash), once: `false` if it
    /// had it already.
    async fn deliver_token(&self, code: &str, token: SecretHash) -> StoreResult<bool>;
    /// A license's robots (of one owner, or all), by id.
    async fn robots(&self, license: LicensePk, owner: Option<i64>) -> StoreResult<Vec<Robot>>;
    async fn robot(&self, license: LicensePk, id: i64) -> StoreResult<Option<Robot>>;
    /// `robot_not_found` unless it is this license's.
    async fn update_robot(&self, license: LicensePk, id: i64, patch: RobotPatch) -> StoreResult<Robot>;
    async fn delete_robot(&self, license: LicensePk, id: i64) -> StoreResult<()>;
    /// The robot whose token has this hash.
    async fn robot_by_token(&self, token: SecretHash) -> StoreResult<Option<Robot>>;
    /// Forgets pairings past their time by `keep`: unconfirmed robots go,
    /// confirmed ones keep only their robot. Returns how many.
    async fn sweep_pairings(&self, now: Timestamp, keep: Duration) -> StoreResult<u64>;
}
