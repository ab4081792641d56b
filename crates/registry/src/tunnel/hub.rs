//! The server's end of instance tunnels: which instances hold one on this
//! node, and requests carried over them with bounded memory (each body
//! direction moves at most [`WINDOW`] bytes ahead of its reader).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::{CloseHandle, CloseReason, Conn, ConnId, Event};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::StoreResult;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::frames::{self, Frame, Header, WINDOW};
use crate::codes;
use crate::model::InstanceId;
use crate::store::InstanceTokens;

/// The close of a tunnel whose instance token was replaced.
const TOKEN_REPLACED: CloseReason = CloseReason { code: 4001, reason: "instance token replaced" };

/// The tunnels connected to this node, by instance id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tunnels {
    by_instance: Arc<Mutex<HashMap<InstanceId, Arc<Tunnel>>>>,
}

impl Tunnels {
    /// The tunnel of `instance` on this node.
    pub fn get(&self, instance: &InstanceId) -> Option<Arc<Tunnel>> {
        self.lock().get(instance).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, Arc<Tunnel>>> {
        self.by_instance.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes (4001) the tunnels whose instance token was replaced since
    /// they opened: a leaked token, once rotated, holds no tunnel open.
    pub async fn retire_replaced(&self, tokens: &dyn InstanceTokens) -> StoreResult<()> {
        let open: Vec<(InstanceId, Arc<Tunnel>)> = self.lock().iter().map(|(i, t)| (i.clone(), t.clone())).collect();
        for (instance, tunnel) in open {
            let current = tokens.instance_token(&instance).await?;
            if !current.is_some_and(|hash| hash.ct_eq(&tunnel.token)) {
                tracing::info!(%instance, "instance token replaced: closing its tunnel");
                tunnel.close.close(TOKEN_REPLACED);
            }
        }
        Ok(())
    }

    /// Serves one instance's tunnel until it closes; a newer tunnel of the
    /// same instance replaces (closes) an older one.
    /// `token` is the hash of the instance token it opened with.
    pub async fn serve(&self, mut conn: Conn, instance: InstanceId, token: SecretHash, max_streams: usize) {
        let (out, mut outgoing) = mpsc::unbounded_channel();
        let tunnel = Arc::new(Tunnel {
            conn: conn.id(),
            close: conn.close_handle(),
            token,
            out,
            streams: Mutex::default(),
            next_id: AtomicU32::new(1),
            max_streams,
        });
        if let Some(older) = self.lock().insert(instance.clone(), tunnel.clone()) {
            older.close.close(CloseReason::REPLACED);
        }
        tracing::info!(%instance, "instance tunnel open");
        let ready = Frame::Ready { instance_id: instance.to_string(), window: WINDOW };
        let reason = match conn.send(ready.to_text()).await {
            Ok(()) => pump(&mut conn, &tunnel, &mut outgoing).await,
            Err(_) => None,
        };
        {
            let mut map = self.lock();
            if map.get(&instance).is_some_and(|t| t.conn == tunnel.conn) {
                map.remove(&instance);
            }
        }
        tunnel.fail_all("the instance's tunnel closed");
        if let Some(reason) = reason {
            conn.close(reason).await;
        }
        tracing::info!(%instance, "instance tunnel closed");
    }
}

/// Moves frames both ways until the socket ends; the close to send, if any.
async fn pump(conn: &mut Conn, tunnel: &Tunnel, outgoing: &mut mpsc::UnboundedReceiver<Out>) -> Option<CloseReason> {
    loop {
        tokio::select! {
            event = conn.recv() => {
                let handled = match event {
                    Event::Text(text) => tunnel.on_text(&text),
                    Event::Binary(bytes) => tunnel.on_data(bytes),
                    Event::Close(reason) => return Some(reason),
                    Event::Gone => return None,
                    // A frame over the limit, or an event the tunnel does not take.
                    _ => Err(()),
                };
                if handled.is_err() {
                    return Some(CloseReason::PROTOCOL);
                }
            }
            Some(first) = outgoing.recv() => {
                let mut next = Some(first);
                // A batch of what is queued leaves in few writes.
                for _ in 0..64 {
                    let Some(out) = next.take() else { break };
                    let sent = match out {
                        Out::Text(text) => conn.feed(text).await,
                        Out::Data(bytes) => conn.feed_binary(bytes).await,
                    };
                    if sent.is_err() {
                        return None;
                    }
                    next = outgoing.try_recv().ok();
                }
                if conn.flush().await.is_err() {
                    return None;
                }
            }
        }
    }
}

enum Out {
    Text(String),
    Data(Bytes),
}

/// What a request's caller waits for first.
type Head = Result<ResponseHead, ApiError>;

struct Slot {
    head: Option<oneshot::Sender<Head>>,
    body: Option<mpsc::UnboundedSender<std::io::Result<Bytes>>>,
    /// Response bytes received and not yet granted back to the instance.
    unread: Arc<AtomicUsize>,
    /// What the instance still lets us send of the request body.
    upload: Arc<Semaphore>,
}

impl Slot {
    fn fail(mut self, error: ApiError) {
        self.upload.close();
        if let Some(body) = self.body.take() {
            let _ = body.send(Err(std::io::Error::other(error.message.clone())));
        }
        if let Some(head) = self.head.take() {
            let _ = head.send(Err(error));
        }
    }
}

/// One instance's tunnel.
pub struct Tunnel {
    conn: ConnId,
    close: CloseHandle,
    /// The hash of the instance token it was opened with.
    token: SecretHash,
    out: mpsc::UnboundedSender<Out>,
    streams: Mutex<HashMap<u32, Slot>>,
    next_id: AtomicU32,
    max_streams: usize,
}

/// The status and headers of an instance's answer.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<Header>,
}

/// A request for the instance.
pub struct TunnelRequest<B> {
    pub method: String,
    pub path: String,
    pub headers: Vec<Header>,
    /// `None` for a request without a body.
    pub body: Option<B>,
    /// How long the instance may take to answer with its head.
    pub timeout: Duration,
}

impl Tunnel {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, frame: &Frame) {
        let _ = self.out.send(Out::Text(frame.to_text()));
    }

    /// Carries a request to the instance: the response's head, and its body
    /// as a stream (dropping the stream early cancels the request).
    pub async fn request<B>(self: &Arc<Self>, request: TunnelRequest<B>) -> Result<(ResponseHead, TunnelBody), ApiError>
    where
        B: Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static,
    {
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::unbounded_channel();
        let unread = Arc::new(AtomicUsize::new(0));
        let upload = Arc::new(Semaphore::new(WINDOW));
        let id = {
            let mut streams = self.streams();
            if streams.len() >= self.max_streams {
                return Err(ApiError::new(ErrorCode::OVERLOADED, "the instance's tunnel carries too many requests")
                    .retry_after(1));
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let slot =
                Slot { head: Some(head_tx), body: Some(body_tx), unread: unread.clone(), upload: upload.clone() };
            streams.insert(id, slot);
            id
        };
        let mut guard = CancelOnDrop { tunnel: self.clone(), id, armed: true };
        let body = request.body.is_some();
        self.send(&Frame::Request { id, method: request.method, path: request.path, headers: request.headers, body });
        match request.body {
            Some(body) => {
                tokio::spawn(upload_body(self.clone(), id, body, upload));
            }
            None => self.send(&Frame::End { id }),
        }
        let head = match tokio::time::timeout(request.timeout, head_rx).await {
            Ok(Ok(head)) => head?,
            Ok(Err(_)) => return Err(unreachable("the instance's tunnel closed")),
            Err(_) => {
                return Err(ApiError::new(codes::INSTANCE_TIMEOUT, "the instance did not answer in time"));
            }
        };
        guard.armed = false;
        let body = TunnelBody {
            rx: body_rx,
            unread,
            granted: 0,
            cancel: CancelOnDrop { tunnel: self.clone(), id, armed: true },
        };
        Ok((head, body))
    }

    /// Ends a request from this side: the instance is told, its slot freed.
    fn cancel(&self, id: u32, reason: &str) {
        if let Some(slot) = self.streams().remove(&id) {
            slot.fail(ApiError::new(codes::INSTANCE_UNREACHABLE, reason));
            self.send(&Frame::Cancel { id, reason: reason.to_owned() });
        }
    }

    fn fail_all(&self, why: &str) {
        let slots: Vec<Slot> = self.streams().drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            slot.fail(unreachable(why));
        }
    }

    fn on_text(&self, text: &str) -> Result<(), ()> {
        let frame: Frame = serde_json::from_str(text).map_err(|_| ())?;
        let mut streams = self.streams();
        match frame {
            Frame::Response { id, status, headers } => {
                let Some(slot) = streams.get_mut(&id) else { return Ok(()) };
                let head = slot.head.take().ok_or(())?;
                if !(100..=999).contains(&status) {
                    return Err(());
                }
                let _ = head.send(Ok(ResponseHead { status, headers }));
            }
            Frame::End { id } => {
                if let Some(slot) = streams.remove(&id) {
                    if slot.head.is_some() {
                        return Err(());
                    }
                    slot.upload.close();
                }
            }
            Frame::Window { id, bytes } => {
                if let Some(slot) = streams.get(&id) {
                    slot.upload.add_permits(bytes.min(WINDOW));
                }
            }
            Frame::Cancel { id, reason } => {
                if let Some(slot) = streams.remove(&id) {
                    let why = if reason.is_empty() { "the instance gave up on the request".to_owned() } else { reason };
                    slot.fail(unreachable(&format!("the instance could not answer: {}", clip(&why))));
                }
            }
            Frame::Ready { .. } | Frame::Request { .. } => return Err(()),
        }
        Ok(())
    }

    fn on_data(&self, frame: Bytes) -> Result<(), ()> {
        let (id, bytes) = frames::parse_data(frame).ok_or(())?;
        let streams = self.streams();
        let Some(slot) = streams.get(&id) else { return Ok(()) };
        if slot.head.is_some() {
            return Err(());
        }
        if slot.unread.fetch_add(bytes.len(), Ordering::AcqRel) + bytes.len() > WINDOW {
            return Err(());
        }
        if let Some(body) = &slot.body {
            let _ = body.send(Ok(bytes));
        }
        Ok(())
    }
}

fn unreachable(why: &str) -> ApiError {
    ApiError::new(codes::INSTANCE_UNREACHABLE, why)
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Sends a request body within the instance's window; a body that fails
/// (too large, cut off) ends the request with that error.
async fn upload_body<B>(tunnel: Arc<Tunnel>, id: u32, mut body: B, window: Arc<Semaphore>)
where
    B: Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static,
{
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                if let Some(slot) = tunnel.streams().remove(&id) {
                    tunnel.send(&Frame::Cancel { id, reason: error.message.clone() });
                    slot.fail(error);
                }
                return;
            }
        };
        for piece in frames::pieces(chunk) {
            let Ok(permit) = window.acquire_many(piece.len() as u32).await else { return };
            permit.forget();
            let _ = tunnel.out.send(Out::Data(frames::data(id, &piece)));
        }
    }
    if !window.is_closed() {
        tunnel.send(&Frame::End { id });
    }
}

/// Cancels a request whose caller is gone, unless disarmed.
struct CancelOnDrop {
    tunnel: Arc<Tunnel>,
    id: u32,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.tunnel.cancel(self.id, "the caller left");
        }
    }
}

/// A response body coming over a tunnel. As it is read, the instance is
/// granted more window; dropped before its end, it cancels the request.
pub struct TunnelBody {
    rx: mpsc::UnboundedReceiver<std::io::Result<Bytes>>,
    unread: Arc<AtomicUsize>,
    granted: usize,
    cancel: CancelOnDrop,
}

impl Stream for TunnelBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.granted += bytes.len();
                if this.granted >= WINDOW / 2 {
                    let grant = std::mem::take(&mut this.granted);
                    this.unread.fetch_sub(grant, Ordering::AcqRel);
                    this.cancel.tunnel.send(&Frame::Window { id: this.cancel.id, bytes: grant });
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.cancel.armed = false;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.cancel.armed = false;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
