//! Who calls a rail route, from its `Authorization: Bearer …`: the
//! operator (a license token), a robot or store staff (an access token
//! from a signed challenge, or a store token), or a passenger (an OpenID
//! Connect token). And the challenge sign-in of robots and store staff.

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use relayhub_core::admission::Connection;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::identity::License;
use relayhub_core::ids::{LicenseNumber, LicensePk};
use relayhub_core::secret::{Secret, SecretKind};
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{RailJson, RailResult};
use crate::Rail;
use crate::codes;
use crate::keys::parse_public_key;
use crate::model::{Passenger, Subject};
use crate::rules::random_code;

/// The caller of a rail route.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The railway operator, with its license token.
    Operator(License),
    Robot {
        license: LicensePk,
        robot: Uuid,
    },
    /// A store's staff: its own store only.
    Staff {
        license: LicensePk,
        store: Uuid,
    },
    Passenger {
        license: LicensePk,
        user: Passenger,
    },
}

impl Caller {
    pub fn license(&self) -> LicensePk {
        match self {
            Caller::Operator(license) => license.pk,
            Caller::Robot { license, .. } | Caller::Staff { license, .. } | Caller::Passenger { license, .. } => {
                *license
            }
        }
    }

    /// Refuses with 403 a caller who is not the operator.
    pub fn operator(&self) -> Result<&License, ApiError> {
        match self {
            Caller::Operator(license) => Ok(license),
            _ => Err(forbidden("this route is the operator's (a license token)")),
        }
    }

    /// The robot calling, or 403.
    pub fn robot(&self) -> Result<(LicensePk, Uuid), ApiError> {
        match self {
            Caller::Robot { license, robot } => Ok((*license, *robot)),
            _ => Err(forbidden("this route is a robot's (an access token from /base_api/robot/auth)")),
        }
    }

    /// The passenger calling, or 403.
    pub fn passenger(&self) -> Result<(LicensePk, &Passenger), ApiError> {
        match self {
            Caller::Passenger { license, user } => Ok((*license, user)),
            _ => Err(forbidden("this route is a passenger's (an OpenID Connect access token)")),
        }
    }
}

/// 403 `forbidden`.
pub fn forbidden(message: &str) -> ApiError {
    ApiError::new(ErrorCode::FORBIDDEN, message)
}

fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::INVALID_TOKEN, "the bearer token is unknown, revoked or expired")
}

impl FromRequestParts<Rail> for Caller {
    type Rejection = super::RailError;

    async fn from_request_parts(parts: &mut Parts, rail: &Rail) -> Result<Self, super::RailError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::MISSING_TOKEN, "send 'Authorization: Bearer <token>'"))?;
        let caller = rail.caller(&token).await?;
        Connection::of(parts).authenticated();
        Ok(caller)
    }
}

impl Rail {
    async fn caller(&self, token: &str) -> Result<Caller, ApiError> {
        let now = Timestamp::now();
        let secret = Secret::new(token);
        if token.starts_with(SecretKind::LICENSE_TOKEN.prefix()) {
            let license = self.identity.license_by_token(&secret.hash()).await?.ok_or_else(invalid_token)?;
            license.ensure_active(now)?;
            return Ok(Caller::Operator(license));
        }
        let (license, caller) = if token.starts_with(codes::RAIL_TOKEN.prefix()) {
            let (license, subject) = self.sessions.session(&secret.hash(), now).await?.ok_or_else(invalid_token)?;
            let caller = match subject {
                Subject::Robot(robot) => Caller::Robot { license, robot },
                Subject::Store(store) => Caller::Staff { license, store },
            };
            (license, caller)
        } else if token.starts_with(codes::STORE_TOKEN.prefix()) {
            let (license, store) = self.shops.store_by_token(&secret.hash()).await?.ok_or_else(invalid_token)?;
            (license, Caller::Staff { license, store })
        } else {
            return self.passenger(token).await;
        };
        let license = self.identity.license_by_pk(license).await?.ok_or_else(invalid_token)?;
        license.ensure_active(now)?;
        Ok(caller)
    }

    /// A passenger from an OpenID Connect token, created on first sight.
    async fn passenger(&self, token: &str) -> Result<Caller, ApiError> {
        let Some(passengers) = &self.passengers else {
            return Err(ApiError::new(
                ErrorCode::INVALID_TOKEN,
                "the bearer token is unknown (passengers' tokens are not accepted here: rail.oidc is not configured)",
            ));
        };
        let identity = passengers.verifier.verify(token).await?;
        let number = LicenseNumber::parse(&passengers.license)?;
        let license = self
            .identity
            .license(&number)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::LICENSE_NOT_FOUND, "rail.oidc.license names no license"))?;
        license.ensure_active(Timestamp::now())?;
        if identity.subject.contains('\0') || identity.subject.len() > 255 {
            return Err(ApiError::new(ErrorCode::TOKEN_MALFORMED, "the token's subject is not a usable id"));
        }
        let name: String = identity.name.or(identity.email).unwrap_or_else(|| identity.subject.clone());
        let name: String = name.chars().filter(|c| *c != '\0').take(60).collect();
        let user = self.base.passenger_by_subject(license.pk, &identity.subject, &name).await?;
        Ok(Caller::Passenger { license: license.pk, user })
    }

    /// Counts a challenge asked for from `client`, before anything is
    /// looked up: 429 past `rail.challenges_per_minute_per_address`.
    fn challenge_from(&self, client: Option<std::net::IpAddr>) -> Result<(), ApiError> {
        let Some(client) = client.map(relayhub_core::client::address_key) else { return Ok(()) };
        // Keys come from unauthenticated clients: past this many, forget
        // the idle ones now rather than at the minute's clean-up.
        if self.challenges_by_address.len() > MAX_CHALLENGE_ADDRESSES {
            self.challenges_by_address.retain_recent();
        }
        self.challenges_by_address.check_key(&client).map_err(|wait| too_many_challenges(&wait, "from this address"))
    }

    /// Opens a challenge for a subject with a registered key: 429 past
    /// `rail.challenges_per_minute` for that subject, which also bounds
    /// its live nonces.
    async fn challenge(&self, license: LicensePk, subject: Subject) -> RailResult<Challenge> {
        let id = match subject {
            Subject::Robot(id) | Subject::Store(id) => id,
        };
        self.challenges.check_key(&id).map_err(|wait| too_many_challenges(&wait, "for this robot or store"))?;
        let nonce = random_code();
        let expires = Timestamp::now().plus(self.config.challenge_ttl);
        self.sessions.add_nonce(&nonce, license, subject, expires).await?;
        Ok(Challenge { nonce, expires_in: self.config.challenge_ttl.as_secs() })
    }

    /// Checks a signed challenge and issues an access token.
    async fn sign_in(
        &self,
        license: LicensePk,
        subject: Subject,
        public_key: &str,
        answer: &SignedChallenge,
    ) -> RailResult<AccessToken> {
        let key = parse_public_key(public_key)
            .map_err(|e| ApiError::new(ErrorCode::INTERNAL, format!("the registered key is unusable: {e}")))?;
        // The signature first: a wrong one leaves the nonce for the right signer.
        if !key.verifies(answer.nonce.as_bytes(), &answer.signature) {
            return Err(ApiError::new(codes::SIGNATURE_INVALID, "the signature does not verify").into());
        }
        let now = Timestamp::now();
        if !self.sessions.take_nonce(&answer.nonce, subject, now).await? {
            return Err(ApiError::new(codes::NONCE_INVALID, "the nonce is unknown, used or expired").into());
        }
        let license = self.identity.license_by_pk(license).await?.ok_or_else(invalid_token)?;
        license.ensure_active(now)?;
        let token = Secret::generate(codes::RAIL_TOKEN);
        self.sessions.add_session(token.hash(), license.pk, subject, now.plus(self.config.token_ttl)).await?;
        Ok(AccessToken {
            access_token: token.expose().to_owned(),
            token_type: "bearer",
            expires_in: self.config.token_ttl.as_secs(),
        })
    }
}

/// A challenge to sign.
#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    /// Sign its UTF-8 bytes with the registered key.
    pub nonce: String,
    /// Seconds it may be answered in (`rail.challenge_ttl`); it works once.
    pub expires_in: u64,
}

/// An access token, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds it lasts (`rail.token_ttl`).
    pub expires_in: u64,
}

/// The signed answer to a challenge.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignedChallenge {
    #[schema(max_length = 64)]
    pub nonce: String,
    /// Standard base64 of the signature over the nonce's UTF-8 bytes
    /// (Ed25519; ECDSA P-256 over SHA-256, DER).
    #[schema(max_length = 256)]
    pub signature: String,
}

/// A robot asking for a challenge.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RobotChallengeRequest {
    pub robot_id: Uuid,
}

/// A robot's signed challenge.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RobotSignIn {
    pub robot_id: Uuid,
    #[serde(flatten)]
    #[schema(inline)]
    pub answer: SignedChallenge,
}

/// A store asking for a challenge.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StoreChallengeRequest {
    pub store_id: Uuid,
}

/// A store's signed challenge.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StoreSignIn {
    pub store_id: Uuid,
    #[serde(flatten)]
    #[schema(inline)]
    pub answer: SignedChallenge,
}

/// Client addresses the challenge limiter may hold before it forgets the
/// idle ones early.
const MAX_CHALLENGE_ADDRESSES: usize = 100_000;

fn too_many_challenges(wait: &governor::NotUntil<governor::clock::QuantaInstant>, whom: &str) -> ApiError {
    ApiError::new(ErrorCode::RATE_LIMITED, format!("too many sign-in challenges {whom}; wait"))
        .retry_after(super::retry_seconds(wait))
}

fn robot_not_found(id: Uuid) -> ApiError {
    ApiError::new(ErrorCode::ROBOT_NOT_FOUND, format!("no robot {id}"))
}

fn no_store_key(id: Uuid) -> ApiError {
    ApiError::new(codes::STORE_NOT_FOUND, format!("no store {id} with a registered key"))
}

/// A challenge for a robot to sign with its key.
#[utoipa::path(post, path = "/base_api/robot/auth/challenge", tag = "rail-base", operation_id = "rail_robot_challenge",
    request_body = RobotChallengeRequest,
    responses((status = 200, body = Challenge), (status = 404, description = "No such robot", body = super::RailErrorBody),
        (status = 429, description = "Too many challenges for this robot or from this address; see Retry-After", body = super::RailErrorBody)))]
pub async fn robot_challenge(
    State(rail): State<Rail>,
    parts: axum::http::request::Parts,
    RailJson(request): RailJson<RobotChallengeRequest>,
) -> RailResult<axum::Json<Challenge>> {
    rail.challenge_from(relayhub_core::client::client_ip(&parts))?;
    let (license, _) = rail.base.robot(request.robot_id).await?.ok_or_else(|| robot_not_found(request.robot_id))?;
    Ok(axum::Json(rail.challenge(license, Subject::Robot(request.robot_id)).await?))
}

/// A robot's access token, for a challenge signed with its key.
#[utoipa::path(post, path = "/base_api/robot/auth", tag = "rail-base", operation_id = "rail_robot_sign_in",
    request_body = RobotSignIn,
    responses((status = 200, body = AccessToken),
        (status = 401, description = "`signature_invalid` or `nonce_invalid` (used, expired, unknown)", body = super::RailErrorBody),
        (status = 404, description = "No such robot", body = super::RailErrorBody)))]
pub async fn robot_sign_in(
    State(rail): State<Rail>,
    RailJson(request): RailJson<RobotSignIn>,
) -> RailResult<axum::Json<AccessToken>> {
    let (license, robot) = rail.base.robot(request.robot_id).await?.ok_or_else(|| robot_not_found(request.robot_id))?;
    let token = rail.sign_in(license, Subject::Robot(robot.id), &robot.public_key, &request.answer).await?;
    Ok(axum::Json(token))
}

/// A challenge for store staff to sign with the store's registered key.
#[utoipa::path(post, path = "/store_api/store/auth/challenge", tag = "rail-store", operation_id = "rail_store_challenge",
    request_body = StoreChallengeRequest,
    responses((status = 200, body = Challenge), (status = 404, description = "No store with a key", body = super::RailErrorBody),
        (status = 429, description = "Too many challenges for this store or from this address; see Retry-After", body = super::RailErrorBody)))]
pub async fn store_challenge(
    State(rail): State<Rail>,
    parts: axum::http::request::Parts,
    RailJson(request): RailJson<StoreChallengeRequest>,
) -> RailResult<axum::Json<Challenge>> {
    rail.challenge_from(relayhub_core::client::client_ip(&parts))?;
    let (license, _) = rail.shops.store_key(request.store_id).await?.ok_or_else(|| no_store_key(request.store_id))?;
    Ok(axum::Json(rail.challenge(license, Subject::Store(request.store_id)).await?))
}

/// Store staff's access token, for a challenge signed with the store's key.
#[utoipa::path(post, path = "/store_api/store/auth", tag = "rail-store", operation_id = "rail_store_sign_in",
    request_body = StoreSignIn,
    responses((status = 200, body = AccessToken),
        (status = 401, description = "`signature_invalid` or `nonce_invalid`", body = super::RailErrorBody),
        (status = 404, description = "No store with a key", body = super::RailErrorBody)))]
pub async fn store_sign_in(
    State(rail): State<Rail>,
    RailJson(request): RailJson<StoreSignIn>,
) -> RailResult<axum::Json<AccessToken>> {
    let (license, key) = rail.shops.store_key(request.store_id).await?.ok_or_else(|| no_store_key(request.store_id))?;
    let token = rail.sign_in(license, Subject::Store(request.store_id), &key, &request.answer).await?;
    Ok(axum::Json(token))
}
