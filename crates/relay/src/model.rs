//! The relay's domain objects, as stored and as the API shows them.

use std::sync::Arc;

use relayhub_core::devices::DeviceRecord;
pub use relayhub_core::devices::{DeviceRef, DeviceStatus};
use relayhub_core::ids::DeviceId;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a message is on its way to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Stored, not yet written to the device.
    Queued,
    /// Written to the device's socket, not acknowledged yet.
    Sent,
    /// Acknowledged by the device; the data itself is deleted.
    Delivered,
    /// Its time to live ran out before it was delivered.
    Expired,
}

impl MessageStatus {
    /// Whether the device still has to receive it.
    pub fn is_pending(self) -> bool {
        matches!(self, MessageStatus::Queued | MessageStatus::Sent)
    }
}

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub device_id: DeviceId,
    /// Any JSON value, kept byte for byte.
    pub data: Box<RawValue>,
    /// A producer's retry of the same key answers the first message.
    pub idempotency_key: Option<String>,
    pub expires_at: Option<Timestamp>,
}

impl NewMessage {
    /// What a repeated idempotency key is compared with: the same key with
    /// another device or other data is a client bug, not a retry.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(self.device_id.as_str().as_bytes());
        hash.update([0u8]);
        hash.update(self.data.get().as_bytes());
        hash.finalize().into()
    }
}

/// The outcome of queueing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: Uuid,
    pub seq: i64,
    /// True when an idempotency key matched an earlier message, whose id
    /// and seq these are.
    pub replayed: bool,
}

/// A message on its way to an online device.
#[derive(Debug)]
pub struct QueuedMessage {
    pub id: Uuid,
    pub seq: i64,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub data: Box<RawValue>,
}

impl QueuedMessage {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Shared between the committing writer, the device's mailbox and its socket.
pub type SharedMessage = Arc<QueuedMessage>;

/// A pending message as the back-office lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingMessage {
    pub id: Uuid,
    pub seq: i64,
    /// When it was accepted.
    pub time: Timestamp,
    pub status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Any JSON value, as it was sent.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
}

/// A message's delivery receipt. Receipts outlive the data for the
/// retention period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Receipt {
    pub id: Uuid,
    pub device_id: DeviceId,
    pub seq: i64,
    pub status: MessageStatus,
    /// When it was accepted.
    pub time: Timestamp,
    /// When the status last changed.
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl Receipt {
    /// A pending message past its expiry is reported as expired even before
    /// the sweeper has recorded it.
    pub fn as_of(mut self, now: Timestamp) -> Self {
        if self.status.is_pending() && self.expires_at.is_some_and(|at| at <= now) {
            self.status = MessageStatus::Expired;
        }
        self
    }
}

/// A device as the back-office sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceInfo {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// Messages queued or sent, not yet acknowledged.
    pub pending: u64,
    /// When it was bound to this license.
    pub bound_at: Timestamp,
    /// It holds a device secret, so its connections must present it.
    /// False until its first connection (unless the license is `open`,
    /// where devices have none), and after a reset.
    pub has_secret: bool,
}

impl DeviceInfo {
    /// The core's record of a device and its pending count.
    pub fn new(record: DeviceRecord, pending: u64) -> Self {
        Self {
            device_id: record.device_id,
            status: record.status,
            online: record.online,
            last_seen: record.last_seen,
            pending,
            bound_at: record.bound_at,
            has_secret: record.has_secret,
        }
    }
}

/// What an acknowledgement changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Newly marked delivered.
    pub delivered: u64,
    /// Ids this device never had (already-delivered ids are not listed:
    /// acknowledging twice is harmless).
    pub unknown: Vec<Uuid>,
}

/// A record a device sends up.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The device's own id of the record; a repeat is a retry.
    pub reference: String,
    pub data: Box<RawValue>,
}

/// The outcome of storing one upstream record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: Uuid,
    /// True when `reference` was stored before; `id` is the first record's.
    pub duplicate: bool,
}

/// A record in the back-office inbox.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboxRecord {
    pub id: Uuid,
    pub device_id: DeviceId,
    /// The device's own id of the record.
    #[serde(rename = "ref")]
    pub reference: String,
    /// When the server stored it.
    pub time: Timestamp,
    /// Any JSON value, as it was sent.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
}

/// What a housekeeping pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Pending messages whose time to live ran out.
    pub expired: u64,
    /// Receipts and acknowledged records older than the retention period.
    pub purged: u64,
}
