//! NATS JetStream: a file-storage work-queue stream, a subject and a
//! durable pull consumer with explicit acks per device (at most 128
//! unacknowledged, like relayhub's window); producers publish and wait for
//! the stream's acks. Each device has a connection of its own.

use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::{DeviceTask, Driver, Producer};
use crate::payload;
use crate::servers::Server;
use crate::stats::Log;

pub struct Nats {
    url: String,
}

async fn context(url: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::connect(url).await.context("connecting to nats-server")?;
    Ok(jetstream::new(client))
}

async fn work_queue(js: &jetstream::Context, name: &str, subjects: &str) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating stream {name}: {e}"))
}

async fn pull(stream: &stream::Stream, name: &str, filter: &str) -> anyhow::Result<consumer::PullConsumer> {
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: filter.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 128,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating consumer {name}: {e}"))
}

impl Nats {
    pub async fn new(server: &Server) -> anyhow::Result<Self> {
        let url = format!("nats://{}", server.addr);
        let js = context(&url).await?;
        work_queue(&js, "RELAY", "dev.>").await?;
        work_queue(&js, "UP", "up.>").await?;
        Ok(Self { url })
    }
}

#[async_trait]
impl Driver for Nats {
    async fn device(&self, index: usize, expected: u64) -> anyhow::Result<DeviceTask> {
        let js = context(&self.url).await?;
        let stream = js.get_stream("RELAY").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let consumer = pull(&stream, &format!("dev-{index}"), &format!("dev.{index}")).await?;
        let mut messages = consumer.messages().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(tokio::spawn(async move {
            let mut log = Log::new(expected);
            while !log.complete() {
                let message = messages.next().await.context("consumer ended")?.map_err(|e| anyhow::anyhow!("{e}"))?;
                log.record(&payload::read(&message.payload)?);
                message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Ok(log)
        }))
    }

    async fn producer(&self, _index: usize) -> anyhow::Result<Arc<dyn Producer>> {
        Ok(Arc::new(JsProducer { js: context(&self.url).await?, prefix: "dev" }))
    }

    async fn publish_up(&self, index: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let producer = JsProducer { js: context(&self.url).await?, prefix: "up" };
        Ok(tokio::spawn(async move {
            let batch = (0..records).map(|i| (index, payload::make(index, i, payload::now_ns()))).collect();
            producer.publish(batch).await
        }))
    }

    async fn drain(&self, devices: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<Vec<Log>>>> {
        let js = context(&self.url).await?;
        let stream = js.get_stream("UP").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("office".to_owned()),
                filter_subject: "up.>".to_owned(),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 10_000,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut messages = consumer.messages().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(tokio::spawn(async move {
            let mut logs: Vec<Log> = (0..devices).map(|_| Log::new(records)).collect();
            while !logs.iter().all(Log::complete) {
                let message = messages.next().await.context("consumer ended")?.map_err(|e| anyhow::anyhow!("{e}"))?;
                let stamp = payload::read(&message.payload)?;
                logs[stamp.d].record(&stamp);
                message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Ok(logs)
        }))
    }
}

/// Publishes asynchronously, then waits for every ack of the batch.
struct JsProducer {
    js: jetstream::Context,
    prefix: &'static str,
}

#[async_trait]
impl Producer for JsProducer {
    async fn publish(&self, batch: Vec<(usize, String)>) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(batch.len());
        for (device, data) in batch {
            let subject = format!("{}.{device}", self.prefix);
            acks.push(self.js.publish(subject, data.into()).await.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        for ack in acks {
            ack.await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }
}
