//! `/api/users/me/tokens`: a user's read tokens (`rhq_…`), long-lived and
//! read-only, for dashboards: a Grafana data source sends one to the
//! Prometheus API and sees what the user sees (an admin's, the license's
//! robots). Made only by a signed-in user (never with a read token), shown
//! once, kept as a hash, listed without secrets, revoked at once.

use axum::extract::State;
use axum::http::StatusCode;
use relayhub_core::error::{ApiError, ErrorBody};
use relayhub_core::http::{Json, Path, check_length};
use relayhub_core::identity::{CredentialInfo, NewCredential};
use relayhub_core::secret::{Secret, public_id};
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Fleet;
use crate::auth::UserAuth;
use crate::codes::READ_TOKEN;

/// Live read tokens one user may hold: enough for every dashboard, and a
/// bound on what one account can make the server keep.
pub const MAX_READ_TOKENS: usize = 50;

/// A read token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReadToken {
    /// What it is for (`grafana`).
    #[schema(min_length = 1, max_length = 200, example = "grafana")]
    pub name: String,
}

/// A read token just made: its secret is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedReadToken {
    /// Its public id (to list and revoke it by).
    pub id: String,
    pub name: String,
    /// `rhq_…`: send it as `Authorization: Bearer`.
    pub token: String,
}

/// A user's read tokens, never their secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadTokenList {
    pub tokens: Vec<CredentialInfo>,
}

#[utoipa::path(
    post,
    path = "/api/users/me/tokens",
    operation_id = "create_read_token",
    tag = "users",
    request_body = NewReadToken,
    responses(
        (status = 201, description = "Made; the token is shown only here", body = IssuedReadToken),
        (status = 422, description = "No name, or the user holds 50 live read tokens already", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn create(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    Json(body): Json<NewReadToken>,
) -> Result<(StatusCode, Json<IssuedReadToken>), ApiError> {
    check_length("name", &body.name, 1, 200)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid_field("name: a name to tell the token by (grafana)"));
    }
    let live = fleet.users.read_tokens(auth.user.id).await?.iter().filter(|t| t.revoked_at.is_none()).count();
    if live >= MAX_READ_TOKENS {
        return Err(ApiError::invalid_field(format!(
            "a user holds at most {MAX_READ_TOKENS} live read tokens; revoke one first"
        )));
    }
    let secret = Secret::generate(READ_TOKEN);
    let id = public_id(READ_TOKEN);
    let name = body.name.trim().to_owned();
    let stored =
        NewCredential { id: id.clone(), hash: secret.hash(), name: name.clone(), created_at: Timestamp::now() };
    fleet.users.add_read_token(auth.user.id, stored).await?;
    Ok((StatusCode::CREATED, Json(IssuedReadToken { id, name, token: secret.expose().to_owned() })))
}

#[utoipa::path(
    get,
    path = "/api/users/me/tokens",
    operation_id = "list_read_tokens",
    tag = "users",
    responses((status = 200, description = "The user's read tokens, revoked ones too", body = ReadTokenList)),
    security(("user" = []))
)]
pub async fn list(State(fleet): State<Fleet>, auth: UserAuth) -> Result<Json<ReadTokenList>, ApiError> {
    Ok(Json(ReadTokenList { tokens: fleet.users.read_tokens(auth.user.id).await? }))
}

#[utoipa::path(
    delete,
    path = "/api/users/me/tokens/{token_id}",
    operation_id = "revoke_read_token",
    tag = "users",
    params(("token_id" = String, Path, description = "The token's id (`rqt_…`)", max_length = 64)),
    responses(
        (status = 204, description = "Revoked: it stops working at once"),
        (status = 404, description = "No such token of this user (`credential_not_found`)", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn revoke(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_length("token_id", &id, 1, 64)?;
    fleet.users.revoke_read_token(auth.user.id, &id, Timestamp::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
