//! The client side of each system, behind one interface so that every
//! workload drives all of them the same way.

mod mqtt;
mod nats;
mod relayhub;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;

use crate::servers::{Server, System};
use crate::stats::Log;

/// A receiving device's task: its log once every expected message arrived.
pub type DeviceTask = JoinHandle<anyhow::Result<Log>>;

/// Sends messages towards devices; returns once each is accepted by the
/// server (a 202, a JetStream ack, an MQTT PUBACK).
#[async_trait]
pub trait Producer: Send + Sync {
    async fn publish(&self, batch: Vec<(usize, String)>) -> anyhow::Result<()>;
}

#[async_trait]
pub trait Driver: Send + Sync {
    /// Connects device `index`, ready to receive `expected` messages.
    async fn device(&self, index: usize, expected: u64) -> anyhow::Result<DeviceTask>;
    /// Back-office producer `index`, with a connection of its own.
    async fn producer(&self, index: usize) -> anyhow::Result<Arc<dyn Producer>>;
    /// Device `index` sends `records` records up; returns once all are
    /// accepted.
    async fn publish_up(&self, index: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<()>>>;
    /// The back-office reads (and acknowledges) every record sent up by
    /// `devices` devices, `records` each.
    async fn drain(&self, devices: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<Vec<Log>>>>;
}

/// The driver for a running server.
pub async fn driver(server: &Server) -> anyhow::Result<Arc<dyn Driver>> {
    driver_for(server, 1).await
}

/// The driver for a running server whose traffic is spread over
/// `licenses` licenses (relayhub's tenants; peers have none): device and
/// producer `i` belong to license `i % licenses`.
pub async fn driver_for(server: &Server, licenses: usize) -> anyhow::Result<Arc<dyn Driver>> {
    Ok(match server.system {
        System::Relayhub => Arc::new(relayhub::Relayhub::new(server, server.licenses(licenses)?)?),
        System::Nats => Arc::new(nats::Nats::new(server).await?),
        System::Mosquitto => Arc::new(mqtt::Mqtt::new(server)),
        other => anyhow::bail!("{} carries no device messages", other.name()),
    })
}
