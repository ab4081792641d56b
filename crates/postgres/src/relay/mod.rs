//! The relay's store traits on PostgreSQL. The hot paths (queueing,
//! bookkeeping, publishing) are group-committed batches; the rest are short
//! transactions of their own.

mod books;
mod enqueue;
mod inbox;
mod queue;
mod settings;

use books::BookJob;
use enqueue::EnqueueJob;
use inbox::PublishJob;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relayhub_core::backend::Stores;
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
use sqlx::{Postgres, Transaction};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::batch::Batcher;
use crate::devices;
use crate::error::SqlResult;
use crate::{Ctx, Drain, PgStore, batcher};

/// The relay module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "relay",
    steps: &[crate::schema::Step { sql: include_str!("../../migrations/relay/0001_init.sql"), was: Some(1) }],
};

/// Offers the relay's store traits.
pub(crate) fn provide(store: &Arc<PgStore>, stores: &mut Stores) {
    let (ctx, commits) = (&store.ctx, &store.commits);
    let relay = Arc::new(PgRelay {
        enqueue: batcher(ctx, commits, |ctx, jobs| async move { enqueue::run(&ctx, jobs).await }),
        books: batcher(ctx, commits, |ctx, jobs| async move { books::run(&ctx, jobs).await }),
        publish: batcher(ctx, commits, |ctx, jobs| async move { inbox::run(&ctx, jobs).await }),
        ctx: ctx.clone(),
    });
    store.drain_on_close(relay.clone());
    stores.provide::<dyn QueueStore>(relay.clone());
    stores.provide::<dyn InboxStore>(relay.clone());
    stores.provide::<dyn SettingsStore>(relay);
}

/// The relay's stores: the shared handle and the relay's group-commit
/// batchers (queueing, bookkeeping, publishing).
pub(crate) struct PgRelay {
    ctx: Ctx,
    enqueue: Batcher<EnqueueJob>,
    books: Batcher<BookJob>,
    publish: Batcher<PublishJob>,
}

#[async_trait]
impl Drain for PgRelay {
    /// Commits what is queued.
    async fn drain(&self) {
        self.enqueue.close().await;
        self.books.close().await;
        self.publish.close().await;
    }
}

/// Before a device is unbound: its queue, idempotency keys and settings go.
pub(crate) async fn forget_device(tx: &mut Transaction<'_, Postgres>, device: DevicePk) -> StoreResult<()> {
    settings::forget_device(tx, device).await?;
    sqlx::query("DELETE FROM messages WHERE device_pk = $1").bind(device.0).execute(&mut **tx).await.sql()?;
    Ok(())
}

async fn answer<T>(submitted: bool, reply: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
    if !submitted {
        return Err(StoreError::Closed);
    }
    reply.await.map_err(|_| StoreError::Closed)?
}

#[async_trait]
impl QueueStore for PgRelay {
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

    async fn pending_counts(&self, devices: &[DevicePk]) -> StoreResult<HashMap<DevicePk, u64>> {
        queue::pending_counts(&self.ctx.pool, devices).await
    }

    async fn receipt(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Receipt>> {
        queue::receipt(&self.ctx.pool, license, id).await
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

    async fn sweep(&self, now: Timestamp, retention: Duration) -> StoreResult<SweepReport> {
        queue::sweep(&self.ctx.pool, now, retention).await
    }

    async fn total_pending(&self) -> StoreResult<u64> {
        queue::total_pending(&self.ctx.pool).await
    }

    async fn license_pending(&self, license: LicensePk) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(sum(pending), 0)::bigint FROM devices WHERE license_pk = $1")
            .bind(license.0)
            .fetch_one(&self.ctx.pool)
            .await
            .sql()?;
        Ok(n.max(0) as u64)
    }

    async fn forget_license(&self, license: LicensePk) -> StoreResult<()> {
        let mut tx = self.ctx.pool.begin().await.sql()?;
        for table in ["messages", "inbox", "accounts"] {
            let sql = format!("DELETE FROM {table} WHERE license_pk = $1");
            sqlx::query(&sql).bind(license.0).execute(&mut *tx).await.sql()?;
        }
        tx.commit().await.sql()
    }
}

#[async_trait]
impl InboxStore for PgRelay {
    async fn publish(&self, device: &DeviceRef, records: Vec<NewRecord>) -> StoreResult<Vec<Published>> {
        let (reply, rx) = oneshot::channel();
        answer(self.publish.submit(PublishJob { device: device.clone(), records, reply }).await, rx).await
    }

    async fn inbox(&self, license: LicensePk, limit: usize) -> StoreResult<Vec<InboxRecord>> {
        inbox::list(&self.ctx.pool, license, limit).await
    }

    async fn inbox_ack(&self, license: LicensePk, ids: Vec<Uuid>) -> StoreResult<Vec<Uuid>> {
        inbox::ack(&self.ctx.pool, license, &ids).await
    }

    async fn inbox_waiting(&self, license: LicensePk) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE license_pk = $1 AND acked_at IS NULL")
            .bind(license.0)
            .fetch_one(&self.ctx.pool)
            .await
            .sql()?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl SettingsStore for PgRelay {
    async fn settings(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Settings> {
        let pk = devices::owned(&self.ctx.pool, license, device).await?.ok_or_else(|| devices::not_found(device))?;
        settings::load(&self.ctx.pool, pk, false).await
    }

    async fn device_settings(&self, device: DevicePk) -> StoreResult<Settings> {
        settings::load(&self.ctx.pool, device, false).await
    }

    async fn write_settings(&self, target: Target, proposal: Proposal) -> StoreResult<Outcome> {
        self.ctx
            .retrying(|| async {
                let mut tx = self.ctx.pool.begin().await.sql()?;
                let (outcome, changed) = settings::write(&mut tx, target.clone(), proposal.clone()).await?;
                let events = changed.into_iter().map(|(device, s)| settings::changed(device, &s)).collect();
                self.ctx.commit_with(tx, events).await?;
                Ok(outcome)
            })
            .await
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
        self.ctx.commit_with(tx, events).await?;
        Ok(Some(restored))
    }
}
