//! Seed 004's `robot` and `users` submodules of the base service: what a
//! robot does in the carriage (checks tickets, lets engineers in, looks a
//! passenger up, finds the train's stores), and what a passenger sees of
//! themselves.

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::secret::Secret;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{self, Caller};
use super::{Paged, Paging, RailError, RailErrorBody, RailJson, RailPath, RailQuery, RailResult, text};
use crate::Rail;
use crate::model::*;
use crate::rules;

pub fn routes() -> OpenApiRouter<Rail> {
    OpenApiRouter::new()
        .routes(routes!(auth::robot_challenge))
        .routes(routes!(auth::robot_sign_in))
        .routes(routes!(check_ticket))
        .routes(routes!(engineer_card))
        .routes(routes!(engineer_login))
        .routes(routes!(passenger))
        .routes(routes!(train_stores))
        .routes(routes!(me))
        .routes(routes!(my_tickets))
}

use axum::Json;

/// A scanned ticket code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TicketCheck {
    #[schema(min_length = 1, max_length = 128)]
    pub code: String,
    /// The train the robot is on: a ticket for another train is refused
    /// (409 `ticket_wrong_train`). Unchecked when absent.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub train_number: Option<i32>,
}

/// An accepted ticket and its passenger.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckedTicket {
    /// `used` is now `true`.
    pub ticket: Ticket,
    pub user: Passenger,
    /// This robot accepted the ticket before, within `rail.ticket_recheck`:
    /// the answer is repeated and nothing changed (also the header
    /// `Idempotent-Replayed: true`).
    pub repeat: bool,
}

/// Accepts a ticket, once. The accepting robot's repeat within
/// `rail.ticket_recheck` (a retry after a lost answer) gets the same `200`
/// with `"repeat": true`; any other robot, or later, gets 409
/// `ticket_used`. The ticket must be for today in `rail.time_zone` and, when
/// the robot sends `train_number`, for its train.
#[utoipa::path(post, path = "/base_api/robot/ticket/check", tag = "rail-base", operation_id = "rail_check_ticket",
    security(("bearer" = [])), request_body = TicketCheck,
    responses((status = 200, body = CheckedTicket,
            headers(("Idempotent-Replayed" = String, description = "`true` on a repeat of this robot's acceptance"))),
        (status = 404, description = "`ticket_not_found`", body = RailErrorBody),
        (status = 409, description = "`ticket_used`: accepted before, by another robot or too long ago; `ticket_wrong_train`, `ticket_not_today`: the message says what the ticket is for", body = RailErrorBody)))]
pub async fn check_ticket(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<TicketCheck>,
) -> RailResult<Response> {
    let (license, robot) = caller.robot()?;
    text("code", &r.code, 1, 128)?;
    if r.train_number.is_some_and(|n| n < 0) {
        return Err(RailError::field("train_number", "at least 0"));
    }
    let scan = TicketScan {
        robot,
        at: Timestamp::now(),
        train_number: r.train_number,
        recheck_millis: i64::try_from(rail.config.ticket_recheck.as_millis()).unwrap_or(i64::MAX),
        zone: rail.config.time_zone,
    };
    let Scanned { ticket, repeat } = rail.base.use_ticket(license, &r.code, scan).await?;
    let user = rail
        .base
        .passenger(license, ticket.user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::USER_NOT_FOUND, "the ticket's passenger is gone"))?;
    Ok(relayhub_core::http::replayed(Json(CheckedTicket { ticket, user, repeat }), repeat))
}

/// An engineer, signed in at a robot.
#[derive(Debug, Serialize, ToSchema)]
pub struct EngineerSession {
    pub engineer_id: Uuid,
    pub login: String,
    pub privileges: i32,
}

impl From<Engineer> for EngineerSession {
    fn from(e: Engineer) -> Self {
        Self { engineer_id: e.id, login: e.login, privileges: e.privileges }
    }
}

/// An access card's key, as read at the robot.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CardSignIn {
    #[schema(min_length = 1, max_length = 256)]
    pub key: String,
}

/// A login and password typed at the robot.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordSignIn {
    #[schema(min_length = 1, max_length = 60)]
    pub login: String,
    #[schema(min_length = 1, max_length = 200)]
    pub password: String,
}

impl Rail {
    /// Counts an engineer sign-in attempt at `robot`: 429 past
    /// `rail.engineer_attempts_per_minute`.
    fn engineer_attempt(&self, robot: Uuid) -> Result<(), ApiError> {
        self.engineer_attempts.check_key(&robot).map_err(|wait| {
            ApiError::new(ErrorCode::TOO_MANY_ATTEMPTS, "too many engineer sign-ins at this robot; wait")
                .retry_after(super::retry_seconds(&wait))
        })
    }
}

fn wrong_credentials() -> ApiError {
    ApiError::new(ErrorCode::INVALID_CREDENTIALS, "unknown card, or wrong login or password")
}

/// Signs an engineer in by access card.
#[utoipa::path(post, path = "/base_api/robot/engineer/card", tag = "rail-base", operation_id = "rail_engineer_card",
    security(("bearer" = [])), request_body = CardSignIn,
    responses((status = 200, body = EngineerSession),
        (status = 401, description = "Unknown card (`invalid_credentials`)", body = RailErrorBody),
        (status = 429, description = "Too many attempts at this robot", body = RailErrorBody)))]
pub async fn engineer_card(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<CardSignIn>,
) -> RailResult<Json<EngineerSession>> {
    let (license, robot) = caller.robot()?;
    text("key", &r.key, 1, 256)?;
    rail.engineer_attempt(robot)?;
    let engineer =
        rail.base.engineer_by_card(license, &Secret::new(r.key).hash()).await?.ok_or_else(wrong_credentials)?;
    Ok(Json(engineer.into()))
}

/// Signs an engineer in by login and password.
#[utoipa::path(post, path = "/base_api/robot/engineer/login", tag = "rail-base", operation_id = "rail_engineer_login",
    security(("bearer" = [])), request_body = PasswordSignIn,
    responses((status = 200, body = EngineerSession),
        (status = 401, description = "Wrong login or password (`invalid_credentials`)", body = RailErrorBody),
        (status = 429, description = "Too many attempts at this robot (`too_many_attempts`), counted before the password is checked; see Retry-After", body = RailErrorBody),
        (status = 503, description = "Too many password checks at once on this node (`password_checks_busy`); see Retry-After", body = RailErrorBody)))]
pub async fn engineer_login(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<PasswordSignIn>,
) -> RailResult<Json<EngineerSession>> {
    let (license, robot) = caller.robot()?;
    text("login", &r.login, 1, 60)?;
    text("password", &r.password, 1, 200)?;
    rail.engineer_attempt(robot)?;
    let (engineer, hash) = rail.base.engineer_by_login(license, &r.login).await?.unzip();
    // Checked even for an unknown login, so timing does not tell logins apart.
    let matches = relayhub_core::password::verify_if_known(r.password, hash).await?;
    match engineer {
        Some(engineer) if matches => Ok(Json(engineer.into())),
        _ => Err(wrong_credentials().into()),
    }
}

/// A passenger as the robot sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct PassengerCard {
    pub id: Uuid,
    pub name: String,
    /// Tickets not yet in the past.
    pub tickets: Vec<Ticket>,
    /// Near the current tickets' destinations.
    pub hotels: Vec<Place>,
    pub attractions: Vec<Place>,
}

/// Places per destination on a passenger's card.
const PLACES_PER_DESTINATION: u32 = 20;

/// A passenger, their current tickets, and hotels and attractions at the
/// tickets' destinations.
#[utoipa::path(get, path = "/base_api/robot/user/{user_id}", tag = "rail-base", operation_id = "rail_robot_user",
    security(("bearer" = [])), params(("user_id" = Uuid, Path)),
    responses((status = 200, body = PassengerCard), (status = 404, description = "`user_not_found`", body = RailErrorBody)))]
pub async fn passenger(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(id): RailPath<Uuid>,
) -> RailResult<Json<PassengerCard>> {
    let (license, _) = caller.robot()?;
    let user = rail
        .base
        .passenger(license, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::USER_NOT_FOUND, format!("no passenger {id}")))?;
    let now = Timestamp::now();
    let all = rail.base.tickets(license, Some(id), PageRequest { page: 1, size: PageRequest::MAX_SIZE }).await?;
    let tickets: Vec<Ticket> = all.items.into_iter().filter(|t| rules::is_current(t.date, now)).collect();
    let mut destinations: Vec<&str> = tickets.iter().map(|t| t.destination_id.as_str()).collect();
    destinations.sort_unstable();
    destinations.dedup();
    let (mut hotels, mut attractions) = (Vec::new(), Vec::new());
    let page = PageRequest { page: 1, size: PLACES_PER_DESTINATION };
    for destination in destinations {
        hotels.extend(rail.base.places(license, PlaceKind::Hotel, Some(destination), page).await?.items);
        attractions.extend(rail.base.places(license, PlaceKind::Attraction, Some(destination), page).await?.items);
    }
    Ok(Json(PassengerCard { id: user.id, name: user.name, tickets, hotels, attractions }))
}

/// A train on a day.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrainQuery {
    #[param(minimum = 0, maximum = 2147483647)]
    pub train_number: i32,
    /// The train's day, `YYYY-MM-DD` (UTC).
    #[param(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

/// The stores on a train on a day.
#[utoipa::path(get, path = "/base_api/robot/stores", tag = "rail-base", operation_id = "rail_train_store_list",
    security(("bearer" = [])), params(TrainQuery), responses((status = 200, body = Paged<Store>)))]
pub async fn train_stores(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(q): RailQuery<TrainQuery>,
) -> RailResult<Json<Paged<Store>>> {
    let (license, _) = caller.robot()?;
    let page = Paging { page: q.page, size: q.size }.request()?;
    let (from, until) = rules::day_range(q.date);
    Ok(Json(Paged::new(rail.base.stores_on_train(license, q.train_number, from, until, page).await?, page)))
}

/// The signed-in passenger.
#[utoipa::path(get, path = "/base_api/users/me", tag = "rail-base", operation_id = "rail_me",
    security(("bearer" = [])),
    responses((status = 200, body = Passenger)))]
pub async fn me(caller: Caller) -> RailResult<Json<Passenger>> {
    let (_, user) = caller.passenger()?;
    Ok(Json(user.clone()))
}

/// The signed-in passenger's tickets, by departure.
#[utoipa::path(get, path = "/base_api/users/me/tickets", tag = "rail-base", operation_id = "rail_my_tickets",
    security(("bearer" = [])), params(Paging),
    responses((status = 200, body = Paged<Ticket>)))]
pub async fn my_tickets(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(paging): RailQuery<Paging>,
) -> RailResult<Json<Paged<Ticket>>> {
    let (license, user) = caller.passenger()?;
    let page = paging.request()?;
    Ok(Json(Paged::new(rail.base.tickets(license, Some(user.id), page).await?, page)))
}
