//! Pairing a robot with a user's account (seed 002's flows 1-3), hardened
//! as RFC 8628's device authorization: the robot shows a short code, a
//! signed-in user confirms it, and the robot — polling with a secret only
//! it has — gets its personal token, once.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use relayhub_core::attempts;
use relayhub_core::error::{ApiError, ErrorBody};
use relayhub_core::http::{Json, Path, client_ip};
use relayhub_core::secret::Secret;
use relayhub_core::store::StoreError;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::Fleet;
use crate::auth::UserAuth;
use crate::codes;
use crate::model::{Architecture, NewPairing, Pairing, Robot, RobotStatus};
use crate::openapi::{or_null, string_enum};
use crate::rules::{self, PairState, display_code, generate_code, normalize_code, pair_state};

/// A pairing code as typed: 8 letters of `BCDFGHJKLMNPQRSTVWXZ`, any case,
/// the hyphen optional (documentation only; handlers take a string).
pub struct PairCode;

impl utoipa::PartialSchema for PairCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let letters = "[BCDFGHJKLMNPQRSTVWXZbcdfghjklmnpqrstvwxz]";
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(format!("^{letters}{{4}}-?{letters}{{4}}$")))
            .examples([serde_json::json!("BCDF-GHJK")])
            .into()
    }
}

impl utoipa::ToSchema for PairCode {}

fn chosen_code_schema() -> utoipa::openapi::schema::Schema {
    or_null(<PairCode as utoipa::PartialSchema>::schema())
}

/// Every spelling [`Architecture::parse`] takes, in any case.
fn architecture_schema() -> utoipa::openapi::schema::Schema {
    let names = ["arm64", "aarch64", "armv8", "amd64", "x86_64", "x64", "armhf", "armv7", "armv7l", "armv6l", "arm"];
    or_null(string_enum(&names))
}

fn ip_address_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let format = |f| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(f)));
    let either =
        utoipa::openapi::schema::OneOfBuilder::new().item(format(KnownFormat::Ipv4)).item(format(KnownFormat::Ipv6));
    or_null(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::OneOf(either.build())))
}

/// A robot asking to pair.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PairRequest {
    /// The robot's host name, shown to the user who confirms.
    #[schema(min_length = 1, max_length = 253, pattern = "^[!-~]+$")]
    pub hostname: String,
    /// `arm64`, `amd64` or `armhf` (what `uname -m` says is understood).
    #[schema(schema_with = architecture_schema)]
    pub architecture: Option<String>,
    /// The robot's address as it sees it; the server's view otherwise.
    #[schema(schema_with = ip_address_schema)]
    pub ip_address: Option<String>,
    /// A code the robot chose (8 letters of `BCDFGHJKLMNPQRSTVWXZ`); the
    /// server makes one otherwise.
    #[schema(schema_with = chosen_code_schema)]
    pub code: Option<String>,
}

/// The pairing started: show `code` to the user; poll with `poll_secret`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairStarted {
    pub robot_id: i64,
    pub status: RobotStatus,
    /// `XXXX-XXXX`.
    pub code: String,
    /// Send it as `X-Pair-Secret` when polling; without it, no token.
    pub poll_secret: String,
    /// Seconds to wait between polls.
    pub interval: u64,
    /// Seconds the code is valid.
    pub expires_in: u64,
}

/// What a user sees before confirming: which robot it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairPreview {
    pub robot_id: i64,
    pub hostname: String,
    /// The address the robot says it has (its `ip_address`), or the one
    /// its request came from when it said none.
    pub ip_address: Option<String>,
    /// The address the robot's `POST /api/pair` came from, as this server
    /// saw it (behind trusted proxies, as they reported it). A robot on a
    /// LAN behind NAT differs from its own `ip_address`; a robot you do not
    /// expect shows here.
    pub observed_ip_address: Option<String>,
    pub architecture: Option<Architecture>,
    /// Seconds left to confirm.
    pub expires_in: u64,
}

/// The confirmed robot, now the user's.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairConfirmed {
    pub robot_id: i64,
    pub name: String,
    pub hostname: String,
    pub ip_address: Option<String>,
    pub status: RobotStatus,
}

/// A pairing as its robot polls it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairStatus {
    /// `pending`, `confirmed` or `expired`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robot_id: Option<i64>,
    /// The robot's personal token: in the first answer after confirmation
    /// to a poll with the right secret, and never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn seconds_until(at: Timestamp, now: Timestamp) -> u64 {
    at.millis_since(now).div_ceil(1000)
}

fn not_found() -> ApiError {
    ApiError::new(codes::PAIR_CODE_NOT_FOUND, "no pairing with this code")
}

fn check_hostname(host: &str) -> Result<String, ApiError> {
    let ok = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_graphic());
    if ok { Ok(host.to_owned()) } else { Err(ApiError::invalid_field("hostname: 1-253 printable characters")) }
}

impl Fleet {
    /// The pairing of a code, counting a wrong code against `keys` (before
    /// the look-up: simultaneous guesses cannot pass the limit).
    async fn pairing_or_fail(&self, code: &str, keys: &[String]) -> Result<Pairing, ApiError> {
        let attempt = self.confirms.reserve(keys)?;
        let found = match normalize_code(code) {
            Ok(code) => self.robots.pairing(&code).await,
            Err(_) => Ok(None),
        };
        match found {
            Ok(Some(pairing)) => {
                attempt.refund();
                Ok(pairing)
            }
            Ok(None) => Err(not_found()),
            Err(err) => {
                // Nothing was looked up: not a wrong code.
                attempt.refund();
                Err(err.into())
            }
        }
    }

    /// Refuses polls closer together than the interval (RFC 8628 §3.5).
    /// Called only for a live code polled with its secret, so the table
    /// holds no more than the live pairings.
    fn pace(&self, code: &str) -> Result<(), ApiError> {
        let interval = self.config.pair_interval;
        let now = Instant::now();
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        if polls.len() > 100_000 {
            polls.retain(|_, at| now.duration_since(*at) < interval * 2);
        }
        // A tenth of slack: a robot that sleeps `interval` may still arrive
        // early when the network was slow on the previous poll.
        if let Some(last) = polls.get(code)
            && now.duration_since(*last) < interval.mul_f64(0.9)
        {
            let wait = u32::try_from(interval.as_secs().max(1)).unwrap_or(u32::MAX);
            return Err(
                ApiError::new(codes::SLOW_DOWN, "polling faster than the interval; wait longer").retry_after(wait)
            );
        }
        polls.insert(code.to_owned(), now);
        Ok(())
    }
}

fn keys(auth: &UserAuth, ip: Option<IpAddr>) -> Vec<String> {
    vec![format!("user:{}", auth.user.id), attempts::address(ip)]
}

impl Fleet {
    /// Which robot a code belongs to, for the user to check before
    /// confirming (the API's preview and the console's). A wrong code counts
    /// against the user and the address `ip`.
    pub(crate) async fn preview_pairing(
        &self,
        auth: &UserAuth,
        ip: Option<IpAddr>,
        code: &str,
    ) -> Result<PairPreview, ApiError> {
        let pairing = self.pairing_or_fail(code, &keys(auth, ip)).await?;
        let now = Timestamp::now();
        rules::confirm(&pairing, now)?;
        Ok(PairPreview {
            robot_id: pairing.robot.id,
            hostname: pairing.robot.hostname,
            ip_address: pairing.robot.ip_address,
            observed_ip_address: pairing.observed_ip_address,
            architecture: pairing.robot.architecture,
            expires_in: seconds_until(pairing.expires_at, now),
        })
    }

    /// The user confirms a code: the robot becomes theirs, in their license
    /// (the API's confirmation and the console's). A wrong code counts
    /// against the user and the address `ip`.
    pub(crate) async fn confirm_pairing(
        &self,
        auth: &UserAuth,
        ip: Option<IpAddr>,
        code: &str,
    ) -> Result<Robot, ApiError> {
        let pairing = self.pairing_or_fail(code, &keys(auth, ip)).await?;
        let robot = self.robots.confirm_pairing(&pairing.code, &auth.user, Timestamp::now()).await?;
        self.metrics.pairings_confirmed.inc();
        Ok(robot)
    }
}

/// A robot starts pairing (no credential): it gets a code to show its user
/// and a secret to poll with.
#[utoipa::path(
    post,
    path = "/api/pair",
    operation_id = "start_pairing",
    tag = "pairing",
    request_body = PairRequest,
    responses(
        (status = 201, description = "Pairing started", body = PairStarted),
        (status = 409, description = "The code the robot chose is taken (`pair_code_used`)", body = ErrorBody),
        (status = 429, description = "Too many pairings from this address; see Retry-After", body = ErrorBody),
    )
)]
pub async fn start(
    State(fleet): State<Fleet>,
    parts: Parts,
    Json(body): Json<PairRequest>,
) -> Result<(StatusCode, Json<PairStarted>), ApiError> {
    let ip = client_ip(&parts);
    let hostname = check_hostname(&body.hostname)?;
    let architecture = body.architecture.as_deref().map(Architecture::parse).transpose()?;
    let ip_address = match body.ip_address.as_deref() {
        Some(raw) => Some(raw.parse::<IpAddr>().map_err(|_| ApiError::invalid_field("ip_address: not an address"))?),
        None => ip,
    };
    let chosen = body.code.as_deref().map(normalize_code).transpose()?;
    // Counted whatever comes next (a pairing is what is limited).
    drop(fleet.pairings.reserve(&[attempts::address(ip)])?);
    let secret = Secret::generate(codes::POLL_SECRET);
    let now = Timestamp::now();
    let ttl = fleet.config.pair_ttl;
    // A collision of random codes is rare; one the robot chose is its own.
    let mut attempts = if chosen.is_some() { 1 } else { 5 };
    let robot = loop {
        let code = chosen.clone().unwrap_or_else(generate_code);
        let pairing = NewPairing {
            hostname: hostname.clone(),
            ip_address: ip_address.map(|ip| ip.to_string()),
            observed_ip_address: ip.map(|ip| ip.to_string()),
            architecture,
            code: code.clone(),
            secret: secret.hash(),
            expires_at: now.plus(ttl),
        };
        attempts -= 1;
        match fleet.robots.start_pairing(pairing).await {
            Ok(robot) => break (robot, code),
            Err(StoreError::Rejected(err)) if err.code == codes::PAIR_CODE_USED && attempts > 0 => continue,
            Err(err) => return Err(err.into()),
        }
    };
    let (robot, code) = robot;
    fleet.metrics.pairings_started.inc();
    let started = PairStarted {
        robot_id: robot.id,
        status: robot.status,
        code: display_code(&code),
        poll_secret: secret.expose().to_owned(),
        interval: fleet.config.pair_interval.as_secs().max(1),
        expires_in: ttl.as_secs(),
    };
    Ok((StatusCode::CREATED, Json(started)))
}

/// Which robot a code belongs to, for the user to check before confirming
/// (its host name and address). A wrong code counts as a failed attempt.
#[utoipa::path(
    get,
    path = "/api/pair/{code}",
    operation_id = "preview_pairing",
    tag = "pairing",
    params(("code" = inline(PairCode), Path, description = "The code the robot shows (any case, hyphen optional)")),
    responses(
        (status = 200, description = "The robot waiting to pair", body = PairPreview),
        (status = 404, description = "No pairing with this code", body = ErrorBody),
        (status = 409, description = "Confirmed already", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
        (status = 429, description = "Too many wrong codes; see Retry-After", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn preview(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    parts: Parts,
    Path(code): Path<String>,
) -> Result<Json<PairPreview>, ApiError> {
    Ok(Json(fleet.preview_pairing(&auth, client_ip(&parts), &code).await?))
}

/// The signed-in user confirms a code: the robot becomes its, in its
/// license, and active; the robot's next poll gets its token. Wrong codes
/// are limited per user and per address (429 with `Retry-After`).
#[utoipa::path(
    post,
    path = "/api/pair/{code}/confirm",
    operation_id = "confirm_pairing",
    tag = "pairing",
    params(("code" = inline(PairCode), Path, description = "The code the robot shows (any case, hyphen optional)")),
    responses(
        (status = 200, description = "The robot, now the user's", body = PairConfirmed),
        (status = 404, description = "No pairing with this code", body = ErrorBody),
        (status = 409, description = "Confirmed already (`pair_code_used`)", body = ErrorBody),
        (status = 410, description = "Expired (`pair_code_expired`)", body = ErrorBody),
        (status = 429, description = "Too many wrong codes; see Retry-After", body = ErrorBody),
    ),
    security(("user" = []))
)]
pub async fn confirm(
    State(fleet): State<Fleet>,
    auth: UserAuth,
    parts: Parts,
    Path(code): Path<String>,
) -> Result<Json<PairConfirmed>, ApiError> {
    let robot = fleet.confirm_pairing(&auth, client_ip(&parts), &code).await?;
    Ok(Json(PairConfirmed {
        robot_id: robot.id,
        name: robot.name,
        hostname: robot.hostname,
        ip_address: robot.ip_address,
        status: robot.status,
    }))
}

/// The robot polls its pairing every `interval` seconds: `pending`, then
/// `confirmed` with its token — in the first answer only — or `expired`.
/// Only the robot that holds the poll secret (`X-Pair-Secret`) learns
/// anything: without it, or with another, a live code answers exactly as
/// an unknown one (404 `pair_code_not_found`), and such misses count
/// against the address like wrong codes (`fleet.attempts`, then 429
/// `too_many_attempts`). Faster polls get 429 `slow_down`.
#[utoipa::path(
    get,
    path = "/api/pair/{code}/status",
    operation_id = "pairing_status",
    tag = "pairing",
    params(
        ("code" = inline(PairCode), Path, description = "The pairing code"),
        ("X-Pair-Secret" = Option<String>, Header, description = "The poll_secret the pairing started with", max_length = 100),
    ),
    responses(
        (status = 200, description = "Where the pairing is", body = PairStatus),
        (status = 404, description = "No pairing with this code and this secret (`pair_code_not_found`): a live code without its secret answers the same", body = ErrorBody),
        (status = 429, description = "Polling too fast (`slow_down`), or too many misses from this address (`too_many_attempts`); see Retry-After", body = ErrorBody),
    )
)]
pub async fn status(
    State(fleet): State<Fleet>,
    parts: Parts,
    Path(code): Path<String>,
) -> Result<Json<PairStatus>, ApiError> {
    // A malformed code says nothing of live ones: refused before counting.
    let code = normalize_code(&code)?;
    // `Some(None)`: a header that is not visible ASCII.
    let presented = parts.headers.get("x-pair-secret").map(|v| v.to_str().ok().map(str::trim));
    if presented.is_some_and(|s| s.is_none_or(|s| s.chars().count() > MAX_POLL_SECRET)) {
        return Err(ApiError::invalid_field(format!("X-Pair-Secret: at most {MAX_POLL_SECRET} printable characters")));
    }
    let attempt = fleet.confirms.reserve(&[attempts::address(client_ip(&parts))])?;
    let found = match fleet.robots.pairing(&code).await {
        Ok(found) => found,
        Err(err) => {
            attempt.refund();
            return Err(err.into());
        }
    };
    let secret = presented.flatten().map(|s| Secret::new(s).hash());
    let Some(pairing) = found.filter(|p| secret.is_some_and(|s| s.ct_eq(&p.secret))) else {
        return Err(not_found());
    };
    attempt.refund();
    fleet.pace(&code)?;
    let now = Timestamp::now();
    let answer = |status, token| PairStatus { status, robot_id: Some(pairing.robot.id), token };
    match pair_state(&pairing, now) {
        PairState::Pending => Ok(Json(PairStatus { status: "pending", robot_id: None, token: None })),
        PairState::Expired => Ok(Json(PairStatus { status: "expired", robot_id: None, token: None })),
        PairState::Confirmed if pairing.token_delivered => Ok(Json(answer("confirmed", None))),
        PairState::Confirmed => {
            let token = Secret::generate(codes::ROBOT_TOKEN);
            let delivered = fleet.robots.deliver_token(&code, token.hash()).await?;
            Ok(Json(answer("confirmed", delivered.then(|| token.expose().to_owned()))))
        }
    }
}

/// The longest `X-Pair-Secret` read (the document's bound; ours are 47).
const MAX_POLL_SECRET: usize = 100;

/// How long a pairing is kept past its end (status polls still answered).
pub const KEPT_AFTER: Duration = Duration::from_secs(3600);
