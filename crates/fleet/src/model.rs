//! The fleet's objects (seed 002's `users`, `robots`, `pair_codes`), as
//! stored and as the API shows them.

use relayhub_core::error::ApiError;
use relayhub_core::ids::{LicenseNumber, LicensePk};
use relayhub_core::secret::SecretHash;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's role within its license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees and manages its own robots.
    User,
    /// Sees and manages every robot and user of its license.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Role::User, Role::Admin].into_iter().find(|r| r.as_str() == raw)
    }
}

/// A user, as stored (the password hash never leaves the capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub license: LicensePk,
    /// Lowercase; unique on the server.
    pub email: String,
    pub name: String,
    pub role: Role,
    pub is_active: bool,
    /// Argon2id, in PHC form.
    pub password_hash: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    pub fn view(&self, license: &LicenseNumber) -> UserView {
        UserView {
            id: self.id,
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role,
            is_active: self.is_active,
            license: license.clone(),
            created_at: self.created_at,
        }
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub is_active: bool,
    /// The license (operator company) the user belongs to.
    pub license: LicenseNumber,
    pub created_at: Timestamp,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub license: LicensePk,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(max_length = 200)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// `false` signs the user out at once: its sessions end, its access
    /// tokens stop working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

/// A robot's processor architecture (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Arm64,
    Amd64,
    Armhf,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::Amd64 => "amd64",
            Architecture::Armhf => "armhf",
        }
    }

    /// Seed 002's names, and what `uname -m` says on such machines.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        match raw.to_ascii_lowercase().as_str() {
            "arm64" | "aarch64" | "armv8" => Ok(Architecture::Arm64),
            "amd64" | "x86_64" | "x64" => Ok(Architecture::Amd64),
            "armhf" | "armv7" | "armv7l" | "armv6l" | "arm" => Ok(Architecture::Armhf),
            _ => Err(ApiError::invalid_field("architecture is arm64, amd64 or armhf")),
        }
    }
}

/// Where a robot is in its life (seed 002's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RobotStatus {
    /// Asked to pair, not confirmed by a user yet.
    Pending,
    /// Paired; its token works.
    Active,
    /// Switched off by its user; its token does not work.
    Inactive,
    /// Set by operators when a robot misbehaves; its token does not work.
    Error,
}

impl RobotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RobotStatus::Pending => "pending",
            RobotStatus::Active => "active",
            RobotStatus::Inactive => "inactive",
            RobotStatus::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [RobotStatus::Pending, RobotStatus::Active, RobotStatus::Inactive, RobotStatus::Error]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// A robot, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
    /// `None` while pending: a robot joins the license of the user who
    /// confirms it.
    pub license: Option<LicensePk>,
    pub owner_id: Option<i64>,
    pub name: String,
    pub hostname: String,
    pub ip_address: Option<String>,
    pub architecture: Option<Architecture>,
    pub status: RobotStatus,
    pub created_at: Timestamp,
    pub last_seen_at: Option<Timestamp>,
}

impl Robot {
    pub fn view(&self) -> RobotView {
        RobotView {
            id: self.id,
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            ip_address: self.ip_address.clone(),
            architecture: self.architecture,
            status: self.status,
            owner_id: self.owner_id,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
        }
    }
}

/// A robot as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RobotView {
    pub id: i64,
    pub name: String,
    pub hostname: String,
    pub ip_address: Option<String>,
    pub architecture: Option<Architecture>,
    pub status: RobotStatus,
    pub owner_id: Option<i64>,
    pub created_at: Timestamp,
    pub last_seen_at: Option<Timestamp>,
}

/// A change to a robot, by its user.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RobotPatch {
    /// Blanks around it are dropped; something must be left.
    #[schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\f\\r ]")]
    pub name: Option<String>,
    /// `active` or `inactive`: an inactive robot's token stops working.
    #[schema(schema_with = settable_status_schema)]
    pub status: Option<RobotStatus>,
}

/// The statuses a user may set ([`crate::rules::settable_status`]).
fn settable_status_schema() -> utoipa::openapi::schema::Schema {
    crate::openapi::or_null(crate::openapi::string_enum(&[
        RobotStatus::Active.as_str(),
        RobotStatus::Inactive.as_str(),
    ]))
}

/// A robot asking to pair.
#[derive(Debug, Clone)]
pub struct NewPairing {
    pub hostname: String,
    pub ip_address: Option<String>,
    /// The address the pairing request came from, as the server saw it.
    pub observed_ip_address: Option<String>,
    pub architecture: Option<Architecture>,
    /// Normalised (8 letters, no hyphen).
    pub code: String,
    pub secret: SecretHash,
    pub expires_at: Timestamp,
}

/// A pairing and its robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub robot: Robot,
    pub code: String,
    pub secret: SecretHash,
    pub expires_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
    /// The robot's token was handed out (once).
    pub token_delivered: bool,
    /// The address the pairing request came from, as the server saw it
    /// (the robot's own `ip_address` is its word).
    pub observed_ip_address: Option<String>,
}

/// A refresh token as stored (by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub user_id: i64,
    /// Every token rotated from one login shares its chain.
    pub chain: String,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}
