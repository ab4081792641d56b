//! `GET /install.sh`: the script a robot runs to pair itself and set up
//! Telegraf (`curl -fsSL https://…/install.sh | sh`), pointed at the
//! address it was fetched from.

use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

const SCRIPT: &str = include_str!("../assets/install.sh");

/// This server's address as the client reached it: the `Host` header, and
/// `X-Forwarded-Proto` from a trusted proxy (nginx terminating TLS).
fn base_url(parts: &Parts) -> String {
    let from_proxy = relayhub_core::client::via_trusted_proxy(parts);
    let proto = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| from_proxy && matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)))
        .unwrap_or("127.0.0.1:8080");
    format!("{proto}://{host}")
}

/// The robot installer: pairs the robot (printing the code to confirm) and
/// writes Telegraf's configuration with the robot's token. POSIX `sh`,
/// `curl` and `sed` are all it needs.
#[utoipa::path(
    get,
    path = "/install.sh",
    operation_id = "install_script",
    tag = "pairing",
    responses((status = 200, description = "A POSIX sh script", content_type = "text/x-shellscript", body = String))
)]
pub async fn script(parts: Parts) -> impl IntoResponse {
    let body = SCRIPT.replace("__RELAYHUB_URL__", &base_url(&parts));
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")], body)
}
