//! Queueing messages for devices, listing them, and their receipts.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::http::{
    Body, Json, PageParams, Path, Query, check_idempotency_key, idempotency_key, integral, parse_json,
};
use relayhub_core::identity::LicenseAuth;
use relayhub_core::ids::{DeviceId, LicensePk};
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::Relay;
use crate::codes;
use crate::model::{Enqueued, NewMessage, PendingMessage, Receipt};

/// Longest time to live: ten years, i.e. "until delivered".
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// Longest idempotency key.

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TtlParams {
    /// Seconds until the message expires undelivered (at most ten years).
    #[param(minimum = 1, maximum = 315360000)]
    pub ttl: Option<u64>,
}

/// The answer to queueing one message.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub seq: i64,
}

/// Many messages to queue at once, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Batch {
    /// 1 to `relay.max_batch` (default 1000) messages.
    #[schema(min_items = 1, max_items = 1000)]
    pub messages: Vec<BatchItem>,
}

/// One message of a batch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchItem {
    pub device_id: DeviceId,
    /// Any JSON value.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// 1-255 characters, no control characters.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub idempotency_key: Option<String>,
    /// Seconds until the message expires undelivered (at most ten years).
    #[schema(minimum = 1, maximum = 315360000)]
    #[serde(default, deserialize_with = "integral::optional")]
    pub ttl: Option<u64>,
}

/// The answer to a batch: ids in the order of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAccepted {
    pub ids: Vec<Uuid>,
    /// Id and per-device sequence number of each message, in order.
    pub messages: Vec<Accepted>,
}

/// A device's pending messages, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingList {
    pub device_id: DeviceId,
    pub messages: Vec<PendingMessage>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
}

fn expiry(ttl: Option<u64>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
    match ttl {
        None => Ok(None),
        Some(0) => Err(ApiError::invalid_field("ttl must be at least 1 second")),
        Some(secs) if secs > MAX_TTL_SECS => Err(ApiError::invalid_field("ttl is at most 10 years")),
        Some(secs) => Ok(Some(now.plus(std::time::Duration::from_secs(secs)))),
    }
}

/// Bytes a `message` frame adds around the data (`type`, `id`, `seq`,
/// `time`), rounded up.
const FRAME_ENVELOPE: usize = 256;

impl Relay {
    /// Refuses message data whose frame to the device would be larger than
    /// the largest frame the server itself accepts: a device with the same
    /// limit could never take it, and it would block its queue for good.
    fn check_size(&self, data: &RawValue) -> Result<(), ApiError> {
        let limit = self.gateway.config().max_frame_bytes.saturating_sub(FRAME_ENVELOPE);
        let size = data.get().len();
        if size > limit {
            return Err(ApiError::new(
                ErrorCode::PAYLOAD_TOO_LARGE,
                format!(
                    "message data of {size} bytes exceeds {limit}: its frame would be larger than a device accepts"
                ),
            ));
        }
        Ok(())
    }
}

/// Queues one message for a device.
///
/// The body is the message data: any JSON value. Answers 202 only once the
/// message is committed to disk. A retry with the same `Idempotency-Key`
/// answers the first message (header `Idempotent-Replayed: true`). A device
/// not yet bound is bound to this license.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{device_id}/messages",
    operation_id = "post_message",
    tag = "messages",
    params(
        ("device_id" = DeviceId, Path, description = "The device's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key answer the first message; 1-255 printable ASCII characters", min_length = 1, max_length = 255, pattern = "^[ -~]+$"),
        TtlParams,
    ),
    request_body(content = serde_json::Value, description = "The message data: any JSON value"),
    responses(
        (status = 202, description = "Committed to disk", body = Accepted),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 404, description = "The device belongs to another license", body = ErrorBody),
        (status = 409, description = "Binding the device would exceed max_devices", body = ErrorBody),
        (status = 413, description = "Body over the limit, or message data whose frame would exceed what a device accepts", body = ErrorBody),
        (status = 422, description = "Bad ttl or idempotency key", body = ErrorBody),
        (status = 429, description = "The device's queue is full", body = ErrorBody),
        (status = 503, description = "Storage unavailable; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_one(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
    Query(params): Query<TtlParams>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    let idempotency_key = idempotency_key(&headers)?;
    if body.is_empty() {
        return Err(ApiError::new(ErrorCode::MALFORMED_JSON, "the body is empty; send the message data as JSON"));
    }
    let data: Box<RawValue> = parse_json(&body)?;
    relay.check_size(&data)?;
    let message = NewMessage { device_id, data, idempotency_key, expires_at: expiry(params.ttl, Timestamp::now())? };
    let queued = relay.queue.enqueue(&license, vec![message], relay.config.queue_limit).await?;
    let Some(&Enqueued { id, seq, replayed }) = queued.first() else {
        return Err(ApiError::new(ErrorCode::INTERNAL, "the store returned no message"));
    };
    if !replayed {
        relay.metrics.messages_in.inc();
    }
    let mut response = relayhub_core::http::replayed((StatusCode::ACCEPTED, Json(Accepted { id, seq })), replayed);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/messages/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Queues many messages, for one or many devices, all or nothing.
///
/// Up to `max_batch` (default 1000) messages. If any is refused (a full
/// queue, the device limit…) nothing is queued and the error names it.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    operation_id = "post_messages",
    tag = "messages",
    request_body = Batch,
    responses(
        (status = 202, description = "All committed to disk", body = BatchAccepted),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 404, description = "A device belongs to another license", body = ErrorBody),
        (status = 409, description = "Binding devices would exceed max_devices", body = ErrorBody),
        (status = 413, description = "Body over the limit, or message data whose frame would exceed what a device accepts", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "A device's queue is full", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_batch(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Json(batch): Json<Batch>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    if batch.messages.is_empty() {
        return Err(ApiError::invalid_field("messages: send at least one message"));
    }
    if batch.messages.len() > relay.config.max_batch {
        return Err(ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("a batch holds at most {} messages", relay.config.max_batch),
        ));
    }
    let now = Timestamp::now();
    let messages = batch
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |e: ApiError| ApiError::new(e.code, format!("messages[{i}]: {}", e.message));
            relay.check_size(&item.data).map_err(at)?;
            Ok(NewMessage {
                device_id: item.device_id,
                data: item.data,
                idempotency_key: check_idempotency_key(item.idempotency_key).map_err(at)?,
                expires_at: expiry(item.ttl, now).map_err(at)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let queued = relay.queue.enqueue(&license, messages, relay.config.queue_limit).await?;
    relay.metrics.messages_in.inc_by(queued.iter().filter(|q| !q.replayed).count() as u64);
    let ids = queued.iter().map(|q| q.id).collect();
    let messages = queued.iter().map(|q| Accepted { id: q.id, seq: q.seq }).collect();
    Ok((StatusCode::ACCEPTED, Json(BatchAccepted { ids, messages })))
}

/// A device's pending (queued or sent, unacknowledged) messages, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{device_id}/messages",
    operation_id = "list_pending_messages",
    tag = "messages",
    params(("device_id" = DeviceId, Path, description = "The device's id"), PageParams),
    responses(
        (status = 200, body = PendingList),
        (status = 404, description = "No such device in this license", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_pending(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(device_id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<Json<PendingList>, ApiError> {
    let device_id = DeviceId::parse(&device_id)?;
    let page = page.request()?;
    let found = relay.queue.pending(license.pk, &device_id, page).await?;
    Ok(Json(PendingList { device_id, messages: found.items, page: page.page, size: page.size, total: found.total }))
}

/// A message's delivery receipt: `queued`, `sent`, `delivered` or `expired`.
/// Receipts are kept for the retention period (default 7 days) after the
/// message is delivered or expired.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    operation_id = "get_message",
    tag = "messages",
    params(("id" = Uuid, Path, description = "The message id from the 202 answer")),
    responses(
        (status = 200, body = Receipt),
        (status = 404, description = "No such message in this license", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn receipt(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Path(id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let not_found = || ApiError::new(codes::MESSAGE_NOT_FOUND, format!("no message {id} in this license"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    Ok(Json(relay.receipt_of(license.pk, uuid).await?.ok_or_else(not_found)?))
}

impl Relay {
    /// A message's receipt as of now, if it is `license`'s.
    pub(crate) async fn receipt_of(&self, license: LicensePk, id: Uuid) -> Result<Option<Receipt>, ApiError> {
        Ok(self.queue.receipt(license, id).await?.map(|r| r.as_of(Timestamp::now())))
    }
}
