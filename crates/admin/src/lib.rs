//! The admin capability: the server run for many customers without a
//! shell on it. Operators (server administrators, above the licenses) act
//! over `/api/admin/v1` with their API tokens (`rho_…`) — licenses, their
//! bearer tokens, app keys — and read the audit log of every
//! administrative write, from the API or the command line.
//!
//! - [`acts`]: each act written once, for the API and the command line,
//!   recorded in the audit log; [`rules`]: pure functions;
//! - `api`: the routes; `cli`: `relayhub operator`.

pub mod acts;
mod api;
mod cli;
pub mod codes;
mod console;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::attempts::Attempts;
use relayhub_core::capability::{BuildError, Capability, CommandOutput, Platform, Section, Spec};
use relayhub_core::error::ApiError;
use relayhub_core::identity::IdentityStore;
use relayhub_core::license_data::LicenseBoard;
use relayhub_core::operators::{AuditLog, OperatorSessions, OperatorStore};
use relayhub_core::tasks::Tasks;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Administration settings (`[admin]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// How long the audit log keeps an act (then it is forgotten).
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { audit_retention: Duration::from_secs(400 * 24 * 3600) }
    }
}

impl Section for AdminConfig {
    const NAME: &'static str = "admin";
}

/// Everything the admin handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    config: Arc<AdminConfig>,
    identity: Arc<dyn IdentityStore>,
    operators: Arc<dyn OperatorStore>,
    audit: Arc<dyn AuditLog>,
    sessions: Arc<dyn OperatorSessions>,
    /// Operator console sign-ins, by email and by address.
    sign_ins: Arc<Attempts>,
    license_data: LicenseBoard,
}

/// Failed operator sign-ins one email or address may make within
/// [`SIGN_IN_WINDOW`], as for fleet users.
const SIGN_IN_ATTEMPTS: usize = 10;
const SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);

impl axum::extract::FromRef<Admin> for Arc<dyn OperatorStore> {
    fn from_ref(admin: &Admin) -> Self {
        admin.operators.clone()
    }
}

impl Spec for Admin {
    const NAME: &'static str = AdminConfig::NAME;
    const TAGS: &'static [(&'static str, &'static str)] =
        &[("admin", "The operator API: licenses, their tokens, app keys, the audit log")];
    const ERROR_CODES: &'static [relayhub_core::error::ErrorCode] = codes::ALL;
    const SECRET_KINDS: &'static [relayhub_core::secret::SecretKind] = codes::SECRET_KINDS;
    type Config = AdminConfig;

    fn build(config: AdminConfig, platform: &Platform) -> Result<Self, BuildError> {
        if config.audit_retention < Duration::from_secs(24 * 3600) {
            return Err(BuildError::config(AdminConfig::NAME, "audit_retention is at least 1 day"));
        }
        let stores = &platform.stores;
        Ok(Self {
            config: Arc::new(config),
            identity: stores.identity.clone(),
            operators: stores.get()?,
            audit: stores.get()?,
            sessions: stores.get()?,
            sign_ins: Attempts::new(SIGN_IN_ATTEMPTS, SIGN_IN_WINDOW),
            license_data: platform.license_data.clone(),
        })
    }

    fn commands() -> Vec<clap::Command> {
        vec![cli::command()]
    }
}

#[async_trait]
impl Capability for Admin {
    fn name(&self) -> &'static str {
        AdminConfig::NAME
    }

    fn console(&self) -> Option<relayhub_core::console::Pages> {
        Some(console::pages(self.clone()))
    }

    fn router(&self) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(api::create_license, api::list_licenses))
            .routes(routes!(api::get_license, api::update_license, api::delete_license))
            .routes(routes!(api::create_token, api::list_tokens))
            .routes(routes!(api::revoke_token))
            .routes(routes!(api::create_api_key, api::list_api_keys))
            .routes(routes!(api::revoke_api_key))
            .routes(routes!(api::audit))
            .routes(routes!(api::create_operator, api::list_operators))
            .routes(routes!(api::create_operator_token))
            .routes(routes!(api::revoke_operator_token))
            .with_state(self.clone())
    }

    /// Forgets acts past `audit_retention` and expired console sessions,
    /// hourly.
    fn start(&self, tasks: &Tasks) {
        let (audit, sessions, keep) = (self.audit.clone(), self.sessions.clone(), self.config.audit_retention);
        tasks.every("forgetting old audit entries", Duration::from_secs(3600), move || {
            let (audit, sessions) = (audit.clone(), sessions.clone());
            async move {
                let now = Timestamp::now();
                let forgotten = audit.purge_before(now.minus(keep)).await?;
                if forgotten > 0 {
                    tracing::info!(forgotten, "forgot audit entries past their retention");
                }
                sessions.purge_operator_sessions(now).await?;
                Ok::<(), relayhub_core::store::StoreError>(())
            }
        });
    }

    /// The operator's token in the document.
    fn describe(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let about = "An operator's API token (rho_…) from `relayhub operator token create`";
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(about)).build()),
        );
    }

    async fn run_command(&self, name: &str, args: &clap::ArgMatches) -> Result<CommandOutput, ApiError> {
        cli::run(self, name, args).await
    }
}
