//! The registry capability (seed 001, eckwms-global): warehouse devices
//! register with their instance (a warehouse server), and reach it from
//! anywhere through the registry's reverse proxy — at the instance's
//! public URL, or over a tunnel the instance holds when it is behind NAT.
//!
//! - [`model`]: registered devices; [`rules`]: ids, URLs, addresses and
//!   targets, as pure functions; [`store`]: what the registry needs from
//!   storage;
//! - [`proxy`]: the client that reaches instances and the headers and
//!   bodies that cross; [`limits`]: rate limits; [`tunnel`]: the tunnel's
//!   frames, its server end and a client for instances;
//! - `api`: seed 001's routes; `cli`: `relayhub registry`; `console`:
//!   its pages in the web console.

mod admin;
mod api;
mod cli;
pub mod codes;
mod console;
pub mod limits;
pub mod model;
pub mod proxy;
pub mod refusals;
pub mod rules;
pub mod store;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use relayhub_core::backend::Backend;
use relayhub_core::capability::{BuildError, Capability, CommandOutput, Platform, Section, Spec};
use relayhub_core::error::ApiError;
use relayhub_core::error::ErrorCode;
use relayhub_core::gateway::Gateway;
use relayhub_core::identity::IdentityStore;
use relayhub_core::operators::{AuditLog, Auditor, OperatorStore};
use relayhub_core::secret::SecretKind;
use relayhub_core::tasks::Tasks;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::limits::{Rate, RateLimits};
use crate::model::{DeviceStatus, RegisteredDevice};
use crate::proxy::{Timeouts, Upstream};
use crate::store::{DeviceRegistry, InstanceTokens};
use crate::tunnel::hub::Tunnels;

/// Registry settings (`[registry]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// New devices start `active` instead of `pending`.
    pub auto_approve: bool,
    /// Internal networks (CIDR) the proxy may reach anyway, e.g.
    /// `["10.20.0.0/16"]` for instances on a VPN. Empty: public addresses only.
    pub allow_private: Vec<IpNet>,
    /// Connecting to an instance.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Until the instance's response head (504 `instance_timeout` after).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Between two reads of an instance's response body.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// The largest request body carried to an instance.
    pub max_body_bytes: usize,
    /// Requests per API key (an app's devices share it).
    pub rate_per_key: Rate,
    /// Requests per source address.
    pub rate_per_address: Rate,
    /// Requests one instance's tunnel carries at once.
    pub tunnel_streams: usize,
    /// How often open tunnels' instance tokens are checked: a tunnel whose
    /// token was replaced closes (4001) within this.
    #[serde(with = "humantime_serde")]
    pub token_check_interval: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            auto_approve: false,
            allow_private: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_body_bytes: 32 * 1024 * 1024,
            rate_per_key: Rate { per_second: 1000, burst: 2000 },
            rate_per_address: Rate { per_second: 100, burst: 200 },
            tunnel_streams: 64,
            token_check_interval: Duration::from_secs(10),
        }
    }
}

impl Section for RegistryConfig {
    const NAME: &'static str = "registry";
}

/// The registry's counters.
#[derive(Clone, Default)]
pub struct RegistryMetrics {
    /// Proxy calls admitted (device active, target accepted or not).
    pub proxied: Counter,
}

/// Everything the registry's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pub config: Arc<RegistryConfig>,
    pub devices: Arc<dyn DeviceRegistry>,
    pub tokens: Arc<dyn InstanceTokens>,
    identity: Arc<dyn IdentityStore>,
    operators: Arc<dyn OperatorStore>,
    audit: Arc<dyn AuditLog>,
    backend: Arc<dyn Backend>,
    upstream: Upstream,
    tunnels: Tunnels,
    limits: Arc<RateLimits>,
    gateway: Gateway,
    metrics: RegistryMetrics,
}

impl Spec for Registry {
    const NAME: &'static str = RegistryConfig::NAME;
    const TAGS: &'static [(&'static str, &'static str)] =
        &[("registry", "Device registration and the proxy to warehouse instances (seed 001)")];
    const ERROR_CODES: &'static [ErrorCode] = codes::ALL;
    const SECRET_KINDS: &'static [SecretKind] = codes::SECRET_KINDS;
    type Config = RegistryConfig;

    fn build(config: RegistryConfig, platform: &Platform) -> Result<Self, BuildError> {
        let stores = &platform.stores;
        let timeouts = Timeouts { connect: config.connect_timeout, answer: config.timeout, read: config.read_timeout };
        let metrics = RegistryMetrics::default();
        platform.metrics.register("registry_proxied", "Proxy calls admitted", metrics.proxied.clone());
        Ok(Self {
            upstream: Upstream::new(config.allow_private.clone(), timeouts)?,
            limits: Arc::new(RateLimits::new(config.rate_per_key, config.rate_per_address)),
            config: Arc::new(config),
            devices: stores.get()?,
            tokens: stores.get()?,
            identity: stores.identity.clone(),
            operators: stores.get()?,
            audit: stores.get()?,
            backend: stores.backend.clone(),
            tunnels: Tunnels::default(),
            gateway: platform.gateway.clone(),
            metrics,
        })
    }

    fn commands() -> Vec<clap::Command> {
        vec![cli::command()]
    }
}

#[async_trait]
impl Capability for Registry {
    fn name(&self) -> &'static str {
        RegistryConfig::NAME
    }

    fn console(&self) -> Option<relayhub_core::console::Pages> {
        Some(console::pages(self.clone()))
    }

    fn router(&self) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(api::health))
            .routes(routes!(api::register))
            .routes(routes!(api::proxy))
            .routes(routes!(api::tunnel))
            .routes(routes!(admin::list_devices))
            .routes(routes!(admin::update_device))
            .with_state(self.clone())
    }

    /// Forgets rate-limit state of idle keys and addresses; closes the
    /// tunnels whose instance token was replaced.
    fn start(&self, tasks: &Tasks) {
        let limits = self.limits.clone();
        tasks.every("forgetting idle rate limits", Duration::from_secs(60), move || {
            limits.forget_idle();
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        });
        let (tunnels, tokens) = (self.tunnels.clone(), self.tokens.clone());
        tasks.every("checking tunnel tokens", self.config.token_check_interval, move || {
            let (tunnels, tokens) = (tunnels.clone(), tokens.clone());
            async move { tunnels.retire_replaced(tokens.as_ref()).await }
        });
    }

    async fn run_command(&self, name: &str, args: &clap::ArgMatches) -> Result<CommandOutput, ApiError> {
        cli::run(self, name, args).await
    }
}

impl Registry {
    /// Sets a device's status (approve, unblock: `active`; block:
    /// `blocked`), for `relayhub registry`, the console and the operator
    /// API alike, and records the change with `auditor` (a status set to
    /// what it was is no change, and not recorded). The device is named by
    /// its UUID in any usual spelling (else 422); an unknown one is refused
    /// with `device_not_found`. Statuses are read on every proxy call, so
    /// the change holds on every node from the device's next call.
    pub async fn set_device_status(
        &self,
        auditor: &Auditor,
        device_uuid: &str,
        status: DeviceStatus,
    ) -> Result<RegisteredDevice, ApiError> {
        let uuid = rules::device_uuid(device_uuid)?;
        let before = self.devices.device(&uuid).await?.map(|d| d.status);
        let device = self.devices.set_status(&uuid, status).await?;
        if let Some(act) = before.and_then(|from| rules::status_act(from, status)) {
            let detail = serde_json::json!({"from": before, "to": status, "instance_id": device.instance_id});
            auditor.record(act, None, Some(uuid.as_str()), detail).await;
        }
        Ok(device)
    }
}

impl axum::extract::FromRef<Registry> for Arc<dyn OperatorStore> {
    fn from_ref(registry: &Registry) -> Self {
        registry.operators.clone()
    }
}
