//! The HTTP accept loop, hardened against clients that hold sockets
//! without using them:
//!
//! - a connection must send a complete request header within
//!   `http.header_timeout`, and a kept-alive connection that sends nothing
//!   for that long is closed (hyper's header-read timeout covers both);
//! - while it has shown no valid credential, its whole request must arrive
//!   within `http.request_timeout` (for its first request, counted from
//!   the accept), and any body must keep up `http.min_body_rate` ([`body`]);
//! - at most `http.max_pending_per_ip` connections per client address (an
//!   IPv6 client by its /64), and `http.max_pending` in all, may be open
//!   without having shown a valid credential ([`Admission`]); past that a
//!   new connection gets an immediate 503 `overloaded` and is closed;
//! - the client address is the peer's, or — from a peer listed in
//!   `http.trusted_proxies` — the one the proxy reports in
//!   `X-Forwarded-For` ([`TrustedProxies`]); a proxy's connection counts
//!   toward the total only and each request it forwards toward its own
//!   client's share;
//! - when the process runs out of file descriptors, the loop neither spins
//!   nor leaves clients hanging in the backlog: it frees a descriptor held
//!   in reserve, accepts the waiting connection, answers it 503 and closes
//!   it, and logs that at most every few seconds.
//!
//! Upgraded WebSockets leave this loop (the gateway keeps them, with their
//! own heartbeat); graceful shutdown lets requests in flight finish.

mod body;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use relayhub_core::admission::{Admission, Ticket};
use relayhub_core::client::{ClientAddr, TrustedProxies, ViaTrustedProxy};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::metrics::Metrics;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// HTTP connection settings (`[http]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A request's header must arrive within this, and a kept-alive
    /// connection idle this long is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Connections without a valid credential yet, per source address (0:
    /// no limit). Devices behind one NAT reconnecting at once count here
    /// only until their upgrade is authenticated.
    pub max_pending_per_ip: usize,
    /// Connections without a valid credential yet, in all (0: no limit).
    pub max_pending: usize,
    /// On a connection without a valid credential yet, the whole request
    /// (headers and body) must arrive within this; past it, 408 and close.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A request body must arrive at this many bytes a second on average
    /// once `body_rate_grace` has passed (0: no minimum).
    pub min_body_rate: u64,
    /// How long a body may take before `min_body_rate` applies.
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Duration,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR
    /// ranges, e.g. `["127.0.0.1", "::1"]` for nginx on the same host).
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            max_pending_per_ip: 1024,
            max_pending: 8192,
            request_timeout: Duration::from_secs(15),
            min_body_rate: 1024,
            body_rate_grace: Duration::from_secs(10),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The answer to a connection refused before its request is read: 503
/// `overloaded` in the error shape.
fn overloaded() -> Vec<u8> {
    let error = ApiError::new(ErrorCode::OVERLOADED, "too many connections are waiting; retry shortly");
    let body = serde_json::to_string(&error.body()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

/// Refuses a connection: the 503 if the socket takes it at once, then close.
fn shed(stream: TcpStream, answer: &[u8]) {
    let _ = stream.try_write(answer);
}

/// A file descriptor held in reserve for the moment there are none left.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn take() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    fn release(&mut self) {
        self.0 = None;
    }

    /// Takes the descriptor back; `false` if there is none to take yet.
    fn refill(&mut self) -> bool {
        *self = Self::take();
        self.0.is_some()
    }
}

/// Counts refusals and says so in the log at most every few seconds.
struct Shedding {
    counts: Family<ReasonLabel, Counter>,
    since_log: u64,
    last_log: Option<Instant>,
}

impl Shedding {
    fn record(&mut self, reason: &'static str) {
        self.counts.get_or_create(&ReasonLabel { reason }).inc();
        self.since_log += 1;
        if self.last_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
            tracing::warn!(refused = self.since_log, reason, "refusing connections: the node is at its limit");
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

fn out_of_descriptors(err: &io::Error) -> bool {
    // EMFILE (per process) and ENFILE (system-wide).
    matches!(err.raw_os_error(), Some(24 | 23))
}

/// What every request of one connection is served with.
#[derive(Clone)]
struct Requests {
    router: Router,
    peer: SocketAddr,
    /// The peer is a trusted proxy: the client is in `X-Forwarded-For`.
    from_proxy: bool,
    connection: Arc<Ticket>,
    admission: Arc<Admission>,
    config: Arc<HttpConfig>,
    accepted: Instant,
    /// The connection's first request is timed from the accept.
    first: Arc<AtomicBool>,
}

impl Requests {
    async fn serve(self, mut request: hyper::Request<Incoming>) -> Result<axum::response::Response, Infallible> {
        let client = self.config.trusted_proxies.client(self.peer.ip(), request.headers());
        let ticket = if self.from_proxy {
            match self.admission.admit_forwarded(client, &self.connection) {
                Ok(ticket) => ticket,
                Err(_) => {
                    let refused = ApiError::new(
                        ErrorCode::OVERLOADED,
                        "too many requests from your address are waiting; retry shortly",
                    );
                    return Ok(axum::response::IntoResponse::into_response(refused));
                }
            }
        } else {
            self.connection.clone()
        };
        let started = if self.first.swap(false, Ordering::AcqRel) { self.accepted } else { Instant::now() };
        let pace = body::Pace {
            started,
            deadline: self.config.request_timeout,
            min_rate: self.config.min_body_rate,
            grace: self.config.body_rate_grace,
        };
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(self.peer));
        extensions.insert(ClientAddr(client));
        extensions.insert(ticket.clone());
        if self.from_proxy {
            extensions.insert(ViaTrustedProxy);
        }
        let request = request.map(|incoming| axum::body::Body::new(body::PacedBody::new(incoming, pace, Some(ticket))));
        self.router.oneshot(request).await
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let admission = Admission::new(config.max_pending_per_ip, config.max_pending);
    let pending = Gauge::<i64>::default();
    metrics.register("http_connections_pending", "Connections without a valid credential yet", pending.clone());
    let counts = Family::<ReasonLabel, Counter>::default();
    metrics.register("http_connections_refused", "Connections refused at accept, by reason", counts.clone());
    let gauge_source = admission.clone();
    metrics.on_render(move || {
        pending.set(gauge_source.pending() as i64);
    });
    let mut shedding = Shedding { counts, since_log: 0, last_log: None };

    // HTTP/1.1, as every client here speaks it (devices, back-offices, nginx
    // in front): guessing the version first would wait for a first byte
    // with no timeout at all.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    // Connections in flight, and the word to finish their request and close.
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    // Cloned per request: shared, not copied.
    let shared = Arc::new(config.clone());
    let mut reserve = Reserve::take();
    let refusal = overloaded();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if out_of_descriptors(&err) => {
                // Free the reserve to take the waiting connection off the
                // backlog and refuse it, rather than spin on the error.
                reserve.release();
                if let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(10), listener.accept()).await {
                    shed(stream, &refusal);
                }
                shedding.record("no_file_descriptors");
                if !reserve.refill() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
            Err(err) => {
                tracing::debug!(%err, "accept failed");
                continue;
            }
        };
        let from_proxy = config.trusted_proxies.trusts(addr.ip());
        let admitted = if from_proxy { admission.admit_proxy() } else { admission.admit(addr.ip()) };
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(why) => {
                shed(stream, &refusal);
                shedding.record(why.as_str());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let requests = Requests {
            router: router.clone(),
            peer: addr,
            from_proxy,
            connection: ticket,
            admission: admission.clone(),
            config: shared.clone(),
            accepted: Instant::now(),
            first: Arc::new(AtomicBool::new(true)),
        };
        let service = tower::service_fn(move |request: hyper::Request<Incoming>| requests.clone().serve(request));
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).with_upgrades();
        let closing = closing.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // A client that vanished or timed out is no news.
            let _ = tokio::select! {
                done = connection.as_mut() => done,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}
