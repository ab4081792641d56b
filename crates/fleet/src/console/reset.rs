//! `/console/password-reset?token=rhw_…`: the page a one-time reset link
//! opens. The user chooses a new password; the link is spent, the user's
//! sessions end, and the sign-in page follows. The token travels in the
//! query (redacted from the request log) and then in the form, never in a
//! cookie; the page's `Referrer-Policy` keeps it from other sites.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use relayhub_core::console::{Form, Page, PageError, html, public_page, refused, same_origin};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::client_ip;
use relayhub_core::password::check_password;
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde::Deserialize;

use crate::Fleet;
use crate::acts::RESET_PAGE;
use crate::auth::hash_password;
use crate::codes;

pub(super) fn routes() -> Router<Fleet> {
    Router::new().route(RESET_PAGE, get(form).post(set_password))
}

#[derive(Debug, Deserialize)]
struct Link {
    #[serde(default)]
    token: String,
}

#[derive(Debug, Deserialize)]
struct NewPassword {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

/// A token of the right kind and size, hashed for the store.
fn token_hash(token: &str) -> Option<relayhub_core::secret::SecretHash> {
    (token.starts_with(codes::PASSWORD_RESET.prefix()) && token.len() <= 100).then(|| Secret::new(token).hash())
}

fn spent() -> PageError {
    PageError::new(
        StatusCode::GONE,
        "This link was used already or has expired. Ask your operator for a new password-reset link.",
    )
}

fn page(token: &str, error: Option<&str>) -> Page {
    let body = html! {
        @if let Some(error) = error { p.error role="alert" id="reset-error" { (error) } }
        form.stack method="post" action=(RESET_PAGE) {
            input type="hidden" name="token" value=(token);
            div {
                label for="password" { "New password" }
                input #password type="password" name="password" autocomplete="new-password" required
                    minlength="8" maxlength="200" autofocus aria-describedby=[error.map(|_| "reset-error")];
            }
            div {
                label for="repeat" { "The same again" }
                input #repeat type="password" name="repeat" autocomplete="new-password" required maxlength="200";
            }
            button type="submit" { "Set the password" }
        }
        p.muted { "Setting it signs you out everywhere you are signed in; sign in again with the new one." }
    };
    public_page("Choose a new password", body)
}

async fn form(State(fleet): State<Fleet>, Query(link): Query<Link>) -> Result<Page, PageError> {
    let hash = token_hash(&link.token).ok_or_else(spent)?;
    if !fleet.users.password_reset_valid(hash, Timestamp::now()).await? {
        return Err(spent());
    }
    Ok(page(&link.token, None))
}

async fn set_password(State(fleet): State<Fleet>, parts: Parts, Form(new): Form<NewPassword>) -> Response {
    if !same_origin(&parts.headers) {
        return PageError::new(StatusCode::FORBIDDEN, "Set the password from the link's own page.").into_response();
    }
    let Some(hash) = token_hash(&new.token) else { return spent().into_response() };
    let again = |err: &ApiError, message: &str| refused(err, page(&new.token, Some(message)));
    if new.password != new.repeat {
        return again(&ApiError::invalid_field("repeat"), "The two passwords differ. Type the same one twice.");
    }
    if let Err(err) = check_password(&new.password) {
        return again(&err, &err.message);
    }
    // Asked before the hash, so an unknown token costs no Argon2.
    match fleet.users.password_reset_valid(hash, Timestamp::now()).await {
        Ok(true) => {}
        Ok(false) => return spent().into_response(),
        Err(err) => return PageError::from(err).into_response(),
    }
    let password_hash = match hash_password(new.password).await {
        Ok(h) => h,
        Err(err) if err.code == ErrorCode::PASSWORD_CHECKS_BUSY => {
            return again(&err, "The server is busy. Try again in a moment.");
        }
        Err(err) => return PageError::from(err).into_response(),
    };
    match fleet.users.use_password_reset(hash, password_hash, Timestamp::now()).await {
        Ok(Some(user)) => {
            fleet.record_reset_used(user, client_ip(&parts)).await;
            Redirect::to("/console/login?password_set=1").into_response()
        }
        Ok(None) => spent().into_response(),
        Err(err) => PageError::from(err).into_response(),
    }
}
