//! [`RelayStore`] on SQLite: reads on the reader threads, writes through
//! the group-commit writer.

mod devices;
mod inbox;
mod queue;
mod sent;
mod settings;

pub(crate) use sent::SentMarks;

use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::gateway::ConnId;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{
    AckOutcome, Connected, DeviceInfo, DeviceRef, Enqueued, InboxRecord, NewMessage, NewRecord, PendingMessage,
    Published, Receipt, SharedMessage, SweepReport,
};
use relayhub_relay::settings::{Outcome, Proposal, Settings, SettingsStore, Target};
use relayhub_relay::store::{RelayEvent, RelayStore};
use uuid::Uuid;

use self::devices::Purpose;
use crate::SqliteStore;
use crate::error::SqlResult;

#[async_trait]
impl RelayStore for SqliteStore {
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

    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>> {
        let sent = self.sent.clone();
        self.readers.read(move |conn| queue::receipt(conn, license, id, &sent)).await
    }

    async fn bind(&self, license: &License, device: &DeviceId) -> StoreResult<(DeviceInfo, bool)> {
        let (license, device) = (license.clone(), device.clone());
        self.writer
            .write(move |conn, _| {
                let (_, created) = devices::resolve_or_bind(conn, &license, &device, Purpose::Queue)?;
                let info = devices::info(conn, license.pk, &device)?.ok_or_else(|| devices::not_found(&device))?;
                Ok((info, created))
            })
            .await
    }

    async fn unbind(&self, license: LicensePk, device: &DeviceId) -> StoreResult<()> {
        let (device, sent) = (device.clone(), self.sent.clone());
        self.writer
            .write(move |conn, events| {
                let pk = devices::unbind(conn, license, &device)?;
                sent.forget(pk);
                events.push(RelayEvent::Unbound { device: pk });
                Ok(())
            })
            .await
    }

    async fn device(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceInfo>> {
        let device = device.clone();
        self.readers.read(move |conn| devices::info(conn, license, &device)).await
    }

    async fn devices(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceInfo>> {
        self.readers.read(move |conn| devices::list(conn, license, page)).await
    }

    async fn device_count(&self, license: LicensePk) -> StoreResult<u64> {
        self.readers.read(move |conn| devices::count(conn, license)).await
    }

    async fn attach(&self, license: &License, device: &DeviceId) -> StoreResult<Connected> {
        let (license, device) = (license.clone(), device.clone());
        let connected = |row: devices::DeviceRow, license: &License, device: DeviceId| Connected {
            device: DeviceRef { pk: row.pk, license: license.pk, device_id: device },
            pending: row.pending.max(0) as u64,
        };
        // Reconnects of bound devices, by far the common case, need no write.
        let (l, d) = (license.clone(), device.clone());
        let bound = self
            .readers
            .read(move |conn| match devices::owned(conn, l.pk, &d)? {
                Some(_) => devices::resolve_or_bind(conn, &l, &d, Purpose::Connect).map(|(row, _)| Some(row)),
                None => Ok(None),
            })
            .await?;
        if let Some(row) = bound {
            return Ok(connected(row, &license, device));
        }
        self.writer
            .write(move |conn, _| {
                let (row, _) = devices::resolve_or_bind(conn, &license, &device, Purpose::Connect)?;
                Ok(connected(row, &license, device))
            })
            .await
    }

    async fn set_online(&self, device: DevicePk, conn: ConnId) -> StoreResult<()> {
        self.writer.write(move |db, _| devices::set_online(db, device, conn.0)).await
    }

    fn set_offline(&self, device: DevicePk, conn: ConnId) {
        self.writer.submit(move |db, _| devices::set_offline(db, device, conn.0));
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

    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>> {
        let device = device.clone();
        self.writer.write(move |conn, events| inbox::publish(conn, events, &device, records)).await
    }

    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
        self.readers.read(move |conn| inbox::list(conn, license, limit)).await
    }

    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<u64> {
        self.writer.write(move |conn, _| inbox::ack(conn, license, &ids)).await
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

    async fn is_current_connection(&self, _: DevicePk, _: ConnId) -> StoreResult<bool> {
        // One node: a newer connection of the device replaced this one in
        // the hub directly; nothing is ever connected elsewhere.
        Ok(true)
    }

    async fn start_serving(&self) -> StoreResult<()> {
        self.writer
            .write(|conn, _| {
                conn.execute("UPDATE devices SET online_conn = NULL WHERE online_conn IS NOT NULL", []).sql()?;
                Ok(())
            })
            .await
    }

    async fn total_pending(&self) -> StoreResult<u64> {
        self.readers.read(queue::total_pending).await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.readers.close();
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
        self.writer
            .write(move |conn, events| {
                let device = match target {
                    Target::Device(pk) => pk,
                    Target::BackOffice { license, device } => {
                        devices::resolve_or_bind(conn, &license, &device, Purpose::Queue)?.0.pk
                    }
                };
                settings::write(conn, events, device, proposal)
            })
            .await
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
