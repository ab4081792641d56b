//! The instance's end of a tunnel: holds the WebSocket to the registry and
//! answers the requests it carries from a local HTTP server, streaming both
//! bodies within their windows. `examples/tunnel.rs` runs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::frames::{self, Frame, WINDOW};
use crate::proxy::{from_pairs, response_headers, to_pairs};

/// Where the tunnel goes and what it answers from.
#[derive(Debug, Clone)]
pub struct TunnelClient {
    /// The registry's tunnel URL, `wss://hub.example.com/ws/instance`.
    pub server: String,
    pub api_key: String,
    pub instance_id: String,
    /// From `relayhub registry instance-token`.
    pub token: String,
    /// The local server requests go to, `http://127.0.0.1:3000`.
    pub local: String,
}

struct Open {
    /// The request body, as the registry sends it; `None` after `end`.
    body: Option<mpsc::UnboundedSender<Bytes>>,
    /// What the registry still lets us send of the response body.
    window: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

type Streams = Arc<Mutex<HashMap<u32, Open>>>;

fn lock(streams: &Streams) -> std::sync::MutexGuard<'_, HashMap<u32, Open>> {
    streams.lock().unwrap_or_else(|e| e.into_inner())
}

impl TunnelClient {
    /// Holds one tunnel until the registry closes it, the network drops it
    /// or `stop` is cancelled. `ready` is told once the registry said
    /// `ready`. Callers reconnect (with a pause) when it returns.
    pub async fn run(
        &self,
        stop: CancellationToken,
        ready: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), String> {
        let mut request = self.server.as_str().into_client_request().map_err(|e| format!("tunnel URL: {e}"))?;
        let headers = request.headers_mut();
        let value = |v: &str| HeaderValue::from_str(v).map_err(|_| "a credential is not a valid header".to_owned());
        headers.insert("x-api-key", value(&self.api_key)?);
        headers.insert("x-instance-id", value(&self.instance_id)?);
        headers.insert("authorization", value(&format!("Bearer {}", self.token))?);
        // Without TCP_NODELAY a small frame after a large one waits for the
        // registry's delayed ACK: 40 ms on every answer that fits in one.
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(|e| format!("opening the tunnel: {e}"))?;
        let (mut sink, mut incoming) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let local = relayhub_core::http_client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("local HTTP client: {e}"))?;
        let streams: Streams = Arc::default();
        let mut ready = ready;
        let result = loop {
            let message = tokio::select! {
                () = stop.cancelled() => break Ok(()),
                message = incoming.next() => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                        break Err(format!("the registry sent a frame this client does not know: {text}"));
                    };
                    if matches!(frame, Frame::Ready { .. }) {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    self.on_frame(frame, &streams, &out, &local);
                }
                Some(Ok(Message::Binary(data))) => {
                    if let Some((id, bytes)) = frames::parse_data(data)
                        && let Some(body) = lock(&streams).get(&id).and_then(|s| s.body.as_ref())
                    {
                        let _ = body.send(bytes);
                    }
                }
                Some(Ok(Message::Close(_))) | None => break Ok(()),
                Some(Ok(_)) => {}
                Some(Err(err)) => break Err(format!("the tunnel failed: {err}")),
            }
        };
        for (_, open) in lock(&streams).drain() {
            open.task.abort();
        }
        let _ = out.send(Message::Close(None));
        drop(out);
        let _ = writer.await;
        result
    }

    fn on_frame(&self, frame: Frame, streams: &Streams, out: &mpsc::UnboundedSender<Message>, local: &reqwest::Client) {
        match frame {
            Frame::Request { id, method, path, headers, body } => {
                let (body_tx, body_rx) = mpsc::unbounded_channel();
                let window = Arc::new(Semaphore::new(WINDOW));
                let call = Call {
                    id,
                    url: format!("{}{path}", self.local.trim_end_matches('/')),
                    method,
                    headers,
                    body: body.then_some(body_rx),
                    window: window.clone(),
                    out: out.clone(),
                    streams: streams.clone(),
                };
                let task = tokio::spawn(call.answer(local.clone()));
                lock(streams).insert(id, Open { body: Some(body_tx), window, task });
            }
            Frame::End { id } => {
                if let Some(open) = lock(streams).get_mut(&id) {
                    open.body = None;
                }
            }
            Frame::Window { id, bytes } => {
                if let Some(open) = lock(streams).get(&id) {
                    open.window.add_permits(bytes.min(WINDOW));
                }
            }
            Frame::Cancel { id, .. } => {
                if let Some(open) = lock(streams).remove(&id) {
                    open.task.abort();
                }
            }
            Frame::Ready { .. } | Frame::Response { .. } => {}
        }
    }
}

/// One request from the registry, answered from the local server.
struct Call {
    id: u32,
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    body: Option<mpsc::UnboundedReceiver<Bytes>>,
    window: Arc<Semaphore>,
    out: mpsc::UnboundedSender<Message>,
    streams: Streams,
}

impl Call {
    fn send(&self, frame: &Frame) {
        let _ = self.out.send(Message::Text(frame.to_text().into()));
    }

    async fn answer(mut self, local: reqwest::Client) {
        let id = self.id;
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = local.request(method, &self.url).headers(from_pairs(&self.headers));
        if let Some(rx) = self.body.take() {
            request = request.body(reqwest::Body::wrap_stream(granting(id, rx, self.out.clone())));
        }
        match request.send().await {
            Err(err) => self.send(&Frame::Cancel { id, reason: format!("the local server: {err}") }),
            Ok(response) => {
                let headers = to_pairs(&response_headers(response.headers()));
                self.send(&Frame::Response { id, status: response.status().as_u16(), headers });
                let mut body = response.bytes_stream();
                let mut failed = None;
                'read: while let Some(chunk) = body.next().await {
                    let chunk = match chunk {
                        Ok(chunk) => chunk,
                        Err(err) => {
                            failed = Some(format!("the local server's body: {err}"));
                            break;
                        }
                    };
                    for piece in frames::pieces(chunk) {
                        let Ok(permit) = self.window.acquire_many(piece.len() as u32).await else { break 'read };
                        permit.forget();
                        let _ = self.out.send(Message::Binary(frames::data(id, &piece)));
                    }
                }
                match failed {
                    Some(reason) => self.send(&Frame::Cancel { id, reason }),
                    None => self.send(&Frame::End { id }),
                }
            }
        }
        lock(&self.streams).remove(&id);
    }
}

/// The request body as the local server reads it; each half window read
/// is granted back to the registry.
fn granting(
    id: u32,
    rx: mpsc::UnboundedReceiver<Bytes>,
    out: mpsc::UnboundedSender<Message>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold((rx, out, 0usize), move |(mut rx, out, mut read)| async move {
        let chunk = rx.recv().await?;
        read += chunk.len();
        if read >= WINDOW / 2 {
            let grant = Frame::Window { id, bytes: std::mem::take(&mut read) };
            let _ = out.send(Message::Text(grant.to_text().into()));
        }
        Some((Ok(chunk), (rx, out, read)))
    })
}
