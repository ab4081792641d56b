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
//! - [`api`]: the routes and seed 004's HTTP conventions; [`face`]: the
//!   face service and its in-memory index; `cli`: `relayhub rail demo-data`;
//!   `console`: the operator's admin pages in the web console.

pub mod api;
mod cli;
pub mod codes;
mod console;
pub mod face;
pub mod keys;
pub mod model;
pub mod refusals;
pub mod rules;
pub mod store;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::gauge::Gauge;
use relayhub_core::capability::{BuildError, Capability, CommandOutput, Platform, Section, Spec};
use relayhub_core::error::ApiError;
use relayhub_core::error::ErrorCode;
use relayhub_core::identity::IdentityStore;
use relayhub_core::oidc::{IdTokenVerifier, JwksSource};
use relayhub_core::secret::SecretKind;
use relayhub_core::tasks::Tasks;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::face::index::FaceIndex;
use crate::face::sync::{FaceChanges, FaceSync};
use crate::store::{BaseStore, FaceStore, RailSessions, ShopStore};

/// Passengers' OpenID Connect provider (`[rail.oidc]`). Until `issuer`,
/// `audience`, `jwks` and `license` are all set, a passenger's token is
/// refused like any unknown token (401 `invalid_token`, saying why).
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

/// The face service (`[rail.face]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaceConfig {
    /// Numbers per embedding: 128 for dlib's model, 512 for ArcFace models.
    pub dimension: usize,
    /// The largest Euclidean distance between unit vectors that still
    /// identifies (0.36 separates dlib's same and different people in the
    /// test photos; dlib's customary 0.6 on its raw vectors is about 0.41).
    pub threshold: f32,
    /// Faces one passenger may have enrolled.
    pub max_per_user: u32,
    /// HNSW's breadth of search: higher finds the true nearest more often,
    /// slower (see BENCHMARKS.md for recall).
    pub expansion_search: usize,
    /// Faces are enrolled only by passengers themselves
    /// (`POST /face_api/me`, with their own token): robots and the
    /// operator get 403 on `POST /face_api/enrol`.
    pub self_enrol_only: bool,
}

impl Default for FaceConfig {
    fn default() -> Self {
        Self { dimension: 128, threshold: 0.36, max_per_user: 20, expansion_search: 96, self_enrol_only: false }
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
    /// Sign-in challenges one robot or store may be given per minute
    /// (429 past it). With `challenge_ttl` this bounds its live nonces: at
    /// most about this many times (1 + `challenge_ttl` in minutes).
    pub challenges_per_minute: u32,
    /// Sign-in challenges one client address (an IPv6 client by its /64)
    /// may ask for per minute, for any robot or store (429 past it).
    pub challenges_per_minute_per_address: u32,
    /// How long the robot that accepted a ticket gets the same answer when
    /// it checks it again (a retry after a lost answer); any other robot,
    /// or later, gets 409 `ticket_used`.
    #[serde(with = "humantime_serde")]
    pub ticket_recheck: Duration,
    /// The operator's IANA time zone (`Europe/Moscow`): a ticket is
    /// accepted on its `date`'s day there.
    pub time_zone: chrono_tz::Tz,
    pub oidc: OidcConfig,
    pub face: FaceConfig,
}

impl Default for RailConfig {
    fn default() -> Self {
        Self {
            challenge_ttl: Duration::from_secs(60),
            token_ttl: Duration::from_secs(3600),
            engineer_attempts_per_minute: 10,
            challenges_per_minute: 10,
            challenges_per_minute_per_address: 60,
            ticket_recheck: Duration::from_secs(600),
            time_zone: chrono_tz::UTC,
            oidc: OidcConfig::default(),
            face: FaceConfig::default(),
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
    pub faces: Arc<dyn FaceStore>,
    pub face_index: Arc<FaceIndex>,
    face_sync: FaceSync,
    /// Taken by the index task when the node starts serving.
    face_changes: Arc<std::sync::Mutex<Option<FaceChanges>>>,
    identity: Arc<dyn IdentityStore>,
    passengers: Option<Passengers>,
    engineer_attempts: Arc<DefaultKeyedRateLimiter<Uuid>>,
    /// Challenges by robot or store id (only ids that exist are keys).
    challenges: Arc<DefaultKeyedRateLimiter<Uuid>>,
    /// Challenges by client address, checked before any lookup.
    challenges_by_address: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>,
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
        ("rail-face", "Seed 004's face service: enrol and identify passengers by face embedding (`/face_api`)"),
    ];
    const ERROR_CODES: &'static [ErrorCode] = codes::ALL;
    const SECRET_KINDS: &'static [SecretKind] = codes::SECRET_KINDS;
    type Config = RailConfig;

    fn build(config: RailConfig, platform: &Platform) -> Result<Self, BuildError> {
        let stores = &platform.stores;
        let passengers = if config.oidc.is_set() {
            let source = JwksSource::parse(&config.oidc.jwks);
            let verifier = IdTokenVerifier::new(&config.oidc.audience, vec![config.oidc.issuer.clone()], source)?;
            Some(Passengers { verifier: Arc::new(verifier), license: config.oidc.license.clone() })
        } else {
            None
        };
        if !(1..=4096).contains(&config.face.dimension) {
            return Err(BuildError::config("rail.face", "dimension must be 1-4096"));
        }
        if !(config.face.threshold.is_finite() && (0.0..=2.0).contains(&config.face.threshold)) {
            return Err(BuildError::config("rail.face", "threshold must be 0-2 (Euclidean, between unit vectors)"));
        }
        let (face_sync, face_changes) = FaceSync::subscribe(&platform.bus);
        let face_index = Arc::new(FaceIndex::new(config.face.dimension, config.face.expansion_search.max(1)));
        platform.license_data.add(Arc::new(RailLicenseData {
            faces: stores.get()?,
            rows: stores.get()?,
            index: face_index.clone(),
        }));
        let (faces_indexed, face_index_bytes) = (Gauge::<i64>::default(), Gauge::<i64>::default());
        platform.metrics.register("rail_faces_indexed", "Faces in this node's index", faces_indexed.clone());
        platform.metrics.register(
            "rail_face_index_bytes",
            "Bytes this node's face index holds (graphs and who each face is)",
            face_index_bytes.clone(),
        );
        let index = face_index.clone();
        platform.metrics.on_render(move || {
            faces_indexed.set(index.len() as i64);
            face_index_bytes.set(index.bytes() as i64);
        });
        let at_least_one = |value: u32, name: &str| {
            NonZeroU32::new(value).ok_or_else(|| BuildError::config("rail", format!("{name} must be at least 1")))
        };
        let per_minute = at_least_one(config.engineer_attempts_per_minute, "engineer_attempts_per_minute")?;
        let challenges = at_least_one(config.challenges_per_minute, "challenges_per_minute")?;
        let challenges_by_address =
            at_least_one(config.challenges_per_minute_per_address, "challenges_per_minute_per_address")?;
        Ok(Self {
            base: stores.get()?,
            shops: stores.get()?,
            sessions: stores.get()?,
            faces: stores.get()?,
            face_index,
            face_sync,
            face_changes: Arc::new(std::sync::Mutex::new(Some(face_changes))),
            identity: stores.identity.clone(),
            passengers,
            engineer_attempts: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            challenges: Arc::new(RateLimiter::keyed(Quota::per_minute(challenges))),
            challenges_by_address: Arc::new(RateLimiter::keyed(Quota::per_minute(challenges_by_address))),
            config: Arc::new(config),
        })
    }

    fn commands() -> Vec<clap::Command> {
        vec![cli::command()]
    }
}

/// The rail's part of a license's data: its faces (in the store and in
/// this node's index) and its base and store rows. Not in the usage.
struct RailLicenseData {
    faces: Arc<dyn FaceStore>,
    rows: Arc<dyn store::RailData>,
    index: Arc<FaceIndex>,
}

#[async_trait]
impl relayhub_core::license_data::LicenseData for RailLicenseData {
    async fn measure(
        &self,
        _license: relayhub_core::ids::LicensePk,
        _now: relayhub_core::time::Timestamp,
        _usage: &mut relayhub_core::license_data::Usage,
    ) -> relayhub_core::store::StoreResult<()> {
        Ok(())
    }

    /// The faces first: they name the passengers.
    async fn forget(&self, license: &relayhub_core::identity::License) -> relayhub_core::store::StoreResult<()> {
        self.faces.forget_license(license.pk).await?;
        self.index.forget_license(license.pk);
        self.rows.forget_license(license.pk).await
    }
}

#[async_trait]
impl Capability for Rail {
    fn name(&self) -> &'static str {
        RailConfig::NAME
    }

    fn router(&self) -> OpenApiRouter {
        api::admin::routes()
            .merge(api::robot::routes())
            .merge(api::store::routes())
            .merge(face::api::routes())
            .with_state(self.clone())
    }

    /// The admin pages (seed 004's DebugConsole), for the license's admins.
    fn console(&self) -> Option<relayhub_core::console::Pages> {
        Some(console::pages(self.clone()))
    }

    /// Loads the face index and keeps it in step; forgets expired
    /// challenges and sessions, and idle robots' attempt counts.
    fn start(&self, tasks: &Tasks) {
        let changes = self.face_changes.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(changes) = changes {
            let (sync, index, store) = (self.face_sync.clone(), self.face_index.clone(), self.faces.clone());
            tasks.spawn(move |stop| face::sync::run(sync, changes, index, store, stop));
        }
        let rail = self.clone();
        tasks.every("purging expired rail sessions", Duration::from_secs(60), move || {
            rail.engineer_attempts.retain_recent();
            rail.challenges.retain_recent();
            rail.challenges_by_address.retain_recent();
            let sessions = rail.sessions.clone();
            async move { sessions.purge_expired(Timestamp::now()).await }
        });
    }

    /// Not ready until the face index is loaded.
    async fn ready(&self) -> Result<(), ApiError> {
        if self.face_sync.is_ready() {
            return Ok(());
        }
        Err(ApiError::new(relayhub_core::error::ErrorCode::STORAGE_UNAVAILABLE, "the face index is loading"))
    }

    async fn run_command(&self, name: &str, args: &clap::ArgMatches) -> Result<CommandOutput, ApiError> {
        cli::run(self, name, args).await
    }
}
