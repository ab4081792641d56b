//! `relayhub demo`: the whole product in one command. A server starts
//! in-process on a free loopback port with a temporary database; a license
//! and an API key are created; simulated devices connect; a simulated
//! accounting system queues messages for them and drains what they send
//! back. A progress bar shows the traffic; a summary checks that every
//! message arrived once, in order, and reports throughput and latency.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use relayhub_core::bus::Bus;
use relayhub_core::identity::{self, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::metrics::Metrics;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::DemoArgs;
use crate::config::{Config, DatabaseUrl};
use crate::server::Server;
use crate::stores::StoreOptions;

const LICENSE: &str = "DEMO-0001";
/// Messages per `POST /api/v1/messages` call.
const BATCH: usize = 200;
/// Concurrent producer connections of the simulated accounting system.
const PRODUCERS: usize = 4;
/// The demo gives up rather than hang.
const DEADLINE: Duration = Duration::from_secs(120);

/// What one simulated device saw.
#[derive(Default)]
struct DeviceReport {
    received: u64,
    out_of_order: u64,
    duplicates: u64,
    /// Microseconds from the producer's send to the device's receipt.
    latencies: Vec<u64>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    ensure!(args.devices > 0 && args.messages > 0, "--devices and --messages must be positive");
    let dir = tempfile::tempdir().context("creating a temporary data directory")?;
    let config = Config { listen: "127.0.0.1:0".parse()?, data: dir.path().to_owned(), ..Config::default() };
    let partitions = config.store_options().partitions;
    let listener = TcpListener::bind(config.listen).await?;
    let server = Server::build(config, listener).await?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // Administration, as `relayhub license create` / `apikey create` would.
    let url = DatabaseUrl::Sqlite(dir.path().join("relayhub.db"));
    let admin = crate::stores::open(&url, &Bus::new(), &Metrics::new(), StoreOptions::admin(partitions)).await?;
    let new = NewLicense {
        number: LicenseNumber::parse(LICENSE)?,
        name: "Demo accounting".into(),
        expires_at: None,
        max_devices: None,
        // The simulated devices are seed 000's app: no device secret.
        binding: identity::BindingPolicy::Open,
    };
    let (_, token) = identity::create_license(admin.identity.as_ref(), new).await?;
    let key = identity::create_api_key(admin.identity.as_ref(), "demo app", &[]).await?;
    admin.close().await;
    let token = token.secret.expose().to_owned();

    println!("relayhub demo");
    println!("  server      http://{addr}  (docs at /docs, data in a temporary directory)");
    println!("  license     {LICENSE}, app API key {}", key.id);
    println!(
        "  traffic     {} messages to {} devices; each device sends {} records back\n",
        args.messages, args.devices, args.records
    );

    let started = Instant::now();
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("  {prefix:<12} [{bar:40.cyan/blue}] {pos}/{len} {per_sec}")?
        .progress_chars("=> ");
    let down = bars.add(ProgressBar::new(args.messages as u64).with_style(style.clone()).with_prefix("to devices"));
    let total_records = (args.devices * args.records) as u64;
    let up = bars.add(ProgressBar::new(total_records).with_style(style).with_prefix("to back-office"));

    // Devices connect first, so every message is pushed live.
    let mut devices = Vec::with_capacity(args.devices);
    let per_device = split(args.messages, args.devices);
    for (i, expected) in per_device.iter().enumerate() {
        let url = format!(
            "ws://{addr}/ws/device?api_key={}&device_id=demo-device-{i:04}&license={LICENSE}",
            key.secret.expose()
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.context("a device connecting")?;
        devices.push(tokio::spawn(device(ws, *expected as u64, args.records, started, down.clone(), i)));
    }

    let http = relayhub_core::http_client::client().map_err(anyhow::Error::msg)?;
    let next = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            tokio::spawn(produce(http.clone(), addr, token.clone(), args.messages, args.devices, next.clone(), started))
        })
        .collect();
    let drain = tokio::spawn(drain_inbox(http.clone(), addr, token.clone(), total_records, up.clone()));

    let outcome = tokio::time::timeout(DEADLINE, async {
        for p in producers {
            p.await??;
        }
        let mut reports = Vec::new();
        for d in devices {
            reports.push(d.await??);
        }
        let records = drain.await??;
        anyhow::Ok((reports, records))
    })
    .await;
    down.finish();
    up.finish();
    let elapsed = started.elapsed();
    let _ = stop.send(());
    serving.await??;
    let (reports, records) = outcome.context("the demo did not finish in time")??;
    summarize(&reports, records, args.messages as u64, elapsed)
}

/// `n` split over `parts` as evenly as possible.
fn split(n: usize, parts: usize) -> Vec<usize> {
    (0..parts).map(|i| n / parts + usize::from(i < n % parts)).collect()
}

/// The simulated accounting system: batches of messages, spread round-robin
/// over the devices, each stamped with its send time.
async fn produce(
    http: reqwest::Client,
    addr: std::net::SocketAddr,
    token: String,
    total: usize,
    devices: usize,
    next: Arc<AtomicU64>,
    started: Instant,
) -> anyhow::Result<()> {
    loop {
        let first = next.fetch_add(BATCH as u64, Ordering::Relaxed) as usize;
        if first >= total {
            return Ok(());
        }
        let last = (first + BATCH).min(total);
        let sent_us = started.elapsed().as_micros() as u64;
        let messages: Vec<Value> = (first..last)
            .map(|n| json!({"device_id": format!("demo-device-{:04}", n % devices), "data": {"n": n, "sent_us": sent_us, "invoice": format!("INV-{n:06}"), "amount": (n % 977) as f64 / 10.0}}))
            .collect();
        let response = http
            .post(format!("http://{addr}/api/v1/messages"))
            .bearer_auth(&token)
            .json(&json!({"messages": messages}))
            .send()
            .await?;
        if response.status() != 202 {
            bail!("the server refused a batch: {}", response.text().await?);
        }
    }
}

/// A simulated device: receives and acknowledges its messages, checks their
/// order, and sends records back.
async fn device(
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    expected: u64,
    records: usize,
    started: Instant,
    progress: ProgressBar,
    index: usize,
) -> anyhow::Result<DeviceReport> {
    let (mut tx, mut rx) = ws.split();
    for r in 0..records {
        let record = json!({"type": "publish", "ref": format!("rec-{r}"), "data": {"device": index, "reading": r}});
        tx.send(Message::text(record.to_string())).await?;
    }
    let mut report = DeviceReport::default();
    let mut last_seq = 0;
    let mut seen = HashSet::new();
    let mut published = 0;
    while report.received < expected || published < records {
        let Some(frame) = rx.next().await else { bail!("device {index} was disconnected") };
        let Message::Text(text) = frame? else { continue };
        let frame: Value = serde_json::from_str(&text)?;
        match frame["type"].as_str() {
            Some("message") => {
                let seq = frame["seq"].as_i64().unwrap_or_default();
                if !seen.insert(seq) {
                    report.duplicates += 1;
                } else {
                    report.received += 1;
                    progress.inc(1);
                }
                if seq <= last_seq {
                    report.out_of_order += 1;
                }
                last_seq = last_seq.max(seq);
                let sent = frame["data"]["sent_us"].as_u64().unwrap_or_default();
                report.latencies.push((started.elapsed().as_micros() as u64).saturating_sub(sent));
                tx.send(Message::text(json!({"type": "ack", "id": frame["id"]}).to_string())).await?;
            }
            Some("published") => published += 1,
            Some("hello") => {}
            _ => bail!("device {index} got {frame}"),
        }
    }
    Ok(report)
}

/// The accounting system's inbox loop: long polls, processes, acknowledges.
async fn drain_inbox(
    http: reqwest::Client,
    addr: std::net::SocketAddr,
    token: String,
    expected: u64,
    progress: ProgressBar,
) -> anyhow::Result<u64> {
    let mut drained = 0;
    while drained < expected {
        let page: Value = http
            .get(format!("http://{addr}/api/v1/inbox?limit=500&wait=5"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let ids: Vec<Value> = page["records"].as_array().into_iter().flatten().map(|r| r["id"].clone()).collect();
        if ids.is_empty() {
            continue;
        }
        http.post(format!("http://{addr}/api/v1/inbox/ack"))
            .bearer_auth(&token)
            .json(&json!({"ids": ids}))
            .send()
            .await?
            .error_for_status()?;
        drained += ids.len() as u64;
        progress.inc(ids.len() as u64);
    }
    Ok(drained)
}

fn summarize(reports: &[DeviceReport], records: u64, sent: u64, elapsed: Duration) -> anyhow::Result<()> {
    let received: u64 = reports.iter().map(|r| r.received).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let out_of_order: u64 = reports.iter().map(|r| r.out_of_order).sum();
    let mut latency = Histogram::<u64>::new(3)?;
    for value in reports.iter().flat_map(|r| &r.latencies) {
        latency.record(*value)?;
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let secs = elapsed.as_secs_f64();
    println!();
    println!("  delivered   {received}/{sent} messages, {duplicates} duplicates, {out_of_order} out of order");
    println!("  returned    {records} records to the back-office inbox");
    println!("  time        {secs:.2} s: {:.0} messages/s to devices", received as f64 / secs);
    println!(
        "  latency     post → device: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(0.50),
        ms(0.99),
        latency.max() as f64 / 1000.0
    );
    println!("  durability  every 202 was answered after an fsync of the SQLite WAL");
    ensure!(received == sent && out_of_order == 0, "some messages were lost or reordered");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(super::split(10, 3), vec![4, 3, 3]);
        assert_eq!(super::split(2, 4), vec![1, 1, 0, 0]);
    }
}
