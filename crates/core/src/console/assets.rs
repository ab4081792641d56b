//! The console's stylesheet and script, compiled into the binary: no build
//! step, no request to another host.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

pub(super) fn routes() -> Router {
    Router::new()
        .route("/console/assets/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/console/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // Short: a new binary's assets are picked up within minutes.
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=300")], body)
}
