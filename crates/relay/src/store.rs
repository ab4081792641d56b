//! What the relay needs from storage, in small traits per concern; the
//! backends (SQLite, PostgreSQL) implement them and the capability never
//! sees SQL. Devices and their presence are the core's
//! ([`relayhub_core::devices`]).
//!
//! Contract every backend keeps:
//! - a write returns only after it is committed to disk; concurrent writes
//!   are committed together (group commit);
//! - the decisions are the shared rules' ([`crate::plan`],
//!   [`crate::settings::decide`]), so a refusal reads the same everywhere;
//! - per device, `seq` grows by one per message, in commit order;
//! - every call that names a license sees only that license's objects;
//! - after a commit, the backend publishes what changed on the bus
//!   ([`RelayEvent`]), in commit order, so online devices and waiting inbox
//!   polls wake at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::bus::Topic;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreResult};
use relayhub_core::time::Timestamp;
use uuid::Uuid;

use crate::model::{
    AckOutcome, DeviceRef, Enqueued, InboxRecord, NewMessage, NewRecord, PendingMessage, Published, Receipt,
    SharedMessage, SweepReport,
};
use crate::settings::Settings;

/// What the relay announces after a commit.
#[derive(Debug, Clone)]
pub enum RelayEvent {
    /// New messages for a device, in `seq` order. Committed on this node,
    /// the event carries the messages (the device's socket then needs no
    /// read); from another node `messages` is empty: "read from `seq` on".
    Queued { device: DevicePk, first_seq: i64, messages: Vec<SharedMessage> },
    /// New records in a license's inbox.
    Published { license: LicensePk },
    /// A device's settings changed; an online device gets them at once.
    /// Without the document (another node changed them): read them.
    Settings { device: DevicePk, settings: Option<Arc<Settings>> },
}

impl Topic for RelayEvent {
    const NAME: &'static str = "relay";

    fn encode(&self) -> Option<String> {
        Some(match self {
            RelayEvent::Queued { device, .. } => format!("q{}", device.0),
            RelayEvent::Published { license } => format!("p{}", license.0),
            RelayEvent::Settings { device, .. } => format!("s{}", device.0),
        })
    }

    fn decode(wire: &str) -> Option<Self> {
        let n: i64 = wire.get(1..)?.parse().ok()?;
        match wire.as_bytes().first()? {
            b'q' => Some(RelayEvent::Queued { device: DevicePk(n), first_seq: 0, messages: Vec::new() }),
            b'p' => Some(RelayEvent::Published { license: LicensePk(n) }),
            b's' => Some(RelayEvent::Settings { device: DevicePk(n), settings: None }),
            _ => None,
        }
    }
}

/// Message queues and receipts.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Queues messages, all or nothing, as [`crate::plan::plan`] decides,
    /// and returns them in order. Binds devices not yet bound.
    async fn enqueue(
        &self,
        license: &License,
        messages: Vec<NewMessage>,
        queue_limit: u32,
    ) -> StoreResult<Vec<Enqueued>>;

    /// A device's pending messages, oldest first; `device_not_found` unless
    /// it is this license's.
    async fn pending(
        &self,
        license: LicensePk,
        device: &DeviceId,
        page: PageRequest,
    ) -> StoreResult<Page<PendingMessage>>;

    /// Messages waiting for each of these devices.
    async fn pending_counts(&self, devices: &[DevicePk]) -> StoreResult<HashMap<DevicePk, u64>>;

    /// A message's receipt, if it is this license's.
    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>>;

    /// Up to `limit` pending messages of a device with `seq >= from_seq`,
    /// in order.
    async fn fetch(&self, device: DevicePk, from_seq: i64, limit: usize) -> StoreResult<Vec<SharedMessage>>;

    /// Records that these messages were written to the socket. Not awaited
    /// by the caller: a crash before it commits only means the receipt says
    /// `queued` a little longer.
    fn mark_sent(&self, device: DevicePk, seqs: Vec<i64>);

    /// The device acknowledged these messages: their data is deleted and
    /// their receipts say `delivered`.
    async fn ack(&self, device: DevicePk, ids: Vec<Uuid>) -> StoreResult<AckOutcome>;

    /// The device's connection skipped these messages because their time to
    /// live ran out.
    fn mark_expired(&self, device: DevicePk, seqs: Vec<i64>);

    /// Expires messages past their time to live and purges receipts and
    /// acknowledged records older than `retention`.
    async fn sweep(&self, now: Timestamp, retention: Duration) -> StoreResult<SweepReport>;

    /// Messages waiting in all queues, for the queue-depth metric.
    async fn total_pending(&self) -> StoreResult<u64>;

    /// Messages waiting in the queues of a license's devices.
    async fn license_pending(&self, license: LicensePk) -> StoreResult<u64>;
    /// Deletes what is left of a license once its devices are unbound: its
    /// messages (receipts included), inbox records and account links.
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()>;
}

/// The back-office inbox: records devices send up.
#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// Stores records sent up by a device, in order; a `ref` the device
    /// used before answers the first record (`duplicate`).
    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>>;

    /// Up to `limit` unacknowledged inbox records of a license, oldest first.
    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>>;

    /// Deletes inbox records; returns the ids that were this license's
    /// unacknowledged records and are now gone.
    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<Vec<Uuid>>;

    /// How many of a license's inbox records are not acknowledged yet.
    async fn inbox_waiting(&self, license: LicensePk) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_cross_nodes_without_their_data() {
        let queued = RelayEvent::Queued { device: DevicePk(3), first_seq: 9, messages: Vec::new() };
        let wire = queued.encode().unwrap();
        assert!(matches!(RelayEvent::decode(&wire), Some(RelayEvent::Queued { device: DevicePk(3), .. })));
        let published = RelayEvent::decode(&RelayEvent::Published { license: LicensePk(5) }.encode().unwrap());
        assert!(matches!(published, Some(RelayEvent::Published { license: LicensePk(5) })));
        assert!(RelayEvent::decode("z1").is_none());
    }
}
