//! The OpenAPI document, generated from the handlers' annotations, and the
//! human-readable docs page (Swagger UI, bundled in the binary).

use axum::Router;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::{Tag, TagBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
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

/// `/openapi.json` (made as strict as the server, see [`harden`]) and the
/// docs page at `/docs`.
pub fn docs(mut api: utoipa::openapi::OpenApi) -> Router {
    harden(&mut api);
    Router::from(SwaggerUi::new("/docs").url("/openapi.json", api))
}

/// An error response in the one error shape.
fn error(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
}

fn with_header(response: RefOr<Response>, name: &str, description: &str) -> RefOr<Response> {
    let RefOr::T(mut response) = response else { return response };
    let schema = ObjectBuilder::new().schema_type(Type::String).build();
    let header = HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build();
    response.headers.insert(name.to_owned(), RefOr::T(header));
    RefOr::T(response)
}

/// Documents, on every operation of every capability, the error statuses
/// the platform itself answers — so that no capability can forget them
/// and a schema-driven client knows every status it may get:
///
/// - 401 and 403 (`license_expired`, `forbidden`) where a credential is
///   required;
/// - 400 (not JSON), 413 (over the body limit) and 422 (a bad field) where
///   a body is read; 422 where path or query parameters are;
/// - 503 everywhere: storage unavailable or shutting down (`Retry-After`).
///
/// An operation's own description of a status is kept. Responses without a
/// description get their status's reason phrase (the format requires one).
pub fn harden(api: &mut utoipa::openapi::OpenApi) {
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ];
        for operation in operations.into_iter().flatten() {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let body = operation.request_body.is_some();
            let params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: RefOr<Response>| {
                responses.entry(status.to_owned()).or_insert(response);
            };
            if secured {
                let unknown = error("No credential, or an unknown, expired or revoked one");
                add("401", with_header(unknown, "WWW-Authenticate", "`Bearer`"));
                let refused = "Not allowed: the license has expired (`license_expired`), or the credential lacks the right (`forbidden`)";
                add("403", error(refused));
            }
            if body {
                add("400", error("The body is not JSON (`malformed_json`)"));
                add("413", error("The body is larger than the server accepts (`payload_too_large`)"));
            }
            if body || params {
                add("422", error("A field or parameter is invalid (`invalid_field`)"));
            }
            add(
                "503",
                with_header(
                    error("Storage unavailable, or the server is shutting down; retry"),
                    "Retry-After",
                    "Seconds to wait before retrying",
                ),
            );
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    let reason = status.parse::<u16>().ok().and_then(|s| axum::http::StatusCode::from_u16(s).ok());
                    response.description = reason.and_then(|r| r.canonical_reason()).unwrap_or("Answer").to_owned();
                }
            }
        }
    }
}
