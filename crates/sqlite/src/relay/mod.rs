//! The relay's store traits on SQLite: reads on the reader threads, writes
//! through the group-commit writer.

mod inbox;
mod queue;
mod sent;
mod settings;

pub(crate) use sent::SentMarks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{
    AckOutcome, DeviceRef, Enqueued, InboxRecord, NewMessage, NewRecord, PendingMessage, Published, Receipt,
    SharedMessage, SweepReport,
};
use relayhub_relay::settings::{Outcome, Proposal, Settings, SettingsStore, Target};
use relayhub_relay::store::{InboxStore, QueueStore};
use rusqlite::Connection;
use uuid::Uuid;

use crate::SqliteStore;
use crate::devices;

/// Offers the relay's store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    stores.provide::<dyn QueueStore>(store.clone());
    stores.provide::<dyn InboxStore>(store.clone());
    stores.provide::<dyn SettingsStore>(store.clone());
}

/// Before a device is unbound: its queue, idempotency keys and settings go.
pub(crate) fn forget_device(conn: &Connection, device: DevicePk) -> StoreResult<()> {
    settings::forget_device(conn, device)?;
    queue::forget_device(conn, device)
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn enqueue(
        &self,
        license: &License,
        messages: Vec<NewMessage>,
        queue_limit: u32,
    ) -> StoreResult<Vec<Enqueued>> {
        let license = license.clone();
        self.writer.write(move |conn, events| queue::enqueue(conn, events, &license, messages, queue_limit)).await
    }

    async fn pending(
        &self,
        license: LicensePk,
        device: &DeviceId,
        page: PageRequest,
    ) -> StoreResult<Page<PendingMessage>> {
        let (device, sent) = (device.clone(), self.sent.clone());
        self.readers.read(move |conn| queue::pending(conn, license, &device, page, &sent)).await
    }

    async fn pending_counts(&self, devices: &[DevicePk]) -> StoreResult<HashMap<DevicePk, u64>> {
        let devices = devices.to_vec();
        self.readers.read(move |conn| queue::pending_counts(conn, &devices)).await
    }

    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>> {
        let sent = self.sent.clone();
        self.readers.read(move |conn| queue::receipt(conn, license, id, &sent)).await
    }

    async fn fetch(&self, device: DevicePk, from_seq: i64, limit: usize) -> StoreResult<Vec<SharedMessage>> {
        self.readers.read(move |conn| queue::fetch(conn, device, from_seq, limit)).await
    }

    fn mark_sent(&self, device: DevicePk, seqs: Vec<i64>) {
        if let Some(&last) = seqs.iter().max() {
            self.sent.mark(device, last);
        }
    }

    async fn ack(&self, device: DevicePk, ids: Vec<Uuid>) -> StoreResult<AckOutcome> {
        self.writer.write(move |conn, _| queue::ack(conn, device, &ids)).await
    }

    fn mark_expired(&self, device: DevicePk, seqs: Vec<i64>) {
        self.writer.submit(move |conn, _| queue::mark_expired(conn, device, &seqs));
    }

    async fn sweep(&self, now: Timestamp, retention: Duration) -> StoreResult<SweepReport> {
        self.writer
            .write(move |conn, _| {
                let expired = queue::expire_due(conn, now)?;
                let before = now.minus(retention);
                let purged = queue::purge_receipts(conn, before)? + inbox::purge(conn, before)?;
                Ok(SweepReport { expired, purged })
            })
            .await
    }

    async fn total_pending(&self) -> StoreResult<u64> {
        self.readers.read(queue::total_pending).await
    }
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>> {
        let device = device.clone();
        self.writer.write(move |conn, events| inbox::publish(conn, events, &device, records)).await
    }

    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
        self.readers.read(move |conn| inbox::list(conn, license, limit)).await
    }

    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<Vec<Uuid>> {
        self.writer.write(move |conn, _| inbox::ack(conn, license, &ids)).await
    }
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn settings(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Settings> {
        let device = device.clone();
        self.readers
            .read(move |conn| {
                let pk = devices::owned(conn, license, &device)?.ok_or_else(|| devices::not_found(&device))?;
                settings::load(conn, pk)
            })
            .await
    }

    async fn device_settings(&self, device: DevicePk) -> StoreResult<Settings> {
        self.readers.read(move |conn| settings::load(conn, device)).await
    }

    async fn write_settings(&self, target: Target, proposal: Proposal) -> StoreResult<Outcome> {
        self.writer.write(move |conn, events| settings::write(conn, events, target, proposal)).await
    }

    async fn link_account(&self, device: &DeviceRef, account: &str) -> StoreResult<()> {
        let (device, account) = (device.clone(), account.to_owned());
        self.writer.write(move |conn, _| settings::link(conn, &device, &account)).await
    }

    async fn restore_account(&self, device: &DeviceRef, account: &str) -> StoreResult<Option<Settings>> {
        let (device, account) = (device.clone(), account.to_owned());
        self.writer.write(move |conn, events| settings::restore(conn, events, &device, &account)).await
    }
}
