//! `/api/admin/v1`: licenses, their tokens, app keys and the audit log,
//! for an operator's token. Licenses are addressed by number; changes are
//! `PATCH` with the fields to change.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{Json, PageParams, Path, Query, check_length};
use relayhub_core::identity::{BindingPolicy, CredentialInfo, LicenseUpdate, LicenseView, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::license_data::Usage;
use relayhub_core::operators::{AuditEntry, AuditFilter, Auditor, Operator, OperatorAuth, OperatorToken};
use relayhub_core::store::PageRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::Admin;
use crate::acts::{Acts, scope_numbers};
use crate::rules::{self, Expires};

mod operators;
pub use operators::*;

impl Admin {
    /// The acts, done by `operator` from the request's client.
    pub(crate) fn acts(&self, operator: OperatorAuth, parts: &Parts) -> Acts {
        Acts {
            identity: self.identity.clone(),
            operators: self.operators.clone(),
            auditor: Auditor::operator(self.audit.clone(), operator, parts),
        }
    }

    /// Deletes a license with its data ([`Acts::delete_license`]), to the
    /// end even if the client gives up waiting (a large license takes a
    /// while): a half-deleted license stays suspended, and repeating the
    /// call finishes it.
    pub(crate) async fn delete_license(
        &self,
        acts: Acts,
        number: LicenseNumber,
        confirm: String,
    ) -> Result<(), ApiError> {
        let data = self.license_data.clone();
        let run = tokio::spawn(async move { acts.delete_license(&number, &confirm, &data).await });
        run.await.map_err(|e| ApiError::new(ErrorCode::INTERNAL, format!("license delete: {e}")))?
    }

    /// A license as the operator sees it: with its usage, measured now.
    pub(crate) async fn view(&self, license: &relayhub_core::identity::License) -> Result<LicenseUsed, ApiError> {
        let usage = self.license_data.measure(license.pk).await?;
        Ok(LicenseUsed { license: license.view(Some(usage.devices_bound)), usage })
    }
}

fn number(raw: &str) -> Result<LicenseNumber, ApiError> {
    LicenseNumber::parse(raw)
}

/// A new license.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLicense {
    /// The number the accounting system knows.
    #[schema(example = "LIC-1001")]
    pub number: LicenseNumber,
    /// A name for people.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// Last valid day (UTC); never expires when absent.
    #[schema(value_type = Option<String>, format = Date, example = "2027-12-31")]
    pub expires: Option<String>,
    /// Devices bound at once; no limit when absent.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub max_devices: Option<u32>,
    /// How devices bind; `first_use` when absent.
    pub binding: Option<BindingPolicy>,
}

/// A secret just issued: shown once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedSecret {
    /// Its public id (to list and revoke it by).
    pub id: String,
    /// The secret itself.
    pub secret: String,
}

/// A license just created, with its first bearer token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedLicense {
    pub license: LicenseView,
    pub token: IssuedSecret,
}

/// A license with what it uses now.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseUsed {
    #[serde(flatten)]
    pub license: LicenseView,
    pub usage: Usage,
}

/// A page of licenses, by number.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicensePage {
    pub items: Vec<LicenseUsed>,
    pub total: u64,
}

/// A license with its usage and its tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseDetail {
    #[serde(flatten)]
    pub license: LicenseUsed,
    pub tokens: Vec<CredentialInfo>,
}

/// The fields to change; the others keep their values.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLicense {
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Last valid day (UTC); `null`: never expires.
    #[serde(default, deserialize_with = "relayhub_core::http::nullable")]
    #[schema(value_type = Option<String>, format = Date, nullable)]
    pub expires: Option<Option<String>>,
    /// Devices bound at once; `null`: no limit.
    #[serde(default, deserialize_with = "relayhub_core::http::nullable")]
    #[schema(value_type = Option<u32>, nullable, minimum = 0, maximum = 2147483647)]
    pub max_devices: Option<Option<u32>>,
    pub binding: Option<BindingPolicy>,
    /// `true` suspends the license at once, on every node — its tokens,
    /// devices and users are refused (403 `license_suspended`), its data
    /// kept; `false` resumes it.
    pub suspended: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/licenses",
    operation_id = "admin_create_license",
    tag = "admin",
    security(("operator" = [])),
    request_body = CreateLicense,
    responses(
        (status = 201, description = "Created; the bearer token is shown only here", body = CreatedLicense),
        (status = 409, description = "The number is taken (`already_exists`)", body = ErrorBody),
    )
)]
pub async fn create_license(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Json(body): Json<CreateLicense>,
) -> Result<(StatusCode, Json<CreatedLicense>), ApiError> {
    check_length("name", &body.name, 0, 200)?;
    let new = NewLicense {
        number: body.number,
        name: body.name,
        expires_at: body.expires.as_deref().map(Expires::parse).transpose()?.and_then(Expires::at),
        max_devices: body.max_devices.map(rules::device_limit).transpose()?,
        binding: body.binding.unwrap_or_default(),
    };
    let (license, token) = admin.acts(operator, &parts).create_license(new).await?;
    let token = IssuedSecret { id: token.id, secret: token.secret.expose().to_owned() };
    Ok((StatusCode::CREATED, Json(CreatedLicense { license: license.view(Some(0)), token })))
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/licenses",
    operation_id = "admin_list_licenses",
    tag = "admin",
    security(("operator" = [])),
    params(PageParams),
    responses((status = 200, description = "Licenses by number, with their usage", body = LicensePage))
)]
pub async fn list_licenses(
    State(admin): State<Admin>,
    _: OperatorAuth,
    Query(page): Query<PageParams>,
) -> Result<Json<LicensePage>, ApiError> {
    let found = admin.identity.license_page(page.request()?).await?;
    let mut items = Vec::with_capacity(found.items.len());
    for license in &found.items {
        items.push(admin.view(license).await?);
    }
    Ok(Json(LicensePage { items, total: found.total }))
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/licenses/{number}",
    operation_id = "admin_get_license",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The license, its bound devices and its tokens (never their secrets)", body = LicenseDetail),
        (status = 404, description = "No such license (`license_not_found`)", body = ErrorBody),
    )
)]
pub async fn get_license(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(raw): Path<String>,
) -> Result<Json<LicenseDetail>, ApiError> {
    let license = admin.acts(operator, &parts).license(&number(&raw)?).await?;
    let tokens = admin.identity.tokens(license.pk).await?;
    Ok(Json(LicenseDetail { license: admin.view(&license).await?, tokens }))
}

#[utoipa::path(
    patch,
    path = "/api/admin/v1/licenses/{number}",
    operation_id = "admin_update_license",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = UpdateLicense,
    responses(
        (status = 200, description = "The license as it is now, with its usage", body = LicenseUsed),
        (status = 404, description = "No such license (`license_not_found`)", body = ErrorBody),
    )
)]
pub async fn update_license(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(raw): Path<String>,
    Json(body): Json<UpdateLicense>,
) -> Result<Json<LicenseUsed>, ApiError> {
    let number = number(&raw)?;
    if let Some(name) = &body.name {
        check_length("name", name, 0, 200)?;
    }
    let expires_at = match body.expires {
        None => None,
        Some(None) => Some(None),
        Some(Some(day)) => Some(Expires::parse(&day)?.at()),
    };
    let max_devices = match body.max_devices {
        Some(Some(limit)) => Some(Some(rules::device_limit(limit)?)),
        other => other,
    };
    let update =
        LicenseUpdate { name: body.name, expires_at, max_devices, binding: body.binding, suspended: body.suspended };
    let license = admin.acts(operator, &parts).update_license(&number, update).await?;
    Ok(Json(admin.view(&license).await?))
}

/// What a license delete must carry: the number again, so that a slip of
/// the path never deletes a customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteLicense {
    /// The license number, exactly as in the path.
    #[schema(example = "LIC-1001", max_length = 64)]
    pub confirm: String,
}

#[utoipa::path(
    delete,
    path = "/api/admin/v1/licenses/{number}",
    operation_id = "admin_delete_license",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = DeleteLicense,
    responses(
        (status = 204, description = "Deleted with all its data — devices and their queues, inbox, settings, fleet users and robots, telemetry, rail data — on every node; its number may be used again. The audit log keeps the act."),
        (status = 404, description = "No such license (`license_not_found`): never was, or deleted already", body = ErrorBody),
        (status = 422, description = "`confirm` is not the license number (`confirmation_mismatch`); nothing was deleted", body = ErrorBody),
    )
)]
pub async fn delete_license(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(raw): Path<String>,
    Json(body): Json<DeleteLicense>,
) -> Result<StatusCode, ApiError> {
    let number = number(&raw)?;
    admin.delete_license(admin.acts(operator, &parts), number, body.confirm).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A license's bearer tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<CredentialInfo>,
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/licenses/{number}/tokens",
    operation_id = "admin_create_license_token",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 201, description = "Another bearer token (to rotate one); shown only here", body = IssuedSecret),
        (status = 404, description = "No such license (`license_not_found`)", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<IssuedSecret>), ApiError> {
    let token = admin.acts(operator, &parts).issue_token(&number(&raw)?).await?;
    Ok((StatusCode::CREATED, Json(IssuedSecret { id: token.id, secret: token.secret.expose().to_owned() })))
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/licenses/{number}/tokens",
    operation_id = "admin_list_license_tokens",
    tag = "admin",
    security(("operator" = [])),
    params(("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "Its tokens, revoked ones too (never their secrets)", body = TokenList),
        (status = 404, description = "No such license (`license_not_found`)", body = ErrorBody),
    )
)]
pub async fn list_tokens(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(raw): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    let license = admin.acts(operator, &parts).license(&number(&raw)?).await?;
    Ok(Json(TokenList { tokens: admin.identity.tokens(license.pk).await? }))
}

#[utoipa::path(
    delete,
    path = "/api/admin/v1/licenses/{number}/tokens/{token_id}",
    operation_id = "admin_revoke_license_token",
    tag = "admin",
    security(("operator" = [])),
    params(
        ("number" = String, Path, description = "The license number", pattern = r"^[A-Za-z0-9._-]{1,64}$"),
        ("token_id" = String, Path, description = "The token's id (`tok_…`)", max_length = 64),
    ),
    responses(
        (status = 204, description = "Revoked: it stops working at once (revoking it again answers the same)"),
        (status = 404, description = "No such license (`license_not_found`) or token in it (`credential_not_found`)", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path((raw, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_length("token_id", &token_id, 1, 64)?;
    admin.acts(operator, &parts).revoke_token(&number(&raw)?, &token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new app key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// The licenses it works with (by number); every license when empty or
    /// absent. With another license it is refused as if that did not exist.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub licenses: Vec<LicenseNumber>,
}

/// An app key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[serde(flatten)]
    pub info: CredentialInfo,
    /// The licenses it works with; absent: every license.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub licenses: Option<Vec<LicenseNumber>>,
}

/// App keys, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyView>,
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/apikeys",
    operation_id = "admin_create_apikey",
    tag = "admin",
    security(("operator" = [])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the key is shown only here", body = IssuedSecret),
        (status = 404, description = "A license it names does not exist (`license_not_found`)", body = ErrorBody),
    )
)]
pub async fn create_api_key(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Json(body): Json<CreateApiKey>,
) -> Result<(StatusCode, Json<IssuedSecret>), ApiError> {
    check_length("name", &body.name, 0, 200)?;
    if body.licenses.len() > 100 {
        return Err(ApiError::invalid_field("licenses: at most 100"));
    }
    let key = admin.acts(operator, &parts).create_api_key(&body.name, &body.licenses).await?;
    Ok((StatusCode::CREATED, Json(IssuedSecret { id: key.id, secret: key.secret.expose().to_owned() })))
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/apikeys",
    operation_id = "admin_list_apikeys",
    tag = "admin",
    security(("operator" = [])),
    responses((status = 200, description = "App keys that work, with their licenses", body = ApiKeyList))
)]
pub async fn list_api_keys(State(admin): State<Admin>, _: OperatorAuth) -> Result<Json<ApiKeyList>, ApiError> {
    let mut keys = Vec::new();
    for key in admin.identity.api_keys().await? {
        let licenses = scope_numbers(admin.identity.as_ref(), &key.scope).await?;
        keys.push(ApiKeyView { info: key.info, licenses });
    }
    Ok(Json(ApiKeyList { keys }))
}

#[utoipa::path(
    delete,
    path = "/api/admin/v1/apikeys/{key_id}",
    operation_id = "admin_revoke_apikey",
    tag = "admin",
    security(("operator" = [])),
    params(("key_id" = String, Path, description = "The key's id (`key_…`)", max_length = 64)),
    responses(
        (status = 204, description = "Revoked: devices using it are disconnected"),
        (status = 404, description = "No such key (`credential_not_found`)", body = ErrorBody),
    )
)]
pub async fn revoke_api_key(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_length("key_id", &key_id, 1, 64)?;
    admin.acts(operator, &parts).revoke_api_key(&key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which acts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only acts on this license (its number).
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub license: Option<String>,
    /// Only acts of this operator (its id).
    pub operator: Option<Uuid>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub total: u64,
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/audit",
    operation_id = "admin_audit",
    tag = "admin",
    security(("operator" = [])),
    params(AuditParams),
    responses((status = 200, description = "Administrative acts, newest first", body = AuditPage))
)]
pub async fn audit(
    State(admin): State<Admin>,
    _: OperatorAuth,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let page: PageRequest = PageParams { page: params.page, size: params.size }.request()?;
    let license = params.license.as_deref().map(number).transpose()?.map(|n| n.as_str().to_owned());
    let filter = AuditFilter { license, operator: params.operator };
    let found = admin.audit.entries(filter, page).await?;
    Ok(Json(AuditPage { items: found.items, total: found.total }))
}
