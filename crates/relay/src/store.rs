//! What the relay needs from storage. Backends (SQLite, PostgreSQL)
//! implement [`RelayStore`]; the capability never sees SQL.
//!
//! Contract every backend keeps:
//! - a write returns only after it is committed to disk; concurrent writes
//!   are committed together (group commit);
//! - per device, `seq` grows by one per message, in commit order;
//! - every call that names a license sees only that license's objects;
//! - after a commit, the backend reports what changed through
//!   [`RelayEvents`], in commit order, so online devices and waiting inbox
//!   polls wake at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::gateway::ConnId;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreResult};
use relayhub_core::time::Timestamp;
use uuid::Uuid;

use crate::model::{
    AckOutcome, Connected, DeviceInfo, DeviceRef, Enqueued, InboxRecord, NewMessage, NewRecord, PendingMessage,
    Published, Receipt, SharedMessage, SweepReport,
};
use crate::settings::Settings;

/// What a backend reports after a commit.
#[derive(Debug, Clone)]
pub enum RelayEvent {
    /// New messages for a device, in `seq` order. Backends that can carry
    /// the messages themselves do (the device's socket then needs no read);
    /// `messages` may be empty, meaning "read from `seq` on".
    Queued { device: DevicePk, first_seq: i64, messages: Vec<SharedMessage> },
    /// New records in a license's inbox.
    Published { license: LicensePk },
    /// A device was unbound: its connection must close.
    Unbound { device: DevicePk },
    /// A device's settings changed; an online device gets them at once.
    /// Without the document (another node changed them): read them.
    Settings { device: DevicePk, settings: Option<Arc<Settings>> },
    /// The device opened a socket on another node: the one here, if any,
    /// should check whether it is still the device's current connection.
    ConnectedElsewhere { device: DevicePk },
    /// Events may have been missed (the link to the other nodes was lost and
    /// restored): every connection re-reads its queue and settings, every
    /// long poll re-reads the inbox.
    Resync,
}

/// Receives [`RelayEvent`]s. Called on the committing thread: must not block.
pub trait RelayEvents: Send + Sync + 'static {
    fn emit(&self, event: RelayEvent);
}

/// Discards events: for administration commands that run without a server.
pub struct NoEvents;

impl RelayEvents for NoEvents {
    fn emit(&self, _: RelayEvent) {}
}

/// Storage of queues, devices and the inbox.
#[async_trait]
pub trait RelayStore: Send + Sync + 'static {
    /// Queues messages, all or nothing, and returns them in order. Binds
    /// devices not yet bound (`device_limit` past the license's
    /// `max_devices`); `device_not_found` for a device of another license;
    /// `queue_full` past `queue_limit` pending messages for a device;
    /// `idempotency_key_reused` when a key comes back with other content.
    async fn enqueue(
        &self,
        license: &License,
        messages: Vec<NewMessage>,
        queue_limit: u32,
    ) -> StoreResult<Vec<Enqueued>>;

    /// A device's pending messages, oldest first.
    async fn pending(
        &self,
        license: LicensePk,
        device: &DeviceId,
        page: PageRequest,
    ) -> StoreResult<Page<PendingMessage>>;

    /// A message's receipt, if it is this license's.
    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>>;

    /// Binds a device to a license in advance. Returns the device and
    /// whether it was newly bound.
    async fn bind(&self, license: &License, device: &DeviceId) -> StoreResult<(DeviceInfo, bool)>;

    /// Unbinds a device and drops its queue; `device_not_found` if it is not
    /// this license's.
    async fn unbind(&self, license: LicensePk, device: &DeviceId) -> StoreResult<()>;

    async fn device(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceInfo>>;
    async fn devices(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceInfo>>;
    async fn device_count(&self, license: LicensePk) -> StoreResult<u64>;

    /// A device asks to open its socket (before the upgrade, so that a
    /// refusal is an HTTP error): binds it if new, with the rules of
    /// [`RelayStore::enqueue`] but `device_bound_elsewhere` for another
    /// license's device.
    async fn attach(&self, license: &License, device: &DeviceId) -> StoreResult<Connected>;

    /// The device's socket `conn` is open: online, active, last seen now.
    async fn set_online(&self, device: DevicePk, conn: ConnId) -> StoreResult<()>;

    /// The socket `conn` closed. Not awaited; a newer socket of the same
    /// device (another `conn`) stays online.
    fn set_offline(&self, device: DevicePk, conn: ConnId);

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

    /// Stores records sent up by a device, in order.
    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>>;

    /// Up to `limit` unacknowledged inbox records of a license, oldest first.
    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>>;

    /// Deletes inbox records; returns how many were this license's and
    /// still there.
    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<u64>;

    /// Expires messages past their time to live and purges receipts and
    /// acknowledged records older than `retention`.
    async fn sweep(&self, now: Timestamp, retention: Duration) -> StoreResult<SweepReport>;

    /// This process starts serving devices: it forgets connections recorded
    /// as open that did not close cleanly (a crash), and, with several
    /// nodes, joins them (heartbeat, their events). Called once by `serve`.
    async fn start_serving(&self) -> StoreResult<()>;

    /// Whether `conn` (on this node) is still the device's current
    /// connection, after it connected elsewhere.
    async fn is_current_connection(&self, device: DevicePk, conn: ConnId) -> StoreResult<bool>;

    /// Messages waiting in all queues, for the queue-depth metric.
    async fn total_pending(&self) -> StoreResult<u64>;

    /// Commits what is waiting and stops accepting writes.
    async fn close(&self);
}

/// The store as the capability holds it.
pub type DynRelayStore = Arc<dyn RelayStore>;
