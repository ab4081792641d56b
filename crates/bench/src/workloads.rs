//! The workloads, each run the same way against every system.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::try_join_all;
use tokio_util::task::AbortOnDropHandle;

use crate::cpu::CpuMeter;
use crate::drivers::{self, Driver};
use crate::payload::{self, now_ns};
use crate::servers::{Server, System};
use crate::stats::{Log, Outcome};

/// Longest any single workload may take on one system.
const DEADLINE: Duration = Duration::from_secs(600);

/// Parameters of `relay`.
#[derive(Debug, Clone, Copy)]
pub struct RelayParams {
    pub devices: usize,
    pub messages: usize,
    pub producers: usize,
    /// Messages per producer call (a POST, or that many publishes awaited
    /// together).
    pub batch: usize,
    /// relayhub's tenants the devices and producers are spread over
    /// (divides `producers`: each producer posts for one license).
    pub licenses: usize,
}

/// A workload's task, aborted when the workload ends early: a system that
/// failed must not leave thousands of clients connected (and retrying)
/// into the next system's run.
type Owned<T> = AbortOnDropHandle<T>;

/// Connects `count` devices, a few at a time.
async fn connect_devices(
    driver: &Arc<dyn Driver>,
    count: usize,
    expected: impl Fn(usize) -> u64,
) -> anyhow::Result<Vec<Owned<anyhow::Result<Log>>>> {
    let mut tasks = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let connecting = chunk.iter().map(|&i| driver.device(i, expected(i)));
        tasks.extend(try_join_all(connecting).await?.into_iter().map(AbortOnDropHandle::new));
    }
    Ok(tasks)
}

async fn collect(tasks: Vec<Owned<anyhow::Result<Log>>>) -> anyhow::Result<Vec<Log>> {
    let all = async {
        let mut logs = Vec::with_capacity(tasks.len());
        for task in tasks {
            logs.push(task.await??);
        }
        anyhow::Ok(logs)
    };
    tokio::time::timeout(DEADLINE, all).await.context("devices did not receive everything in time")?
}

/// Messages for device `d` of `devices` when `total` are spread round-robin.
fn share(total: usize, devices: usize, d: usize) -> u64 {
    (total / devices + usize::from(d < total % devices)) as u64
}

/// `relay`: producers post `messages` spread over `devices` connected
/// devices, which acknowledge each; from the first post to the last ack.
pub async fn relay(system: System, p: RelayParams) -> anyhow::Result<Outcome> {
    let server = Server::start(system, &[]).await?;
    let driver = drivers::driver_for(&server, p.licenses).await?;
    let devices = connect_devices(&driver, p.devices, |d| share(p.messages, p.devices, d)).await?;
    let cpu = CpuMeter::start(&server);
    let started = now_ns();
    let mut producers = Vec::new();
    for p_index in 0..p.producers {
        let producer = driver.producer(p_index).await?;
        // Each device gets all its messages from one producer, in order:
        // any inversion a device sees is the system's. Its devices are
        // `p_index` modulo `producers`, so with `licenses` dividing
        // `producers` they are all of the producer's license.
        let mine: Vec<usize> = (p_index..p.devices).step_by(p.producers).collect();
        producers.push(AbortOnDropHandle::new(tokio::spawn(async move {
            let mut pending: Vec<(usize, u64)> = Vec::new();
            let rounds = mine.iter().map(|&d| share(p.messages, p.devices, d)).max().unwrap_or(0);
            for round in 0..rounds {
                pending.extend(mine.iter().filter(|&&d| round < share(p.messages, p.devices, d)).map(|&d| (d, round)));
                while pending.len() >= p.batch || (round + 1 == rounds && !pending.is_empty()) {
                    let take = pending.len().min(p.batch);
                    let sent = now_ns();
                    let batch = pending.drain(..take).map(|(d, i)| (d, payload::make(d, i, sent))).collect();
                    producer.publish(batch).await?;
                }
            }
            anyhow::Ok(())
        })));
    }
    for producer in producers {
        producer.await??;
    }
    let logs = collect(devices).await?;
    let mut outcome = Outcome::from_logs(system.name(), system.fsync(), &logs, started);
    cpu.finish(&server, p.messages as u64, &mut outcome);
    Ok(outcome)
}

/// Parameters of `latency`.
#[derive(Debug, Clone, Copy)]
pub struct LatencyParams {
    pub devices: usize,
    pub rate: u64,
    pub seconds: u64,
}

/// `latency`: an open loop at a fixed rate; each message's latency counts
/// from when it was due to be sent, so a stalled sender cannot hide delay
/// (no coordinated omission).
pub async fn latency(system: System, p: LatencyParams) -> anyhow::Result<Outcome> {
    let server = Server::start(system, &[]).await?;
    let driver = drivers::driver(&server).await?;
    let total = (p.rate * p.seconds) as usize;
    let devices = connect_devices(&driver, p.devices, |d| share(total, p.devices, d)).await?;
    let producers: Vec<_> = try_join_all((0..8).map(|i| driver.producer(i))).await?;
    let interval_ns = 1_000_000_000 / p.rate.max(1);
    let cpu = CpuMeter::start(&server);
    let started = now_ns();
    let mut sends = Vec::with_capacity(total);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut k = 0;
    while k < total {
        tick.tick().await;
        let now = now_ns();
        while k < total && started + k as u64 * interval_ns <= now {
            let due = started + k as u64 * interval_ns;
            let device = k % p.devices;
            let message = payload::make(device, (k / p.devices) as u64, due);
            let producer = producers[k % producers.len()].clone();
            let send = tokio::spawn(async move { producer.publish(vec![(device, message)]).await });
            sends.push(AbortOnDropHandle::new(send));
            k += 1;
        }
    }
    for send in sends {
        send.await??;
    }
    let logs = collect(devices).await?;
    let mut outcome = Outcome::from_logs(system.name(), system.fsync(), &logs, started);
    outcome.msgs_per_s = Some(p.rate as f64);
    cpu.finish(&server, total as u64, &mut outcome);
    // Each message is its own concurrent send, as an open loop must be: two
    // for one device may overtake each other before any system sees them.
    outcome.out_of_order = None;
    Ok(outcome)
}

/// `uplink`: devices send records up; the back-office drains them.
pub async fn uplink(system: System, devices: usize, records: u64) -> anyhow::Result<Outcome> {
    let server = Server::start(system, &[]).await?;
    let driver = drivers::driver(&server).await?;
    let drain = AbortOnDropHandle::new(driver.drain(devices, records).await?);
    let cpu = CpuMeter::start(&server);
    let started = now_ns();
    let mut publishers = Vec::with_capacity(devices);
    for chunk in (0..devices).collect::<Vec<_>>().chunks(50) {
        let publishing = try_join_all(chunk.iter().map(|&d| driver.publish_up(d, records))).await?;
        publishers.extend(publishing.into_iter().map(AbortOnDropHandle::new));
    }
    for publisher in publishers {
        publisher.await??;
    }
    let logs = tokio::time::timeout(DEADLINE, drain).await.context("the inbox was not drained in time")???;
    let mut outcome = Outcome::from_logs(system.name(), system.fsync(), &logs, started);
    cpu.finish(&server, devices as u64 * records, &mut outcome);
    Ok(outcome)
}
