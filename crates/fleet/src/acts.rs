//! The administrative acts on fleet users, written once: `relayhub user`,
//! the operator API and the license admins' `/api/users` call these, and
//! each is recorded in the audit log with who did it and from where.

use std::net::IpAddr;
use std::time::Duration;

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::identity::License;
use relayhub_core::operators::{Actor, Auditor};
use relayhub_core::password::{check_email, check_password};
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde_json::json;

use crate::Fleet;
use crate::auth::hash_password;
use crate::codes;
use crate::model::{NewUser, Role, User, UserPatch};

/// How long a password-reset link works.
pub const RESET_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Where a reset link's page is; the token follows as `?token=`.
pub const RESET_PAGE: &str = "/console/password-reset";

/// A one-time password-reset link, shown once.
#[derive(Debug)]
pub struct PasswordReset {
    pub token: Secret,
    pub expires_at: Timestamp,
}

impl PasswordReset {
    /// The console path the user opens (the operator puts the server's
    /// address in front: the server does not trust a request's `Host` to
    /// say it, or a forged one would send the link elsewhere).
    pub fn path(&self) -> String {
        format!("{RESET_PAGE}?token={}", self.token.expose())
    }
}

impl Fleet {
    /// A user of `license` in it, else `user_not_found` (a user of another
    /// license is not there to this one).
    pub async fn user_of(&self, license: &License, id: i64) -> Result<User, ApiError> {
        match self.users.user(id).await? {
            Some(user) if user.license == license.pk => Ok(user),
            _ => Err(ApiError::new(ErrorCode::USER_NOT_FOUND, format!("no user {id} in {}", license.number))),
        }
    }

    /// Adds a user to `license`. Without a password it has none that
    /// works until its first reset link is used.
    pub async fn add_user(
        &self,
        auditor: &Auditor,
        license: &License,
        email: &str,
        name: &str,
        role: Role,
        password: Option<String>,
    ) -> Result<User, ApiError> {
        let email = check_email(email)?;
        let name = name.trim();
        if name.chars().count() > 200 {
            return Err(ApiError::invalid_field("name: at most 200 characters"));
        }
        let password = match password {
            Some(password) => {
                check_password(&password)?;
                password
            }
            // Nobody knows it: the account opens only through a reset link.
            None => Secret::generate(codes::PASSWORD_RESET).expose().to_owned(),
        };
        let password_hash = hash_password(password).await?;
        let new = NewUser { license: license.pk, email, name: name.to_owned(), role, password_hash };
        let user = self.users.create_user(new).await?;
        let detail = json!({"email": user.email, "name": user.name, "role": user.role});
        auditor.record("user.create", Some(&license.number), Some(&user.id.to_string()), detail).await;
        Ok(user)
    }

    /// Changes the fields `patch` names; deactivating signs the user out.
    pub async fn change_user(
        &self,
        auditor: &Auditor,
        license: &License,
        id: i64,
        patch: UserPatch,
    ) -> Result<User, ApiError> {
        if let Some(name) = &patch.name
            && name.chars().count() > 200
        {
            return Err(ApiError::invalid_field("name: at most 200 characters"));
        }
        // The fields it names, and only those.
        let detail = serde_json::to_value(&patch).unwrap_or_default();
        let user = self.users.update_user(license.pk, id, patch).await?;
        auditor.record("user.update", Some(&license.number), Some(&id.to_string()), detail).await;
        Ok(user)
    }

    /// Sets a user's password; every session of the user ends.
    pub async fn change_password(
        &self,
        auditor: &Auditor,
        license: &License,
        user: &User,
        password: String,
    ) -> Result<(), ApiError> {
        check_password(&password)?;
        self.users.set_password(user.id, hash_password(password).await?).await?;
        auditor.record("user.password", Some(&license.number), Some(&user.id.to_string()), json!({})).await;
        Ok(())
    }

    /// A one-time link that lets the user set a new password (replacing
    /// the user's earlier link); using it ends the user's sessions.
    pub async fn password_reset(
        &self,
        auditor: &Auditor,
        license: &License,
        id: i64,
    ) -> Result<PasswordReset, ApiError> {
        let user = self.user_of(license, id).await?;
        let token = Secret::generate(codes::PASSWORD_RESET);
        let expires_at = Timestamp::now().plus(RESET_VALIDITY);
        self.users.add_password_reset(user.id, token.hash(), expires_at).await?;
        let detail = json!({"expires_at": expires_at});
        auditor.record("user.password_reset", Some(&license.number), Some(&user.id.to_string()), detail).await;
        Ok(PasswordReset { token, expires_at })
    }

    /// Records that `user` chose a new password through a reset link.
    pub async fn record_reset_used(&self, user: i64, address: Option<IpAddr>) {
        let license = match self.users.user(user).await {
            Ok(Some(found)) => self.identity.license_by_pk(found.license).await.ok().flatten(),
            _ => None,
        };
        let auditor = Auditor::new(self.audit.clone(), Actor::User(user), address);
        let number = license.as_ref().map(|l| &l.number);
        auditor.record("user.password_reset_used", number, Some(&user.to_string()), json!({})).await;
    }
}
