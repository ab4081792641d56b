//! Signed-in people, as every capability may see them: who an access token
//! belongs to, and whether that person may still be signed in.
//!
//! The users themselves (passwords, sessions, roles) belong to the fleet
//! capability; a capability that only needs to know *who is calling* (call
//! signaling) asks through [`Accounts`], which the server wires to the
//! fleet, so it never depends on the fleet's crate.

use std::collections::HashMap;

use async_trait::async_trait;
use axum::extract::Query;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Uri};

use crate::error::ApiError;
use crate::ids::LicensePk;
use crate::store::StoreResult;
use crate::time::Timestamp;

/// A signed-in user: an active user of an active license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's id.
    pub id: i64,
    pub license: LicensePk,
    /// The name on the account.
    pub name: String,
    /// An admin of the license (sees all of it), not only of what it owns.
    pub admin: bool,
    /// When the access token it was proven with stops being valid.
    pub expires_at: Timestamp,
}

/// Users and their access tokens.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// The account of a valid access token: refuses with 401
    /// `invalid_token` a token that is not valid, expired, or whose user is
    /// gone or deactivated, and with 403 `license_expired` past the
    /// license's expiry.
    async fn signed_in(&self, access_token: &str) -> Result<Account, ApiError>;
    /// Of these users, those that may no longer be signed in (deactivated
    /// or deleted).
    async fn signed_out(&self, users: &[i64]) -> StoreResult<Vec<i64>>;
    /// The account of a console session token (the web console's cookie):
    /// refuses with 401 `invalid_token` a session that is unknown, ended or
    /// expired, or whose user is gone or deactivated. The session itself
    /// is opened by whoever keeps the passwords (the fleet's sign-in page).
    async fn session(&self, token: &str) -> Result<Account, ApiError>;
    /// Ends a console session (signing out); an unknown token is no error.
    async fn close_session(&self, token: &str) -> Result<(), ApiError>;
}

/// The access token a WebSocket upgrade presents: `Authorization: Bearer
/// …`, else the query parameter `access_token` (browsers cannot set headers
/// on a WebSocket).
pub fn presented_access_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    header
        .or_else(|| Query::<HashMap<String, String>>::try_from_uri(uri).ok()?.0.remove("access_token"))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_token_comes_from_the_header_or_the_query() {
        let uri: Uri = "/ws/signal?access_token=q.t.s&api_key=k".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(presented_access_token(&headers, &uri).as_deref(), Some("q.t.s"));
        headers.insert(AUTHORIZATION, "Bearer h.t.s".parse().unwrap());
        assert_eq!(presented_access_token(&headers, &uri).as_deref(), Some("h.t.s"), "the header first");
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_access_token(&headers, &"/ws/signal".parse().unwrap()), None);
        assert_eq!(presented_access_token(&HeaderMap::new(), &"/x?access_token=".parse().unwrap()), None);
    }
}
