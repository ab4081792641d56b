//! Sessions (login, refresh, logout) and users.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use relayhub_core::admission::Connection;
use relayhub_core::attempts;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{Json, Path, check_length, client_ip};
use relayhub_core::operators::{Actor, Auditor};
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Fleet;
use crate::auth::{UserAuth, access_token, verify_password};
use crate::codes;
use crate::model::{User, UserPatch, UserView};
use crate::rules::Rotation;

/// `POST /api/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login {
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 200)]
    pub password: String,
}

/// A session's tokens: a short-lived access token (a JWT) and the refresh
/// token that gets the next pair (once).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: u64,
}

/// A refresh token, to spend or to end.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub refresh_token: String,
}

/// A license's users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

impl Fleet {
    /// A new pair of tokens for `user`: a new session chain, or the next
    /// token of `chain`'s (already stored by the rotation).
    async fn tokens(&self, auth: &UserAuth, refresh: Secret, new_chain: bool) -> Result<TokenPair, ApiError> {
        let key = self.signing_key().await?;
        let ttl = self.config.access_ttl;
        let access = access_token(&key, &auth.user, &auth.license, ttl)?;
        if new_chain {
            let expires = Timestamp::now().plus(self.config.refresh_ttl);
            self.sessions.start_session(auth.user.id, refresh.hash(), expires).await?;
        }
        Ok(TokenPair {
            access_token: access,
            refresh_token: refresh.expose().to_owned(),
            token_type: "bearer",
            expires_in: ttl.as_secs(),
        })
    }

    /// The user an email and password prove, if both the user and its
    /// license may sign in. An unknown email and a wrong password get the
    /// same answer, in the same time; repeated failures for one email or
    /// from one address are refused for a while (429 with `Retry-After`).
    pub async fn verify_login(
        &self,
        email: &str,
        password: String,
        from: Option<std::net::IpAddr>,
    ) -> Result<UserAuth, ApiError> {
        let email = email.trim().to_lowercase();
        let keys = [format!("email:{email}"), attempts::address(from)];
        // Counted before the check: simultaneous guesses cannot all pass.
        let attempt = self.logins.reserve(&keys)?;
        let user = match self.users.user_by_email(&email).await {
            Ok(user) => user,
            Err(err) => {
                attempt.refund();
                return Err(err.into());
            }
        };
        let hash = match &user {
            Some(user) => Ok(user.password_hash.clone()),
            // Verify against a hash anyway: an unknown email takes as long.
            None => self.dummy_hash().await,
        };
        let matches = match hash {
            Ok(hash) => verify_password(password, hash).await,
            Err(err) => Err(err),
        };
        // Nothing was checked (busy, storage): the attempt is given back.
        let matches = match matches {
            Ok(matches) => matches,
            Err(err) => {
                attempt.refund();
                return Err(err);
            }
        };
        let Some(user) = user.filter(|u| matches && u.is_active) else {
            return Err(invalid_credentials());
        };
        attempt.refund();
        self.signed_in(user).await
    }

    /// The user with its license, if both may sign in.
    async fn signed_in(&self, user: User) -> Result<UserAuth, ApiError> {
        let license = self.identity.license_by_pk(user.license).await?.ok_or_else(invalid_credentials)?;
        license.ensure_active(Timestamp::now())?;
        Ok(UserAuth { user, license })
    }
}

/// Refuses a field outside 1-`max` characters, as the document says.
fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::INVALID_CREDENTIALS, "the email or the password is wrong")
}

/// Signs a user in (seed 002): an access token and a refresh token.
///
/// An unknown email and a wrong password get the same answer, in the same
/// time. Repeated failures for one email or from one address are refused
/// for a while (429 with `Retry-After`): each attempt is counted before
/// its password is checked, so simultaneous guesses cannot pass the limit.
/// Only a few passwords are checked at once per node; past a short queue,
/// 503 `password_checks_busy` with `Retry-After`.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    operation_id = "login",
    tag = "users",
    request_body = Login,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this email or from this address (`too_many_attempts`), counted before the password is checked; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password checks at once on this node (`password_checks_busy`); not counted; see Retry-After", body = ErrorBody),
    )
)]
pub async fn login(
    State(fleet): State<Fleet>,
    parts: Parts,
    Json(body): Json<Login>,
) -> Result<Json<TokenPair>, ApiError> {
    check_length("email", &body.email, 1, 254)?;
    check_length("password", &body.password, 1, 200)?;
    let auth = fleet.verify_login(&body.email, body.password, client_ip(&parts)).await?;
    Connection::of(&parts).authenticated();
    Ok(Json(fleet.tokens(&auth, Secret::generate(codes::REFRESH_TOKEN), true).await?))
}

/// Spends a refresh token for a new pair (rotation). A refresh token works
/// once: presenting a spent one ends the whole session, in case it was
/// stolen (`refresh_token_reused`).
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    operation_id = "refresh",
    tag = "users",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The next pair", body = TokenPair),
        (status = 401, description = "Unknown, expired or revoked (`invalid_token`), or spent before (`refresh_token_reused`)", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(fleet): State<Fleet>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    check_length("refresh_token", &body.refresh_token, 1, 200)?;
    let invalid = || ApiError::new(ErrorCode::INVALID_TOKEN, "the refresh token is unknown, expired or revoked");
    let next = Secret::generate(codes::REFRESH_TOKEN);
    let now = Timestamp::now();
    let expires = now.plus(fleet.config.refresh_ttl);
    let rotation = fleet.sessions.rotate(Secret::new(body.refresh_token).hash(), next.hash(), now, expires).await?;
    match rotation {
        Some(Rotation::Rotate { user_id, .. }) => {
            let user = fleet.users.user(user_id).await?.filter(|u| u.is_active).ok_or_else(invalid)?;
            let auth = fleet.signed_in(user).await?;
            Ok(Json(fleet.tokens(&auth, next, false).await?))
        }
        Some(Rotation::Reused { .. }) => Err(ApiError::new(
            ErrorCode::REFRESH_TOKEN_REUSED,
            "this refresh token was used before: the session is ended; sign in again",
        )),
        Some(Rotation::Refused) | None => Err(invalid()),
    }
}

/// Signs out: the session the refresh token belongs to ends (every token
/// rotated from the same login).
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    operation_id = "logout",
    tag = "users",
    request_body = RefreshRequest,
    responses((status = 204, description = "Signed out (also when the token was unknown)"))
)]
pub async fn logout(State(fleet): State<Fleet>, Json(body): Json<RefreshRequest>) -> Result<StatusCode, ApiError> {
    check_length("refresh_token", &body.refresh_token, 1, 200)?;
    fleet.sessions.end_session(Secret::new(body.refresh_token).hash()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/api/users/me",
    operation_id = "get_me",
    tag = "users",
    responses((status = 200, description = "The user", body = UserView)),
    security(("user" = []))
)]
pub async fn me(auth: UserAuth) -> Json<UserView> {
    Json(auth.user.view(&auth.license.number))
}

/// The license's users (admins).
#[utoipa::path(
    get,
    path = "/api/users",
    operation_id = "list_users",
    tag = "users",
    responses((status = 200, description = "The license's users, by id", body = UserList)),
    security(("user" = []))
)]
pub async fn list(State(fleet): State<Fleet>, auth: UserAuth) -> Result<Json<UserList>, ApiError> {
    auth.admin()?;
    let users = fleet.users.users(auth.license.pk).await?;
    Ok(Json(UserList { users: users.iter().map(|u| u.view(&auth.license.number)).collect() }))
}

/// Changes a user of the license (admins): `name`, `role`, `is_active`. A
/// deactivated user is signed out at once.
#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    operation_id = "update_user",
    tag = "users",
    params(("id" = i64, Path, description = "The user's id", minimum = 1)),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user as it is now", body = UserView),
        (status = 404, description = "No such user in this license", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn update(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    parts: Parts,
    Path(id): Path<i64>,
    Json(patch): Json<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    auth.admin()?;
    let auditor = Auditor::new(fleet.audit.clone(), Actor::User(auth.user.id), client_ip(&parts));
    let user = fleet.change_user(&auditor, &auth.license, id, patch).await?;
    Ok(Json(user.view(&auth.license.number)))
}
