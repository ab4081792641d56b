//! The signal capability (seed 003): WebRTC call signaling over WebSocket
//! at `GET /ws/signal`, on the node's shared gateway.
//!
//! - [`protocol`]: seed 003's frames;
//! - [`state`], `calls`, `media`: users, the waiting list and pairs, and
//!   the call flows, as one state machine over plain data;
//! - [`store`]: where the state lives — in memory on one node, in
//!   PostgreSQL across nodes, so two users connected to different nodes
//!   call each other as on one;
//! - [`turn`]: time-limited TURN credentials for coturn;
//! - `session`: one socket;
//! - [`overview`], `console`: a license's calls and users online, and the
//!   web console's page showing them.
//!
//! Who may signal: the app API key (seed 003's clients), or with
//! `signal.require_user` a fleet user's access token, checked through the
//! core's [`Accounts`] — the socket then speaks for that user only
//! ([`protocol::signed`]) and calls within its license. The gateway closes
//! a socket whose key, license, user or token stops being valid.

mod calls;
pub mod codes;
mod console;
mod media;
pub mod overview;
pub mod protocol;
mod session;
pub mod state;
pub mod store;
pub mod turn;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
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
use relayhub_core::admission::Connection;
use relayhub_core::alerts::Alerter;
use relayhub_core::bus::Delivery;
use relayhub_core::capability::{BuildError, Capability, Platform, Section, Spec};
use relayhub_core::error::{ApiError, ErrorBody, ErrorCode};
use relayhub_core::gateway::{CloseHandle, CloseReason, ConnId, Credentials, Gateway, Heartbeat, Liveness};
use relayhub_core::identity::{
    Account, Accounts, IdentityStore, check_api_key, missing_api_key, presented_access_token, presented_api_key,
};
use relayhub_core::metrics::latency_histogram;
use relayhub_core::tasks::Tasks;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::protocol::Inbound;
use crate::state::{Env, IceServers, Step, Timings};
use crate::store::{Frames, SignalStore};
pub use crate::turn::TurnConfig;

/// Signaling settings (`[signal]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalConfig {
    /// Accept sockets without credentials, as seed 003 did (`--signal-open`).
    pub open: bool,
    /// Sockets need a fleet user's access token, and every frame's `userId`
    /// must be that user's id; calls stay within the user's license. Takes
    /// precedence over `open`.
    pub require_user: bool,
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
    /// Distinct users one socket may say it is with `ADD_USER` (0: no
    /// bound); each is kept through its reconnect grace.
    pub max_users_per_socket: usize,
    pub turn: TurnConfig,
}

/// The part of `[signal]` that `relayhub serve`'s flags set: laid over
/// the file and the environment, so a field here must be one of
/// [`SignalConfig`]'s (its `deny_unknown_fields` says so at start-up).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignalFlags {
    /// `--signal-open`.
    pub open: bool,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            open: false,
            require_user: false,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(300),
            ringing_timeout: Duration::from_secs(60),
            reconnect_grace: Duration::from_secs(30),
            outbox: 256,
            max_users_per_socket: 4,
            turn: TurnConfig::default(),
        }
    }
}

impl Section for SignalConfig {
    const NAME: &'static str = "signal";
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

/// A socket on this node.
struct Local {
    outbox: mpsc::Sender<String>,
    close: CloseHandle,
    /// The signed-in user it was opened by (`signal.require_user`).
    account: Option<Account>,
}

/// The signaling service of this node. Cheap to clone.
#[derive(Clone)]
pub struct Signal {
    pub config: Arc<SignalConfig>,
    store: Arc<dyn SignalStore>,
    /// This node's sockets; frames for others are another node's to send.
    sockets: Arc<Mutex<HashMap<ConnId, Local>>>,
    identity: Arc<dyn IdentityStore>,
    /// Who an access token belongs to (`signal.require_user`).
    accounts: Option<Arc<dyn Accounts>>,
    gateway: Gateway,
    alerter: Alerter,
    ice_servers: IceServers,
    metrics: SignalMetrics,
}

impl Spec for Signal {
    const NAME: &'static str = SignalConfig::NAME;
    const TAGS: &'static [(&'static str, &'static str)] =
        &[("signal", "WebRTC call signaling over WebSocket (seed 003)")];
    const ERROR_CODES: &'static [ErrorCode] = codes::ALL;
    type Config = SignalConfig;

    fn build(config: SignalConfig, platform: &Platform) -> Result<Self, BuildError> {
        if config.require_user && platform.accounts.is_none() {
            return Err(BuildError::config(
                "signal",
                "require_user needs users to sign in, and this server keeps none",
            ));
        }
        if config.open && !config.require_user {
            tracing::warn!("call signaling accepts sockets without an API key (--signal-open)");
        }
        let turn = config.turn.clone();
        let ice_servers: IceServers = Arc::new(move |user: &str| turn.ice_servers(user, SystemTime::now()));
        let registry = &platform.metrics;
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
            config: Arc::new(config),
            store: platform.stores.get()?,
            sockets: Arc::default(),
            identity: platform.stores.identity.clone(),
            accounts: platform.accounts.clone(),
            gateway: platform.gateway.clone(),
            alerter: platform.alerter.clone(),
            ice_servers,
            metrics,
        };
        let deliver = signal.clone();
        platform.bus.subscribe::<Frames>(move |delivery| {
            if let Delivery::Event(Frames(frames)) = delivery {
                deliver.deliver(frames);
            }
        });
        Ok(signal)
    }
}

#[async_trait]
impl Capability for Signal {
    fn name(&self) -> &'static str {
        SignalConfig::NAME
    }

    fn console(&self) -> Option<relayhub_core::console::Pages> {
        Some(console::pages(self.clone()))
    }

    fn router(&self) -> OpenApiRouter {
        OpenApiRouter::new().routes(routes!(connect)).with_state(self.clone())
    }

    /// Acts on ringing timeouts and reconnect grace periods as they pass.
    fn start(&self, tasks: &Tasks) {
        let signal = self.clone();
        let shortest = self.config.ringing_timeout.min(self.config.reconnect_grace);
        let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tasks.every("checking signaling timeouts", tick, move || {
            let signal = signal.clone();
            async move { signal.store.step(Step::Expire { gone: Vec::new() }, signal.env()).await }
        });
    }

    async fn refresh_metrics(&self) {
        match self.store.census().await {
            Ok(census) => {
                self.metrics.users.set(census.users as i64);
                self.metrics.calls.get_or_create(&StateLabel { state: "ringing" }).set(census.ringing as i64);
                self.metrics.calls.get_or_create(&StateLabel { state: "in_call" }).set(census.in_call as i64);
            }
            Err(err) => tracing::warn!(%err, "signaling census unavailable for this scrape"),
        }
    }
}

impl Signal {
    fn env(&self) -> Env {
        Env {
            now: Timestamp::now().millis(),
            timings: Timings { ringing: self.config.ringing_timeout, grace: self.config.reconnect_grace },
            ice_servers: self.ice_servers.clone(),
        }
    }

    fn local(&self) -> MutexGuard<'_, HashMap<ConnId, Local>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues frames for the sockets of this node among them; a socket
    /// that cannot keep up is closed rather than allowed to grow.
    fn deliver(&self, frames: &[(ConnId, String)]) {
        let sockets = self.local();
        for (conn, text) in frames {
            let Some(socket) = sockets.get(conn) else { continue };
            if let Err(mpsc::error::TrySendError::Full(_)) = socket.outbox.try_send(text.clone()) {
                socket.close.close(CloseReason::TOO_SLOW);
            }
        }
    }

    async fn step(&self, conn: ConnId, step: Step) {
        match self.store.step(step, self.env()).await {
            Ok(Ok(effects)) => {
                if let Some(setup) = effects.setup {
                    self.metrics.setup.observe(setup.as_secs_f64());
                }
            }
            Ok(Err(err)) => self.refuse(conn, None, None, &err),
            Err(err) => self.refuse(conn, None, None, &ApiError::from(err)),
        }
    }

    async fn attach(&self, conn: ConnId, outbox: mpsc::Sender<String>, close: CloseHandle, account: Option<Account>) {
        self.local().insert(conn, Local { outbox, close, account });
        self.step(conn, Step::Attach(conn)).await;
    }

    async fn detach(&self, conn: ConnId) {
        self.local().remove(&conn);
        if let Err(err) = self.store.step(Step::Detach(conn), self.env()).await {
            // The socket's node-death sweep detaches it later.
            tracing::warn!(%err, conn = conn.0, "could not record a signaling socket closed");
        }
    }

    async fn handle(&self, conn: ConnId, frame: Inbound) {
        let (route, user) = (format!("{:?}", frame.route), frame.user.clone());
        let account = self.local().get(&conn).and_then(|socket| socket.account.clone());
        let frame = match account {
            Some(account) => protocol::signed(frame, &account),
            None => Ok(frame),
        };
        let outcome = match frame {
            Ok(frame) => self.store.step(Step::Frame(conn, frame), self.env()).await.unwrap_or_else(|e| Err(e.into())),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(effects) => {
                if let Some(setup) = effects.setup {
                    self.metrics.setup.observe(setup.as_secs_f64());
                }
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
        self.deliver(&[(conn, protocol::error(err))]);
    }
}

/// Credentials for clients that cannot set headers.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; read by `presented_api_key` and `presented_access_token`
pub struct SignalParams {
    /// The app API key (else header `X-Api-Key`); not needed with `--signal-open`.
    api_key: Option<String>,
    /// With `signal.require_user`: a fleet user's access token (else header
    /// `Authorization: Bearer`).
    access_token: Option<String>,
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
///
/// The upgrade needs the app API key; with `signal.require_user`, a fleet
/// user's access token instead, and every frame's `userId` must be that
/// user's id (else `error` `user_mismatch`). The socket closes when its
/// key is revoked (4001), its license expires (4003), its user is
/// deactivated (4005) or its access token expires (4006).
#[utoipa::path(
    get,
    path = "/ws/signal",
    operation_id = "connect_signal",
    tag = "signal",
    params(
        SignalParams,
        ("X-Api-Key" = Option<String>, Header, description = "The app API key"),
        ("Authorization" = Option<String>, Header, description = "`Bearer <access token>` of a fleet user (`signal.require_user`)"),
    ),
    responses(
        (status = 101, description = "Upgraded"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key, or access token not valid", body = ErrorBody),
        (status = 403, description = "The signed-in user's license expired", body = ErrorBody),
    )
)]
pub async fn connect(
    AxumState(signal): AxumState<Signal>,
    connection: Connection,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let (account, credentials) = signal.admit(&headers, &uri).await?;
    if account.is_some() || credentials.api_key.is_some() {
        connection.authenticated();
    }
    let upgrade = upgrade.map_err(|rejection| ApiError::new(ErrorCode::BAD_REQUEST, rejection.body_text()))?;
    let heartbeat = Heartbeat {
        interval: signal.config.heartbeat_interval,
        timeout: signal.config.heartbeat_timeout,
        liveness: Liveness::Explicit,
    };
    let gateway = signal.gateway.clone();
    Ok(gateway.accept(upgrade, "signal", heartbeat, move |conn| {
        conn.depend_on(credentials);
        session::run(signal, conn, account)
    }))
}

impl Signal {
    /// Who may open a socket: with `require_user`, a signed-in user (and
    /// the app key, if one is shown, must be valid too); else the app API
    /// key, unless signaling is open. Returns the user and what the socket
    /// depends on.
    async fn admit(&self, headers: &HeaderMap, uri: &Uri) -> Result<(Option<Account>, Credentials), ApiError> {
        let key = presented_api_key(headers, uri);
        let mut credentials = Credentials::default();
        let account = match &self.accounts {
            Some(accounts) if self.config.require_user => {
                let token = presented_access_token(headers, uri).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::MISSING_TOKEN,
                        "send a user's access token as 'Authorization: Bearer <token>' or '?access_token='",
                    )
                })?;
                let account = accounts.signed_in(&token).await?;
                credentials.license = Some(account.license);
                credentials.user = Some(account.id);
                credentials.expires_at = Some(account.expires_at);
                Some(account)
            }
            _ if self.config.open => return Ok((None, credentials)),
            _ => {
                key.as_ref().ok_or_else(missing_api_key)?;
                None
            }
        };
        if let Some(key) = key {
            credentials.api_key = Some(check_api_key(self.identity.as_ref(), &key).await?.info.id);
        }
        Ok((account, credentials))
    }
}
