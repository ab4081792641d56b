//! The seam every capability (relay, signal, registry, fleet, rail) plugs
//! into. A capability is one value the server holds in a list: it brings
//! its routes with their OpenAPI paths and tags, its configuration section,
//! its background tasks, its readiness, its scrape-time metrics and its
//! administration commands. Start-up, `/readyz`, `/metrics`, the command
//! line and shutdown loop over the list.
//!
//! Two traits, for the two lives of one capability: [`Spec`] is what the
//! server knows of it before it exists (name, tags, error codes, secret
//! kinds, configuration, commands, how to build it); [`Capability`] is the
//! built value that serves. The server's list holds [`Module`]s, each a
//! `Spec` with its type left out.
//!
//! Adding one: write the capability (a type implementing [`Spec`] and
//! [`Capability`]), its store traits' module in each backend crate (each
//! calls [`crate::backend::Stores::provide`]), and add `module::<It>()` to
//! the server's list.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::alerts::Alerter;
use crate::backend::Stores;
use crate::bus::Bus;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::Gateway;
use crate::identity::Accounts;
use crate::metrics::Metrics;
use crate::oidc::IdTokenVerifier;
use crate::secret::SecretKind;
use crate::tasks::Tasks;

/// What the core hands every capability when it is built.
#[derive(Clone)]
pub struct Platform {
    pub metrics: Metrics,
    pub gateway: Gateway,
    pub bus: Bus,
    pub tasks: Tasks,
    pub alerter: Alerter,
    /// The backend: core stores and each capability's store traits.
    pub stores: Stores,
    /// Verifies Google ID tokens; `None` without `google.client_id`.
    pub google: Option<Arc<IdTokenVerifier>>,
    /// Who a user's access token belongs to, for capabilities that need to
    /// know who is calling; `None` when no capability keeps users.
    pub accounts: Option<Arc<dyn Accounts>>,
    /// Where capabilities that keep a license's data say how much, and
    /// forget it when the license is deleted.
    pub license_data: crate::license_data::LicenseBoard,
}

/// Why a capability could not be built, said to the operator at start-up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its configuration section has an unknown key or a bad value.
    #[error("[{section}]: {reason}")]
    Config { section: &'static str, reason: String },
    /// The backend offers no implementation of a store trait it needs: a
    /// backend module that was not wired, not a setting.
    #[error("the {backend} backend provides no {store}")]
    MissingStore { backend: &'static str, store: &'static str },
    /// Something it sets up while it is built failed (an HTTP client, an
    /// identity provider's keys, a key file).
    #[error("{0}")]
    Setup(String),
}

impl BuildError {
    /// A bad value in `section` that its type cannot refuse by itself.
    pub fn config(section: &'static str, reason: impl Into<String>) -> Self {
        BuildError::Config { section, reason: reason.into() }
    }
}

impl From<String> for BuildError {
    fn from(reason: String) -> Self {
        BuildError::Setup(reason)
    }
}

/// What an administration command prints: JSON with `--json`, else text.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub json: serde_json::Value,
    pub text: String,
}

impl CommandOutput {
    pub fn new(json: impl Serialize, text: impl Into<String>) -> Self {
        Self { json: serde_json::to_value(json).unwrap_or_default(), text: text.into() }
    }
}

/// A capability, built and ready to serve.
#[async_trait]
pub trait Capability: Send + Sync + 'static {
    /// Its name, which is also its configuration section.
    fn name(&self) -> &'static str;
    /// Its routes, documented.
    fn router(&self) -> OpenApiRouter;
    /// Starts its background work on `tasks` (stopped on shutdown). Called
    /// once, when the node starts serving; never for administration.
    fn start(&self, _tasks: &Tasks) {}
    /// `Err` (answered by `/readyz`) while it cannot serve.
    async fn ready(&self) -> Result<(), ApiError> {
        Ok(())
    }
    /// Sets gauges read from storage, before each `/metrics` scrape.
    async fn refresh_metrics(&self) {}
    /// Tightens its part of the OpenAPI document to this node's
    /// configuration (bounds its section sets), so the document says what
    /// the server does.
    fn describe(&self, _api: &mut utoipa::openapi::OpenApi) {}
    /// Its pages in the web console (`/console/…`), if it has any.
    fn console(&self) -> Option<crate::console::Pages> {
        None
    }
    /// Runs one of the administration commands its module declared.
    async fn run_command(&self, name: &str, _args: &clap::ArgMatches) -> Result<CommandOutput, ApiError> {
        Err(ApiError::new(ErrorCode::NOT_FOUND, format!("{} has no command {name}", self.name())))
    }
}

/// How a capability is made: what the server needs before building it.
pub trait Spec: Capability + Sized {
    /// The capability's name and configuration section (`[relay]`).
    const NAME: &'static str;
    /// OpenAPI tags (name, description) its routes use.
    const TAGS: &'static [(&'static str, &'static str)];
    /// The error codes only it answers with (its `codes::ALL`); the shared
    /// ones are [`ErrorCode`]'s own.
    const ERROR_CODES: &'static [ErrorCode] = &[];
    /// The kinds of secret only it issues (their prefixes).
    const SECRET_KINDS: &'static [SecretKind] = &[];
    /// Its configuration section; unknown keys are refused.
    type Config: Serialize + DeserializeOwned + Default;
    /// Builds it on the platform. Must not start tasks (see
    /// [`Capability::start`]): administration commands build it too.
    fn build(config: Self::Config, platform: &Platform) -> Result<Self, BuildError>;
    /// Administration subcommands it adds to `relayhub` (`relayhub user …`).
    fn commands() -> Vec<clap::Command> {
        Vec::new()
    }
}

/// How a [`Module`] builds its capability from its section.
type BuildFn = fn(serde_json::Value, &Platform) -> Result<Arc<dyn Capability>, BuildError>;

/// A capability before it is built, as the server's list holds it: its
/// [`Spec`] with the type left out, so capabilities of different types sit
/// in one list. Made by [`module`].
#[derive(Clone, Copy)]
pub struct Module {
    name: &'static str,
    tags: &'static [(&'static str, &'static str)],
    error_codes: &'static [ErrorCode],
    secret_kinds: &'static [SecretKind],
    default_config: fn() -> serde_json::Value,
    check_config: fn(serde_json::Value) -> Result<(), BuildError>,
    build: BuildFn,
    commands: fn() -> Vec<clap::Command>,
}

impl Module {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn tags(&self) -> &'static [(&'static str, &'static str)] {
        self.tags
    }

    pub fn error_codes(&self) -> &'static [ErrorCode] {
        self.error_codes
    }

    pub fn secret_kinds(&self) -> &'static [SecretKind] {
        self.secret_kinds
    }

    /// The section's defaults, for the configuration loader.
    pub fn default_config(&self) -> serde_json::Value {
        (self.default_config)()
    }

    /// Refuses a section with unknown keys or bad values.
    pub fn check_config(&self, section: serde_json::Value) -> Result<(), BuildError> {
        (self.check_config)(section)
    }

    /// Builds the capability from its section (defaults filled in).
    pub fn build(&self, section: serde_json::Value, platform: &Platform) -> Result<Arc<dyn Capability>, BuildError> {
        (self.build)(section, platform)
    }

    pub fn commands(&self) -> Vec<clap::Command> {
        (self.commands)()
    }
}

fn parse_section<T: DeserializeOwned>(name: &'static str, section: serde_json::Value) -> Result<T, BuildError> {
    serde_json::from_value(section).map_err(|e| BuildError::Config { section: name, reason: e.to_string() })
}

/// The list entry of a capability: `module::<Relay>()`.
pub fn module<C: Spec>() -> Module {
    Module {
        name: C::NAME,
        tags: C::TAGS,
        error_codes: C::ERROR_CODES,
        secret_kinds: C::SECRET_KINDS,
        default_config: || serde_json::to_value(C::Config::default()).unwrap_or_default(),
        check_config: |section| parse_section::<C::Config>(C::NAME, section).map(|_| ()),
        build: |section, platform| Ok(Arc::new(C::build(parse_section(C::NAME, section)?, platform)?)),
        commands: C::commands,
    }
}

/// A typed configuration section, for code that builds a configuration
/// (tests, embedding): `config.edit::<RelayConfig>(|c| …)`.
pub trait Section: Serialize + DeserializeOwned + Default {
    const NAME: &'static str;
}
