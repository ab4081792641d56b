//! One upgraded socket: heartbeat, frame policy, and closing on request.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::task::AtomicWaker;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::{Instant, Sleep, sleep_until};

use super::{Credentials, Gateway};

/// How long a closing server waits for the client's close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// A connection's number, unique within this node's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Why the server closes a socket: the WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    /// The node is shutting down; reconnect (to another node) shortly.
    pub const SHUTDOWN: Self = Self { code: 1001, reason: "server shutting down" };
    /// Nothing was heard from the client for the heartbeat timeout.
    pub const IDLE: Self = Self { code: 1001, reason: "heartbeat timeout" };
    /// The client reads too slowly: its bounded send buffer filled up.
    pub const TOO_SLOW: Self = Self { code: 4008, reason: "send buffer full" };
    /// A newer connection of the same device or user took over.
    pub const REPLACED: Self = Self { code: 4000, reason: "replaced by a newer connection" };
    /// The API key used for this connection was revoked.
    pub const KEY_REVOKED: Self = Self { code: 4001, reason: "api key revoked" };
    /// The license of this connection expired.
    pub const LICENSE_EXPIRED: Self = Self { code: 4003, reason: "license expired" };
    /// The device was unbound from its license.
    pub const UNBOUND: Self = Self { code: 4004, reason: "device unbound" };
    /// The signed-in user of this connection was deactivated or deleted.
    pub const USER_SIGNED_OUT: Self = Self { code: 4005, reason: "user deactivated" };
    /// The access token this connection was opened with expired: open a
    /// new one with a fresh token.
    pub const ACCESS_EXPIRED: Self = Self { code: 4006, reason: "access token expired" };
    /// A frame far over the size limit (more than twice it).
    pub const TOO_LARGE: Self = Self { code: 1009, reason: "frame too large" };
    /// The client broke its protocol in a way that leaves nothing to answer
    /// (a registry tunnel sending past its window).
    pub const PROTOCOL: Self = Self { code: 1002, reason: "protocol error" };
}

/// What happened on a socket. Open to new kinds (a capability's protocol
/// that needs one adds it without breaking the others' sessions, which
/// refuse what they do not take).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A text frame within the size limit.
    Text(Utf8Bytes),
    /// A text frame over the size limit, of this many bytes; not handled.
    TooLarge(usize),
    /// A binary frame: body bytes for the registry tunnel; the text
    /// protocols refuse it.
    Binary(axum::body::Bytes),
    /// The server decided to close the socket; send the close frame with
    /// [`Conn::close`].
    Close(CloseReason),
    /// The client closed the socket or the network dropped it.
    Gone,
}

/// Shared by a connection and its [`CloseHandle`]s: the first reason to
/// close, and the connection task's waker, woken once a reason is set.
/// Neither a child cancellation token (a token node costs an idle socket
/// more than the rest of this together) nor a `Notify` beside the
/// gateway's shutdown token: each pass of `recv` registered with both
/// under their locks and dropped the registrations again, the shutdown
/// token's lock shared by every socket on every worker. Shutdown closes
/// sockets through the gateway's registry instead.
struct Control {
    reason: OnceLock<CloseReason>,
    waker: AtomicWaker,
}

impl Control {
    fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Ready once a reason is set. Registers the waker before it looks, so
    /// that a reason set at any moment wakes the task.
    fn closed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.reason.get().is_some() { Poll::Ready(()) } else { Poll::Pending }
        })
    }
}

/// Closes one connection from elsewhere (a newer connection, a revoked
/// credential). Cheap to clone; closing a gone connection does nothing.
#[derive(Clone)]
pub struct CloseHandle {
    id: ConnId,
    control: Arc<Control>,
}

impl CloseHandle {
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Asks the connection to close with this reason. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        // A later reason is ignored; the task is woken either way.
        let _ = self.control.reason.set(reason);
        self.control.waker.wake();
    }
}

impl std::fmt::Debug for CloseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CloseHandle").field(&self.id).finish()
    }
}

/// What counts as a sign of life from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Any frame, WebSocket pongs included (devices).
    AnyFrame,
    /// Only what the capability reports with [`Conn::alive`] (seed 003's
    /// text `PING`).
    Explicit,
}

/// How a socket's life is checked.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// How often the server checks; each check also sends a WebSocket ping,
    /// which keeps proxies from closing a quiet socket.
    pub interval: Duration,
    /// A socket without a sign of life for this long is closed.
    pub timeout: Duration,
    pub liveness: Liveness,
}

/// An upgraded WebSocket with the gateway's policies applied.
pub struct Conn {
    ws: WebSocket,
    id: ConnId,
    control: Arc<Control>,
    max_frame: usize,
    heartbeat: Heartbeat,
    last_alive: Instant,
    next_check: Pin<Box<Sleep>>,
    gauge: Gauge,
    gateway: Gateway,
}

impl Conn {
    pub(super) fn new(ws: WebSocket, id: ConnId, kind: &'static str, heartbeat: Heartbeat, gateway: Gateway) -> Self {
        let now = Instant::now();
        let gauge = gateway.connection_gauge(kind);
        gauge.inc();
        let control = Arc::new(Control { reason: OnceLock::new(), waker: AtomicWaker::new() });
        let close = CloseHandle { id, control: control.clone() };
        gateway.inner.sockets.insert(close.clone());
        // Registered before it looks: shutdown cancels the token before it
        // closes the registered sockets, so this one is closed either way.
        if gateway.inner.shutdown.is_cancelled() {
            close.close(CloseReason::SHUTDOWN);
        }
        Self {
            ws,
            id,
            control,
            max_frame: gateway.config().max_frame_bytes,
            heartbeat,
            last_alive: now,
            next_check: Box::pin(sleep_until(now + heartbeat.interval)),
            gauge,
            gateway,
        }
    }

    /// Records a sign of life (for [`Liveness::Explicit`] sockets).
    pub fn alive(&mut self) {
        self.last_alive = Instant::now();
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    /// A handle that closes this connection from elsewhere.
    pub fn close_handle(&self) -> CloseHandle {
        CloseHandle { id: self.id, control: self.control.clone() }
    }

    /// Closes this connection, with the documented code, once one of
    /// `credentials` stops being valid (see [`Gateway::check_credentials`]).
    pub fn depend_on(&self, credentials: Credentials) {
        self.gateway.inner.sockets.depend(self.id, credentials);
    }

    /// The next event. Pings, pongs and the heartbeat are handled inside.
    /// Cancel-safe: it may be raced against other futures in a `select!`.
    pub async fn recv(&mut self) -> Event {
        loop {
            if let Some(reason) = self.control.reason() {
                return Event::Close(reason);
            }
            tokio::select! {
                biased;
                () = self.control.closed() => {}
                () = &mut self.next_check => {
                    if self.last_alive.elapsed() >= self.heartbeat.timeout {
                        return Event::Close(CloseReason::IDLE);
                    }
                    let next = Instant::now() + self.heartbeat.interval;
                    self.next_check.as_mut().reset(next);
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        return Event::Gone;
                    }
                }
                frame = self.ws.recv() => {
                    if self.heartbeat.liveness == Liveness::AnyFrame {
                        self.last_alive = Instant::now();
                    }
                    match frame {
                        Some(Ok(Message::Text(text))) if text.len() > self.max_frame => {
                            return Event::TooLarge(text.len());
                        }
                        Some(Ok(Message::Text(text))) => return Event::Text(text),
                        Some(Ok(Message::Binary(bytes))) => return Event::Binary(bytes),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Err(err)) if too_large(&err) => return Event::Close(CloseReason::TOO_LARGE),
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Event::Gone,
                    }
                }
            }
        }
    }

    /// Sends one text frame now.
    pub async fn send(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), axum::Error> {
        self.ws.send(Message::Text(text.into())).await
    }

    /// Queues a text frame without flushing; call [`Conn::flush`] after a
    /// batch so that many frames leave in few writes.
    pub async fn feed(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), axum::Error> {
        self.ws.feed(Message::Text(text.into())).await
    }

    /// Queues a binary frame without flushing.
    pub async fn feed_binary(&mut self, bytes: axum::body::Bytes) -> Result<(), axum::Error> {
        self.ws.feed(Message::Binary(bytes)).await
    }

    pub async fn flush(&mut self) -> Result<(), axum::Error> {
        self.ws.flush().await
    }

    /// Sends a close frame and ends the connection after the client's
    /// answering close frame (the closing handshake), or a short wait: a
    /// client that was not reading still finds the close frame, instead of
    /// a reset connection.
    ///
    /// Borrows rather than consumes: a session awaiting this from its own
    /// state then holds no second copy of the socket.
    pub async fn close(&mut self, reason: CloseReason) {
        let frame = CloseFrame { code: reason.code, reason: reason.reason.into() };
        // The peer may already be gone; there is nothing left to do then.
        if self.ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let handshake = async {
            while let Some(Ok(message)) = self.ws.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, handshake).await;
    }
}

/// Whether the socket failed on a frame past the hard limit (twice the
/// configured one), which the client is told with a close frame (1009).
fn too_large(err: &axum::Error) -> bool {
    let cause = std::error::Error::source(err).and_then(|e| e.downcast_ref::<tungstenite::Error>());
    matches!(cause, Some(tungstenite::Error::Capacity(_)))
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.gateway.inner.sockets.remove(self.id);
        self.gauge.dec();
    }
}
