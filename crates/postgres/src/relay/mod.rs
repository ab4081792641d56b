//! [`RelayStore`] and [`SettingsStore`] on PostgreSQL. The hot paths
//! (queueing, bookkeeping, publishing) are group-committed batches; the rest
//! are short transactions of their own.

mod books;
mod devices;
mod enqueue;
mod inbox;
mod queue;
mod settings;

pub(crate) use books::{BookJob, run as books_run};
pub(crate) use enqueue::{EnqueueJob, run as enqueue_run};
pub(crate) use inbox::{PublishJob, run as publish_run};

use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::gateway::ConnId;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use relayhub_core::store::{Page, PageRequest, StoreError, StoreResult};
use relayhub_core::time::Timestamp;
use relayhub_relay::model::{
    AckOutcome, Connected, DeviceInfo, DeviceRef, Enqueued, InboxRecord, NewMessage, NewRecord, PendingMessage,
    Published, Receipt, SharedMessage, SweepReport,
};
use relayhub_relay::settings::{Outcome, Proposal, Settings, SettingsStore, Target};
use relayhub_relay::store::{RelayEvent, RelayStore};
use tokio::sync::oneshot;
use uuid::Uuid;

use self::devices::Purpose;
use crate::PgStore;
use crate::error::SqlResult;
use crate::notify::{self, Wire};

async fn answer<T>(submitted: bool, reply: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
    if !submitted {
        return Err(StoreError::Closed);
    }
    reply.await.map_err(|_| StoreError::Closed)?
}

impl PgStore {
    /// Commits `events` to the other nodes with the transaction, and to this
    /// node's hub once committed.
    async fn commit_with(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        events: Vec<(RelayEvent, Wire)>,
    ) -> StoreResult<()> {
        let wires: Vec<Wire> = events.iter().map(|(_, w)| *w).collect();
        notify::send(&mut tx, &self.ctx.node, &wires).await?;
        tx.commit().await.sql()?;
        for (event, _) in events {
            self.ctx.events.emit(event);
        }
        Ok(())
    }
}

#[async_trait]
impl RelayStore for PgStore {
    async fn enqueue(
        &self,
        license: &License,
        messages: Vec<NewMessage>,
        queue_limit: u32,
    ) -> StoreResult<Vec<Enqueued>> {
        let (reply, rx) = oneshot::channel();
        let job = EnqueueJob { license: license.clone(), messages, queue_limit, reply };
        answer(self.enqueue.submit(job).await, rx).await
    }

    async fn pending(
        &self,
        license: LicensePk,
        device: &DeviceId,
        page: PageRequest,
    ) -> StoreResult<Page<PendingMessage>> {
        queue::pending(&self.ctx.pool, license, device, page).await
    }

    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>> {
        queue::receipt(&self.ctx.pool, license, id).await
    }

    async fn bind(&self, license: &License, device: &DeviceId) -> StoreResult<(DeviceInfo, bool)> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let (_, created) = devices::resolve_or_bind(&mut tx, license, device, Purpose::Queue).await?;
        let info = devices::info(&mut *tx, license.pk, device).await?.ok_or_else(|| devices::not_found(device))?;
        tx.commit().await.sql()?;
        Ok((info, created))
    }

    async fn unbind(&self, license: LicensePk, device: &DeviceId) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let pk = devices::owned(&mut *tx, license, device).await?.ok_or_else(|| devices::not_found(device))?;
        sqlx::query("SELECT 1 FROM devices WHERE pk = $1 FOR UPDATE").bind(pk.0).execute(&mut *tx).await.sql()?;
        settings::forget_device(&mut tx, pk).await?;
        sqlx::query("DELETE FROM messages WHERE device_pk = $1").bind(pk.0).execute(&mut *tx).await.sql()?;
        sqlx::query("DELETE FROM devices WHERE pk = $1").bind(pk.0).execute(&mut *tx).await.sql()?;
        self.commit_with(tx, vec![(RelayEvent::Unbound { device: pk }, Wire::Unbound(pk))]).await
    }

    async fn device(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceInfo>> {
        devices::info(&self.ctx.pool, license, device).await
    }

    async fn devices(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceInfo>> {
        devices::list(&self.ctx.pool, license, page).await
    }

    async fn device_count(&self, license: LicensePk) -> StoreResult<u64> {
        devices::count(&self.ctx.pool, license).await
    }

    async fn attach(&self, license: &License, device: &DeviceId) -> StoreResult<Connected> {
        let connected = |row: devices::DeviceRow| Connected {
            device: DeviceRef { pk: row.pk, license: license.pk, device_id: device.clone() },
            pending: row.pending.max(0) as u64,
        };
        // Reconnects of bound devices, by far the common case, need no write.
        match devices::find(&self.ctx.pool, device).await? {
            Some(row) if row.license == license.pk => return Ok(connected(row)),
            Some(_) => return Err(devices::bound_elsewhere(device)),
            None => {}
        }
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let (row, _) = devices::resolve_or_bind(&mut tx, license, device, Purpose::Connect).await?;
        tx.commit().await.sql()?;
        Ok(connected(row))
    }

    async fn set_online(&self, device: DevicePk, conn: ConnId) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        sqlx::query(
            "UPDATE devices SET online_node = $2, online_conn = $3, active = true, last_seen = now() WHERE pk = $1",
        )
        .bind(device.0)
        .bind(self.ctx.node.as_ref())
        .bind(conn.0 as i64)
        .execute(&mut *tx)
        .await
        .sql()?;
        // Other nodes close their older connection of this device.
        notify::send(&mut tx, &self.ctx.node, &[Wire::Connected(device)]).await?;
        tx.commit().await.sql()
    }

    fn set_offline(&self, device: DevicePk, conn: ConnId) {
        let (pool, node) = (self.ctx.pool.clone(), self.ctx.node.clone());
        tokio::spawn(async move {
            let done = sqlx::query(
                "UPDATE devices SET online_node = NULL, online_conn = NULL, last_seen = now()
                 WHERE pk = $1 AND online_node = $2 AND online_conn = $3",
            )
            .bind(device.0)
            .bind(node.as_ref())
            .bind(conn.0 as i64)
            .execute(&pool)
            .await;
            if let Err(err) = done {
                tracing::debug!(%err, "could not record a device offline; its node's heartbeat will");
            }
        });
    }

    async fn is_current_connection(&self, device: DevicePk, conn: ConnId) -> StoreResult<bool> {
        let holder: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT online_node, online_conn FROM devices WHERE pk = $1")
                .bind(device.0)
                .fetch_optional(&self.ctx.pool)
                .await
                .sql()?;
        Ok(matches!(holder, Some((Some(node), Some(c))) if *node == *self.ctx.node && c == conn.0 as i64))
    }

    async fn fetch(&self, device: DevicePk, from_seq: i64, limit: usize) -> StoreResult<Vec<SharedMessage>> {
        queue::fetch(&self.ctx.pool, device, from_seq, limit).await
    }

    fn mark_sent(&self, device: DevicePk, seqs: Vec<i64>) {
        let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) else { return };
        self.books.submit_detached(BookJob::Sent { device, first, last });
    }

    async fn ack(&self, device: DevicePk, ids: Vec<Uuid>) -> StoreResult<AckOutcome> {
        let (reply, rx) = oneshot::channel();
        answer(self.books.submit(BookJob::Ack { device, ids, reply }).await, rx).await
    }

    fn mark_expired(&self, device: DevicePk, seqs: Vec<i64>) {
        self.books.submit_detached(BookJob::Expired { device, seqs });
    }

    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>> {
        let (reply, rx) = oneshot::channel();
        answer(self.publish.submit(PublishJob { device: device.clone(), records, reply }).await, rx).await
    }

    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
        inbox::list(&self.ctx.pool, license, limit).await
    }

    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<u64> {
        inbox::ack(&self.ctx.pool, license, &ids).await
    }

    async fn sweep(&self, now: Timestamp, retention: Duration) -> StoreResult<SweepReport> {
        queue::sweep(&self.ctx.pool, now, retention).await
    }

    async fn start_serving(&self) -> StoreResult<()> {
        self.join().await
    }

    async fn total_pending(&self) -> StoreResult<u64> {
        queue::total_pending(&self.ctx.pool).await
    }

    async fn close(&self) {
        self.shutdown().await;
    }
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn settings(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Settings> {
        let pk = devices::owned(&self.ctx.pool, license, device).await?.ok_or_else(|| devices::not_found(device))?;
        settings::load(&self.ctx.pool, pk, false).await
    }

    async fn device_settings(&self, device: DevicePk) -> StoreResult<Settings> {
        settings::load(&self.ctx.pool, device, false).await
    }

    async fn write_settings(&self, target: Target, proposal: Proposal) -> StoreResult<Outcome> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let device = match target {
            Target::Device(pk) => pk,
            Target::BackOffice { license, device } => {
                devices::resolve_or_bind(&mut tx, &license, &device, Purpose::Queue).await?.0.pk
            }
        };
        let (outcome, changed) = settings::write(&mut tx, device, proposal).await?;
        let events = changed.iter().map(|s| settings::changed(device, s)).collect();
        self.commit_with(tx, events).await?;
        Ok(outcome)
    }

    async fn link_account(&self, device: &DeviceRef, account: &str) -> StoreResult<()> {
        settings::link(&self.ctx.pool, device, account).await
    }

    async fn restore_account(&self, device: &DeviceRef, account: &str) -> StoreResult<Option<Settings>> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        let Some((restored, changed)) = settings::restore(&mut tx, device, account).await? else {
            return Ok(None);
        };
        let events = if changed { vec![settings::changed(device.pk, &restored)] } else { Vec::new() };
        self.commit_with(tx, events).await?;
        Ok(Some(restored))
    }
}
