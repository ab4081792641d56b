//! The OpenAPI document, generated from the handlers' annotations, and the
//! human-readable docs page (Swagger UI, bundled in the binary).

use axum::Router;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::{Tag, TagBuilder};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "relayhub",
        description = include_str!("../docs/api.md"),
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags((name = "operations", description = "Health, readiness, metrics"))
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

/// The document's frame, with the capabilities' tags (name, description),
/// before the routes add their paths.
pub fn base(tags: &[(&str, &str)]) -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut all: Vec<Tag> =
        tags.iter().map(|(name, about)| TagBuilder::new().name(*name).description(Some(*about)).build()).collect();
    all.extend(api.tags.take().unwrap_or_default());
    api.tags = Some(all);
    api
}

/// `/openapi.json` and the docs page at `/docs`.
pub fn docs(api: utoipa::openapi::OpenApi) -> Router {
    Router::from(SwaggerUi::new("/docs").url("/openapi.json", api))
}
