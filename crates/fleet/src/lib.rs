//! The fleet capability (seed 002): users of a license who sign in with a
//! password and hold JWT sessions, robots (single-board computers running
//! Telegraf) paired with a user's account by an 8-letter code, each with a
//! personal token, which writes metrics and logs ([`telemetry`]).
//!
//! - [`model`]: users, robots, pairings; [`rules`]: the decisions both
//!   backends follow; [`store`]: what the fleet needs from storage;
//! - [`auth`]: passwords, access tokens, who is calling; [`accounts`]: the
//!   same for the rest of the server (call signaling);
//! - `api`: the HTTP API; `install`: `GET /install.sh`; `cli`: `relayhub user`.

pub mod accounts;
pub mod auth;
mod cli;
pub mod codes;
mod console;
mod data;
mod install;
pub mod model;
mod openapi;
pub mod prometheus;
pub mod refusals;
pub mod rules;
pub mod store;
pub mod telemetry;

pub mod acts;
mod api {
    pub mod admin;
    pub mod pair;
    pub mod read_tokens;
    pub mod robots;
    pub mod users;
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use relayhub_core::attempts::Attempts;
use relayhub_core::capability::{BuildError, Capability, CommandOutput, Platform, Section, Spec};
use relayhub_core::error::ApiError;
use relayhub_core::error::ErrorCode;
use relayhub_core::identity::IdentityStore;
use relayhub_core::operators::{AuditLog, OperatorStore};
use relayhub_core::secret::SecretKind;
use relayhub_core::tasks::Tasks;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::FleetAccounts;
use crate::store::{RobotStore, SessionStore, UserStore};
use crate::telemetry::{ForwardConfig, Telemetry, TelemetryConfig};

/// Fleet settings (`[fleet]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// How long an access token (a JWT) is valid: a deactivated user is out
    /// at once anyway (users are read on every call).
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// How long a refresh token is valid, unspent.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// How long a pairing code is valid.
    #[serde(with = "humantime_serde")]
    pub pair_ttl: Duration,
    /// How often a pairing robot may poll (RFC 8628's `interval`).
    #[serde(with = "humantime_serde")]
    pub pair_interval: Duration,
    /// Failed sign-ins, or wrong pairing codes (confirmations, and status
    /// polls without the right secret), per email, user and address within
    /// `attempt_window`, before 429. Counted before the check.
    pub attempts: usize,
    #[serde(with = "humantime_serde")]
    pub attempt_window: Duration,
    /// Pairings one address may start within `attempt_window`.
    pub pairings_per_address: usize,
    /// The most keys (emails, users, addresses) each attempt table
    /// remembers: past it, attempts under a new key are refused (429) until
    /// windows end, so unauthenticated input cannot grow memory for good.
    pub attempt_keys: usize,
    /// Robots' metrics and logs.
    pub telemetry: TelemetryConfig,
    /// Forwarding accepted telemetry to another database.
    pub forward: ForwardConfig,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            pair_ttl: Duration::from_secs(15 * 60),
            pair_interval: Duration::from_secs(5),
            attempts: 10,
            attempt_window: Duration::from_secs(15 * 60),
            pairings_per_address: 30,
            attempt_keys: relayhub_core::attempts::DEFAULT_CAPACITY,
            telemetry: TelemetryConfig::default(),
            forward: ForwardConfig::default(),
        }
    }
}

impl Section for FleetConfig {
    const NAME: &'static str = "fleet";
}

/// The fleet's counters.
#[derive(Clone, Default)]
pub struct FleetMetrics {
    pub pairings_started: Counter,
    pub pairings_confirmed: Counter,
}

/// Everything the fleet's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    pub config: Arc<FleetConfig>,
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub robots: Arc<dyn RobotStore>,
    pub identity: Arc<dyn IdentityStore>,
    operators: Arc<dyn OperatorStore>,
    audit: Arc<dyn AuditLog>,
    pub metrics: FleetMetrics,
    pub telemetry: Telemetry,
    /// Access tokens, and the key they are signed with.
    pub accounts: Arc<FleetAccounts>,
    dummy: Arc<OnceCell<String>>,
    logins: Arc<Attempts>,
    confirms: Arc<Attempts>,
    pairings: Arc<Attempts>,
    /// When each pairing code was last polled, on this node.
    polls: Arc<Mutex<HashMap<String, Instant>>>,
}

impl axum::extract::FromRef<Fleet> for Arc<dyn OperatorStore> {
    fn from_ref(fleet: &Fleet) -> Self {
        fleet.operators.clone()
    }
}

impl Fleet {
    /// The key access tokens are signed with, read (or made) once.
    pub async fn signing_key(&self) -> Result<Vec<u8>, ApiError> {
        self.accounts.signing_key().await
    }

    /// A hash to verify against when an email is unknown, made once.
    async fn dummy_hash(&self) -> Result<String, ApiError> {
        let hash = self.dummy.get_or_try_init(|| auth::hash_password("no user has this password".to_owned())).await?;
        Ok(hash.clone())
    }
}

impl Spec for Fleet {
    const NAME: &'static str = FleetConfig::NAME;
    const TAGS: &'static [(&'static str, &'static str)] = &[
        ("users", "Fleet users: sign-in, sessions, administration (seed 002)"),
        ("robots", "A user's robots (seed 002)"),
        ("pairing", "Pairing a robot with a user's account by code (seed 002)"),
        ("telemetry", "Robots' metrics and logs: InfluxDB-compatible writes, charts, log views (seed 002)"),
        ("prometheus", "The Prometheus HTTP API over the robots' metrics, for Grafana and promtool (seed 002)"),
    ];
    const ERROR_CODES: &'static [ErrorCode] = codes::ALL;
    const SECRET_KINDS: &'static [SecretKind] = codes::SECRET_KINDS;
    type Config = FleetConfig;

    fn build(config: FleetConfig, platform: &Platform) -> Result<Self, BuildError> {
        let stores = &platform.stores;
        let metrics = FleetMetrics::default();
        platform.metrics.register(
            "fleet_pairings_started",
            "Robots that asked to pair",
            metrics.pairings_started.clone(),
        );
        platform.metrics.register(
            "fleet_pairings_confirmed",
            "Pairings confirmed by a user",
            metrics.pairings_confirmed.clone(),
        );
        let telemetry = Telemetry::build(config.telemetry.clone(), config.forward.clone(), stores, &platform.metrics)?;
        platform.license_data.add(Arc::new(data::FleetData { telemetry: stores.get()?, users: stores.get()? }));
        Ok(Self {
            telemetry,
            logins: Attempts::with_capacity(config.attempts, config.attempt_window, config.attempt_keys),
            confirms: Attempts::with_capacity(config.attempts, config.attempt_window, config.attempt_keys),
            pairings: Attempts::with_capacity(config.pairings_per_address, config.attempt_window, config.attempt_keys),
            config: Arc::new(config),
            users: stores.get()?,
            sessions: stores.get()?,
            robots: stores.get()?,
            identity: stores.identity.clone(),
            operators: stores.get()?,
            audit: stores.get()?,
            metrics,
            accounts: Arc::new(FleetAccounts::new(stores)?),
            dummy: Arc::default(),
            polls: Arc::default(),
        })
    }

    fn commands() -> Vec<clap::Command> {
        vec![cli::command()]
    }
}

#[async_trait]
impl Capability for Fleet {
    fn name(&self) -> &'static str {
        FleetConfig::NAME
    }

    fn console(&self) -> Option<relayhub_core::console::Pages> {
        Some(console::pages(self.clone()))
    }

    fn router(&self) -> OpenApiRouter {
        use api::{admin, pair, read_tokens, robots, users};
        OpenApiRouter::new()
            .routes(routes!(users::login))
            .routes(routes!(users::refresh))
            .routes(routes!(users::logout))
            .routes(routes!(users::me))
            .routes(routes!(read_tokens::create, read_tokens::list))
            .routes(routes!(read_tokens::revoke))
            .routes(routes!(users::list))
            .routes(routes!(users::update))
            .routes(routes!(admin::list_users, admin::create_user))
            .routes(routes!(admin::update_user))
            .routes(routes!(admin::reset_password))
            .routes(routes!(robots::list))
            .routes(routes!(robots::get, robots::update, robots::delete))
            .routes(routes!(robots::own))
            .routes(routes!(pair::start))
            .routes(routes!(pair::preview))
            .routes(routes!(pair::confirm))
            .routes(routes!(pair::status))
            .routes(routes!(install::script))
            .routes(routes!(telemetry::write_api::write_v2))
            .routes(routes!(telemetry::write_api::write_metrics))
            .routes(routes!(telemetry::api::metrics))
            .routes(routes!(telemetry::api::logs))
            .routes(routes!(telemetry::api::series))
            .routes(routes!(prometheus::query, prometheus::query_post))
            .routes(routes!(prometheus::query_range, prometheus::query_range_post))
            .routes(routes!(prometheus::series, prometheus::series_post))
            .routes(routes!(prometheus::labels, prometheus::labels_post))
            .routes(routes!(prometheus::label_values))
            .with_state(self.clone())
    }

    /// Forgets pairings an hour past their end; compacts and expires
    /// telemetry; forwards it when configured.
    fn start(&self, tasks: &Tasks) {
        let telemetry = self.telemetry.clone();
        tasks.every("telemetry maintenance", telemetry.config.maintain_interval, move || {
            let telemetry = telemetry.clone();
            async move { telemetry.maintain(Timestamp::now()).await }
        });
        if let Some(url) = self.telemetry.forwarding.url.clone() {
            let telemetry = self.telemetry.clone();
            tasks.spawn(move |stop| telemetry.forward(url, stop));
        }
        let robots = self.robots.clone();
        tasks.every("pairing sweep", Duration::from_secs(60), move || {
            let robots = robots.clone();
            async move { robots.sweep_pairings(Timestamp::now(), api::pair::KEPT_AFTER).await }
        });
    }

    /// The fleet's credentials in the document (user access tokens, robot
    /// tokens) and the schemas only its parameters use.
    fn describe(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = |about: &str| {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(about)).build())
        };
        components.add_security_scheme("user", scheme("A fleet user's access token (JWT) from POST /api/auth/login"));
        components
            .add_security_scheme("robot", scheme("A robot's personal token from its pairing (`Token` works too)"));
        // Referenced by the chart's `tag` parameter, which no body names.
        let tag = <telemetry::api::TagFilter as utoipa::PartialSchema>::schema();
        components.schemas.insert("TagFilter".to_owned(), tag);
    }

    async fn run_command(&self, name: &str, args: &clap::ArgMatches) -> Result<CommandOutput, ApiError> {
        cli::run(self, name, args).await
    }
}
