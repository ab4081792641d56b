//! Seed 004's `admin` submodule of the base service: it stands in for the
//! railway's own systems (robots, passengers, tickets, engineers, cards,
//! hotels, attractions, which store travels on which train). Operator
//! only; each `POST` answers the created row, each list pages.

use axum::extract::State;
use relayhub_core::time::Timestamp;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Caller;
use super::{Paged, Paging, RailError, RailJson, RailPath, RailQuery, RailResult, text};
use crate::Rail;
use crate::keys::parse_public_key;
use crate::model::*;

pub fn routes() -> OpenApiRouter<Rail> {
    OpenApiRouter::new()
        .routes(routes!(add_robot))
        .routes(routes!(robots))
        .routes(routes!(add_user))
        .routes(routes!(users))
        .routes(routes!(add_ticket))
        .routes(routes!(tickets))
        .routes(routes!(add_engineer))
        .routes(routes!(engineers))
        .routes(routes!(add_card))
        .routes(routes!(add_hotel))
        .routes(routes!(hotels))
        .routes(routes!(add_attraction))
        .routes(routes!(attractions))
        .routes(routes!(add_train_store))
        .routes(routes!(train_stores))
}

use axum::Json;

/// A robot to register.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RobotRequest {
    #[schema(min_length = 1, max_length = 60)]
    pub robot_model_id: String,
    #[schema(min_length = 1, max_length = 60)]
    pub robot_model_name: String,
    /// Ed25519 or ECDSA P-256: PEM (`openssl pkey -pubout`) or base64.
    #[schema(min_length = 1, max_length = 500)]
    pub public_key: String,
}

/// Registers a robot with its public key.
#[utoipa::path(post, path = "/base_api/admin/robot", tag = "rail-base", operation_id = "rail_add_robot",
    security(("bearer" = [])), request_body = RobotRequest, responses((status = 200, body = Robot)))]
pub async fn add_robot(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<RobotRequest>,
) -> RailResult<Json<Robot>> {
    let license = caller.operator()?.pk;
    text("robot_model_id", &r.robot_model_id, 1, 60)?;
    text("robot_model_name", &r.robot_model_name, 1, 60)?;
    text("public_key", &r.public_key, 1, 500)?;
    parse_public_key(&r.public_key).map_err(|e| RailError::field("public_key", e))?;
    let new =
        NewRobot { robot_model_id: r.robot_model_id, robot_model_name: r.robot_model_name, public_key: r.public_key };
    Ok(Json(rail.base.add_robot(license, new).await?))
}

/// The license's robots.
#[utoipa::path(get, path = "/base_api/admin/robots", tag = "rail-base", operation_id = "rail_robots",
    security(("bearer" = [])), params(Paging), responses((status = 200, body = Paged<Robot>)))]
pub async fn robots(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(paging): RailQuery<Paging>,
) -> RailResult<Json<Paged<Robot>>> {
    let license = caller.operator()?.pk;
    let page = paging.request()?;
    Ok(Json(Paged::new(rail.base.robots(license, page).await?, page)))
}

/// A passenger to add.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserRequest {
    #[schema(min_length = 1, max_length = 60)]
    pub name: String,
}

/// Adds a passenger.
#[utoipa::path(post, path = "/base_api/admin/user", tag = "rail-base", operation_id = "rail_add_user",
    security(("bearer" = [])), request_body = UserRequest, responses((status = 200, body = Passenger)))]
pub async fn add_user(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<UserRequest>,
) -> RailResult<Json<Passenger>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.add_passenger(license, r).await?))
}

/// The license's passengers.
#[utoipa::path(get, path = "/base_api/admin/users", tag = "rail-base", operation_id = "rail_users",
    security(("bearer" = [])), params(Paging), responses((status = 200, body = Paged<Passenger>)))]
pub async fn users(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(paging): RailQuery<Paging>,
) -> RailResult<Json<Paged<Passenger>>> {
    let license = caller.operator()?.pk;
    let page = paging.request()?;
    Ok(Json(Paged::new(rail.base.passengers(license, page).await?, page)))
}

/// A ticket to issue.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TicketRequest {
    pub user_id: Uuid,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub train_number: i32,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub wagon_number: i32,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub place_number: i32,
    pub date: Timestamp,
    #[schema(min_length = 1, max_length = 60)]
    pub station_id: String,
    #[schema(min_length = 1, max_length = 60)]
    pub destination_id: String,
    pub start_date: Timestamp,
}

/// Issues a ticket; the answer carries its generated code.
#[utoipa::path(post, path = "/base_api/admin/ticket", tag = "rail-base", operation_id = "rail_add_ticket",
    security(("bearer" = [])), request_body = TicketRequest,
    responses((status = 200, body = Ticket), (status = 404, description = "`user_not_found`", body = super::RailErrorBody)))]
pub async fn add_ticket(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<TicketRequest>,
) -> RailResult<Json<Ticket>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.issue_ticket(license, r).await?))
}

/// Which tickets to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketFilter {
    /// One passenger's tickets only.
    pub user_id: Option<Uuid>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

/// The license's tickets, by departure.
#[utoipa::path(get, path = "/base_api/admin/tickets", tag = "rail-base", operation_id = "rail_tickets",
    security(("bearer" = [])), params(TicketFilter), responses((status = 200, body = Paged<Ticket>)))]
pub async fn tickets(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(f): RailQuery<TicketFilter>,
) -> RailResult<Json<Paged<Ticket>>> {
    let license = caller.operator()?.pk;
    let page = Paging { page: f.page, size: f.size }.request()?;
    Ok(Json(Paged::new(rail.base.tickets(license, f.user_id, page).await?, page)))
}

/// An engineer to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EngineerRequest {
    #[schema(min_length = 1, max_length = 60)]
    pub login: String,
    /// Kept as Argon2id; never answered.
    #[schema(min_length = 8, max_length = 200)]
    pub password: String,
    /// A bit set of what the engineer may do.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub privileges: i64,
}

/// Creates an engineer.
#[utoipa::path(post, path = "/base_api/admin/engineer", tag = "rail-base", operation_id = "rail_add_engineer",
    security(("bearer" = [])), request_body = EngineerRequest,
    responses((status = 200, body = Engineer), (status = 409, description = "The login is taken", body = super::RailErrorBody)))]
pub async fn add_engineer(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<EngineerRequest>,
) -> RailResult<Json<Engineer>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.add_engineer(license, r).await?))
}

/// The license's engineers.
#[utoipa::path(get, path = "/base_api/admin/engineers", tag = "rail-base", operation_id = "rail_engineers",
    security(("bearer" = [])), params(Paging), responses((status = 200, body = Paged<Engineer>)))]
pub async fn engineers(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(paging): RailQuery<Paging>,
) -> RailResult<Json<Paged<Engineer>>> {
    let license = caller.operator()?.pk;
    let page = paging.request()?;
    Ok(Json(Paged::new(rail.base.engineers(license, page).await?, page)))
}

/// An access card's key (what the card reader reads).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CardRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub key: String,
}

/// Gives an engineer an access card; its key is kept hashed.
#[utoipa::path(post, path = "/base_api/admin/engineer/{engineer_id}/card", tag = "rail-base", operation_id = "rail_add_card",
    security(("bearer" = [])), params(("engineer_id" = Uuid, Path)), request_body = CardRequest,
    responses((status = 200, body = AuthCard), (status = 404, description = "`engineer_not_found`", body = super::RailErrorBody),
        (status = 409, description = "The card is registered already", body = super::RailErrorBody)))]
pub async fn add_card(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(engineer): RailPath<Uuid>,
    RailJson(r): RailJson<CardRequest>,
) -> RailResult<Json<AuthCard>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.add_card(license, engineer, r).await?))
}

/// A hotel or attraction to add.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    #[schema(max_length = 1024)]
    pub description: String,
    #[schema(max_length = 256)]
    pub logo_url: String,
    #[schema(min_length = 1, max_length = 256)]
    pub destination_id: String,
}

fn place(r: PlaceRequest) -> RailResult<NewPlace> {
    text("name", &r.name, 1, 256)?;
    text("description", &r.description, 0, 1024)?;
    text("logo_url", &r.logo_url, 0, 256)?;
    text("destination_id", &r.destination_id, 1, 256)?;
    Ok(NewPlace { name: r.name, description: r.description, logo_url: r.logo_url, destination_id: r.destination_id })
}

/// Which places to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlaceFilter {
    /// Near one destination only.
    #[param(max_length = 256)]
    pub destination_id: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

async fn list_places(rail: &Rail, caller: &Caller, kind: PlaceKind, f: PlaceFilter) -> RailResult<Json<Paged<Place>>> {
    let license = caller.operator()?.pk;
    let page = Paging { page: f.page, size: f.size }.request()?;
    if let Some(destination) = &f.destination_id
        && (destination.chars().count() > 256 || destination.contains('\0'))
    {
        return Err(RailError::query("destination_id", "at most 256 characters, no NUL"));
    }
    Ok(Json(Paged::new(rail.base.places(license, kind, f.destination_id.as_deref(), page).await?, page)))
}

/// Adds a hotel near a destination.
#[utoipa::path(post, path = "/base_api/admin/hotel", tag = "rail-base", operation_id = "rail_add_hotel",
    security(("bearer" = [])), request_body = PlaceRequest, responses((status = 200, body = Place)))]
pub async fn add_hotel(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<PlaceRequest>,
) -> RailResult<Json<Place>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.base.add_place(license, PlaceKind::Hotel, place(r)?).await?))
}

/// The license's hotels.
#[utoipa::path(get, path = "/base_api/admin/hotels", tag = "rail-base", operation_id = "rail_hotels",
    security(("bearer" = [])), params(PlaceFilter), responses((status = 200, body = Paged<Place>)))]
pub async fn hotels(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(f): RailQuery<PlaceFilter>,
) -> RailResult<Json<Paged<Place>>> {
    list_places(&rail, &caller, PlaceKind::Hotel, f).await
}

/// Adds an attraction near a destination.
#[utoipa::path(post, path = "/base_api/admin/attraction", tag = "rail-base", operation_id = "rail_add_attraction",
    security(("bearer" = [])), request_body = PlaceRequest, responses((status = 200, body = Place)))]
pub async fn add_attraction(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<PlaceRequest>,
) -> RailResult<Json<Place>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.base.add_place(license, PlaceKind::Attraction, place(r)?).await?))
}

/// The license's attractions.
#[utoipa::path(get, path = "/base_api/admin/attractions", tag = "rail-base", operation_id = "rail_attractions",
    security(("bearer" = [])), params(PlaceFilter), responses((status = 200, body = Paged<Place>)))]
pub async fn attractions(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(f): RailQuery<PlaceFilter>,
) -> RailResult<Json<Paged<Place>>> {
    list_places(&rail, &caller, PlaceKind::Attraction, f).await
}

/// A store travelling on a train.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TrainStoreRequest {
    pub store_id: Uuid,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub train_number: i32,
    pub train_date: Timestamp,
}

/// Puts a store on a train on a day.
#[utoipa::path(post, path = "/base_api/admin/train_store", tag = "rail-base", operation_id = "rail_add_train_store",
    security(("bearer" = [])), request_body = TrainStoreRequest,
    responses((status = 200, body = TrainStore), (status = 404, description = "`store_not_found`", body = super::RailErrorBody)))]
pub async fn add_train_store(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<TrainStoreRequest>,
) -> RailResult<Json<TrainStore>> {
    let license = caller.operator()?.pk;
    if r.train_number < 0 {
        return Err(RailError::field("train_number", "at least 0"));
    }
    Ok(Json(rail.base.add_train_store(license, r.store_id, r.train_number, r.train_date).await?))
}

/// Which store travels on which train.
#[utoipa::path(get, path = "/base_api/admin/train_stores", tag = "rail-base", operation_id = "rail_train_stores",
    security(("bearer" = [])), params(Paging), responses((status = 200, body = Paged<TrainStore>)))]
pub async fn train_stores(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(paging): RailQuery<Paging>,
) -> RailResult<Json<Paged<TrainStore>>> {
    let license = caller.operator()?.pk;
    let page = paging.request()?;
    Ok(Json(Paged::new(rail.base.train_stores(license, page).await?, page)))
}
