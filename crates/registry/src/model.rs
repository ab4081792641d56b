//! Registered devices (seed 001's `registered_devices`) and instances.

use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::rules::Placement;

/// A device's UUID as the registry keeps it (lowercase, hyphenated):
/// made only by [`crate::rules::device_uuid`], so a store never sees an
/// unchecked one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceUuid(String);

/// An instance (warehouse server) id, 1 to 128 letters, digits, `.`, `_`,
/// `-` or `:`: made only by [`crate::rules::instance_id`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId(String);

macro_rules! checked_text {
    ($name:ident) => {
        impl $name {
            /// Only the rules make one: the text is already checked.
            pub(crate) fn checked(text: String) -> Self {
                Self(text)
            }

            /// What a store reads back: it only ever wrote checked ones.
            pub fn stored(text: String) -> Self {
                Self(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

checked_text!(DeviceUuid);
checked_text!(InstanceId);

/// Whether a registered device may use the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[schema(as = RegistryDeviceStatus)]
pub enum DeviceStatus {
    /// Waiting for an operator's `relayhub registry approve`.
    Pending,
    /// May reach its instance through the proxy.
    Active,
    /// Refused everywhere until unblocked.
    Blocked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Active => "active",
            DeviceStatus::Blocked => "blocked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeviceStatus::Pending),
            "active" => Some(DeviceStatus::Active),
            "blocked" => Some(DeviceStatus::Blocked),
            _ => None,
        }
    }
}

/// A device known to the registry: which instance (warehouse server) it
/// belongs to, and where that instance is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RegisteredDevice {
    /// Lowercase, hyphenated.
    #[schema(value_type = String, example = "6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10")]
    pub device_uuid: DeviceUuid,
    #[schema(value_type = String, example = "warehouse-berlin")]
    pub instance_id: InstanceId,
    /// The instance's public URL as the device registered it; `null` for
    /// an instance reached through its tunnel.
    pub public_url: Option<String>,
    pub status: DeviceStatus,
    pub last_seen: Timestamp,
    pub registered_at: Timestamp,
}

impl RegisteredDevice {
    /// Where its calls go now.
    pub fn placement(&self) -> Placement<'_> {
        Placement { instance_id: self.instance_id.as_str(), public_url: self.public_url.as_deref() }
    }
}

/// A registration as the store applies it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub device_uuid: DeviceUuid,
    pub instance_id: InstanceId,
    pub public_url: Option<String>,
    /// The status of a device seen for the first time.
    pub initial: DeviceStatus,
    pub at: Timestamp,
}

impl Registration {
    /// Where it asks the device's calls to go.
    pub fn placement(&self) -> Placement<'_> {
        Placement { instance_id: self.instance_id.as_str(), public_url: self.public_url.as_deref() }
    }
}

/// Which devices `relayhub registry list` shows.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub status: Option<DeviceStatus>,
    pub instance_id: Option<InstanceId>,
}
