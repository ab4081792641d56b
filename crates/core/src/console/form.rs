//! Form bodies of console pages, refused as a page a person can read.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::PageError;

/// A URL-encoded form (`application/x-www-form-urlencoded`), its fields
/// named in the refusal when they do not fit `T`. Unknown fields (the
/// CSRF token among them) are ignored.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(&bytes));
        serde_path_to_error::deserialize(deserializer).map(Form).map_err(|err| {
            let field = err.path().to_string();
            PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("The form's field '{field}' is not valid: {}", err.inner()),
            )
        })
    }
}
