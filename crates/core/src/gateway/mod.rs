//! The one WebSocket gateway of a node, shared by every capability that
//! holds sockets (relay devices, signaling users).
//!
//! It owns what all sockets have in common: buffer sizes and frame limits,
//! the heartbeat, closing one socket from elsewhere (a newer connection, a
//! revoked credential), and tracking every socket so that shutdown can send
//! each a close frame and wait for it — axum does not wait for upgraded
//! connections on its own.

mod conn;
mod credentials;

pub use conn::{CloseHandle, CloseReason, Conn, ConnId, Event, Heartbeat, Liveness};
pub use credentials::{Credentials, Revoked, verdict};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ApiError, ErrorCode};
use crate::identity::{Accounts, IdentityStore};
use crate::metrics::Metrics;
use crate::store::StoreResult;
use crate::time::Timestamp;
use credentials::Sockets;

/// Socket settings, shared by every WebSocket endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// How often the server sends a WebSocket ping to each socket.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A socket from which nothing (not even a pong) arrived for this long
    /// is closed. Must exceed the clients' own ping interval.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest text frame handled; a larger one is answered with an error
    /// frame and the connection stays. Frames over twice this close the
    /// connection (code 1009) before they are buffered.
    pub max_frame_bytes: usize,
    /// Per-socket read buffer. Small values keep idle sockets cheap.
    pub read_buffer_bytes: usize,
    /// Frames are collected up to this many bytes before a write (every
    /// batch of frames is flushed, so this only merges a batch's writes;
    /// 0 writes every frame on its own). Small, because the buffer keeps
    /// the largest size it reached: at 4 KiB the uplink benchmark's
    /// 200,000 `published` answers took 6,000 writes instead of 200,000.
    pub write_buffer_bytes: usize,
    /// How long shutdown waits for sockets to close.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_frame_bytes: 1024 * 1024,
            read_buffer_bytes: 256,
            write_buffer_bytes: 4096,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

struct Inner {
    config: GatewayConfig,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    next_id: AtomicU64,
    connections: Family<KindLabel, Gauge>,
    /// Every open socket, with what it was opened with ([`Conn::depend_on`]).
    sockets: Sockets,
}

/// Connection ids start at a random multiple of 2^32, so that ids of
/// sockets on different nodes sharing a database do not collide (signaling
/// addresses sockets across nodes by id). Below 2^63: stored as `BIGINT`.
fn first_conn_id() -> u64 {
    let node: u32 = rand::random::<u32>() >> 1;
    (u64::from(node) << 32) | 1
}

/// The node's WebSocket gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    pub fn new(config: GatewayConfig, metrics: &Metrics) -> Self {
        let connections = Family::<KindLabel, Gauge>::default();
        metrics.register("ws_connections", "Open WebSocket connections, by kind", connections.clone());
        Self {
            inner: Arc::new(Inner {
                config,
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                next_id: AtomicU64::new(first_conn_id()),
                connections,
                sockets: Sockets::default(),
            }),
        }
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// Cancelled when the node starts shutting down; long polls and other
    /// waits select on it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Open sockets of one kind.
    pub fn connections(&self, kind: &'static str) -> i64 {
        self.inner.connections.get_or_create(&KindLabel { kind }).get()
    }

    /// The heartbeat of device sockets: server pings every `ping_interval`,
    /// any frame counts as life, closed after `idle_timeout` of silence.
    pub fn default_heartbeat(&self) -> Heartbeat {
        let config = &self.inner.config;
        Heartbeat { interval: config.ping_interval, timeout: config.idle_timeout, liveness: Liveness::AnyFrame }
    }

    /// Completes an upgrade: applies the buffer sizes and frame limits, then
    /// runs `session` on the socket as a tracked task with this heartbeat.
    /// Refused with 503 while shutting down.
    pub fn accept<F, Fut>(
        &self,
        upgrade: WebSocketUpgrade,
        kind: &'static str,
        heartbeat: Heartbeat,
        session: F,
    ) -> Response
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.inner.shutdown.is_cancelled() {
            return ApiError::new(ErrorCode::SHUTTING_DOWN, "the server is shutting down").into_response();
        }
        let config = &self.inner.config;
        let gateway = self.clone();
        let tracker = self.inner.tracker.clone();
        upgrade
            .read_buffer_size(config.read_buffer_bytes)
            .write_buffer_size(config.write_buffer_bytes)
            .max_message_size(config.max_frame_bytes.saturating_mul(2))
            .max_frame_size(config.max_frame_bytes.saturating_mul(2))
            .on_upgrade(move |socket| {
                let id = ConnId(gateway.inner.next_id.fetch_add(1, Ordering::Relaxed));
                let conn = Conn::new(socket, id, kind, heartbeat, gateway);
                tracker.track_future(session(conn))
            })
    }

    /// Starts shutdown: every socket gets a close frame (code 1001) from its
    /// own task. Returns once all sockets closed or the grace period ran out.
    pub async fn shutdown(&self) {
        // Cancelled first: a socket that registers after `close_all` took
        // its turn sees the token cancelled (see `Conn::new`).
        self.inner.shutdown.cancel();
        self.inner.sockets.close_all(CloseReason::SHUTDOWN);
        self.inner.tracker.close();
        let open = self.inner.tracker.len();
        if tokio::time::timeout(self.inner.config.shutdown_grace, self.inner.tracker.wait()).await.is_err() {
            tracing::warn!(open, left = self.inner.tracker.len(), "sockets still open after the shutdown grace period");
        }
    }

    /// Closes every socket of this node whose license expired, whose app
    /// API key was revoked, whose user was deactivated or whose access token
    /// ran out since it opened — whichever capability holds it. Changes
    /// made elsewhere (`relayhub license …` in another process, another
    /// node) are seen too: the stores are asked. Returns how many closed.
    pub async fn check_credentials(
        &self,
        identity: &dyn IdentityStore,
        accounts: Option<&dyn Accounts>,
        now: Timestamp,
    ) -> StoreResult<usize> {
        self.inner.sockets.check(identity, accounts, now).await
    }

    fn connection_gauge(&self, kind: &'static str) -> Gauge {
        self.inner.connections.get_or_create(&KindLabel { kind }).clone()
    }
}
