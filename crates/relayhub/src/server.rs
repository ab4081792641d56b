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
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::Gateway;
use relayhub_core::metrics::{Metrics, track_http};
use relayhub_core::oidc::IdTokenVerifier;
use relayhub_relay::hub::Hub;
use relayhub_relay::{Relay, RelayMetrics, services};
use relayhub_signal::Signal;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::openapi;
use crate::ops::{self, Ops};
use crate::stores::Stores;

/// A server ready to run on its listener.
pub struct Server {
    listener: TcpListener,
    router: Router,
    relay: Relay,
    stores: Stores,
    gateway: Gateway,
}

impl Server {
    /// Opens the storage (running migrations) and assembles the routes.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let hub = Arc::new(Hub::new(config.relay.mailbox));
        let url = config.database_url()?;
        let stores = Stores::open(&url, hub.clone(), &metrics, config.pool_size).await?;
        stores.relay.start_serving().await.context("starting to serve devices")?;
        let gateway = Gateway::new(config.gateway.clone(), &metrics);
        let google = match &config.google.client_id {
            None => None,
            Some(client_id) => {
                let verifier =
                    IdTokenVerifier::google(client_id, config.google.jwks.as_deref()).map_err(anyhow::Error::msg)?;
                verifier.preload().await.map_err(|e| anyhow::anyhow!("google.jwks: {e}"))?;
                Some(Arc::new(verifier))
            }
        };
        let relay = Relay {
            config: Arc::new(config.relay.clone()),
            store: stores.relay.clone(),
            settings: stores.settings.clone(),
            identity: stores.identity.clone(),
            google,
            hub: hub.clone(),
            gateway: gateway.clone(),
            metrics: RelayMetrics::new(&metrics),
        };
        let alerter = Alerter::start(&config.alerts, &metrics).map_err(anyhow::Error::msg)?;
        if config.signal.open {
            tracing::warn!("call signaling accepts sockets without an API key (--signal-open)");
        }
        let signal = Signal::new(config.signal.clone(), stores.identity.clone(), gateway.clone(), alerter, &metrics);
        let ops = Ops {
            stores: stores.clone(),
            gateway: gateway.clone(),
            metrics: metrics.clone(),
            relay_metrics: relay.metrics.clone(),
            hub,
        };
        let router = router(relay.clone(), signal, ops, &config);
        Ok(Self { listener, router, relay, stores, gateway })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stop
    /// accepting; close every device socket with a close frame (1001); end
    /// long polls; finish requests in flight; commit what is queued for the
    /// disk; stop.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, router, relay, stores, gateway } = self;
        let stop_services = CancellationToken::new();
        let services = TaskTracker::new();
        services.spawn(services::sweep(relay.clone(), stop_services.clone()));
        services.spawn(services::watch_credentials(relay.clone(), stop_services.clone()));
        services.close();

        let token = gateway.shutdown_token().clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            // Ends long polls and tells every socket to close.
            token.cancel();
        };
        tracing::info!(addr = %listener.local_addr()?, "relayhub listening");
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(signal)
            .await;
        gateway.shutdown().await;
        stop_services.cancel();
        services.wait().await;
        stores.close().await;
        tracing::info!("stopped");
        served.context("serving HTTP")
    }
}

fn router(relay: Relay, signal: Signal, ops: Ops, config: &Config) -> Router {
    let metrics = ops.metrics.clone();
    let operations = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::about))
        .with_state(ops);
    let (routes, api) = OpenApiRouter::with_openapi(openapi::base())
        .merge(relayhub_relay::api::router(relay))
        .merge(relayhub_signal::router(signal))
        .merge(operations)
        .split_for_parts();
    routes
        .merge(openapi::docs(api))
        .fallback(relayhub_core::http::not_found)
        .method_not_allowed_fallback(relayhub_core::http::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(metrics, track_http))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                ErrorCode::Internal,
                "internal error; see the server log",
            ))
        }))
        .layer(TraceLayer::new_for_http())
}
