//! The OpenAPI document, generated from the handlers' annotations, and the
//! human-readable docs page (Swagger UI, bundled in the binary).

use axum::Router;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "relayhub",
        description = include_str!("../docs/api.md"),
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "messages", description = "Queue messages for devices and follow their delivery"),
        (name = "devices", description = "The license's devices"),
        (name = "settings", description = "Per-device settings, synced both ways"),
        (name = "inbox", description = "Records sent up by devices"),
        (name = "license", description = "The license itself"),
        (name = "device", description = "The device WebSocket"),
        (name = "signal", description = "WebRTC call signaling over WebSocket (seed 003)"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A license token from `relayhub license create`"))
                    .build(),
            ),
        );
    }
}

/// The document's frame, before the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// `/openapi.json` and the docs page at `/docs`.
pub fn docs(api: utoipa::openapi::OpenApi) -> Router {
    Router::from(SwaggerUi::new("/docs").url("/openapi.json", api))
}
