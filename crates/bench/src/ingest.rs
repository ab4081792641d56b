//! `ingest`: robots' telemetry. The same gzip'd line-protocol batches —
//! Telegraf-like metrics of `robots` robots, 5,000 lines each — go to every
//! system by HTTP, `senders` at a time; points per second from the first
//! request to the last answer.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use hdrhistogram::Histogram;

use crate::servers::{Server, System};
use crate::stats::Outcome;

/// Parameters of `ingest`.
#[derive(Debug, Clone, Copy)]
pub struct IngestParams {
    pub robots: usize,
    pub batches: usize,
    pub lines: usize,
    pub senders: usize,
}

/// A gzip'd body and what it holds.
struct Batch {
    robot: usize,
    gzip: Vec<u8>,
    points: u64,
}

/// A small deterministic generator (xorshift), so every system gets the
/// very same bytes.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One robot's machine as Telegraf reads it: integer kernel counters that
/// move a little every interval. Values are derived as Telegraf derives
/// them (percentages from tick counts, loads with two decimals,
/// temperatures in millidegrees), so they compress as real ones do.
#[derive(Clone)]
struct Machine {
    used: i64,
    disk_free: [i64; 2],
    net: [[i64; 4]; 2],
    uptime: i64,
    load: [f64; 3],
    temp: [i64; 2],
}

impl Machine {
    fn new() -> Self {
        Self {
            used: 1_500_000_000,
            disk_free: [20_000_000_000, 9_000_000_000],
            net: [[0; 4]; 2],
            uptime: 86_400,
            load: [0.5, 0.6, 0.7],
            temp: [48_000, 45_000],
        }
    }
}

/// What one robot's Telegraf reports every 10 s: 13 lines, 93 points (cpu
/// per core and in total, mem, two disks, two interfaces, system, two
/// temperature sensors).
fn robot_lines(out: &mut String, robot: usize, t: i64, m: &mut Machine, noise: &mut Noise) -> u64 {
    use std::fmt::Write;
    let host = format!("robot-{robot:05}");
    // 100 ticks a second per core: 1,000 per core in 10 s, 4,000 in all.
    let mut total_ticks = [0i64; 4];
    for (cpu, total) in ["cpu0", "cpu1", "cpu2", "cpu3", "cpu-total"].into_iter().zip([1000i64, 1000, 1000, 1000, 4000])
    {
        let mut ticks = [0i64; 4];
        if total == 4000 {
            ticks = total_ticks;
        } else {
            ticks[0] = (noise.next() * 150.0) as i64;
            ticks[1] = (noise.next() * 40.0) as i64;
            ticks[2] = (noise.next() * 10.0) as i64;
            ticks[3] = (noise.next() * 3.0) as i64;
            total_ticks.iter_mut().zip(ticks).for_each(|(a, b)| *a += b);
        }
        let pct = |k: i64| k as f64 * 100.0 / total as f64;
        let idle = total - ticks.iter().sum::<i64>();
        let _ = writeln!(
            out,
            "cpu,cpu={cpu},host={host} usage_user={},usage_system={},usage_idle={},usage_iowait={},usage_irq=0,\
             usage_softirq={},usage_steal=0,usage_nice=0,usage_guest=0,usage_guest_nice=0 {t}",
            pct(ticks[0]),
            pct(ticks[1]),
            pct(idle),
            pct(ticks[2]),
            pct(ticks[3])
        );
    }
    m.used = (m.used + ((noise.next() - 0.5) * 8e6) as i64 / 4096 * 4096).clamp(500_000_000, 3_500_000_000);
    let total = 3_978_489_856i64;
    let _ = writeln!(
        out,
        "mem,host={host} used_percent={},available={}i,total={total}i,used={}i,free={}i,cached={}i,buffered={}i {t}",
        m.used as f64 * 100.0 / total as f64,
        total - m.used,
        m.used,
        (total - m.used) / 2,
        (total - m.used) / 3,
        67_108_864
    );
    for (i, path) in ["/", "/data"].into_iter().enumerate() {
        if noise.next() < 0.2 {
            m.disk_free[i] -= (noise.next() * 64.0) as i64 * 4096;
        }
        let size = 31_000_000_000i64;
        let used = size - m.disk_free[i];
        let _ = writeln!(
            out,
            "disk,device=mmcblk0p{},fstype=ext4,host={host},mode=rw,path={path} used_percent={},free={}i,\
             total={size}i,used={used}i,inodes_free=1800000i,inodes_used=200000i {t}",
            i + 2,
            used as f64 * 100.0 / size as f64,
            m.disk_free[i],
        );
    }
    for (i, interface) in ["eth0", "wlan0"].into_iter().enumerate() {
        let n = &mut m.net[i];
        let packets = [(noise.next() * 200.0) as i64, (noise.next() * 120.0) as i64];
        n[2] += packets[0];
        n[3] += packets[1];
        n[0] += packets[0] * (60 + (noise.next() * 1400.0) as i64);
        n[1] += packets[1] * (60 + (noise.next() * 600.0) as i64);
        let _ = writeln!(
            out,
            "net,host={host},interface={interface} bytes_recv={}i,bytes_sent={}i,packets_recv={}i,packets_sent={}i,\
             err_in=0i,err_out=0i,drop_in=0i,drop_out=0i {t}",
            n[0], n[1], n[2], n[3]
        );
    }
    m.uptime += 10;
    for (i, load) in m.load.iter_mut().enumerate() {
        let pull = [0.3, 0.1, 0.03][i];
        *load = (*load + (noise.next() - 0.5) * pull).clamp(0.0, 4.0);
    }
    // The kernel reports loads with two decimals.
    let two = |x: f64| (x * 100.0).round() / 100.0;
    let _ = writeln!(
        out,
        "system,host={host} load1={},load5={},load15={},uptime={}i,n_cpus=4i,n_users=1i {t}",
        two(m.load[0]),
        two(m.load[1]),
        two(m.load[2]),
        m.uptime
    );
    for (i, sensor) in ["cpu_thermal", "gpu_thermal"].into_iter().enumerate() {
        // Millidegrees, as /sys/class/thermal reports them.
        m.temp[i] = (m.temp[i] + ((noise.next() - 0.5) * 1000.0) as i64).clamp(35_000, 80_000);
        let _ = writeln!(out, "temp,host={host},sensor={sensor} temp={} {t}", m.temp[i] as f64 / 1000.0);
    }
    93
}

/// The batches, each `lines` lines of one robot, its successive batches
/// continuing in time (timestamps in seconds, ending about now).
fn batches(p: IngestParams) -> Vec<Batch> {
    const STEP: i64 = 10;
    let robots = p.robots.max(1);
    let per_batch = (p.lines / 13).max(1);
    let per_robot = p.batches.div_ceil(robots);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let start = now - (per_robot * per_batch) as i64 * STEP;
    let mut noise = Noise(0x5eed_1234_abcd_ef01);
    let mut machines = vec![Machine::new(); robots];
    (0..p.batches)
        .map(|i| {
            let (robot, nth) = (i % robots, i / robots);
            let mut text = String::with_capacity(per_batch * 13 * 180);
            let mut points = 0;
            for s in 0..per_batch {
                let t = start + ((nth * per_batch + s) as i64) * STEP;
                points += robot_lines(&mut text, robot, t, &mut machines[robot], &mut noise);
            }
            let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
            gzip.write_all(text.as_bytes()).expect("gzip into memory");
            Batch { robot, gzip: gzip.finish().expect("gzip into memory"), points }
        })
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Bytes per point of relayhub's chunks, as the codec writes them for
/// this payload.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ChunkBytes {
    /// One Telegraf interval of one robot (93 points) as its write is
    /// stored, before compaction.
    pub interval_write: f64,
    /// A benchmark batch (5,000 lines) as its write is stored.
    pub batch_write: f64,
    /// Each robot's batches merged, as the compactor writes them.
    pub compacted: f64,
    /// The 5-minute rollup (the default) of the same, per raw point.
    pub rollup: f64,
    /// The same at 1 minute.
    pub rollup_1m: f64,
}

fn chunk_bytes(payload: &[Batch]) -> anyhow::Result<ChunkBytes> {
    use relayhub_fleet::telemetry::aggregate::Rollup;
    use relayhub_fleet::telemetry::codec;
    use relayhub_fleet::telemetry::line::{Limits, Precision, parse};
    use relayhub_fleet::telemetry::model::Chunk;
    let read = |text: &str| {
        parse(text, Precision::Seconds, 0, Limits::default(), None).map_err(|e| anyhow::anyhow!("{}", e.message))
    };
    let robots = payload.iter().map(|b| b.robot).max().unwrap_or(0) + 1;
    let (mut written, mut compacted, mut points) = (0usize, 0usize, 0usize);
    let (mut rollup, mut rollup_1m) = (0usize, 0usize);
    let mut interval = 0.0;
    for robot in 0..robots {
        let mut chunks = Vec::new();
        for batch in payload.iter().filter(|b| b.robot == robot) {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&batch.gzip[..]), &mut text)?;
            if interval == 0.0 {
                let first: String = text.lines().take(13).map(|l| format!("{l}\n")).collect();
                let chunk = read(&first)?.chunk;
                interval = codec::encode(&chunk, codec::FAST).len() as f64 / chunk.points() as f64;
            }
            let chunk = read(&text)?.chunk;
            written += codec::encode(&chunk, codec::FAST).len();
            chunks.push(chunk);
        }
        let merged = Chunk::merge(chunks);
        points += merged.points();
        compacted += codec::encode(&merged, codec::SMALL).len();
        rollup += codec::encode_rollup(&Rollup::of(&merged, 300_000_000_000), codec::SMALL).len();
        rollup_1m += codec::encode_rollup(&Rollup::of(&merged, 60_000_000_000), codec::SMALL).len();
    }
    let per = |bytes: usize| round2(bytes as f64 / points.max(1) as f64);
    Ok(ChunkBytes {
        interval_write: round2(interval),
        batch_write: per(written),
        compacted: per(compacted),
        rollup: per(rollup),
        rollup_1m: per(rollup_1m),
    })
}

/// Where and how each system takes a batch.
struct Target {
    url: String,
    /// Per robot, the `Authorization` header (relayhub: each robot's token).
    auth: Vec<Option<String>>,
}

async fn target(server: &Server, robots: usize) -> anyhow::Result<Target> {
    let base = format!("http://{}", server.addr);
    match server.system {
        System::Relayhub => {
            let tokens = server.robot_tokens(robots).await?;
            let auth = tokens.into_iter().map(|t| Some(format!("Token {t}"))).collect();
            Ok(Target { url: format!("{base}/api/v2/write?org=bench&bucket=robots&precision=s"), auth })
        }
        System::VictoriaMetrics => Ok(Target {
            url: format!("{base}/api/v2/write?org=bench&bucket=robots&precision=s"),
            auth: vec![None; robots],
        }),
        System::Influxdb => {
            let created = relayhub_core::http_client::client()
                .map_err(anyhow::Error::msg)?
                .post(format!("{base}/query?q=CREATE%20DATABASE%20robots"))
                .send()
                .await?;
            if !created.status().is_success() {
                bail!("creating the database: {}", created.status());
            }
            Ok(Target { url: format!("{base}/write?db=robots&precision=s"), auth: vec![None; robots] })
        }
        other => bail!("{} does not take line protocol", other.name()),
    }
}

pub async fn ingest(system: System, p: IngestParams) -> anyhow::Result<Outcome> {
    let payload = Arc::new(batches(p));
    let server = Server::start(system, &[]).await?;
    let target = Arc::new(target(&server, p.robots).await?);
    let client = relayhub_core::http_client::builder().pool_max_idle_per_host(p.senders).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let senders = (0..p.senders).map(|_| {
        let (payload, target, client, next) = (payload.clone(), target.clone(), client.clone(), next.clone());
        tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("a histogram");
            let (mut failed, mut stored) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = payload.get(i) else { break };
                let mut request = client
                    .post(&target.url)
                    .header("content-type", "text/plain; charset=utf-8")
                    .header("content-encoding", "gzip")
                    .body(batch.gzip.clone());
                if let Some(auth) = &target.auth[batch.robot] {
                    request = request.header("authorization", auth);
                }
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                        stored += batch.points;
                    }
                    Ok(r) => {
                        failed += 1;
                        let status = r.status();
                        let text: String = r.text().await.unwrap_or_default().chars().take(300).collect();
                        eprintln!("    batch {i}: {status} {text}");
                    }
                    Err(err) => {
                        failed += 1;
                        eprintln!("    batch {i}: {err}");
                    }
                }
            }
            (latency, failed, stored)
        })
    });
    let mut latency = Histogram::<u64>::new(3).expect("a histogram");
    let (mut failed, mut accepted) = (0, 0);
    for sender in futures_util::future::join_all(senders).await {
        let (h, f, s) = sender.context("a sender")?;
        latency.add(&h).ok();
        failed += f;
        accepted += s;
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes: usize = payload.iter().map(|b| b.gzip.len()).sum();
    let ms = |q: f64| (latency.value_at_quantile(q) as f64 / 1000.0 * 10.0).round() / 10.0;
    // relayhub counts what it stored: every point of every 204.
    let mut disk = None;
    if system == System::Relayhub {
        let stored = server.metric("relayhub_fleet_telemetry_points_total").await?;
        if stored as u64 != accepted {
            bail!("relayhub stored {stored} points where {accepted} were accepted");
        }
        disk = Some(chunk_bytes(&payload)?);
    }
    Ok(Outcome {
        system: system.name().to_owned(),
        points_per_s: Some((accepted as f64 / secs).round()),
        gzip_mb_per_s: Some((bytes as f64 / secs / 1e4).round() / 100.0),
        p50_ms: Some(ms(0.5)),
        p99_ms: Some(ms(0.99)),
        failed: Some(failed),
        points: Some(accepted),
        bytes_per_point: disk,
        fsync: system.fsync().to_owned(),
        ..Outcome::default()
    })
}
