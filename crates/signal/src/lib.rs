//! The signal capability (seed 003): WebRTC call signaling over WebSocket
//! at `GET /ws/signal`, on the node's shared gateway.
//!
//! - [`protocol`]: seed 003's frames;
//! - [`state`], `calls`, `media`: users, the waiting list and pairs, and
//!   the call flows;
//! - [`turn`]: time-limited TURN credentials for coturn;
//! - `session`: one socket.
//!
//! State lives in this node's memory, as in seed 003: two users calling each
//! other must be connected to the same node.

mod calls;
mod media;
pub mod protocol;
mod session;
pub mod state;
pub mod turn;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State as AxumState;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use relayhub_core::alerts::Alerter;
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::gateway::{CloseHandle, ConnId, Gateway, Heartbeat, Liveness};
use relayhub_core::identity::{IdentityStore, check_api_key, missing_api_key, presented_api_key};
use relayhub_core::metrics::{Metrics, latency_histogram};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::protocol::Inbound;
use crate::state::{State, Timer, Timings};
pub use crate::turn::TurnConfig;

/// Signaling settings (`[signal]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalConfig {
    /// Accept sockets without credentials, as seed 003 did (`--signal-open`).
    pub open: bool,
    /// How often the server checks sockets' last `PING` (seed 003: 30 s).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A socket whose last `PING` is older is closed (seed 003: 5 min).
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// An unanswered offer ends for both sides after this.
    #[serde(with = "humantime_serde")]
    pub ringing_timeout: Duration,
    /// A user whose last socket dropped keeps its call this long, for a
    /// `RECONNECT`.
    #[serde(with = "humantime_serde")]
    pub reconnect_grace: Duration,
    /// Frames queued per socket before a slow client is disconnected.
    pub outbox: usize,
    pub turn: TurnConfig,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            open: false,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(300),
            ringing_timeout: Duration::from_secs(60),
            reconnect_grace: Duration::from_secs(30),
            outbox: 256,
            turn: TurnConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// The capability's metrics.
#[derive(Clone)]
struct SignalMetrics {
    users: Gauge,
    calls: Family<StateLabel, Gauge>,
    setup: Histogram,
    errors: Family<CodeLabel, Counter>,
}

/// The signaling service of this node. Cheap to clone.
#[derive(Clone)]
pub struct Signal {
    state: Arc<Mutex<State>>,
    pub config: Arc<SignalConfig>,
    identity: Arc<dyn IdentityStore>,
    gateway: Gateway,
    alerter: Alerter,
    metrics: SignalMetrics,
}

impl Signal {
    pub fn new(
        config: SignalConfig,
        identity: Arc<dyn IdentityStore>,
        gateway: Gateway,
        alerter: Alerter,
        registry: &Metrics,
    ) -> Self {
        let timings = Timings { ringing: config.ringing_timeout, grace: config.reconnect_grace };
        let turn = config.turn.clone();
        let ice_servers = Box::new(move |user: &str| turn.ice_servers(user, SystemTime::now()));
        let metrics = SignalMetrics {
            users: Gauge::default(),
            calls: Family::default(),
            setup: latency_histogram(),
            errors: Family::default(),
        };
        registry.register("signal_users", "Signaling users with an open socket", metrics.users.clone());
        registry.register("signal_calls", "Calls by state (ringing, connected)", metrics.calls.clone());
        registry.register_with_unit(
            "signal_call_setup",
            "Time from OFFER to /connect",
            Unit::Seconds,
            metrics.setup.clone(),
        );
        registry.register("signal_errors", "Frames refused, by error code", metrics.errors.clone());
        let signal = Self {
            state: Arc::new(Mutex::new(State::new(timings, ice_servers))),
            config: Arc::new(config),
            identity,
            gateway,
            alerter,
            metrics,
        };
        let census = signal.clone();
        registry.on_render(move || census.update_census());
        signal
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_census(&self) {
        let (users, ringing, in_call) = self.lock().census();
        self.metrics.users.set(users as i64);
        self.metrics.calls.get_or_create(&StateLabel { state: "ringing" }).set(ringing as i64);
        self.metrics.calls.get_or_create(&StateLabel { state: "in_call" }).set(in_call as i64);
    }

    fn attach(&self, conn: ConnId, outbox: mpsc::Sender<String>, close: CloseHandle) {
        self.lock().attach(conn, outbox, close);
    }

    fn detach(&self, conn: ConnId) {
        let timer = self.lock().detach(conn);
        self.schedule(timer.into_iter());
    }

    fn handle(&self, conn: ConnId, frame: Inbound) {
        let (route, user) = (format!("{:?}", frame.route), frame.user.clone());
        let outcome = self.lock().handle(conn, frame, Instant::now());
        match outcome {
            Ok(effects) => {
                if let Some(setup) = effects.setup {
                    self.metrics.setup.observe(setup.as_secs_f64());
                }
                self.schedule(effects.timers.into_iter());
            }
            Err(err) => self.refuse(conn, Some(&route), Some(&user), &err),
        }
    }

    /// Answers a refused frame with an `error` frame, counts it, logs it and
    /// sends it to the alert webhook (rate-limited). The socket stays open.
    fn refuse(&self, conn: ConnId, route: Option<&str>, user: Option<&str>, err: &ApiError) {
        self.metrics.errors.get_or_create(&CodeLabel { code: err.code.as_str() }).inc();
        tracing::info!(conn = conn.0, route, user, code = err.code.as_str(), message = %err.message, "signaling frame refused");
        self.alerter.alert(format!(
            "signal: {} on {} from user {}: {}",
            err.code.as_str(),
            route.unwrap_or("an unreadable frame"),
            user.unwrap_or("?"),
            err.message
        ));
        self.lock().push(conn, protocol::error(err));
    }

    /// Runs timers: each a task that sleeps and then acts if still due.
    fn schedule(&self, timers: impl Iterator<Item = (Duration, Timer)>) {
        for (after, timer) in timers {
            let signal = self.clone();
            let shutdown = self.gateway.shutdown_token().clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(after) => {}
                    () = shutdown.cancelled() => return,
                }
                let mut state = signal.lock();
                match timer {
                    Timer::Ring { callee, call } => state.ring_over(&callee, call),
                    Timer::Grace { user, absence } => state.grace_over(&user, absence),
                }
            });
        }
    }
}

/// Credentials for clients that cannot set headers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; read by `presented_api_key`
pub struct SignalParams {
    /// The app API key (else header `X-Api-Key`); not needed with `--signal-open`.
    api_key: Option<String>,
}

/// Opens a call-signaling socket (seed 003).
///
/// Text frame `PING` → `PONG`. Other frames are JSON
/// `{"route":"ROUTE","userId":"…","data":{…}}`; routes `ADD_USER`,
/// `RECONNECT`, `OFFER`, `ANSWER`, `DECLINE`, `ADD_ICE`, `SWAP_ICE`,
/// `SET_REMOTE_STREAM_ID`, `UPDATE_OFFER`, `UPDATE_ANSWER`, `MEDIA_UPDATE`,
/// `HANGUP`. The server sends `{"route":"ROUTE","data":{…}}`: `userConnect`,
/// `/call`, `/remoteStreamsId`, `/acceptCall`, `/connect`, `/swapIce`,
/// `/decline`, `reconnectSuccess`, `reconnectError`, `/peerReconnected`,
/// `/updateOffer`, `/updateAnswer`, `/mediaUpdate`, `/hangup`, `error`.
#[utoipa::path(
    get,
    path = "/ws/signal",
    tag = "signal",
    params(SignalParams, ("X-Api-Key" = Option<String>, Header, description = "The app API key")),
    responses(
        (status = 101, description = "Upgraded"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
    )
)]
pub async fn connect(
    AxumState(signal): AxumState<Signal>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if !signal.config.open {
        let key = presented_api_key(&headers, &uri).ok_or_else(missing_api_key)?;
        check_api_key(signal.identity.as_ref(), &key).await?;
    }
    let upgrade = upgrade.map_err(|rejection| ApiError::new(ErrorCode::BadRequest, rejection.body_text()))?;
    let heartbeat = Heartbeat {
        interval: signal.config.heartbeat_interval,
        timeout: signal.config.heartbeat_timeout,
        liveness: Liveness::Explicit,
    };
    let gateway = signal.gateway.clone();
    Ok(gateway.accept(upgrade, "signal", heartbeat, move |conn| session::run(signal, conn)))
}

/// The capability's routes.
pub fn router(signal: Signal) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(connect)).with_state(signal)
}
