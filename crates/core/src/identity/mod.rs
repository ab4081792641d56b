//! Tenants and their credentials: licenses, license bearer tokens, app API
//! keys, and (through [`Accounts`]) the users who sign in. Every other
//! object belongs to exactly one license.

mod accounts;
mod admin;
mod auth;
pub mod refusals;

pub use accounts::{Account, Accounts, presented_access_token};
pub use admin::{
    Issued, create_api_key, create_license, existing as existing_license, issue_token, revoke_api_key, revoke_token,
};
pub use auth::{ApiKeyAuth, LicenseAuth, check_api_key, missing_api_key, presented_api_key};

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{LicenseNumber, LicensePk};
use crate::secret::SecretHash;
use crate::store::StoreResult;
use crate::time::Timestamp;

/// How a license's devices bind and prove who they are on `/ws/device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindingPolicy {
    /// Seed 000's behaviour: the app key and a device id are enough; any
    /// new id binds (up to `max_devices`). Licenses made before policies
    /// existed keep it, so no phone in the field is locked out.
    Open,
    /// A device's first connection binds it and receives a
    /// `device_secret` (shown once); every later connection must present
    /// it. The default for new licenses.
    #[default]
    FirstUse,
    /// As `first_use`, and only ids the back office bound beforehand
    /// (`PUT /api/v1/devices/{device_id}`, or a message) may connect.
    Preregistered,
}

impl BindingPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingPolicy::Open => "open",
            BindingPolicy::FirstUse => "first_use",
            BindingPolicy::Preregistered => "preregistered",
        }
    }

    /// Whether devices of the license carry a secret.
    pub fn has_secrets(self) -> bool {
        self != BindingPolicy::Open
    }
}

impl std::str::FromStr for BindingPolicy {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "open" => Ok(BindingPolicy::Open),
            "first_use" | "first-use" => Ok(BindingPolicy::FirstUse),
            "preregistered" => Ok(BindingPolicy::Preregistered),
            _ => Err("expected open, first_use or preregistered".into()),
        }
    }
}

/// A tenant: one accounting system (seed 000), instance (001) or operator (004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    pub pk: LicensePk,
    pub number: LicenseNumber,
    pub name: String,
    /// The first instant at which the license no longer works; `None` = never.
    pub expires_at: Option<Timestamp>,
    /// How many devices may be bound at once; `None` = no limit.
    pub max_devices: Option<u32>,
    pub binding: BindingPolicy,
    pub created_at: Timestamp,
    /// When an operator suspended it; `None` while it works.
    pub suspended_at: Option<Timestamp>,
}

impl License {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Refuses with 403 `license_suspended` while an operator has it
    /// suspended, and `license_expired` past the expiry date.
    pub fn ensure_active(&self, now: Timestamp) -> Result<(), ApiError> {
        if self.suspended_at.is_some() {
            return Err(ApiError::new(
                ErrorCode::LICENSE_SUSPENDED,
                format!("license {} is suspended; its operator can resume it", self.number),
            ));
        }
        if self.is_expired(now) {
            let day = self.expires_at.map(|t| t.last_day().to_string()).unwrap_or_default();
            return Err(ApiError::new(
                ErrorCode::LICENSE_EXPIRED,
                format!("license {} expired at the end of {day}", self.number),
            ));
        }
        Ok(())
    }

    /// The public view of a license.
    pub fn view(&self, devices: Option<u64>) -> LicenseView {
        LicenseView {
            number: self.number.clone(),
            name: self.name.clone(),
            expires: self.expires_at.map(|t| t.last_day().to_string()),
            expires_at: self.expires_at,
            max_devices: self.max_devices,
            devices,
            binding: self.binding,
            created_at: self.created_at,
            suspended_at: self.suspended_at,
        }
    }
}

/// A license as the API and the CLI show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LicenseView {
    pub number: LicenseNumber,
    pub name: String,
    /// Last valid day (UTC), `YYYY-MM-DD`; absent when the license never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The first instant at which the license stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Device limit; absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u32>,
    /// Devices bound now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
    /// How devices bind and prove who they are.
    pub binding: BindingPolicy,
    pub created_at: Timestamp,
    /// When an operator suspended it: its tokens, devices and users are
    /// refused until it is resumed. Absent while it works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<Timestamp>,
}

/// What is stored of a new token or key: never the secret itself.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: String,
    pub hash: SecretHash,
    pub name: String,
    pub created_at: Timestamp,
}

/// A stored token or key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CredentialInfo {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// Which licenses an app API key may be used with. A key used with a
/// license outside its scope is refused as if that license did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// Every license of the server (keys made without `--license`).
    AllLicenses,
    /// These licenses only. A scoped key whose licenses were all deleted
    /// admits none, never all.
    Licenses(Vec<LicensePk>),
}

impl KeyScope {
    pub fn admits(&self, license: LicensePk) -> bool {
        match self {
            KeyScope::AllLicenses => true,
            KeyScope::Licenses(licenses) => licenses.contains(&license),
        }
    }
}

/// A valid app API key and its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub info: CredentialInfo,
    pub scope: KeyScope,
}

/// The fields of a new license.
#[derive(Debug, Clone)]
pub struct NewLicense {
    pub number: LicenseNumber,
    pub name: String,
    pub expires_at: Option<Timestamp>,
    pub max_devices: Option<u32>,
    pub binding: BindingPolicy,
}

/// A change to a license; `None` leaves a field as it is, `Some(None)`
/// clears it.
#[derive(Debug, Clone, Default)]
pub struct LicenseUpdate {
    pub name: Option<String>,
    pub expires_at: Option<Option<Timestamp>>,
    pub max_devices: Option<Option<u32>>,
    pub binding: Option<BindingPolicy>,
    /// `true` suspends, `false` resumes.
    pub suspended: Option<bool>,
}

impl LicenseUpdate {
    /// When the license is suspended after this change, from `current`'s
    /// value: suspending again keeps the first instant.
    pub fn suspended_at(&self, current: Option<Timestamp>, now: Timestamp) -> Option<Timestamp> {
        match self.suspended {
            None => current,
            Some(true) => current.or(Some(now)),
            Some(false) => None,
        }
    }
}

/// Credentials of online connections that stopped being valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidated {
    pub licenses: Vec<LicensePk>,
    pub api_keys: Vec<String>,
}

/// Licenses (the tenants).
#[async_trait]
pub trait Licenses: Send + Sync + 'static {
    /// Creates a license with its first bearer token; `already_exists` if
    /// the number is taken.
    async fn create_license(&self, license: NewLicense, token: NewCredential) -> StoreResult<License>;
    /// `license_not_found` if there is no such number.
    async fn update_license(&self, number: &LicenseNumber, update: LicenseUpdate) -> StoreResult<License>;
    async fn license(&self, number: &LicenseNumber) -> StoreResult<Option<License>>;
    /// By its row key (what other objects point to).
    async fn license_by_pk(&self, pk: LicensePk) -> StoreResult<Option<License>>;
    async fn licenses(&self) -> StoreResult<Vec<License>>;
    /// A page of licenses, by number, and how many there are.
    async fn license_page(&self, page: crate::store::PageRequest) -> StoreResult<crate::store::Page<License>>;
    /// Deletes the license's own rows (its tokens, the key scopes naming
    /// it), once every capability has forgotten its data
    /// ([`crate::license_data::LicenseBoard::forget`]). Its pk is never
    /// given to another license.
    async fn delete_license(&self, license: LicensePk) -> StoreResult<()>;
}

/// The bearer tokens of a license's accounting systems.
#[async_trait]
pub trait LicenseTokens: Send + Sync + 'static {
    async fn add_token(&self, license: LicensePk, token: NewCredential) -> StoreResult<()>;
    /// `credential_not_found` unless the token exists in this license.
    async fn revoke_token(&self, license: LicensePk, id: &str, at: Timestamp) -> StoreResult<()>;
    async fn tokens(&self, license: LicensePk) -> StoreResult<Vec<CredentialInfo>>;
    /// The license of a valid (unrevoked) token.
    async fn license_by_token(&self, hash: &SecretHash) -> StoreResult<Option<License>>;
}

/// App keys: what devices sign in with, scoped to licenses.
#[async_trait]
pub trait ApiKeys: Send + Sync + 'static {
    async fn add_api_key(&self, key: NewCredential, scope: &KeyScope) -> StoreResult<()>;
    async fn revoke_api_key(&self, id: &str, at: Timestamp) -> StoreResult<()>;
    async fn api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// A valid (unrevoked) key with this hash.
    async fn api_key_by_hash(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>>;
}

/// What tells online connections that their credentials stopped being valid.
#[async_trait]
pub trait Revocations: Send + Sync + 'static {
    /// Of the given licenses and keys (those of online connections), the
    /// ones that are now expired or revoked.
    async fn invalidated(
        &self,
        licenses: &[LicensePk],
        api_keys: &[String],
        now: Timestamp,
    ) -> StoreResult<Invalidated>;
}

/// Storage of licenses and credentials: what a handler that needs several
/// of its parts takes.
pub trait IdentityStore: Licenses + LicenseTokens + ApiKeys + Revocations {}
impl<T: Licenses + LicenseTokens + ApiKeys + Revocations> IdentityStore for T {}
