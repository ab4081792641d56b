//! The fleet's users as the rest of the server sees them
//! ([`Accounts`]): who an access token belongs to, and who may no longer be
//! signed in. [`crate::auth::UserAuth`] asks the same question the same way,
//! so a user refused by the fleet's API is refused everywhere.

use std::sync::Arc;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::capability::BuildError;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::identity::{Account, Accounts, IdentityStore, License};
use relayhub_core::secret::Secret;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use tokio::sync::OnceCell;

use crate::auth::verify_access;
use crate::model::{Role, User};
use crate::store::{SessionStore, UserStore};

/// The fleet's users, by access token.
pub struct FleetAccounts {
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn SessionStore>,
    identity: Arc<dyn IdentityStore>,
    key: OnceCell<Vec<u8>>,
}

/// A verified access token: its user, the license, and when it expires.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub license: License,
    pub expires_at: Timestamp,
}

impl FleetAccounts {
    /// On the backend's fleet stores.
    pub fn new(stores: &Stores) -> Result<Self, BuildError> {
        Ok(Self {
            users: stores.get()?,
            sessions: stores.get()?,
            identity: stores.identity.clone(),
            key: OnceCell::new(),
        })
    }

    /// The key access tokens are signed with, read (or made) once.
    pub async fn signing_key(&self) -> Result<Vec<u8>, ApiError> {
        let key = self.key.get_or_try_init(|| self.sessions.signing_key()).await?;
        Ok(key.clone())
    }

    /// The active user of an active license a valid access token names. A
    /// deactivated user is out at once: the user is read on every call.
    pub async fn authenticate(&self, token: &str) -> Result<SignedIn, ApiError> {
        let key = self.signing_key().await?;
        let (id, expires_at) = verify_access(&key, token)?;
        let gone = || ApiError::new(ErrorCode::INVALID_TOKEN, "the user no longer exists or was deactivated");
        let (user, license) = self.active(id).await?.ok_or_else(gone)?;
        Ok(SignedIn { user, license, expires_at })
    }

    /// User `id` with its license, if the user is active; refuses a license
    /// past its expiry.
    pub(crate) async fn active(&self, id: i64) -> Result<Option<(User, License)>, ApiError> {
        let Some(user) = self.users.user(id).await?.filter(|u| u.is_active) else { return Ok(None) };
        let Some(license) = self.identity.license_by_pk(user.license).await? else { return Ok(None) };
        license.ensure_active(Timestamp::now())?;
        Ok(Some((user, license)))
    }
}

fn account(user: User, license: &License, expires_at: Timestamp) -> Account {
    let admin = user.role == Role::Admin;
    Account { id: user.id, license: license.pk, name: user.name, admin, expires_at }
}

#[async_trait]
impl Accounts for FleetAccounts {
    async fn signed_in(&self, access_token: &str) -> Result<Account, ApiError> {
        let SignedIn { user, license, expires_at } = self.authenticate(access_token).await?;
        Ok(account(user, &license, expires_at))
    }

    async fn session(&self, token: &str) -> Result<Account, ApiError> {
        let refused = || ApiError::new(ErrorCode::INVALID_TOKEN, "the session ended or expired; sign in again");
        let (id, expires_at) =
            self.sessions.session_user(Secret::new(token).hash(), Timestamp::now()).await?.ok_or_else(refused)?;
        let (user, license) = self.active(id).await?.ok_or_else(refused)?;
        Ok(account(user, &license, expires_at))
    }

    async fn close_session(&self, token: &str) -> Result<(), ApiError> {
        self.sessions.end_session(Secret::new(token).hash()).await?;
        Ok(())
    }

    async fn signed_out(&self, users: &[i64]) -> StoreResult<Vec<i64>> {
        let mut out = Vec::new();
        for &id in users {
            if !self.users.user(id).await?.is_some_and(|u| u.is_active) {
                out.push(id);
            }
        }
        Ok(out)
    }
}
