//! Who is calling: users by short-lived JWT access tokens (HS256, signed
//! with a key kept in the database so every node verifies every token),
//! robots by their personal tokens. Passwords are Argon2id, hashed off the
//! async threads; an unknown email costs the same as a wrong password.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use relayhub_core::admission::Connection;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::identity::License;
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Fleet;
use crate::accounts::SignedIn;
use crate::model::{Robot, RobotStatus, Role, User};

pub use relayhub_core::password::{check_password, hash as hash_password, verify as verify_password};

/// What an access token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user's id.
    sub: String,
    /// Its license number.
    lic: String,
    role: String,
    iat: u64,
    exp: u64,
    iss: String,
}

const ISSUER: &str = "relayhub";

/// Signs an access token for `user` of `license`, valid for `ttl`.
pub fn access_token(key: &[u8], user: &User, license: &License, ttl: Duration) -> Result<String, ApiError> {
    let now = u64::try_from(Timestamp::now().millis() / 1000).unwrap_or(0);
    let claims = Claims {
        sub: user.id.to_string(),
        lic: license.number.to_string(),
        role: user.role.as_str().to_owned(),
        iat: now,
        exp: now + ttl.as_secs(),
        iss: ISSUER.to_owned(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key))
        .map_err(|_| ApiError::new(ErrorCode::INTERNAL, "signing an access token failed"))
}

/// The user id of a valid access token, and when the token expires.
pub(crate) fn verify_access(key: &[u8], token: &str) -> Result<(i64, Timestamp), ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.leeway = 5;
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation).map_err(|err| {
        let expired = matches!(err.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature);
        let message = if expired { "the access token expired; refresh it" } else { "the access token is not valid" };
        ApiError::new(ErrorCode::INVALID_TOKEN, message)
    })?;
    let id = data
        .claims
        .sub
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::INVALID_TOKEN, "the access token is not valid"))?;
    let expires_at =
        Timestamp::from_millis(i64::try_from(data.claims.exp).unwrap_or(i64::MAX / 1000).saturating_mul(1000));
    Ok((id, expires_at))
}

/// The credential after `Bearer ` (or `Token `, as InfluxDB clients send).
pub fn presented(headers: &HeaderMap, schemes: &[&str]) -> Result<String, ApiError> {
    let missing = || ApiError::new(ErrorCode::MISSING_TOKEN, "send the token as 'Authorization: Bearer <token>'");
    let header = headers.get(AUTHORIZATION).ok_or_else(missing)?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .ok_or_else(missing)
}

/// A signed-in, active user of an active license (`Authorization: Bearer
/// <access token>`). A deactivated user is out at once: the user is read
/// on every call.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub user: User,
    pub license: License,
}

impl UserAuth {
    /// Refuses anyone but an admin.
    pub fn admin(&self) -> Result<(), ApiError> {
        match self.user.role {
            Role::Admin => Ok(()),
            Role::User => Err(ApiError::new(ErrorCode::FORBIDDEN, "this needs an admin of the license")),
        }
    }
}

impl FromRequestParts<Fleet> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, fleet: &Fleet) -> Result<Self, ApiError> {
        let token = presented(&parts.headers, &["bearer"])?;
        let SignedIn { user, license, .. } = fleet.accounts.authenticate(&token).await?;
        Connection::of(parts).authenticated();
        Ok(UserAuth { user, license })
    }
}

/// An active robot of an active license, by its personal token
/// (`Authorization: Token …` or `Bearer …`).
#[derive(Debug, Clone)]
pub struct RobotAuth(pub Robot);

impl FromRequestParts<Fleet> for RobotAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, fleet: &Fleet) -> Result<Self, ApiError> {
        let token = presented(&parts.headers, &["token", "bearer"])?;
        let robot = fleet.robots.robot_by_token(Secret::new(token).hash()).await?;
        let robot = robot.filter(|r| r.status == RobotStatus::Active).ok_or_else(|| {
            ApiError::new(ErrorCode::INVALID_TOKEN, "the robot token is unknown, or its robot inactive or deleted")
        })?;
        if let Some(pk) = robot.license {
            let license = fleet.identity.license_by_pk(pk).await?;
            license
                .ok_or_else(|| ApiError::new(ErrorCode::INVALID_TOKEN, "the robot's license is gone"))?
                .ensure_active(Timestamp::now())?;
        }
        Connection::of(parts).authenticated();
        Ok(RobotAuth(robot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_and_wrong_ones_do_not() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), hash.clone()).await.unwrap());
        assert!(!verify_password("wrong horse".into(), hash).await.unwrap());
        assert!(!verify_password("x".into(), "not a hash".into()).await.unwrap());
    }
}
