//! Mosquitto: MQTT 3.1.1, QoS 1, persistent sessions (clean session off),
//! a topic per device (`dev/N`); the client library acknowledges each
//! message (PUBACK) as the device reads it. Producers wait for the broker's
//! PUBACKs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{DeviceTask, Driver, Producer};
use crate::payload;
use crate::servers::Server;
use crate::stats::Log;

pub struct Mqtt {
    host: String,
    port: u16,
}

impl Mqtt {
    pub fn new(server: &Server) -> Self {
        let (host, port) = server.addr.rsplit_once(':').unwrap_or((&server.addr, "1883"));
        Self { host: host.to_owned(), port: port.parse().unwrap_or(1883) }
    }

    fn client(&self, id: &str) -> (AsyncClient, EventLoop) {
        let mut options = MqttOptions::new(id, &self.host, self.port);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_inflight(1000);
        AsyncClient::new(options, 10_000)
    }

    /// Connects and subscribes `id` to `topic`; returns once subscribed.
    async fn subscriber(&self, id: &str, topic: &str) -> anyhow::Result<(AsyncClient, EventLoop)> {
        let (client, mut events) = self.client(id);
        client.subscribe(topic, QoS::AtLeastOnce).await?;
        loop {
            match events.poll().await.context("mqtt connect")? {
                Event::Incoming(Packet::SubAck(_)) => return Ok((client, events)),
                _ => continue,
            }
        }
    }
}

/// Reads publishes until every log is complete.
async fn receive(mut events: EventLoop, logs: &mut [Log]) -> anyhow::Result<()> {
    while !logs.iter().all(Log::complete) {
        match events.poll().await.context("mqtt connection lost")? {
            Event::Incoming(Packet::Publish(publish)) => {
                let stamp = payload::read(&publish.payload)?;
                let index = if logs.len() == 1 { 0 } else { stamp.d };
                logs[index].record(&stamp);
            }
            _ => continue,
        }
    }
    // Let the last PUBACKs out.
    let _ = tokio::time::timeout(Duration::from_millis(100), events.poll()).await;
    Ok(())
}

#[async_trait]
impl Driver for Mqtt {
    async fn device(&self, index: usize, expected: u64) -> anyhow::Result<DeviceTask> {
        let (_client, events) = self.subscriber(&format!("dev-{index}"), &format!("dev/{index}")).await?;
        Ok(tokio::spawn(async move {
            let _client = _client;
            let mut logs = [Log::new(expected)];
            receive(events, &mut logs).await?;
            let [log] = logs;
            Ok(log)
        }))
    }

    async fn producer(&self, _index: usize) -> anyhow::Result<Arc<dyn Producer>> {
        Ok(Arc::new(MqttProducer::start(self.client(&format!("prod-{}", uuid::Uuid::new_v4())), "dev")))
    }

    async fn publish_up(&self, index: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let producer = MqttProducer::start(self.client(&format!("up-{index}")), "up");
        Ok(tokio::spawn(async move {
            let batch = (0..records).map(|i| (index, payload::make(index, i, payload::now_ns()))).collect();
            producer.publish(batch).await
        }))
    }

    async fn drain(&self, devices: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<Vec<Log>>>> {
        let (client, events) = self.subscriber("office", "up/#").await?;
        Ok(tokio::spawn(async move {
            let _client = client;
            let mut logs: Vec<Log> = (0..devices).map(|_| Log::new(records)).collect();
            receive(events, &mut logs).await?;
            Ok(logs)
        }))
    }
}

/// Publishes QoS 1 and waits until the broker acknowledged the batch.
struct MqttProducer {
    client: AsyncClient,
    prefix: &'static str,
    sent: AtomicU64,
    acked: Arc<AtomicU64>,
    notify: Arc<Notify>,
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl MqttProducer {
    fn start((client, mut events): (AsyncClient, EventLoop), prefix: &'static str) -> Self {
        let acked = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(Notify::new());
        let failed = Arc::new(std::sync::Mutex::new(None));
        let (a, n, f) = (acked.clone(), notify.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        n.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(err) => {
                        *f.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
                        n.notify_waiters();
                        return;
                    }
                }
            }
        });
        Self { client, prefix, sent: AtomicU64::new(0), acked, notify, failed }
    }
}

#[async_trait]
impl Producer for MqttProducer {
    async fn publish(&self, batch: Vec<(usize, String)>) -> anyhow::Result<()> {
        let target = self.sent.fetch_add(batch.len() as u64, Ordering::Relaxed) + batch.len() as u64;
        for (device, data) in batch {
            self.client.publish(format!("{}/{device}", self.prefix), QoS::AtLeastOnce, false, data).await?;
        }
        loop {
            let notified = self.notify.notified();
            if self.acked.load(Ordering::Relaxed) >= target {
                return Ok(());
            }
            if let Some(err) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                bail!("mqtt producer: {err}");
            }
            notified.await;
        }
    }
}
