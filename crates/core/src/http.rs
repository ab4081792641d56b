//! Extractors that answer bad input in the one error shape: a body that is
//! not JSON is 400 `malformed_json`, a field of the wrong type 422
//! `invalid_field` naming the field, a body over the limit 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorCode};
use crate::store::PageRequest;

/// The raw request body, with 413 `payload_too_large` past the router's
/// body limit.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(ErrorCode::PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts"))
            }
            Err(rejection) => match crate::admission::BodyTooSlow::find(&rejection) {
                Some(slow) => Err(ApiError::new(ErrorCode::REQUEST_TIMEOUT, slow.to_string())),
                None => Err(ApiError::new(ErrorCode::BAD_REQUEST, rejection.body_text())),
            },
        }
    }
}

/// How deep JSON from a client may nest: every body and every frame. Deep
/// enough for any real document; shallow enough that what is accepted can
/// be parsed back by every common client (Python's `json`, `jq`) and
/// serialised without deep recursion.
pub const MAX_JSON_DEPTH: usize = 64;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`], before any parser
/// recurses into it. Counts brackets outside strings; malformed JSON is
/// left for the parser to explain.
pub fn check_depth(bytes: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        at += 1;
        match b {
            // Strings are most of a body: jump from quote to quote, past
            // escapes, rather than look at each byte.
            b'"' => loop {
                // `get`: an escape may be the last byte.
                match bytes.get(at..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
                    Some(i) if bytes[at + i] == b'\\' => at += i + 2,
                    Some(i) => {
                        at += i + 1;
                        break;
                    }
                    None => return Ok(()),
                }
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::invalid_field(format!(
                        "JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses JSON, naming the offending field on a type error; JSON nested
/// past [`MAX_JSON_DEPTH`] is refused first.
pub fn parse_json<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ApiError> {
    check_depth(bytes)?;
    let malformed =
        |err: serde_json::Error| ApiError::new(ErrorCode::MALFORMED_JSON, format!("the body is not valid JSON: {err}"));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed(inner);
        }
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        ApiError::invalid_field(format!("{at}{inner}"))
    })?;
    de.end().map_err(malformed)?;
    Ok(value)
}

/// A JSON body or response. The content type of a request is not checked:
/// `curl -d` sends form encoding by default, and refusing what is plainly
/// JSON helps nobody. A body is a JSON object (serde would also read a
/// struct from an array, which the document does not allow).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::new(ErrorCode::MALFORMED_JSON, "the body is empty; send a JSON document"));
        }
        let value = parse_json(&bytes)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid_field("the body must be a JSON object"));
        }
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The most characters of an idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// An idempotency key, checked: 1–[`MAX_IDEMPOTENCY_KEY`] characters, none
/// a control character.
pub fn check_idempotency_key(key: Option<String>) -> Result<Option<String>, ApiError> {
    match key {
        Some(k) if k.is_empty() || k.chars().count() > MAX_IDEMPOTENCY_KEY || k.chars().any(|c| c.is_control()) => {
            Err(ApiError::invalid_field(format!("an idempotency key is 1-{MAX_IDEMPOTENCY_KEY} printable characters")))
        }
        other => Ok(other),
    }
}

/// The refusal of an idempotency key used before for another `what`
/// (message, purchase): a client's mistake, not a retry.
pub fn idempotency_key_reused(key: &str, what: &str) -> ApiError {
    ApiError::new(ErrorCode::IDEMPOTENCY_KEY_REUSED, format!("idempotency key {key:?} was used for a different {what}"))
}

/// An answer marked `Idempotent-Replayed: true` when it repeats an earlier
/// one (a retried write that changed nothing).
pub fn replayed(answer: impl IntoResponse, repeat: bool) -> Response {
    let mut response = answer.into_response();
    if repeat {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response
}

/// A request's `Idempotency-Key` header, checked as above: retries of a
/// write that send the same key get its first answer.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key =
        value.to_str().map_err(|_| ApiError::invalid_field("the Idempotency-Key header must be printable ASCII"))?;
    check_idempotency_key(Some(key.to_owned()))
}

/// Refuses a string whose length in characters (as JSON Schema counts
/// them: `minLength`, `maxLength`) is outside `min..=max`.
pub fn check_length(name: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    match value.chars().count() {
        n if n < min || n > max => Err(ApiError::invalid_field(format!("{name}: {min}-{max} characters"))),
        _ => Ok(()),
    }
}

/// The credential of an `Authorization: Bearer …` header (the scheme in
/// any case), if there is a non-empty one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// For `#[serde(default, deserialize_with = "http::nullable")]`: a field that is
/// absent stays `None` (leave it as it is), `null` is `Some(None)` (clear
/// it), a value is `Some(Some(value))`.
pub fn nullable<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// Query parameters, with 422 `invalid_field` naming the bad parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| ApiError::invalid_field(format!("query parameter {}: {}", err.path(), err.inner())))
    }
}

/// `?page=N&size=M`: pages from 1, at most 100 items.
#[derive(Debug, Clone, Copy, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

impl PageParams {
    pub fn request(self) -> Result<PageRequest, ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.size.unwrap_or(PageRequest::MAX_SIZE);
        if page == 0 || page > PageRequest::MAX_PAGE {
            return Err(ApiError::invalid_field(format!("page is 1-{}", PageRequest::MAX_PAGE)));
        }
        if size == 0 || size > PageRequest::MAX_SIZE {
            return Err(ApiError::invalid_field(format!("size must be 1-{}", PageRequest::MAX_SIZE)));
        }
        Ok(PageRequest { page, size })
    }
}

/// Integers as JSON Schema counts them: `5` and `5.0` alike (a generator
/// or a spreadsheet export may write either); `5.5` is refused.
pub mod integral {
    use serde::de::{Deserialize, Deserializer, Error};

    fn from_number<E: Error, T: TryFrom<i128>>(n: serde_json::Number) -> Result<T, E> {
        let whole = match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i128::from(i),
            (_, Some(u), _) => i128::from(u),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e30 => f as i128,
            _ => return Err(E::custom(format!("expected an integer, got {n}"))),
        };
        T::try_from(whole).map_err(|_| E::custom(format!("{n} is out of range")))
    }

    /// For `#[serde(deserialize_with = "integral::required")]`.
    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        from_number(serde_json::Number::deserialize(d)?)
    }

    /// For `#[serde(default, deserialize_with = "integral::optional")]`.
    pub fn optional<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(from_number).transpose()
    }
}

pub use crate::client::client_ip;

/// The router fallback: unknown paths in the error shape.
pub async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NOT_FOUND, format!("no route {method} {}", uri.path()))
}

/// The answer for a known path with the wrong method.
pub async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

/// Path parameters, with bad ones answered in the error shape.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::invalid_field(rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Patch {
        #[serde(default, deserialize_with = "super::nullable")]
        limit: Option<Option<u32>>,
    }

    #[test]
    fn absent_null_and_a_value_are_three_different_changes() {
        let parse = |json: &str| serde_json::from_str::<Patch>(json).unwrap().limit;
        assert_eq!(parse("{}"), None);
        assert_eq!(parse(r#"{"limit": null}"#), Some(None));
        assert_eq!(parse(r#"{"limit": 5}"#), Some(Some(5)));
    }

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn json_depth_is_counted_outside_strings_and_checked_before_parsing() {
        assert!(check_depth(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert!(check_depth(nested(MAX_JSON_DEPTH + 1).as_bytes()).is_err());
        assert!(check_depth(format!("\"{}\"", "[{".repeat(1000)).as_bytes()).is_ok(), "brackets in strings");
        assert!(check_depth(br#"["\"[[[[", "\\", {"a": "]]]"}]"#).is_ok(), "escaped quotes and backslashes");
        assert!(check_depth(br#"["abc\"#).is_ok(), "an escape as the last byte");
        assert!(check_depth(br#"["abc"#).is_ok(), "an open string at the end");
        let after_escapes = format!(r#"["a\\\"b",{}]"#, nested(MAX_JSON_DEPTH));
        assert!(check_depth(after_escapes.as_bytes()).is_err(), "counting goes on after a string with escapes");
        let refused = parse_json::<serde_json::Value>(nested(100_000).as_bytes()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::INVALID_FIELD);
        assert!(refused.message.contains("64 levels"), "{}", refused.message);
    }
}
