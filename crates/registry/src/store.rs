//! What the registry needs from storage. Statuses are read on every proxy
//! call, never cached, so a block takes effect on every node at once.

use async_trait::async_trait;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;

use crate::model::{DeviceFilter, DeviceStatus, DeviceUuid, InstanceId, RegisteredDevice, Registration};

/// Registered devices.
#[async_trait]
pub trait DeviceRegistry: Send + Sync + 'static {
    /// Registers a device, or refreshes a known one (its instance,
    /// `public_url` and `last_seen`), in one transaction; the status
    /// follows [`crate::rules::registration_status`] (a blocked device is
    /// refused and left as it was; one that moves to another instance
    /// starts over).
    async fn register(&self, registration: Registration) -> StoreResult<RegisteredDevice>;
    async fn device(&self, device_uuid: &DeviceUuid) -> StoreResult<Option<RegisteredDevice>>;
    /// Devices by `registered_at`, at most `limit`.
    async fn devices(&self, filter: DeviceFilter, limit: usize) -> StoreResult<Vec<RegisteredDevice>>;
    /// Sets a device's status; `device_not_found` when unknown.
    async fn set_status(&self, device_uuid: &DeviceUuid, status: DeviceStatus) -> StoreResult<RegisteredDevice>;
    /// Marks a proxying device as seen.
    async fn touch(&self, device_uuid: &DeviceUuid, at: Timestamp) -> StoreResult<()>;
}

/// The secrets instances open their tunnels with.
#[async_trait]
pub trait InstanceTokens: Send + Sync + 'static {
    /// Sets (or replaces) an instance's tunnel token.
    async fn set_instance_token(&self, instance_id: &InstanceId, hash: SecretHash, at: Timestamp) -> StoreResult<()>;
    /// The hash of an instance's tunnel token, if it has one.
    async fn instance_token(&self, instance_id: &InstanceId) -> StoreResult<Option<SecretHash>>;
}
