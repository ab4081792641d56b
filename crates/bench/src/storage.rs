//! `storage`: the relay's storage layer alone, through its traits, with no
//! network: enqueue (one message per call from many concurrent callers,
//! which group commit merges; and batches of 100), fetch in order, and
//! acknowledge-delete, per second.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::try_join_all;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Bus;
use relayhub_core::identity::{self, License, NewLicense};
use relayhub_core::ids::{DeviceId, LicenseNumber};
use relayhub_core::metrics::Metrics;
use relayhub_relay::model::NewMessage;
use relayhub_relay::store::QueueStore;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::payload;

/// Per-second rates of one backend.
#[derive(Debug, Serialize)]
pub struct StorageOutcome {
    pub backend: String,
    pub messages: usize,
    pub enqueue_per_s: f64,
    pub enqueue_batched_per_s: f64,
    pub fetch_per_s: f64,
    pub ack_per_s: f64,
}

/// Concurrent callers, as many HTTP requests would be.
const CALLERS: usize = 64;
const DEVICES: usize = 100;

pub async fn run(database: Option<&str>, messages: usize) -> anyhow::Result<StorageOutcome> {
    let dir = tempfile::tempdir()?;
    let (bus, metrics) = (Bus::new(), Metrics::new());
    let stores: Stores = match database {
        None => relayhub_sqlite::open(&dir.path().join("bench.db"), 1, &bus, &metrics)?,
        Some(url) => {
            let options = relayhub_postgres::PgOptions { max_connections: 16, ..Default::default() };
            relayhub_postgres::open(url, &bus, &metrics, options).await?
        }
    };
    let backend = stores.backend.kind().to_owned();
    let (identity, relay) = (stores.identity.clone(), stores.get::<dyn QueueStore>().map_err(anyhow::Error::msg)?);
    let number = LicenseNumber::parse(&format!("BENCH-{}", uuid::Uuid::new_v4().simple()))?;
    let binding = relayhub_core::identity::BindingPolicy::Open;
    let new = NewLicense { number, name: String::new(), expires_at: None, max_devices: None, binding };
    let (license, _) = identity::create_license(identity.as_ref(), new).await?;
    let device = |d: usize| DeviceId::parse(&format!("store-{d:04}")).expect("a valid id");
    let message = |k: usize| -> anyhow::Result<NewMessage> {
        let data = payload::make(k % DEVICES, (k / DEVICES) as u64, 0);
        Ok(NewMessage {
            device_id: device(k % DEVICES),
            data: RawValue::from_string(data)?,
            idempotency_key: None,
            expires_at: None,
        })
    };

    // One message per call: what group commit is for.
    let rate = |n: usize, started: Instant| (n as f64 / started.elapsed().as_secs_f64()).round();
    let started = Instant::now();
    let single = try_join_all((0..CALLERS).map(|c| {
        let (relay, license) = (relay.clone(), license.clone());
        let batch: Vec<NewMessage> =
            (c..messages).step_by(CALLERS).map(message).collect::<anyhow::Result<_>>().unwrap_or_default();
        async move { enqueue_each(relay, license, batch).await }
    }))
    .await?;
    let enqueue_per_s = rate(single.iter().sum(), started);

    // Batches of 100, as `POST /api/v1/messages` sends them.
    let started = Instant::now();
    let batches: Vec<Vec<NewMessage>> = (0..messages)
        .map(message)
        .collect::<anyhow::Result<Vec<_>>>()?
        .chunks(100)
        .map(<[NewMessage]>::to_vec)
        .collect();
    try_join_all(batches.into_iter().map(|batch| {
        let (relay, license) = (relay.clone(), license.clone());
        async move { relay.enqueue(&license, batch, u32::MAX).await }
    }))
    .await?;
    let enqueue_batched_per_s = rate(messages, started);

    // Every device reads its queue in order, a window at a time, and
    // acknowledges each window.
    let mut pks = Vec::with_capacity(DEVICES);
    for d in 0..DEVICES {
        let fresh = relayhub_core::secret::Secret::new("unused: the license is open").hash();
        let request = relayhub_core::devices::Attach {
            license: &license,
            device: &device(d),
            presented: None,
            fresh,
            may_bind: &|| Ok(()),
        };
        pks.push(stores.devices.attach(request).await?.device.pk);
    }
    let started = Instant::now();
    let mut fetched = Vec::new();
    for pk in &pks {
        let mut from = 0;
        loop {
            let window = relay.fetch(*pk, from, 128).await?;
            let Some(last) = window.last() else { break };
            from = last.seq + 1;
            fetched.push((*pk, window.iter().map(|m| m.id).collect::<Vec<_>>()));
        }
    }
    let total: usize = fetched.iter().map(|(_, ids)| ids.len()).sum();
    let fetch_per_s = rate(total, started);
    let started = Instant::now();
    try_join_all(fetched.into_iter().map(|(pk, ids)| {
        let relay = relay.clone();
        async move { relay.ack(pk, ids).await }
    }))
    .await?;
    let ack_per_s = rate(total, started);
    stores.close().await;
    Ok(StorageOutcome { backend, messages: total, enqueue_per_s, enqueue_batched_per_s, fetch_per_s, ack_per_s })
}

async fn enqueue_each(relay: Arc<dyn QueueStore>, license: License, batch: Vec<NewMessage>) -> anyhow::Result<usize> {
    let n = batch.len();
    for message in batch {
        relay.enqueue(&license, vec![message], u32::MAX).await?;
    }
    Ok(n)
}
