//! Seed 004's HTTP conventions (FastAPI services) on the platform:
//! `?page=&size=` lists answering `{items,total,page,size}`, 422 with
//! FastAPI's `detail` list, `{"status":"OK"}` on deletion. Errors keep the
//! platform's `error` object beside `detail`, so both kinds of client read
//! them.

pub mod admin;
pub mod auth;
pub mod operator;
pub mod robot;
pub mod store;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use relayhub_core::error::{ApiError, ErrorCode, ErrorDetail};
use relayhub_core::http::{Body, check_depth};
use relayhub_core::store::{Page, PageRequest, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An error of a rail route: the platform's error, and where in the
/// request it is (FastAPI's `loc`) when it is a 422.
#[derive(Debug)]
pub struct RailError {
    pub error: ApiError,
    pub loc: Vec<serde_json::Value>,
}

impl RailError {
    /// A 422 on `field` of the body.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self { error: ApiError::invalid_field(format!("{field}: {}", message.into())), loc: loc("body", field) }
    }

    /// A 422 on the query parameter `name`.
    pub fn query(name: &str, message: impl Into<String>) -> Self {
        Self { error: ApiError::invalid_field(format!("{name}: {}", message.into())), loc: loc("query", name) }
    }
}

fn loc(place: &str, path: &str) -> Vec<serde_json::Value> {
    let mut loc = vec![serde_json::Value::from(place)];
    for part in path.split('.').filter(|p| !p.is_empty()) {
        loc.push(match part.trim_start_matches('[').trim_end_matches(']').parse::<u64>() {
            Ok(index) if part.starts_with('[') => index.into(),
            _ => part.into(),
        });
    }
    loc
}

impl From<ApiError> for RailError {
    fn from(error: ApiError) -> Self {
        Self { error, loc: vec!["body".into()] }
    }
}

impl From<StoreError> for RailError {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

/// One entry of FastAPI's 422 `detail`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationIssue {
    /// Where: `["body","price_penny"]`, `["query","size"]`.
    #[schema(value_type = Vec<Value>)]
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A rail error body: FastAPI's `detail` (a list of issues on 422, the
/// message otherwise) and the platform's `error`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RailErrorBody {
    /// A list of [`ValidationIssue`] on 422, the message otherwise.
    #[schema(value_type = Value)]
    pub detail: serde_json::Value,
    pub error: ErrorDetail,
}

impl IntoResponse for RailError {
    /// The platform's answer (status, headers) with the rail body.
    fn into_response(self) -> Response {
        let error = self.error.body().error;
        let detail = if self.error.code == ErrorCode::INVALID_FIELD {
            serde_json::json!([ValidationIssue { loc: self.loc, msg: error.message.clone(), kind: "value_error" }])
        } else {
            serde_json::Value::from(error.message.clone())
        };
        let body = RailErrorBody { detail, error };
        let mut response = self.error.into_response();
        *response.body_mut() = axum::body::Body::from(serde_json::to_vec(&body).unwrap_or_default());
        response
    }
}

/// Shorthand for rail handlers' results.
pub type RailResult<T> = Result<T, RailError>;

/// A JSON object body, with 422 naming the field (`loc`) on a bad value.
pub struct RailJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for RailJson<T> {
    type Rejection = RailError;

    async fn from_request(req: Request, state: &S) -> Result<Self, RailError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        check_depth(&bytes)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            let valid = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
            return Err(if valid {
                RailError::field("", "the body must be a JSON object")
            } else {
                ApiError::new(ErrorCode::MALFORMED_JSON, "the body is not a JSON document").into()
            });
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.classify() != serde_json::error::Category::Data {
                return ApiError::new(ErrorCode::MALFORMED_JSON, format!("the body is not valid JSON: {inner}")).into();
            }
            let message = inner.to_string();
            // serde names a missing field in its message, at the parent's path.
            let field = match message.split('`').nth(1).filter(|_| message.starts_with("missing field")) {
                Some(name) if path == "." => name.to_owned(),
                Some(name) => format!("{path}.{name}"),
                None => path,
            };
            RailError::field(&field, message.split(" at line ").next().unwrap_or(&message))
        })?;
        de.end().map_err(|e| ApiError::new(ErrorCode::MALFORMED_JSON, format!("the body is not valid JSON: {e}")))?;
        Ok(RailJson(value))
    }
}

/// `?page=&size=` as seed 004 pages: from 1, 50 per page, at most 100.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

impl Paging {
    pub fn request(self) -> RailResult<PageRequest> {
        let page = self.page.unwrap_or(1);
        let size = self.size.unwrap_or(50);
        if page == 0 || page > PageRequest::MAX_PAGE {
            return Err(RailError::query("page", format!("1-{}", PageRequest::MAX_PAGE)));
        }
        if size == 0 || size > PageRequest::MAX_SIZE {
            return Err(RailError::query("size", format!("1-{}", PageRequest::MAX_SIZE)));
        }
        Ok(PageRequest { page, size })
    }
}

/// A page of a list, as seed 004 answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u32,
    pub size: u32,
}

impl<T> Paged<T> {
    pub fn new(page: Page<T>, request: PageRequest) -> Self {
        Self { items: page.items, total: page.total, page: request.page, size: request.size }
    }
}

/// `{"status":"OK"}`: a deletion done.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusOk {
    #[schema(example = "OK")]
    pub status: &'static str,
}

impl StatusOk {
    pub fn ok() -> axum::Json<Self> {
        axum::Json(Self { status: "OK" })
    }
}

/// Refuses a string outside `min..=max` characters, naming the field, and
/// one with a NUL character (PostgreSQL's text cannot hold it; no name or
/// code of seed 004 needs it).
pub fn text(field: &str, value: &str, min: usize, max: usize) -> RailResult<()> {
    if value.contains('\0') {
        return Err(RailError::field(field, "must not contain the NUL character"));
    }
    match value.chars().count() {
        n if n < min || n > max => Err(RailError::field(field, format!("{min}-{max} characters"))),
        _ => Ok(()),
    }
}

/// Query parameters, with 422 naming the parameter.
pub struct RailQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for RailQuery<T> {
    type Rejection = RailError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, RailError> {
        let raw = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de).map(RailQuery).map_err(|err| {
            let message = err.inner().to_string();
            let name = match message.split('`').nth(1).filter(|_| message.starts_with("missing field")) {
                Some(name) => name.to_owned(),
                None => err.path().to_string(),
            };
            RailError::query(&name, message)
        })
    }
}

/// Path parameters (UUIDs), with 422 naming the parameter.
pub struct RailPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for RailPath<T> {
    type Rejection = RailError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, RailError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(RailPath(value)),
            Err(rejection) => {
                Err(RailError { error: ApiError::invalid_field(rejection.body_text()), loc: vec!["path".into()] })
            }
        }
    }
}

pub(crate) use relayhub_core::rate::retry_seconds;
