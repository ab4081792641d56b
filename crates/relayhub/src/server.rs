//! Building and running the server: the library entry point takes a bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and never
//! race for a port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use relayhub_core::alerts::Alerter;
use relayhub_core::bus::Bus;
use relayhub_core::capability::{Capability, Platform};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::Gateway;
use relayhub_core::metrics::{Metrics, track_http};
use relayhub_core::oidc::IdTokenVerifier;
use relayhub_core::tasks::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accept::HttpConfig;
use crate::capabilities;
use crate::config::Config;
use crate::openapi;
use crate::ops::{self, Ops};

/// A server ready to run on its listener.
pub struct Server {
    listener: TcpListener,
    router: Router,
    platform: Platform,
    capabilities: Vec<Arc<dyn Capability>>,
    http: HttpConfig,
}

/// Opens the storage (running migrations) and sets up what the core gives
/// every capability. `serving`: for `relayhub serve` (the identity
/// provider's keys are fetched, alerts are sent); administration commands
/// pass `false`.
pub async fn platform(config: &Config, serving: bool) -> anyhow::Result<Platform> {
    let metrics = Metrics::new();
    let bus = Bus::new();
    let tasks = Tasks::new();
    let url = config.database_url()?;
    let stores = crate::stores::open(&url, &bus, &metrics, config.store_options()).await?;
    let gateway = Gateway::new(config.gateway.clone(), &metrics);
    let google = match (&config.google.client_id, serving) {
        (Some(client_id), true) => {
            let verifier =
                IdTokenVerifier::google(client_id, config.google.jwks.as_deref()).map_err(anyhow::Error::msg)?;
            verifier.preload().await.map_err(|e| anyhow::anyhow!("google.jwks: {e}"))?;
            Some(Arc::new(verifier))
        }
        _ => None,
    };
    let alerts = if serving { config.alerts.clone() } else { Default::default() };
    let alerter = Alerter::start(&alerts, &metrics, &tasks).map_err(anyhow::Error::msg)?;
    let accounts = Some(capabilities::accounts(&stores).map_err(anyhow::Error::msg)?);
    Ok(Platform { metrics, gateway, bus, tasks, alerter, stores, google, accounts, license_data: Default::default() })
}

/// Builds every capability of [`capabilities::modules`] on the platform.
pub fn build_capabilities(config: &Config, platform: &Platform) -> anyhow::Result<Vec<Arc<dyn Capability>>> {
    capabilities::modules()
        .iter()
        .map(|module| {
            let section = config.sections.get(module.name()).cloned().unwrap_or_else(|| module.default_config());
            module.build(section, platform).map_err(|e| anyhow::anyhow!("building {}: {e}", module.name()))
        })
        .collect()
}

impl Server {
    /// Opens the storage, joins the other nodes (if any), builds the
    /// capabilities and assembles their routes.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let platform = platform(&config, true).await?;
        platform.stores.backend.start_serving().await.context("starting to serve")?;
        let capabilities = build_capabilities(&config, &platform)?;
        let ops = Ops {
            stores: platform.stores.clone(),
            gateway: platform.gateway.clone(),
            metrics: platform.metrics.clone(),
            capabilities: Arc::new(capabilities.clone()),
        };
        let operators = platform.stores.get::<dyn relayhub_core::operators::OperatorSessions>().ok();
        let console = platform.accounts.clone().map(|accounts| Console {
            accounts,
            operators,
            shutdown: platform.gateway.shutdown_token().clone(),
        });
        let router = router(&capabilities, ops, &config, console);
        Ok(Self { listener, router, platform, capabilities, http: config.http.clone() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stop
    /// accepting; close every socket with a close frame (1001); end long
    /// polls; finish requests in flight; stop the background tasks; commit
    /// what is queued for the disk; stop.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, router, platform, capabilities, http } = self;
        for capability in &capabilities {
            capability.start(&platform.tasks);
        }
        let token = platform.gateway.shutdown_token().clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            // Ends long polls and tells every socket to close.
            token.cancel();
        };
        tracing::info!(addr = %listener.local_addr()?, "relayhub listening");
        let served = crate::accept::serve(listener, router, &http, &platform.metrics, signal).await;
        platform.gateway.shutdown().await;
        platform.tasks.stop().await;
        platform.stores.close().await;
        tracing::info!("stopped");
        served.context("serving HTTP")
    }
}

/// What the console needs beyond the capabilities' pages: who signs in
/// (the fleet's users; no console without them), the operators' sessions,
/// and when live regions end.
struct Console {
    accounts: Arc<dyn relayhub_core::identity::Accounts>,
    operators: Option<Arc<dyn relayhub_core::operators::OperatorSessions>>,
    shutdown: CancellationToken,
}

fn router(capabilities: &[Arc<dyn Capability>], ops: Ops, config: &Config, console: Option<Console>) -> Router {
    let metrics = ops.metrics.clone();
    let operations = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::influx_ping))
        .routes(routes!(ops::influx_health))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::about))
        .with_state(ops);
    let tags = capabilities::modules().iter().flat_map(|m| m.tags().iter().copied()).collect::<Vec<_>>();
    let mut api = OpenApiRouter::with_openapi(openapi::base(&tags));
    for capability in capabilities {
        api = api.merge(capability.router());
    }
    let (routes, mut api) = api.merge(operations).split_for_parts();
    for capability in capabilities {
        capability.describe(&mut api);
    }
    // The console is for people, not programs: HTML pages, outside the
    // OpenAPI document; it needs someone to sign in (the fleet's users).
    let console = match console {
        Some(Console { accounts, operators, shutdown }) => {
            let sections = capabilities.iter().filter_map(|c| c.console()).collect();
            relayhub_core::console::router(accounts, operators, sections, shutdown)
        }
        None => Router::new(),
    };
    routes
        .merge(openapi::docs(api))
        .merge(console)
        .fallback(relayhub_core::http::not_found)
        .method_not_allowed_fallback(relayhub_core::http::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(metrics, track_http))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                ErrorCode::INTERNAL,
                "internal error; see the server log",
            ))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// The span of a request: the client's address (as trusted proxies report
/// it), method, path and query with every credential in it redacted
/// (`?api_key=` is how some devices must send theirs), never headers.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let uri = request.uri();
    let target = match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), relayhub_core::secret::redact_query(query)),
        None => uri.path().to_owned(),
    };
    let client = request.extensions().get::<relayhub_core::client::ClientAddr>().map(|c| c.0);
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %target,
        version = ?request.version(),
        client = client.map(tracing::field::display),
    )
}
