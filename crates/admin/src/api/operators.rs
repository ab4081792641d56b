//! `/api/admin/v1/operators`: operators made by an operator, and their
//! API tokens (issued, revoked through their own operator).

use super::*;

/// An operator to add: another server administrator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    #[schema(min_length = 3, max_length = 254, example = "ops@example.com")]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// For the operator console; 8–200 characters, stored only as its hash.
    #[schema(min_length = 8, max_length = 200)]
    pub password: String,
}

/// The server's operators, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorList {
    pub operators: Vec<Operator>,
    /// Their API tokens, revoked ones too (never the secrets).
    pub tokens: Vec<OperatorToken>,
}

/// An API token to issue.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperatorToken {
    /// What it is for (a script, a billing system).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/operators",
    operation_id = "admin_create_operator",
    tag = "admin",
    security(("operator" = [])),
    request_body = CreateOperator,
    responses(
        (status = 201, description = "Created", body = Operator),
        (status = 409, description = "The email is taken (`already_exists`)", body = ErrorBody),
        (status = 503, description = "Too many password hashes at once (`password_checks_busy`)", body = ErrorBody),
    )
)]
pub async fn create_operator(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Json(body): Json<CreateOperator>,
) -> Result<(StatusCode, Json<Operator>), ApiError> {
    check_length("name", &body.name, 0, 200)?;
    let created = admin.acts(operator, &parts).create_operator(&body.email, body.name.trim(), body.password).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/api/admin/v1/operators",
    operation_id = "admin_list_operators",
    tag = "admin",
    security(("operator" = [])),
    responses((status = 200, description = "Operators and their tokens", body = OperatorList))
)]
pub async fn list_operators(State(admin): State<Admin>, _: OperatorAuth) -> Result<Json<OperatorList>, ApiError> {
    let operators = admin.operators.operators().await?;
    let tokens = admin.operators.operator_tokens().await?;
    Ok(Json(OperatorList { operators, tokens }))
}

impl Admin {
    async fn operator(&self, id: Uuid) -> Result<Operator, ApiError> {
        self.operators
            .operators()
            .await?
            .into_iter()
            .find(|o| o.id == id)
            .ok_or_else(|| ApiError::new(ErrorCode::NOT_FOUND, format!("no operator {id}")))
    }
}

#[utoipa::path(
    post,
    path = "/api/admin/v1/operators/{id}/tokens",
    operation_id = "admin_create_operator_token",
    tag = "admin",
    security(("operator" = [])),
    params(("id" = Uuid, Path, description = "The operator's id")),
    request_body = CreateOperatorToken,
    responses(
        (status = 201, description = "A token acting as that operator; shown only here", body = IssuedSecret),
        (status = 404, description = "No such operator (`not_found`)", body = ErrorBody),
    )
)]
pub async fn create_operator_token(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path(id): Path<Uuid>,
    Json(body): Json<CreateOperatorToken>,
) -> Result<(StatusCode, Json<IssuedSecret>), ApiError> {
    check_length("name", &body.name, 0, 200)?;
    let owner = admin.operator(id).await?;
    let token = admin.acts(operator, &parts).issue_operator_token(&owner, body.name.trim()).await?;
    Ok((StatusCode::CREATED, Json(IssuedSecret { id: token.id, secret: token.secret.expose().to_owned() })))
}

#[utoipa::path(
    delete,
    path = "/api/admin/v1/operators/{id}/tokens/{token_id}",
    operation_id = "admin_revoke_operator_token",
    tag = "admin",
    security(("operator" = [])),
    params(
        ("id" = Uuid, Path, description = "The operator's id"),
        ("token_id" = String, Path, description = "The token's id (`opt_…`)", max_length = 64),
    ),
    responses(
        (status = 204, description = "Revoked: it stops working at once (revoking it again answers the same)"),
        (status = 404, description = "No such operator (`not_found`) or token of theirs (`credential_not_found`)", body = ErrorBody),
    )
)]
pub async fn revoke_operator_token(
    State(admin): State<Admin>,
    operator: OperatorAuth,
    parts: Parts,
    Path((id, token_id)): Path<(Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    check_length("token_id", &token_id, 1, 64)?;
    let owner = admin.operator(id).await?;
    let theirs =
        admin.operators.operator_tokens().await?.into_iter().any(|t| t.operator == owner.id && t.info.id == token_id);
    if !theirs {
        return Err(ApiError::new(ErrorCode::CREDENTIAL_NOT_FOUND, format!("no token {token_id} of operator {id}")));
    }
    admin.acts(operator, &parts).revoke_operator_token(&token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
