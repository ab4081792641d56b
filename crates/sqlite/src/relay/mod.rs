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
use relayhub_core::devices::Purpose;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
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
use crate::error::SqlResult;

/// The relay module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema =
    crate::schema::Schema { module: "relay", migrations: &[include_str!("../../migrations/relay/0001_baseline.sql")] };

/// Offers the relay's store traits.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    let sent = SentMarks::default();
    sent.watch(&store.bus);
    let relay = Arc::new(SqliteRelay { db: store.clone(), sent });
    stores.provide::<dyn QueueStore>(relay.clone());
    stores.provide::<dyn InboxStore>(relay.clone());
    stores.provide::<dyn SettingsStore>(relay);
}

/// The relay's stores: the shared handle and what the relay alone keeps (the sent marks).
pub(crate) struct SqliteRelay {
    db: Arc<SqliteStore>,
    /// Per device, the highest `seq` written to its socket.
    sent: SentMarks,
}

/// Before a device is unbound: its queue, idempotency keys and settings go.
pub(crate) fn forget_device(conn: &Connection, device: DevicePk) -> StoreResult<()> {
    settings::forget_device(conn, device)?;
    queue::forget_device(conn, device)
}

/// In a partition file: forgets the data of devices no longer bound, which
/// a crash between unbinding (main file) and forgetting (here) leaves.
pub(crate) fn forget_unbound(conn: &Connection) -> StoreResult<usize> {
    let orphans: Vec<i64> = {
        let mut stmt = conn
            .prepare(
                "SELECT device_pk FROM queues WHERE device_pk NOT IN (SELECT pk FROM hub.devices)
                 UNION SELECT device_pk FROM settings WHERE device_pk NOT IN (SELECT pk FROM hub.devices)",
            )
            .sql()?;
        let rows = stmt.query_map([], |row| row.get(0)).sql()?;
        rows.collect::<rusqlite::Result<_>>().sql()?
    };
    for &device in &orphans {
        forget_device(conn, DevicePk(device))?;
    }
    Ok(orphans.len())
}

/// What a partition file answers a call that would bind a device: the
/// result, or the call handed back to bind the device in the main file.
pub(crate) enum NeedsBinding<T, R> {
    Done(T),
    Unbound(R),
}

/// Rounds of "bind in the main file, then retry in the partition" before a
/// call gives up: a second round happens only if the device was unbound in
/// between.
const BINDING_ROUNDS: usize = 3;

fn unbound_meanwhile() -> StoreError {
    StoreError::Unavailable("a device was unbound while the call was being stored; nothing was stored, retry".into())
}

#[async_trait]
impl QueueStore for SqliteRelay {
    async fn enqueue(
        &self,
        license: &License,
        messages: Vec<NewMessage>,
        queue_limit: u32,
    ) -> StoreResult<Vec<Enqueued>> {
        let partition = self.db.license_partition(license.pk).await?;
        let binds = partition.index == 0;
        let mut messages = messages;
        for _ in 0..BINDING_ROUNDS {
            let l = license.clone();
            let queued = partition
                .writer
                .write(move |conn, events| queue::enqueue(conn, events, &l, messages, queue_limit, binds))
                .await?;
            match queued {
                NeedsBinding::Done(answers) => return Ok(answers),
                NeedsBinding::Unbound(back) => {
                    let l = license.clone();
                    messages = self
                        .db
                        .writer
                        .write(move |conn, _| {
                            queue::bind(conn, &l, &back)?;
                            Ok(back)
                        })
                        .await?;
                }
            }
        }
        Err(unbound_meanwhile())
    }

    async fn pending(
        &self,
        license: LicensePk,
        device: &DeviceId,
        page: PageRequest,
    ) -> StoreResult<Page<PendingMessage>> {
        let (device, sent) = (device.clone(), self.sent.clone());
        let partition = self.db.license_partition(license).await?;
        partition.readers.read(move |conn| queue::pending(conn, license, &device, page, &sent)).await
    }

    async fn pending_counts(&self, devices: &[DevicePk]) -> StoreResult<HashMap<DevicePk, u64>> {
        let mut by_partition: HashMap<usize, Vec<DevicePk>> = HashMap::new();
        for &device in devices {
            by_partition.entry(self.db.device_partition(device).await?.index).or_default().push(device);
        }
        let mut counts = HashMap::with_capacity(devices.len());
        for (index, devices) in by_partition {
            let partition = self.db.partition(index)?;
            counts.extend(partition.readers.read(move |conn| queue::pending_counts(conn, &devices)).await?);
        }
        Ok(counts)
    }

    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>> {
        let sent = self.sent.clone();
        let partition = self.db.license_partition(license).await?;
        partition.readers.read(move |conn| queue::receipt(conn, license, id, &sent)).await
    }

    async fn fetch(&self, device: DevicePk, from_seq: i64, limit: usize) -> StoreResult<Vec<SharedMessage>> {
        let partition = self.db.device_partition(device).await?;
        partition.readers.read(move |conn| queue::fetch(conn, device, from_seq, limit)).await
    }

    fn mark_sent(&self, device: DevicePk, seqs: Vec<i64>) {
        if let Some(&last) = seqs.iter().max() {
            self.sent.mark(device, last);
        }
    }

    async fn ack(&self, device: DevicePk, ids: Vec<Uuid>) -> StoreResult<AckOutcome> {
        let partition = self.db.device_partition(device).await?;
        partition.writer.write(move |conn, _| queue::ack(conn, device, &ids)).await
    }

    fn mark_expired(&self, device: DevicePk, seqs: Vec<i64>) {
        // A connected device's partition is known (attaching it looked it
        // up); if not, the sweep expires the same messages a little later.
        if let Some(partition) = self.db.known_device_partition(device) {
            partition.writer.submit(move |conn, _| queue::mark_expired(conn, device, &seqs));
        }
    }

    async fn sweep(&self, now: Timestamp, retention: Duration) -> StoreResult<SweepReport> {
        let mut report = SweepReport { expired: 0, purged: 0 };
        for partition in self.db.every_partition() {
            let part = partition
                .writer
                .write(move |conn, _| {
                    let expired = queue::expire_due(conn, now)?;
                    let before = now.minus(retention);
                    let purged = queue::purge_receipts(conn, before)? + inbox::purge(conn, before)?;
                    Ok(SweepReport { expired, purged })
                })
                .await?;
            report.expired += part.expired;
            report.purged += part.purged;
        }
        Ok(report)
    }

    async fn total_pending(&self) -> StoreResult<u64> {
        let mut total = 0;
        for partition in self.db.every_partition() {
            total += partition.readers.read(queue::total_pending).await?;
        }
        Ok(total)
    }

    async fn license_pending(&self, license: LicensePk) -> StoreResult<u64> {
        let partition = self.db.license_partition(license).await?;
        partition.readers.read(move |conn| queue::license_pending(conn, license)).await
    }

    /// A commit per few thousand rows, so that the other licenses of the
    /// partition keep committing while a large one goes.
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        let partition = self.db.license_partition(license).await?;
        for table in ["messages", "inbox", "accounts"] {
            while partition.writer.write(move |conn, _| forget_rows(conn, table, license)).await? > 0 {}
        }
        Ok(())
    }
}

/// Rows deleted of up to [`FORGET_CHUNK`] of a license's in `table`.
fn forget_rows(conn: &Connection, table: &str, license: LicensePk) -> StoreResult<usize> {
    let sql = format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE license_pk = ?1 LIMIT {FORGET_CHUNK})"
    );
    conn.prepare_cached(&sql).sql()?.execute([license.0]).sql()
}

/// Rows a license delete takes per commit.
const FORGET_CHUNK: usize = 5000;

#[async_trait]
impl InboxStore for SqliteRelay {
    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>> {
        let device = device.clone();
        let partition = self.db.license_partition(device.license).await?;
        partition.writer.write(move |conn, events| inbox::publish(conn, events, &device, records)).await
    }

    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
        let partition = self.db.license_partition(license).await?;
        partition.readers.read(move |conn| inbox::list(conn, license, limit)).await
    }

    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<Vec<Uuid>> {
        let partition = self.db.license_partition(license).await?;
        partition.writer.write(move |conn, _| inbox::ack(conn, license, &ids)).await
    }

    async fn inbox_waiting(&self, license: LicensePk) -> StoreResult<u64> {
        let partition = self.db.license_partition(license).await?;
        partition.readers.read(move |conn| inbox::waiting(conn, license)).await
    }
}

#[async_trait]
impl SettingsStore for SqliteRelay {
    async fn settings(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Settings> {
        let device = device.clone();
        let partition = self.db.license_partition(license).await?;
        partition
            .readers
            .read(move |conn| {
                let pk = devices::owned(conn, license, &device)?.ok_or_else(|| devices::not_found(&device))?;
                settings::load(conn, pk)
            })
            .await
    }

    async fn device_settings(&self, device: DevicePk) -> StoreResult<Settings> {
        let partition = self.db.device_partition(device).await?;
        partition.readers.read(move |conn| settings::load(conn, device)).await
    }

    async fn write_settings(&self, target: Target, proposal: Proposal) -> StoreResult<Outcome> {
        let partition = match &target {
            Target::Device(device) => self.db.device_partition(*device).await?,
            Target::BackOffice { license, .. } => self.db.license_partition(license.pk).await?,
        };
        let binds = partition.index == 0;
        let mut call = (target, proposal);
        for _ in 0..BINDING_ROUNDS {
            let (target, proposal) = call;
            let written = partition
                .writer
                .write(move |conn, events| settings::write(conn, events, target, proposal, binds))
                .await?;
            match written {
                NeedsBinding::Done(outcome) => return Ok(outcome),
                NeedsBinding::Unbound(back) => {
                    call = self
                        .db
                        .writer
                        .write(move |conn, _| {
                            if let Target::BackOffice { license, device } = &back.0 {
                                devices::resolve_or_bind(conn, license, device, Purpose::Queue)?;
                            }
                            Ok(back)
                        })
                        .await?;
                }
            }
        }
        Err(unbound_meanwhile())
    }

    async fn link_account(&self, device: &DeviceRef, account: &str) -> StoreResult<()> {
        let (device, account) = (device.clone(), account.to_owned());
        let partition = self.db.license_partition(device.license).await?;
        partition.writer.write(move |conn, _| settings::link(conn, &device, &account)).await
    }

    async fn restore_account(&self, device: &DeviceRef, account: &str) -> StoreResult<Option<Settings>> {
        let (device, account) = (device.clone(), account.to_owned());
        let partition = self.db.license_partition(device.license).await?;
        partition.writer.write(move |conn, events| settings::restore(conn, events, &device, &account)).await
    }
}
