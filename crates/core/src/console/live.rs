//! Live regions: a part of a page the server sends again, as server-sent
//! events, whenever it renders differently. The page's script puts each
//! one in place; without scripts, reloading does the same.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use maud::Markup;
use tokio::time::Instant;

use super::PageError;

/// How often a live region is rendered again.
pub const LIVE_INTERVAL: Duration = Duration::from_secs(2);

/// How long one stream lasts: the browser reconnects by itself, and each
/// reconnection passes the session check again (a signed-out user stops
/// receiving within this).
const STREAM_LIFETIME: Duration = Duration::from_secs(60);

/// The events of a live region: `render` every [`LIVE_INTERVAL`], sent
/// when it changed, for at most a minute. A failed render ends the stream
/// (the browser retries in a second).
pub fn live<F, Fut>(render: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Markup, PageError>> + Send,
{
    let deadline = Instant::now() + STREAM_LIFETIME;
    let events = futures_util::stream::unfold((render, None::<String>), move |(mut render, last)| async move {
        loop {
            // The first render goes at once: the page may be older than it.
            if last.is_some() {
                tokio::time::sleep(LIVE_INTERVAL).await;
            }
            if Instant::now() >= deadline {
                return None;
            }
            let html = render().await.ok()?.into_string();
            if last.as_deref() != Some(html.as_str()) {
                let event = Event::default().retry(Duration::from_secs(1)).data(html.clone());
                return Some((Ok(event), (render, Some(html))));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
