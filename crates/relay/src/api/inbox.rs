//! The back-office inbox: records sent up by the license's devices.

use std::time::Duration;

use axum::extract::State;
use relayhub_core::error::{ApiError, ErrorBody};
use relayhub_core::http::{Json, Query};
use relayhub_core::identity::LicenseAuth;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::Relay;
use crate::model::InboxRecord;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// Records to return, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Seconds to hold the request until at least one record exists (long
    /// poll), 0 to the server's `relay.max_wait` (default 60). Fractions
    /// allowed.
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<f64>,
}

/// Unacknowledged records, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub records: Vec<InboxRecord>,
}

/// Records to delete.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InboxAck {
    /// At most 1000 record ids.
    #[schema(max_items = 1000)]
    pub ids: Vec<Uuid>,
}

/// What an acknowledgement deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxAcked {
    /// Records of this license that were waiting and are now gone.
    pub deleted: u64,
    /// The ids that were not: already acknowledged, another license's, or
    /// no record's at all (a message id, say).
    pub unknown: Vec<Uuid>,
}

/// Records sent up by this license's devices, oldest first: up to `limit`,
/// and no more than about 8 MiB of record data in one answer. They stay
/// until acknowledged with `POST /api/v1/inbox/ack`, so a crash between
/// reading and processing loses nothing (a second reader may see the same
/// records).
#[utoipa::path(
    get,
    path = "/api/v1/inbox",
    operation_id = "list_inbox",
    tag = "inbox",
    params(InboxParams),
    responses(
        (status = 200, body = InboxPage),
        (status = 422, description = "Bad limit or wait", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Query(params): Query<InboxParams>,
) -> Result<Json<InboxPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid_field(format!("limit must be 1-{MAX_LIMIT}")));
    }
    let max_wait = relay.config.max_wait;
    let wait = match params.wait.map(Duration::try_from_secs_f64) {
        None => Duration::ZERO,
        Some(Ok(wait)) if wait <= max_wait => wait,
        Some(_) => {
            return Err(ApiError::invalid_field(format!(
                "wait is a number of seconds from 0 to {}",
                max_wait.as_secs_f64()
            )));
        }
    };
    // Subscribe before reading, so a record stored between the read and the
    // wait still wakes us.
    let mut changes = relay.hub.inbox_watch(license.pk);
    let deadline = tokio::time::Instant::now() + wait;
    let shutdown = relay.gateway.shutdown_token().clone();
    let _waiting = Waiting::new(&relay.metrics.inbox_waiting);
    loop {
        changes.borrow_and_update();
        let records = within_page_bytes(relay.inbox.inbox(license.pk, limit).await?);
        if !records.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(InboxPage { records }));
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(Json(InboxPage { records }));
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            () = shutdown.cancelled() => return Ok(Json(InboxPage { records })),
        }
    }
}

/// Record data an answer carries at most (a record is at most a frame, 1
/// MiB by default, so a full page of the largest would be a gigabyte).
const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// The records from the oldest on, while their data stays within
/// [`PAGE_BYTES`] (the first always): a reader takes the rest next time.
fn within_page_bytes(mut records: Vec<InboxRecord>) -> Vec<InboxRecord> {
    let mut total = 0;
    let keep = records
        .iter()
        .take_while(|r| {
            total += r.data.get().len();
            total <= PAGE_BYTES
        })
        .count()
        .max(1);
    records.truncate(keep);
    records
}

/// Counts a long poll in the `inbox_waiting` gauge while it lives.
struct Waiting(prometheus_client::metrics::gauge::Gauge);

impl Waiting {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Deletes processed records.
#[utoipa::path(
    post,
    path = "/api/v1/inbox/ack",
    operation_id = "ack_inbox",
    tag = "inbox",
    request_body = InboxAck,
    responses(
        (status = 200, body = InboxAcked),
        (status = 422, description = "Not a list of record ids", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ack(
    State(relay): State<Relay>,
    LicenseAuth(license): LicenseAuth,
    Json(body): Json<InboxAck>,
) -> Result<Json<InboxAcked>, ApiError> {
    if body.ids.len() > MAX_LIMIT {
        return Err(ApiError::invalid_field(format!("ids: at most {MAX_LIMIT} per call")));
    }
    let deleted = relay.inbox.inbox_ack(license.pk, body.ids.clone()).await?;
    relay.metrics.records_out.inc_by(deleted.len() as u64);
    // Sets, not scans: a call of 1,000 ids would otherwise compare a
    // million pairs.
    let mut seen: std::collections::HashSet<Uuid> = deleted.iter().copied().collect();
    let unknown: Vec<Uuid> = body.ids.into_iter().filter(|id| seen.insert(*id)).collect();
    Ok(Json(InboxAcked { deleted: deleted.len() as u64, unknown }))
}
