//! Request authentication: the back-office bearer token and the app API key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use super::{ApiKey, IdentityStore, License};
use crate::admission::Connection;
use crate::error::{ApiError, ErrorCode};
use crate::secret::Secret;
use crate::time::Timestamp;

/// The license whose valid bearer token the request carries
/// (`Authorization: Bearer …`). Refuses 401 without one and 403
/// `license_expired` when the license has expired.
#[derive(Debug, Clone)]
pub struct LicenseAuth(pub License);

impl<S> FromRequestParts<S> for LicenseAuth
where
    S: Send + Sync,
    Arc<dyn IdentityStore>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Err(ApiError::new(
                ErrorCode::MISSING_TOKEN,
                "send the license token as 'Authorization: Bearer <token>'",
            ));
        }
        let token = crate::http::bearer(&parts.headers).ok_or_else(|| {
            ApiError::new(ErrorCode::MISSING_TOKEN, "the Authorization header must be 'Bearer <token>'")
        })?;
        let store = Arc::<dyn IdentityStore>::from_ref(state);
        let license = store
            .license_by_token(&Secret::new(token).hash())
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::INVALID_TOKEN, "the bearer token is unknown or revoked"))?;
        license.ensure_active(Timestamp::now())?;
        Connection::of(parts).authenticated();
        Ok(LicenseAuth(license))
    }
}

/// The valid app API key of a WebSocket upgrade: header `X-Api-Key`, or the
/// query parameter `api_key` for clients that cannot set headers.
#[derive(Debug, Clone)]
pub struct ApiKeyAuth(pub ApiKey);

impl<S> FromRequestParts<S> for ApiKeyAuth
where
    S: Send + Sync,
    Arc<dyn IdentityStore>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = presented_api_key(&parts.headers, &parts.uri).ok_or_else(missing_api_key)?;
        let store = Arc::<dyn IdentityStore>::from_ref(state);
        let key = check_api_key(store.as_ref(), &raw).await?;
        Connection::of(parts).authenticated();
        Ok(ApiKeyAuth(key))
    }
}

/// The API key a request presents: header `X-Api-Key`, else the query
/// parameter `api_key`.
pub fn presented_api_key(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned).or_else(|| {
        Query::<HashMap<String, String>>::try_from_uri(uri).ok().and_then(|Query(mut q)| q.remove("api_key"))
    })
}

/// The refusal of a request without an API key.
pub fn missing_api_key() -> ApiError {
    ApiError::new(ErrorCode::INVALID_API_KEY, "send the app API key as 'X-Api-Key' or '?api_key='")
}

/// Checks an app API key presented in clear text.
pub async fn check_api_key(store: &dyn IdentityStore, raw: &str) -> Result<ApiKey, ApiError> {
    let hash = Secret::new(raw.trim()).hash();
    let key = store.api_key_by_hash(&hash).await?;
    key.ok_or_else(|| ApiError::new(ErrorCode::INVALID_API_KEY, "the API key is unknown or revoked"))
}
