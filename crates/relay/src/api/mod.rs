//! The back-office HTTP API (`/api/v1/…`, bearer token of a license) and
//! the device WebSocket route, with their OpenAPI description.

pub mod devices;
pub mod inbox;
pub mod messages;

use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{Relay, RelayConfig};

/// The bounds `[relay]` sets, in the document: the longest long poll and
/// the largest batch.
pub fn describe(config: &RelayConfig, openapi: &mut OpenApi) {
    let inbox = openapi.paths.paths.get_mut("/api/v1/inbox").and_then(|item| item.get.as_mut());
    for param in inbox.and_then(|op| op.parameters.as_mut()).into_iter().flatten() {
        if let RefOr::T(param) = param
            && param.name == "wait"
            && let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut()
        {
            schema.maximum = Some(config.max_wait.as_secs_f64().into());
        }
    }
    let batch = openapi.components.as_mut().and_then(|c| c.schemas.get_mut("Batch"));
    if let Some(RefOr::T(Schema::Object(batch))) = batch
        && let Some(RefOr::T(Schema::Array(messages))) = batch.properties.get_mut("messages")
    {
        messages.max_items = Some(config.max_batch);
    }
}

/// The relay's routes, documented.
pub fn router(relay: Relay) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(messages::post_one, messages::list_pending))
        .routes(routes!(messages::post_batch))
        .routes(routes!(messages::receipt))
        .routes(routes!(devices::list))
        .routes(routes!(devices::get, devices::bind, devices::unbind))
        .routes(routes!(devices::reset))
        .routes(routes!(devices::license))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::ack))
        .routes(routes!(crate::settings::api::get, crate::settings::api::put))
        .routes(routes!(crate::device::connect))
        .with_state(relay)
}
