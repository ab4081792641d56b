//! The back-office HTTP API (`/api/v1/…`, bearer token of a license) and
//! the device WebSocket route, with their OpenAPI description.

pub mod devices;
pub mod inbox;
pub mod messages;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Relay;

/// The relay's routes, documented.
pub fn router(relay: Relay) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(messages::post_one, messages::list_pending))
        .routes(routes!(messages::post_batch))
        .routes(routes!(messages::receipt))
        .routes(routes!(devices::list))
        .routes(routes!(devices::get, devices::bind, devices::unbind))
        .routes(routes!(devices::license))
        .routes(routes!(inbox::list))
        .routes(routes!(inbox::ack))
        .routes(routes!(crate::settings::api::get, crate::settings::api::put))
        .routes(routes!(crate::device::connect))
        .with_state(relay)
}
