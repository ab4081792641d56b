//! A license's fleet users in the operator API,
//! `/api/admin/v1/licenses/{number}/users`: listed, created, changed
//! (deactivating is `{"is_active": false}`), and given a one-time
//! password-reset link — through the same acts as `relayhub user`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use relayhub_core::error::{ApiError, ErrorBody};
use relayhub_core::http::{Json, Path};
use relayhub_core::operators::{Auditor, OperatorAuth};
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Fleet;
use crate::api::users::UserList;
use crate::model::{Role, UserPatch, UserView};

/// A user to add to a license.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(min_length = 3, max_length = 254, example = "owner@example.com")]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// `user` when absent.
    pub role: Option<Role>,
    /// 8–200 characters; when absent the user gets no password that
    /// works, and the answer carries a reset link to choose one with.
    #[schema(min_length = 8, max_length = 200)]
    pub password: Option<String>,
}

/// A one-time link that lets a user choose a new password. Shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetLink {
    /// The console page to open, with its token: put the server's public
    /// address in front of it (`https://hub.example.com` + path).
    #[schema(example = "/console/password-reset?token=rhw_…")]
    pub path: String,
    /// It stops working then, or once used.
    pub expires_at: Timestamp,
}

/// A user just created.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    /// Present when no password was given: how the user sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_reset: Option<ResetLink>,
}

fn link(reset: &crate::acts::PasswordReset) -> ResetLink {
    ResetLink { path: reset.path(), expires_at: reset.expires_at }
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/licenses/{number}/users",
    operation_id = "admin_list_users",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The license's fleet users, by id", body = UserList),
        (status = 404, description = "No such license (`license_not_found`)", body = ErrorBody),
    )
)]
pub async fn list_users(
    State(fleet): State<Fleet>,
    _: OperatorAuth,
    Path(raw): Path<String>,
) -> Result<Json<UserList>, ApiError> {
    let license = fleet.license_named(&raw).await?;
    let users = fleet.users.users(license.pk).await?;
    Ok(Json(UserList { users: users.iter().map(|u| u.view(&license.number)).collect() }))
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/licenses/{number}/users",
    operation_id = "admin_create_user",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created; a reset link (shown only here) when no password was given", body = CreatedUser),
        (status = 404, description = "No such license (`license_not_found`)", body = ErrorBody),
        (status = 409, description = "The email is taken on this server (`already_exists`)", body = ErrorBody),
        (status = 503, description = "Too many password hashes at once (`password_checks_busy`)", body = ErrorBody),
    )
)]
pub async fn create_user(
    State(fleet): State<Fleet>,
    operator: OperatorAuth,
    parts: Parts,
    Path(raw): Path<String>,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let license = fleet.license_named(&raw).await?;
    let auditor = Auditor::operator(fleet.audit.clone(), operator, &parts);
    let without_password = body.password.is_none();
    let role = body.role.unwrap_or(Role::User);
    let user = fleet.add_user(&auditor, &license, &body.email, &body.name, role, body.password).await?;
    let password_reset =
        if without_password { Some(link(&fleet.password_reset(&auditor, &license, user.id).await?)) } else { None };
    Ok((StatusCode::CREATED, Json(CreatedUser { user: user.view(&license.number), password_reset })))
}

#[utoipa::path(
    patch,
    path = "/api/admin/v1/licenses/{number}/users/{id}",
    operation_id = "admin_update_user",
    tag = "admin",
    security(("operator" = [])),
    params(
        ("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$"),
        ("id" = i64, Path, description = "The user's id", minimum = 1),
    ),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user as it is now; `is_active: false` signed it out", body = UserView),
        (status = 404, description = "No such license (`license_not_found`) or user in it (`user_not_found`)", body = ErrorBody),
    )
)]
pub async fn update_user(
    State(fleet): State<Fleet>,
    operator: OperatorAuth,
    parts: Parts,
    Path((raw, id)): Path<(String, i64)>,
    Json(patch): Json<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    let license = fleet.license_named(&raw).await?;
    let auditor = Auditor::operator(fleet.audit.clone(), operator, &parts);
    let user = fleet.change_user(&auditor, &license, id, patch).await?;
    Ok(Json(user.view(&license.number)))
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/licenses/{number}/users/{id}/password-reset",
    operation_id = "admin_reset_user_password",
    tag = "admin",
    security(("operator" = [])),
    params(
        ("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$"),
        ("id" = i64, Path, description = "The user's id", minimum = 1),
    ),
    responses(
        (status = 201, description = "A new one-time link (an earlier one stops working); shown only here", body = ResetLink),
        (status = 404, description = "No such license (`license_not_found`) or user in it (`user_not_found`)", body = ErrorBody),
    )
)]
pub async fn reset_password(
    State(fleet): State<Fleet>,
    operator: OperatorAuth,
    parts: Parts,
    Path((raw, id)): Path<(String, i64)>,
) -> Result<(StatusCode, Json<ResetLink>), ApiError> {
    let license = fleet.license_named(&raw).await?;
    let auditor = Auditor::operator(fleet.audit.clone(), operator, &parts);
    let reset = fleet.password_reset(&auditor, &license, id).await?;
    Ok((StatusCode::CREATED, Json(link(&reset))))
}
