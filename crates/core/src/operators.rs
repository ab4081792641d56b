//! Operators: the server's administrators, above the licenses. They act
//! over the admin API with tokens (`rho_…`), and every administrative
//! write — from the API, the console or the command line — is recorded in
//! the audit log: when, who, what, on which license, from where.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::admission::Connection;
use crate::error::{ApiError, ErrorCode};
use crate::identity::{CredentialInfo, NewCredential};
use crate::ids::LicenseNumber;
use crate::secret::{Secret, SecretHash, SecretKind};
use crate::store::{Page, PageRequest, StoreResult};
use crate::time::Timestamp;

/// A server administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Operator {
    pub id: Uuid,
    /// Lowercase; unique on the server.
    pub email: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// An operator to add: the password only as its Argon2 hash.
#[derive(Debug, Clone)]
pub struct NewOperator {
    pub email: String,
    pub name: String,
    pub password_hash: String,
}

/// An operator's API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OperatorToken {
    /// The operator it acts as.
    pub operator: Uuid,
    #[serde(flatten)]
    pub info: CredentialInfo,
}

/// Operators and their API tokens.
#[async_trait]
pub trait OperatorStore: Send + Sync + 'static {
    /// `already_exists` when the email is taken.
    async fn add_operator(&self, operator: NewOperator, at: Timestamp) -> StoreResult<Operator>;
    /// Every operator, oldest first.
    async fn operators(&self) -> StoreResult<Vec<Operator>>;
    async fn add_operator_token(&self, operator: Uuid, token: NewCredential) -> StoreResult<()>;
    /// `credential_not_found` unless the token exists.
    async fn revoke_operator_token(&self, id: &str, at: Timestamp) -> StoreResult<()>;
    /// Every token, revoked ones too, oldest first.
    async fn operator_tokens(&self) -> StoreResult<Vec<OperatorToken>>;
    /// The operator of a valid (unrevoked) token.
    async fn operator_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Operator>>;
}

/// The operator console's sign-in and sessions (a session token is kept
/// as its hash only).
#[async_trait]
pub trait OperatorSessions: Send + Sync + 'static {
    /// An operator and their password hash, by email (lowercase).
    async fn operator_password(&self, email: &str) -> StoreResult<Option<(Operator, String)>>;
    async fn start_operator_session(&self, operator: Uuid, hash: SecretHash, expires_at: Timestamp) -> StoreResult<()>;
    /// The operator of a session that has not expired at `now`.
    async fn operator_by_session(&self, hash: &SecretHash, now: Timestamp) -> StoreResult<Option<Operator>>;
    async fn end_operator_session(&self, hash: &SecretHash) -> StoreResult<()>;
    /// Forgets the sessions expired at `now`; answers how many.
    async fn purge_operator_sessions(&self, now: Timestamp) -> StoreResult<u64>;
}

/// Who did an administrative act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// `relayhub … --data` on the server.
    Cli,
    Operator(Operator),
    /// A license's admin in the license console (by user id), for the few
    /// server-wide acts a single-license server lets them do.
    User(i64),
}

/// An act to record.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub at: Timestamp,
    pub actor: Actor,
    /// What was done, `license.create`, `apikey.revoke`, …
    pub action: &'static str,
    /// The license acted on (its number), if any.
    pub license: Option<String>,
    /// The object acted on, by its public id (a token's, a key's).
    pub target: Option<String>,
    /// The client's address as trusted proxies report it (none for the CLI).
    pub address: Option<IpAddr>,
    /// What changed: the fields an update named, never a secret.
    pub detail: serde_json::Value,
}

/// One recorded act, as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing: a later act has a larger id.
    pub id: i64,
    pub at: Timestamp,
    /// `cli`, the operator's email at the time, or `user:ID` for a
    /// license's admin in the license console.
    pub actor: String,
    /// The operator's id; absent for the command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<Uuid>,
    #[schema(example = "license.update")]
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Which acts to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub license: Option<String>,
    pub operator: Option<Uuid>,
}

/// The audit log.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn record(&self, entry: NewAuditEntry) -> StoreResult<()>;
    /// Newest first.
    async fn entries(&self, filter: AuditFilter, page: PageRequest) -> StoreResult<Page<AuditEntry>>;
    /// Forgets acts older than `before`; answers how many.
    async fn purge_before(&self, before: Timestamp) -> StoreResult<u64>;
}

/// Who acts, from where, and the log their writes go to: every
/// capability's administrative acts record through one of these, so an act
/// is in the log however it was done (API, console, command line).
#[derive(Clone)]
pub struct Auditor {
    log: Arc<dyn AuditLog>,
    pub actor: Actor,
    pub address: Option<IpAddr>,
}

impl Auditor {
    pub fn new(log: Arc<dyn AuditLog>, actor: Actor, address: Option<IpAddr>) -> Self {
        Self { log, actor, address }
    }

    /// The command line on the server: `cli`, from no address.
    pub fn cli(log: Arc<dyn AuditLog>) -> Self {
        Self::new(log, Actor::Cli, None)
    }

    /// An operator of the admin API, from the request's client as trusted
    /// proxies report it.
    pub fn operator(log: Arc<dyn AuditLog>, operator: OperatorAuth, parts: &Parts) -> Self {
        Self::new(log, Actor::Operator(operator.0), crate::client::client_ip(parts))
    }

    /// Records an act that is done. A failure to record is logged, not
    /// answered: the act stands, and a client retrying it would apply it
    /// twice or be refused for a conflict it did not cause.
    pub async fn record(
        &self,
        action: &'static str,
        license: Option<&LicenseNumber>,
        target: Option<&str>,
        detail: serde_json::Value,
    ) {
        let entry = NewAuditEntry {
            at: Timestamp::now(),
            actor: self.actor.clone(),
            action,
            license: license.map(|n| n.as_str().to_owned()),
            target: target.map(str::to_owned),
            address: self.address,
            detail,
        };
        if let Err(err) = self.log.record(entry).await {
            tracing::error!(action, error = %err, "an administrative act is done but could not be recorded in the audit log");
        }
    }
}

impl NewAuditEntry {
    /// The columns a store keeps: actor text, operator id, address text.
    pub fn columns(&self) -> (String, Option<Uuid>, Option<String>) {
        let (actor, operator) = match &self.actor {
            Actor::Cli => ("cli".to_owned(), None),
            Actor::Operator(o) => (o.email.clone(), Some(o.id)),
            Actor::User(id) => (format!("user:{id}"), None),
        };
        (actor, operator, self.address.map(|a| a.to_string()))
    }
}

/// The valid operator token a request carries (`Authorization: Bearer
/// rho_…`). 401 without a token or with an unknown or revoked one; 403
/// `forbidden` for another kind of credential (a license token, an app
/// key, a user's or robot's token): it is valid, but not here.
#[derive(Debug, Clone)]
pub struct OperatorAuth(pub Operator);

impl<S> FromRequestParts<S> for OperatorAuth
where
    S: Send + Sync,
    Arc<dyn OperatorStore>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = crate::http::bearer(&parts.headers).ok_or_else(|| {
            ApiError::new(ErrorCode::MISSING_TOKEN, "send an operator token as 'Authorization: Bearer rho_…'")
        })?;
        if !token.starts_with(SecretKind::OPERATOR_TOKEN.prefix()) {
            return Err(ApiError::new(
                ErrorCode::FORBIDDEN,
                "the admin API takes an operator token (rho_…), not a license's, a key or a user's",
            ));
        }
        let store = Arc::<dyn OperatorStore>::from_ref(state);
        let operator = store
            .operator_by_token(&Secret::new(token).hash())
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::INVALID_TOKEN, "the operator token is unknown or revoked"))?;
        Connection::of(parts).authenticated();
        Ok(OperatorAuth(operator))
    }
}

/// What the operator stores answer when they refuse, written once for
/// every backend.
pub mod refusals {
    use std::fmt::Display;

    use crate::error::ErrorCode;
    use crate::store::StoreError;

    pub fn operator_exists(email: impl Display) -> StoreError {
        StoreError::rejected(ErrorCode::ALREADY_EXISTS, format!("operator {email} already exists"))
    }

    pub fn no_operator_token(id: impl Display) -> StoreError {
        StoreError::rejected(ErrorCode::CREDENTIAL_NOT_FOUND, format!("no operator token {id}"))
    }

    pub fn no_operator(id: impl Display) -> StoreError {
        StoreError::rejected(ErrorCode::NOT_FOUND, format!("no operator {id}"))
    }
}
