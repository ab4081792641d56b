//! The relay capability (seed 000): back-office systems queue JSON messages
//! for devices; devices receive them in order over a WebSocket and
//! acknowledge them; devices send records up to their license's inbox.
//!
//! - [`api`]: the back-office HTTP API;
//! - [`device`]: the device WebSocket;
//! - [`hub`]: which devices are online on this node, and their mailboxes;
//! - [`settings`]: per-device settings synced both ways, restorable through
//!   a linked Google account;
//! - [`store`]: what the relay needs from a storage backend, and
//!   [`plan`]: the queueing rule every backend follows;
//! - [`services`]: housekeeping (TTL expiry, retention, revoked credentials).

pub mod api;
pub mod codes;
mod console;
pub mod device;
pub mod hub;
pub mod model;
pub mod plan;
pub mod services;
pub mod settings;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use relayhub_core::capability::{BuildError, Capability, Platform, Section, Spec};
use relayhub_core::devices::{DeviceStore, PresenceStore};
use relayhub_core::error::ErrorCode;
use relayhub_core::gateway::Gateway;
use relayhub_core::identity::{Accounts, IdentityStore};
use relayhub_core::ids::LicensePk;
use relayhub_core::metrics::{Metrics, latency_histogram};
use relayhub_core::oidc::IdTokenVerifier;
use relayhub_core::tasks::Tasks;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::hub::Hub;
use crate::settings::SettingsStore;
use crate::store::{InboxStore, QueueStore};

/// Relay settings (`[relay]` in the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Pending messages a device's queue holds before producers get 429.
    pub queue_limit: u32,
    /// Messages sent to a device and not yet acknowledged, at most.
    pub window: usize,
    /// Committed messages kept in memory per online device before its
    /// connection reads from the store instead.
    pub mailbox: usize,
    /// Messages in one `POST /api/v1/messages` call, at most.
    pub max_batch: usize,
    /// How long receipts (and acknowledged inbox records' refs, for
    /// de-duplication) are kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Longest inbox long poll (`wait`).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// How often expired messages and old receipts are swept.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often the credentials of every open socket (devices, call
    /// signaling) are re-checked, so an expired license, a revoked key, a
    /// deactivated user or an expired access token disconnects them.
    #[serde(with = "humantime_serde")]
    pub credential_check_interval: Duration,
    /// Largest settings document, in bytes of JSON.
    pub settings_limit: usize,
    /// Devices one app key may bind into one license a minute, by their
    /// first connection (a burst of this many, refilled over the minute):
    /// a leaked key cannot fill a license's `max_devices` in a burst.
    /// Past it, `429 rate_limited` with `Retry-After`; reconnects of bound
    /// devices are never counted.
    pub new_devices_per_minute: u32,
}

impl Section for RelayConfig {
    const NAME: &'static str = "relay";
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            queue_limit: 10_000,
            window: 128,
            mailbox: 256,
            max_batch: 1000,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_wait: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(5),
            credential_check_interval: Duration::from_secs(10),
            settings_limit: 64 * 1024,
            new_devices_per_minute: 60,
        }
    }
}

/// The relay's counters, registered with the server's registry.
#[derive(Clone)]
pub struct RelayMetrics {
    pub messages_in: Counter,
    pub messages_sent: Counter,
    pub messages_delivered: Counter,
    pub messages_expired: Counter,
    pub records_in: Counter,
    pub records_out: Counter,
    /// Set when scraped, from the store.
    pub queue_depth: Gauge,
    /// Set when scraped, from the hub.
    pub online_devices: Gauge,
    /// Back-office long polls waiting for records now.
    pub inbox_waiting: Gauge,
    /// From accepting a message to writing it to the device's socket.
    pub delivery_latency: Histogram,
}

impl RelayMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let m = Self {
            messages_in: Counter::default(),
            messages_sent: Counter::default(),
            messages_delivered: Counter::default(),
            messages_expired: Counter::default(),
            records_in: Counter::default(),
            records_out: Counter::default(),
            queue_depth: Gauge::default(),
            online_devices: Gauge::default(),
            inbox_waiting: Gauge::default(),
            delivery_latency: latency_histogram(),
        };
        metrics.register("messages_in", "Messages accepted from the back-office", m.messages_in.clone());
        metrics.register("messages_sent", "Message frames written to device sockets", m.messages_sent.clone());
        metrics.register("messages_delivered", "Messages acknowledged by devices", m.messages_delivered.clone());
        metrics.register("messages_expired", "Messages whose time to live ran out", m.messages_expired.clone());
        metrics.register("inbox_records_in", "Records published by devices", m.records_in.clone());
        metrics.register("inbox_records_out", "Inbox records acknowledged by the back-office", m.records_out.clone());
        metrics.register("queue_depth", "Messages pending in all device queues", m.queue_depth.clone());
        metrics.register("devices_online", "Devices connected to this node", m.online_devices.clone());
        metrics.register("inbox_waiting", "Inbox long polls waiting for records", m.inbox_waiting.clone());
        metrics.register_with_unit(
            "delivery_latency",
            "Time from accepting a message to writing it to the device",
            Unit::Seconds,
            m.delivery_latency.clone(),
        );
        m
    }
}

/// Everything the relay's handlers and sessions share: one pointer, so
/// that each of the many device sessions holding it stays small.
#[derive(Clone)]
pub struct Relay(Arc<RelayParts>);

impl std::ops::Deref for Relay {
    type Target = RelayParts;

    fn deref(&self) -> &RelayParts {
        &self.0
    }
}

/// What a [`Relay`] holds.
pub struct RelayParts {
    pub config: Arc<RelayConfig>,
    pub queue: Arc<dyn QueueStore>,
    pub inbox: Arc<dyn InboxStore>,
    pub settings: Arc<dyn SettingsStore>,
    pub identity: Arc<dyn IdentityStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub presence: Arc<dyn PresenceStore>,
    /// Verifies Google ID tokens for account link and restore; `None` when
    /// no `google.client_id` is configured.
    pub google: Option<Arc<IdTokenVerifier>>,
    pub hub: Arc<Hub>,
    pub gateway: Gateway,
    /// Signed-in users, for closing their sockets when they are signed out.
    pub accounts: Option<Arc<dyn Accounts>>,
    pub metrics: RelayMetrics,
    /// New bindings by (app key id, license), `new_devices_per_minute`.
    pub new_devices: Arc<governor::DefaultKeyedRateLimiter<(String, LicensePk)>>,
}

impl axum::extract::FromRef<Relay> for Arc<dyn IdentityStore> {
    fn from_ref(relay: &Relay) -> Self {
        relay.identity.clone()
    }
}

impl Spec for Relay {
    const NAME: &'static str = RelayConfig::NAME;
    const TAGS: &'static [(&'static str, &'static str)] = &[
        ("messages", "Queue messages for devices and follow their delivery"),
        ("devices", "The license's devices"),
        ("settings", "Per-device settings, synced both ways"),
        ("inbox", "Records sent up by devices"),
        ("license", "The license itself"),
        ("device", "The device WebSocket"),
    ];
    const ERROR_CODES: &'static [ErrorCode] = codes::ALL;
    type Config = RelayConfig;

    fn build(config: RelayConfig, platform: &Platform) -> Result<Self, BuildError> {
        let stores = &platform.stores;
        let hub = Arc::new(Hub::new(config.mailbox));
        let new_devices = std::num::NonZeroU32::new(config.new_devices_per_minute)
            .ok_or_else(|| BuildError::config("relay", "new_devices_per_minute must be at least 1"))?;
        hub.subscribe(&platform.bus);
        platform.license_data.add(Arc::new(RelayData {
            devices: stores.devices.clone(),
            queue: stores.get()?,
            inbox: stores.get()?,
            hub: hub.clone(),
        }));
        Ok(Self(Arc::new(RelayParts {
            config: Arc::new(config),
            queue: stores.get()?,
            inbox: stores.get()?,
            settings: stores.get()?,
            identity: stores.identity.clone(),
            devices: stores.devices.clone(),
            presence: stores.presence.clone(),
            google: platform.google.clone(),
            hub,
            gateway: platform.gateway.clone(),
            accounts: platform.accounts.clone(),
            metrics: RelayMetrics::new(&platform.metrics),
            new_devices: Arc::new(governor::RateLimiter::keyed(governor::Quota::per_minute(new_devices))),
        })))
    }
}

/// The relay's part of a license's data: its devices, their queues and
/// settings, its inbox.
struct RelayData {
    devices: Arc<dyn DeviceStore>,
    queue: Arc<dyn QueueStore>,
    inbox: Arc<dyn InboxStore>,
    hub: Arc<Hub>,
}

#[async_trait]
impl relayhub_core::license_data::LicenseData for RelayData {
    async fn measure(
        &self,
        license: relayhub_core::ids::LicensePk,
        _now: relayhub_core::time::Timestamp,
        usage: &mut relayhub_core::license_data::Usage,
    ) -> relayhub_core::store::StoreResult<()> {
        usage.devices_bound += self.devices.device_count(license).await?;
        usage.devices_online += self.devices.online_count(license).await?;
        usage.messages_queued += self.queue.license_pending(license).await?;
        usage.inbox_waiting += self.inbox.inbox_waiting(license).await?;
        Ok(())
    }

    /// Each device is unbound as `DELETE /api/v1/devices/{id}` would (its
    /// socket closed, its queue and settings gone), then the license's
    /// receipts, inbox and account links.
    async fn forget(&self, license: &relayhub_core::identity::License) -> relayhub_core::store::StoreResult<()> {
        let first = relayhub_core::store::PageRequest { page: 1, size: relayhub_core::store::PageRequest::MAX_SIZE };
        loop {
            let page = self.devices.devices(license.pk, first).await?;
            if page.items.is_empty() {
                break;
            }
            for device in page.items {
                self.devices.unbind(license.pk, &device.device_id).await?;
            }
        }
        self.queue.forget_license(license.pk).await?;
        self.hub.forget_license(license.pk);
        Ok(())
    }
}

#[async_trait]
impl Capability for Relay {
    fn name(&self) -> &'static str {
        RelayConfig::NAME
    }

    fn console(&self) -> Option<relayhub_core::console::Pages> {
        Some(console::pages(self.clone()))
    }

    fn router(&self) -> OpenApiRouter {
        api::router(self.clone())
    }

    fn describe(&self, openapi: &mut utoipa::openapi::OpenApi) {
        api::describe(&self.config, openapi);
    }

    fn start(&self, tasks: &Tasks) {
        let relay = self.clone();
        tasks.every("sweep", self.config.sweep_interval, move || services::sweep(relay.clone()));
        let relay = self.clone();
        tasks.every("credential check", self.config.credential_check_interval, move || {
            services::watch_credentials(relay.clone())
        });
    }

    async fn refresh_metrics(&self) {
        // Queue depth is read at scrape time: exact, and nothing to keep in step.
        match self.queue.total_pending().await {
            Ok(depth) => {
                self.metrics.queue_depth.set(depth as i64);
            }
            Err(err) => tracing::warn!(%err, "queue depth unavailable for this scrape"),
        }
        self.metrics.online_devices.set(self.hub.online_count() as i64);
    }
}
