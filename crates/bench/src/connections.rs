//! `connections`: how much server memory an idle device connection costs,
//! and how fast connections are accepted.
//!
//! A process may hold at most 20,000 open files here, so the clients are
//! spread over worker processes (this binary, `connect-worker`), each from
//! its own 127.0.0.x source address. Each worker opens its share with the
//! system's own handshake (a WebSocket upgrade as a device; MQTT CONNECT →
//! CONNACK; NATS INFO → CONNECT/PING → PONG), reports, and holds them until
//! told to stop. The server's RSS before and after gives the cost.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Command;

use crate::servers::{Server, System};
use crate::stats::Outcome;

/// Connections per worker process (well under the open-file limit).
const PER_WORKER: usize = 5000;
/// Handshakes in flight per worker.
const CONCURRENCY: usize = 64;

pub async fn run(system: System, count: usize) -> anyhow::Result<Outcome> {
    let server = Server::start(system, &[]).await?;
    // A warm-up connection, so that lazily built state is in the baseline.
    let mut warm = open(system, &server.addr, "127.0.0.1", &server.api_key, "warm-up").await?;
    warm.flush().await.ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib()?;
    let started = Instant::now();
    let workers = count.div_ceil(PER_WORKER);
    let mut children = Vec::with_capacity(workers);
    for w in 0..workers {
        let share = PER_WORKER.min(count - w * PER_WORKER);
        let mut child = Command::new(std::env::current_exe()?)
            .arg("connect-worker")
            .args(["--system", system.name(), "--addr", &server.addr, "--api-key", &server.api_key])
            .args([
                "--count",
                &share.to_string(),
                "--source",
                &format!("127.0.0.{}", 2 + w),
                "--worker",
                &w.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a connect worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        children.push((child, BufReader::new(stdout).lines()));
    }
    let mut connected = 0;
    for (_, lines) in &mut children {
        let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .context("a worker took too long")??
            .context("a worker exited")?;
        let n: usize = line.strip_prefix("ready ").context("worker said something else")?.trim().parse()?;
        connected += n;
    }
    let elapsed = started.elapsed();
    // Let the server finish what accepting cost it (buffers, tasks).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib()?;
    for (mut child, _) in children {
        drop(child.stdin.take());
        let _ = child.wait().await;
    }
    drop(warm);
    if connected < count {
        bail!("only {connected} of {count} connections were made");
    }
    Ok(Outcome {
        system: system.name().to_owned(),
        connections: Some(connected as u64),
        kib_per_connection: Some(((after.saturating_sub(before)) as f64 / connected as f64 * 100.0).round() / 100.0),
        connects_per_s: Some((connected as f64 / elapsed.as_secs_f64()).round()),
        fsync: system.fsync().to_owned(),
        ..Outcome::default()
    })
}

/// One idle client connection, bound to `source`, past its handshake.
async fn open(system: System, addr: &str, source: &str, api_key: &str, name: &str) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse()?)?;
    let mut stream = socket.connect(addr.parse()?).await?;
    match system {
        System::Relayhub => {
            let url = format!("ws://{addr}/ws/device?api_key={api_key}&device_id={name}&license=BENCH");
            let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
            match ws.next().await {
                Some(Ok(hello)) if hello.to_string().contains("hello") => {}
                other => bail!("no hello: {other:?}"),
            }
            Ok(ws.into_inner())
        }
        System::Mosquitto => {
            let mut connect = rumqttc::Connect::new(name);
            connect.keep_alive = 0;
            let mut buffer = BytesMut::new();
            connect.write(&mut buffer).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            stream.write_all(&buffer).await?;
            let mut connack = [0u8; 4];
            stream.read_exact(&mut connack).await?;
            if connack[0] != 0x20 || connack[3] != 0 {
                bail!("connection refused: {connack:?}");
            }
            Ok(stream)
        }
        System::Nats => {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            if !line.starts_with("INFO") {
                bail!("no INFO: {line}");
            }
            let mut stream = reader.into_inner();
            let hello = format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"{name}\"}}\r\nPING\r\n");
            stream.write_all(hello.as_bytes()).await?;
            let mut reader = BufReader::new(stream);
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 {
                    bail!("closed during the handshake");
                }
                if line.starts_with("PONG") {
                    return Ok(reader.into_inner());
                }
            }
        }
        other => bail!("{} holds no device connections", other.name()),
    }
}

/// The worker process: opens `count` connections, says `ready N`, and holds
/// them until its standard input closes.
pub async fn worker(
    system: System,
    addr: &str,
    api_key: &str,
    count: usize,
    source: &str,
    worker: usize,
) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(count);
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while held.len() < count {
        while next < count && pending.len() < CONCURRENCY {
            let name = format!("idle-{worker}-{next}");
            pending.push(async move { open(system, addr, source, api_key, &name).await });
            next += 1;
        }
        match pending.next().await {
            Some(Ok(stream)) => held.push(stream),
            Some(Err(err)) => bail!("connection {} failed: {err:#}", held.len()),
            None => break,
        }
    }
    println!("ready {}", held.len());
    // Hold until the parent closes our stdin (a blocking read, off the
    // runtime's threads).
    tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while std::io::Read::read(&mut stdin, &mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    drop(held);
    Ok(())
}
