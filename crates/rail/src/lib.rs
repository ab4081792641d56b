//! The rail capability (seed 004): the base and store services of
//! passenger robots on trains, under seed 004's prefixes `/base_api` and
//! `/store_api`. Robots sign in with a key pair (a signed challenge),
//! store staff with a store token or a key pair, passengers with an OpenID
//! Connect token (Keycloak in seed 004), the operator with its license
//! token.
//!
//! - [`model`]: seed 004's rows; [`rules`]: purchases, train days, codes,
//!   as pure functions; [`keys`]: public keys and signatures; [`store`]:
//!   what rail needs from storage;
//! - [`api`]: the routes and seed 004's HTTP conventions; `cli`:
//!   `relayhub rail demo-data`.

pub mod api;
mod cli;
pub mod keys;
pub mod model;
pub mod rules;
pub mod store;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use relayhub_core::capability::{Capability, CommandOutput, Platform, Section, Spec};
use relayhub_core::error::ApiError;
use relayhub_core::identity::IdentityStore;
use relayhub_core::oidc::{IdTokenVerifier, JwksSource};
use relayhub_core::tasks::Tasks;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::store::{BaseStore, RailSessions, ShopStore};

/// Passengers' OpenID Connect provider (`[rail.oidc]`). Passenger routes
/// answer 501 `not_configured` until `issuer`, `audience`, `jwks` and
/// `license` are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer tokens must name (`iss`), e.g. a Keycloak realm's URL.
    pub issuer: String,
    /// The audience tokens must name (`aud`).
    pub audience: String,
    /// The issuer's signing keys: a JWKS URL or file.
    pub jwks: String,
    /// The license (railway operator) whose passengers sign in there.
    pub license: String,
}

impl OidcConfig {
    fn is_set(&self) -> bool {
        ![&self.issuer, &self.audience, &self.jwks, &self.license].iter().any(|v| v.is_empty())
    }
}

/// Rail settings (`[rail]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RailConfig {
    /// How long a sign-in challenge's nonce may be answered.
    #[serde(with = "humantime_serde")]
    pub challenge_ttl: Duration,
    /// How long a robot's or store's access token lasts.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Engineer sign-ins (card or password) one robot may try per minute.
    pub engineer_attempts_per_minute: u32,
    pub oidc: OidcConfig,
}

impl Default for RailConfig {
    fn default() -> Self {
        Self {
            challenge_ttl: Duration::from_secs(60),
            token_ttl: Duration::from_secs(3600),
            engineer_attempts_per_minute: 10,
            oidc: OidcConfig::default(),
        }
    }
}

impl Section for RailConfig {
    const NAME: &'static str = "rail";
}

/// Passengers' token verification, when configured.
#[derive(Clone)]
pub struct Passengers {
    pub verifier: Arc<IdTokenVerifier>,
    /// The license number passengers belong to.
    pub license: String,
}

/// Everything the rail handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Rail {
    pub config: Arc<RailConfig>,
    pub base: Arc<dyn BaseStore>,
    pub shops: Arc<dyn ShopStore>,
    pub sessions: Arc<dyn RailSessions>,
    identity: Arc<dyn IdentityStore>,
    passengers: Option<Passengers>,
    engineer_attempts: Arc<DefaultKeyedRateLimiter<Uuid>>,
}

impl axum::extract::FromRef<Rail> for Arc<dyn IdentityStore> {
    fn from_ref(rail: &Rail) -> Self {
        rail.identity.clone()
    }
}

impl Spec for Rail {
    const NAME: &'static str = RailConfig::NAME;
    const TAGS: &'static [(&'static str, &'static str)] = &[
        ("rail-base", "Seed 004's base service: robots, tickets, engineers, passengers (`/base_api`)"),
        ("rail-store", "Seed 004's store service: stores, items, purchases, tasks (`/store_api`)"),
    ];
    type Config = RailConfig;

    fn build(config: RailConfig, platform: &Platform) -> Result<Self, String> {
        let stores = &platform.stores;
        let passengers = if config.oidc.is_set() {
            let source = JwksSource::parse(&config.oidc.jwks);
            let verifier = IdTokenVerifier::new(&config.oidc.audience, vec![config.oidc.issuer.clone()], source)?;
            Some(Passengers { verifier: Arc::new(verifier), license: config.oidc.license.clone() })
        } else {
            None
        };
        let per_minute = NonZeroU32::new(config.engineer_attempts_per_minute)
            .ok_or("[rail] engineer_attempts_per_minute must be at least 1")?;
        Ok(Self {
            base: stores.get()?,
            shops: stores.get()?,
            sessions: stores.get()?,
            identity: stores.identity.clone(),
            passengers,
            engineer_attempts: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            config: Arc::new(config),
        })
    }

    fn commands() -> Vec<clap::Command> {
        vec![cli::command()]
    }
}

#[async_trait]
impl Capability for Rail {
    fn name(&self) -> &'static str {
        RailConfig::NAME
    }

    fn router(&self) -> OpenApiRouter {
        api::admin::routes().merge(api::robot::routes()).merge(api::store::routes()).with_state(self.clone())
    }

    /// Forgets expired challenges and sessions, and idle robots' attempt
    /// counts.
    fn start(&self, tasks: &Tasks) {
        let rail = self.clone();
        tasks.spawn(move |stop| async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                rail.engineer_attempts.retain_recent();
                if let Err(err) = rail.sessions.purge_expired(Timestamp::now()).await {
                    tracing::warn!(%err, "purging expired rail sessions failed; will retry");
                }
            }
        });
    }

    async fn run_command(&self, name: &str, args: &clap::ArgMatches) -> Result<CommandOutput, ApiError> {
        cli::run(self, name, args).await
    }
}
