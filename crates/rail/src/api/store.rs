//! Seed 004's store service, its endpoints exactly, under `/store_api`:
//! stores (the operator's), items (a store's staff change their own; robots
//! and the operator read any store's), purchases (robots, the operator),
//! and the tasks purchases make for the store.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::idempotency_key;
use relayhub_core::ids::LicensePk;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{self, Caller, forbidden};
use super::{Paged, Paging, RailError, RailErrorBody, RailJson, RailPath, RailQuery, RailResult, StatusOk, text};
use crate::Rail;
use crate::codes;
use crate::keys::parse_public_key;
use crate::model::*;
use crate::rules;

pub fn routes() -> OpenApiRouter<Rail> {
    OpenApiRouter::new()
        .routes(routes!(add_store))
        .routes(routes!(stores))
        .routes(routes!(store, delete_store))
        .routes(routes!(store_token))
        .routes(routes!(store_key))
        .routes(routes!(auth::store_challenge))
        .routes(routes!(auth::store_sign_in))
        .routes(routes!(items))
        .routes(routes!(item, delete_item))
        .routes(routes!(add_item, update_item))
        .routes(routes!(purchase))
        .routes(routes!(tasks))
        .routes(routes!(task))
        .routes(routes!(task_ready))
}

use axum::Json;

/// A store to open.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StoreRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(max_length = 255)]
    pub description: String,
    #[schema(max_length = 255)]
    pub logo_url: String,
    pub store_type: StoreType,
}

/// Opens a store.
#[utoipa::path(post, path = "/store_api/admin/store", tag = "rail-store", operation_id = "rail_add_store",
    security(("bearer" = [])), request_body = StoreRequest, responses((status = 200, body = Store)))]
pub async fn add_store(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<StoreRequest>,
) -> RailResult<Json<Store>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.open_store(license, r).await?))
}

/// The license's stores (deleted ones are not listed).
#[utoipa::path(get, path = "/store_api/admin/stores", tag = "rail-store", operation_id = "rail_stores",
    security(("bearer" = [])), params(Paging), responses((status = 200, body = Paged<Store>)))]
pub async fn stores(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(paging): RailQuery<Paging>,
) -> RailResult<Json<Paged<Store>>> {
    let license = caller.operator()?.pk;
    let page = paging.request()?;
    Ok(Json(Paged::new(rail.shops.stores(license, page).await?, page)))
}

fn store_not_found(id: Uuid) -> ApiError {
    ApiError::new(codes::STORE_NOT_FOUND, format!("no store {id}"))
}

/// A store.
#[utoipa::path(get, path = "/store_api/admin/store/{store_id}", tag = "rail-store", operation_id = "rail_store",
    security(("bearer" = [])), params(("store_id" = Uuid, Path)),
    responses((status = 200, body = Store), (status = 404, description = "`store_not_found`", body = RailErrorBody)))]
pub async fn store(State(rail): State<Rail>, caller: Caller, RailPath(id): RailPath<Uuid>) -> RailResult<Json<Store>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.shops.store(license, id).await?.ok_or_else(|| store_not_found(id))?))
}

/// Deletes a store: it and its items are hidden, its token and key stop
/// working, its purchases and tasks are kept.
#[utoipa::path(delete, path = "/store_api/admin/store/{store_id}", tag = "rail-store", operation_id = "rail_delete_store",
    security(("bearer" = [])), params(("store_id" = Uuid, Path)),
    responses((status = 200, body = StatusOk), (status = 404, description = "`store_not_found`", body = RailErrorBody)))]
pub async fn delete_store(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(id): RailPath<Uuid>,
) -> RailResult<Json<StatusOk>> {
    let license = caller.operator()?.pk;
    rail.shops.delete_store(license, id, Timestamp::now()).await?;
    Ok(StatusOk::ok())
}

/// A store staff's token, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreToken {
    pub token: String,
}

/// Issues the store staff's token (replacing the previous one).
#[utoipa::path(post, path = "/store_api/admin/store/{store_id}/token", tag = "rail-store", operation_id = "rail_store_token",
    security(("bearer" = [])), params(("store_id" = Uuid, Path)),
    responses((status = 200, body = StoreToken), (status = 404, description = "`store_not_found`", body = RailErrorBody)))]
pub async fn store_token(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(id): RailPath<Uuid>,
) -> RailResult<Json<StoreToken>> {
    let license = caller.operator()?.pk;
    Ok(Json(rail.issue_store_token(license, id).await?))
}

/// A store's public key (`active_stores`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct StoreKeyRequest {
    /// Ed25519 or ECDSA P-256: PEM or base64.
    #[schema(min_length = 1, max_length = 500)]
    pub public_key: String,
}

/// Registers the key store staff sign challenges with (replacing one).
#[utoipa::path(post, path = "/store_api/admin/store/{store_id}/key", tag = "rail-store", operation_id = "rail_store_key",
    security(("bearer" = [])), params(("store_id" = Uuid, Path)), request_body = StoreKeyRequest,
    responses((status = 200, body = StatusOk), (status = 404, description = "`store_not_found`", body = RailErrorBody)))]
pub async fn store_key(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(id): RailPath<Uuid>,
    RailJson(r): RailJson<StoreKeyRequest>,
) -> RailResult<Json<StatusOk>> {
    let license = caller.operator()?.pk;
    text("public_key", &r.public_key, 1, 500)?;
    parse_public_key(&r.public_key).map_err(|e| RailError::field("public_key", e))?;
    rail.shops.set_store_key(license, id, &r.public_key).await?;
    Ok(StatusOk::ok())
}

/// Which items: staff see their own store's; others name one or see all.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemFilter {
    /// A store (robots and the operator); staff always see their own.
    pub store_id: Option<Uuid>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

/// Who may read items, and which store they are limited to.
fn item_reader(caller: &Caller) -> Result<(LicensePk, Option<Uuid>), ApiError> {
    match caller {
        Caller::Staff { license, store } => Ok((*license, Some(*store))),
        Caller::Operator(_) | Caller::Robot { .. } => Ok((caller.license(), None)),
        Caller::Passenger { .. } => Err(forbidden("items are read by robots, store staff and the operator")),
    }
}

/// Who may change items, and which store they are limited to.
fn item_writer(caller: &Caller) -> Result<(LicensePk, Option<Uuid>), ApiError> {
    match caller {
        Caller::Staff { license, store } => Ok((*license, Some(*store))),
        Caller::Operator(license) => Ok((license.pk, None)),
        _ => Err(forbidden("items are changed by their store's staff and the operator")),
    }
}

/// A store's items, or every store's.
#[utoipa::path(get, path = "/store_api/store/items", tag = "rail-store", operation_id = "rail_items",
    security(("bearer" = [])), params(ItemFilter), responses((status = 200, body = Paged<Item>)))]
pub async fn items(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(f): RailQuery<ItemFilter>,
) -> RailResult<Json<Paged<Item>>> {
    let (license, own) = item_reader(&caller)?;
    let page = Paging { page: f.page, size: f.size }.request()?;
    Ok(Json(Paged::new(rail.shops.items(license, own.or(f.store_id), page).await?, page)))
}

fn item_not_found(id: Uuid) -> ApiError {
    ApiError::new(codes::ITEM_NOT_FOUND, format!("no item {id}"))
}

/// An item.
#[utoipa::path(get, path = "/store_api/store/item/{item_id}", tag = "rail-store", operation_id = "rail_item",
    security(("bearer" = [])), params(("item_id" = Uuid, Path)),
    responses((status = 200, body = Item), (status = 404, description = "`item_not_found`", body = RailErrorBody)))]
pub async fn item(State(rail): State<Rail>, caller: Caller, RailPath(id): RailPath<Uuid>) -> RailResult<Json<Item>> {
    let (license, own) = item_reader(&caller)?;
    let item = rail.shops.item(license, id).await?.filter(|i| own.is_none_or(|s| s == i.store_id));
    Ok(Json(item.ok_or_else(|| item_not_found(id))?))
}

/// A new item's fields (seed 004's, with `balance`, `category`, `logo_url`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ItemRequest {
    /// The operator's: which store (staff add to their own).
    pub store_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(max_length = 255)]
    #[serde(default)]
    pub description: String,
    #[schema(minimum = 0, maximum = 2147483647)]
    pub price_penny: i64,
    /// Units in stock.
    #[schema(minimum = 0, maximum = 2147483647)]
    #[serde(default)]
    pub balance: i64,
    #[schema(max_length = 100)]
    #[serde(default)]
    pub category: String,
    #[schema(max_length = 255)]
    #[serde(default)]
    pub logo_url: String,
}

pub(super) fn whole(field: &str, value: i64) -> RailResult<i32> {
    i32::try_from(value).ok().filter(|v| *v >= 0).ok_or_else(|| RailError::field(field, "0-2147483647"))
}

impl ItemRequest {
    pub(super) fn fields(self) -> RailResult<ItemFields> {
        text("name", &self.name, 1, 100)?;
        text("description", &self.description, 0, 255)?;
        text("category", &self.category, 0, 100)?;
        text("logo_url", &self.logo_url, 0, 255)?;
        Ok(ItemFields {
            balance: whole("balance", self.balance)?,
            price_penny: whole("price_penny", self.price_penny)?,
            name: self.name,
            description: self.description,
            logo_url: self.logo_url,
            category: self.category,
        })
    }
}

/// A field an update may leave out, but not send as `null`: items have no
/// empty values, and a `null` meant as "clear" must not pass as "keep".
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// What an update changes: the fields it names. One it leaves out keeps
/// its value, so seed 004's body (`id`, `name`, `description`,
/// `price_penny`) keeps the stock, category and logo.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ItemUpdate {
    /// The item to change.
    pub id: Uuid,
    #[schema(value_type = String, required = false, min_length = 1, max_length = 100)]
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[schema(value_type = String, required = false, max_length = 255)]
    #[serde(default, deserialize_with = "present")]
    pub description: Option<String>,
    #[schema(value_type = i64, required = false, minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "present")]
    pub price_penny: Option<i64>,
    /// Units in stock: changed only when sent.
    #[schema(value_type = i64, required = false, minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "present")]
    pub balance: Option<i64>,
    #[schema(value_type = String, required = false, max_length = 100)]
    #[serde(default, deserialize_with = "present")]
    pub category: Option<String>,
    #[schema(value_type = String, required = false, max_length = 255)]
    #[serde(default, deserialize_with = "present")]
    pub logo_url: Option<String>,
}

impl ItemUpdate {
    /// The patch, each named field checked as a new item's is.
    pub(super) fn patch(self) -> RailResult<ItemPatch> {
        let checked = |name: &str, value: Option<String>, min: usize, max: usize| -> RailResult<Option<String>> {
            value.map(|v| text(name, &v, min, max).map(|()| v)).transpose()
        };
        Ok(ItemPatch {
            name: checked("name", self.name, 1, 100)?,
            description: checked("description", self.description, 0, 255)?,
            category: checked("category", self.category, 0, 100)?,
            logo_url: checked("logo_url", self.logo_url, 0, 255)?,
            balance: self.balance.map(|b| whole("balance", b)).transpose()?,
            price_penny: self.price_penny.map(|p| whole("price_penny", p)).transpose()?,
        })
    }
}

/// Adds an item to the staff's store (the operator names `store_id`).
#[utoipa::path(post, path = "/store_api/store/item", tag = "rail-store", operation_id = "rail_add_item",
    security(("bearer" = [])), request_body = ItemRequest,
    responses((status = 200, body = Item), (status = 404, description = "`store_not_found`", body = RailErrorBody)))]
pub async fn add_item(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<ItemRequest>,
) -> RailResult<Json<Item>> {
    let (license, own) = item_writer(&caller)?;
    let store = match (own, r.store_id) {
        (Some(own), Some(named)) if own != named => {
            return Err(RailError::field("store_id", "staff add to their own store"));
        }
        (Some(own), _) => own,
        (None, Some(named)) => named,
        (None, None) => return Err(RailError::field("store_id", "the operator names the store")),
    };
    Ok(Json(rail.add_item_to(license, store, r).await?))
}

/// Changes the fields of an item the body names; the others keep their
/// values (`balance` changes only when it is sent).
#[utoipa::path(put, path = "/store_api/store/item", tag = "rail-store", operation_id = "rail_update_item",
    security(("bearer" = [])), request_body = ItemUpdate,
    responses((status = 200, body = Item), (status = 404, description = "`item_not_found`", body = RailErrorBody)))]
pub async fn update_item(
    State(rail): State<Rail>,
    caller: Caller,
    RailJson(r): RailJson<ItemUpdate>,
) -> RailResult<Json<Item>> {
    let (license, own) = item_writer(&caller)?;
    let id = r.id;
    Ok(Json(rail.shops.update_item(license, own, id, r.patch()?).await?))
}

/// Removes an item from sale; purchases of it keep it.
#[utoipa::path(delete, path = "/store_api/store/item/{item_id}", tag = "rail-store", operation_id = "rail_delete_item",
    security(("bearer" = [])), params(("item_id" = Uuid, Path)),
    responses((status = 200, body = StatusOk), (status = 404, description = "`item_not_found`", body = RailErrorBody)))]
pub async fn delete_item(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(id): RailPath<Uuid>,
) -> RailResult<Json<StatusOk>> {
    let (license, own) = item_writer(&caller)?;
    rail.shops.delete_item(license, own, id, Timestamp::now()).await?;
    Ok(StatusOk::ok())
}

/// A purchase to make.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PurchaseRequest {
    pub user_id: Uuid,
    /// 1–100 lines, all from one store.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<PurchaseLine>,
    /// The task starts ready (nothing to prepare).
    #[serde(default)]
    pub is_default_ready: bool,
}

/// Buys for a passenger: every balance is lowered in one transaction and
/// never below zero; a task is made for the store. With an
/// `Idempotency-Key`, a retry (the same key from the same robot, or the
/// operator) answers the first purchase and changes nothing.
#[utoipa::path(post, path = "/store_api/store/purchase", tag = "rail-store", operation_id = "rail_purchase",
    security(("bearer" = [])), request_body = PurchaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key answer the first purchase; 1-255 printable ASCII characters", min_length = 1, max_length = 255, pattern = "^[ -~]+$")),
    responses((status = 200, body = Purchase,
            headers(("Idempotent-Replayed" = String, description = "`true` when the key's purchase was made before"))),
        (status = 404, description = "`item_not_found` or `user_not_found`", body = RailErrorBody),
        (status = 409, description = "`insufficient_balance`: nothing was bought", body = RailErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used for another purchase; or `invalid_field`", body = RailErrorBody)))]
pub async fn purchase(
    State(rail): State<Rail>,
    caller: Caller,
    headers: HeaderMap,
    RailJson(r): RailJson<PurchaseRequest>,
) -> RailResult<Response> {
    let robot = match &caller {
        Caller::Robot { robot, .. } => Some(*robot),
        Caller::Operator(_) => None,
        _ => return Err(forbidden("purchases are made by robots and the operator").into()),
    };
    let license = caller.license();
    let key = idempotency_key(&headers)?;
    let lines = rules::merge_lines(&r.items).map_err(|e| RailError::field("items", e.message))?;
    if rail.base.passenger(license, r.user_id).await?.is_none() {
        return Err(ApiError::new(ErrorCode::USER_NOT_FOUND, format!("no passenger {}", r.user_id)).into());
    }
    let key = key.map(|key| PurchaseKey {
        caller: robot.map_or_else(|| "operator".to_owned(), |id| id.to_string()),
        key,
        fingerprint: rules::purchase_fingerprint(r.user_id, &lines, r.is_default_ready),
    });
    let new = NewPurchase { user_id: r.user_id, lines, is_default_ready: r.is_default_ready, robot_id: robot, key };
    let Purchased { purchase, replayed } = rail.shops.purchase(license, new, Timestamp::now()).await?;
    Ok(relayhub_core::http::replayed(Json(purchase), replayed))
}

/// A store's tasks to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    /// Ready ones, or waiting ones; both when absent.
    pub is_ready: Option<bool>,
    /// The operator's: which store (staff see their own).
    pub store_id: Option<Uuid>,
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

/// The store's tasks, oldest first: its work list.
#[utoipa::path(get, path = "/store_api/store/tasks", tag = "rail-store", operation_id = "rail_tasks",
    security(("bearer" = [])), params(TaskFilter), responses((status = 200, body = Paged<Task>)))]
pub async fn tasks(
    State(rail): State<Rail>,
    caller: Caller,
    RailQuery(f): RailQuery<TaskFilter>,
) -> RailResult<Json<Paged<Task>>> {
    let (license, own) = item_writer(&caller)?;
    let store = own.or(f.store_id).ok_or_else(|| RailError::query("store_id", "the operator names the store"))?;
    let page = Paging { page: f.page, size: f.size }.request()?;
    Ok(Json(Paged::new(rail.shops.tasks(license, store, f.is_ready, page).await?, page)))
}

fn task_not_found(id: Uuid) -> ApiError {
    ApiError::new(codes::TASK_NOT_FOUND, format!("no task {id}"))
}

/// A task's state: for the robot that made the purchase, the store's
/// staff, and the operator.
#[utoipa::path(get, path = "/store_api/store/task/{task_id}", tag = "rail-store", operation_id = "rail_task",
    security(("bearer" = [])), params(("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, description = "`task_not_found`", body = RailErrorBody)))]
pub async fn task(State(rail): State<Rail>, caller: Caller, RailPath(id): RailPath<Uuid>) -> RailResult<Json<Task>> {
    let task = rail.shops.task(caller.license(), id).await?.filter(|t| match &caller {
        Caller::Operator(_) => true,
        Caller::Robot { robot, .. } => t.robot_id == Some(*robot),
        Caller::Staff { store, .. } => t.store_id == *store,
        Caller::Passenger { user, .. } => t.user_id == user.id,
    });
    Ok(Json(task.ok_or_else(|| task_not_found(id))?))
}

/// Marks a task ready (the order can be collected).
#[utoipa::path(post, path = "/store_api/store/task/{task_id}/ready", tag = "rail-store", operation_id = "rail_task_ready",
    security(("bearer" = [])), params(("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, description = "`task_not_found`", body = RailErrorBody)))]
pub async fn task_ready(
    State(rail): State<Rail>,
    caller: Caller,
    RailPath(id): RailPath<Uuid>,
) -> RailResult<Json<Task>> {
    let (license, own) = item_writer(&caller)?;
    let store = match own {
        Some(store) => store,
        None => rail.shops.task(license, id).await?.ok_or_else(|| task_not_found(id))?.store_id,
    };
    Ok(Json(rail.shops.task_ready(license, store, id).await?))
}
