//! `relayhub-bench`: relayhub side by side with Mosquitto and NATS
//! JetStream (for telemetry, VictoriaMetrics and InfluxDB; for the
//! registry's proxy, nginx) on this
//! machine, in one run. Each system is started here on
//! free loopback ports with a temporary data directory, driven with its own
//! client library, and checked (every message arrived, in order, duplicates
//! counted).

mod connections;
mod cpu;
mod drivers;
mod face;
mod ingest;
mod payload;
mod proxy;
mod scaling;
mod servers;
mod stats;
mod storage;
mod workloads;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::face::FaceParams;
use crate::ingest::IngestParams;
use crate::proxy::ProxyParams;
use crate::servers::System;
use crate::stats::Outcome;
use crate::workloads::{LatencyParams, RelayParams};

#[derive(Debug, Parser)]
#[command(name = "relayhub-bench", version, about, max_term_width = 100)]
struct Cli {
    /// Small sizes: every workload in well under a minute (a smoke run)
    #[arg(long, global = true)]
    quick: bool,
    /// Print one JSON object per workload instead of a table
    #[arg(long, global = true)]
    json: bool,
    /// Systems to measure, in this order (default: relayhub and the peers
    /// of the workload: NATS JetStream and Mosquitto, for `ingest`
    /// VictoriaMetrics and InfluxDB, for `proxy` relayhub's tunnel and nginx)
    #[arg(long, global = true, value_delimiter = ',')]
    systems: Option<Vec<System>>,
    /// Runs of each workload on each system, the systems' order rotated
    /// each round; tables show each system's median run (by the number its
    /// ratio compares) and every run's number beneath
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    runs: u32,
    /// Run on only the first N of the cores this process may use (the
    /// harness, its clients and the servers it starts), as if the machine
    /// had N; tables then say N cores
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    cores: Option<u16>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Producers post messages to connected devices, which acknowledge each
    Relay(RelayArgs),
    /// The relay on 1, 2, 4 … of this machine's cores (each run pinned with
    /// --cores): how each system's throughput grows with cores
    Scaling {
        #[command(flatten)]
        relay: RelayArgs,
        /// Core counts to run on (default: 1, 2, 4 … and all of them)
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
        core_counts: Option<Vec<u16>>,
    },
    /// An open loop at a fixed rate: latency percentiles
    Latency {
        #[arg(long)]
        devices: Option<usize>,
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Idle device connections: server memory per connection, connect rate
    Connections {
        #[arg(long)]
        count: Option<usize>,
    },
    /// Devices send records up; the back-office drains them
    Uplink {
        #[arg(long)]
        devices: Option<usize>,
        #[arg(long)]
        records: Option<u64>,
    },
    /// relayhub's storage layer alone: enqueue, fetch, ack per second
    Storage {
        #[arg(long)]
        messages: Option<usize>,
        /// A PostgreSQL URL; SQLite (a temporary file) without it
        #[arg(long)]
        database: Option<String>,
    },
    /// Robots' telemetry: gzip'd line-protocol batches over HTTP
    Ingest {
        #[arg(long)]
        robots: Option<usize>,
        #[arg(long)]
        batches: Option<usize>,
        /// Lines per batch
        #[arg(long, default_value_t = 5000)]
        lines: usize,
        /// Requests in flight at once
        #[arg(long, default_value_t = 16)]
        senders: usize,
    },
    /// The registry's reverse proxy to an instance: small and large answers
    Proxy {
        /// Requests for a 1 KiB answer
        #[arg(long)]
        small: Option<usize>,
        /// Requests for a 1 MiB answer
        #[arg(long)]
        large: Option<usize>,
        /// Requests in flight at once (at most 8 for the large answers)
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// Face identification (seed 004): identify queries per second and
    /// recall@1, beside ChromaDB
    Face {
        /// Faces enrolled (one passenger each)
        #[arg(long)]
        faces: Option<usize>,
        #[arg(long)]
        queries: Option<usize>,
        #[arg(long, default_value_t = 128)]
        dimension: usize,
        /// Requests in flight at once
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// Every workload, one after the other (the relay at 1,000 devices and
    /// again at 10,000: `relay-fleet`)
    All,
    /// (internal) hold idle connections for `connections`
    #[command(hide = true)]
    ConnectWorker {
        #[arg(long)]
        system: System,
        #[arg(long)]
        addr: String,
        #[arg(long, default_value = "")]
        api_key: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        source: String,
        #[arg(long)]
        worker: usize,
    },
}

/// The relay's options, for `relay` and `scaling`.
#[derive(Debug, Args)]
struct RelayArgs {
    #[arg(long)]
    devices: Option<usize>,
    #[arg(long)]
    messages: Option<usize>,
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Messages per producer call
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// relayhub only: spread devices and producers over this many
    /// licenses (tenants), each producer posting for one; must divide
    /// --producers. The peers, without tenants, carry the same traffic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    licenses: u16,
}

/// Every workload's size: the defaults (smaller with `--quick`), and what
/// the chosen workload's options change.
struct Sizes {
    relay: RelayParams,
    /// The relay at fleet scale, in `all` beside the 1,000-device run.
    relay_fleet: RelayParams,
    latency: LatencyParams,
    connections: usize,
    uplink: (usize, u64),
    storage: (usize, Option<String>),
    ingest: IngestParams,
    proxy: ProxyParams,
    face: FaceParams,
}

impl Sizes {
    fn of(cli: &Cli) -> Self {
        let q = cli.quick;
        let mut sizes = Sizes {
            relay: RelayParams {
                devices: if q { 100 } else { 1000 },
                messages: if q { 20_000 } else { 200_000 },
                producers: 8,
                batch: 100,
                licenses: 1,
            },
            relay_fleet: RelayParams {
                devices: if q { 1000 } else { 10_000 },
                messages: if q { 50_000 } else { 1_000_000 },
                producers: 32,
                batch: 100,
                licenses: 1,
            },
            latency: LatencyParams { devices: if q { 50 } else { 100 }, rate: 5000, seconds: if q { 4 } else { 30 } },
            connections: if q { 2000 } else { 19_000 },
            uplink: (if q { 100 } else { 1000 }, if q { 100 } else { 200 }),
            storage: (if q { 20_000 } else { 100_000 }, None),
            ingest: IngestParams {
                robots: if q { 10 } else { 100 },
                batches: if q { 40 } else { 600 },
                lines: 5000,
                senders: 16,
            },
            proxy: ProxyParams {
                small: if q { 5_000 } else { 50_000 },
                large: if q { 100 } else { 1_000 },
                clients: 32,
            },
            face: FaceParams {
                faces: if q { 5_000 } else { 100_000 },
                queries: if q { 1_000 } else { 5_000 },
                dimension: 128,
                clients: 16,
            },
        };
        match &cli.workload {
            Workload::Relay(RelayArgs { devices, messages, producers, batch, licenses })
            | Workload::Scaling { relay: RelayArgs { devices, messages, producers, batch, licenses }, .. } => {
                let r = &mut sizes.relay;
                r.devices = devices.unwrap_or(r.devices);
                r.messages = messages.unwrap_or(r.messages);
                (r.producers, r.batch, r.licenses) = (*producers, *batch, usize::from(*licenses));
            }
            Workload::Latency { devices, rate, seconds } => {
                let l = &mut sizes.latency;
                l.devices = devices.unwrap_or(l.devices);
                l.rate = *rate;
                l.seconds = seconds.unwrap_or(l.seconds);
            }
            Workload::Connections { count } => sizes.connections = count.unwrap_or(sizes.connections),
            Workload::Uplink { devices, records } => {
                sizes.uplink = (devices.unwrap_or(sizes.uplink.0), records.unwrap_or(sizes.uplink.1));
            }
            Workload::Storage { messages, database } => {
                sizes.storage = (messages.unwrap_or(sizes.storage.0), database.clone());
            }
            Workload::Ingest { robots, batches, lines, senders } => {
                let i = &mut sizes.ingest;
                i.robots = robots.unwrap_or(i.robots);
                i.batches = batches.unwrap_or(i.batches);
                (i.lines, i.senders) = (*lines, *senders);
            }
            Workload::Proxy { small, large, clients } => {
                let x = &mut sizes.proxy;
                x.small = small.unwrap_or(x.small);
                x.large = large.unwrap_or(x.large);
                x.clients = *clients;
            }
            Workload::Face { faces, queries, dimension, clients } => {
                let f = &mut sizes.face;
                f.faces = faces.unwrap_or(f.faces);
                f.queries = queries.unwrap_or(f.queries);
                (f.dimension, f.clients) = (*dimension, *clients);
            }
            Workload::All | Workload::ConnectWorker { .. } => {}
        }
        sizes
    }
}

/// Runs one workload on every system, `--runs` times, rotating the order
/// each round so that no system always runs first (on a fresh machine, or
/// one warm from the last system); keeps each system's median run by the
/// workload's `headline` number. A system that cannot run is listed as
/// skipped, with the reason.
async fn each<F, Fut>(cli: &Cli, peers: &[System], headline: &str, run: F) -> Vec<Outcome>
where
    F: Fn(System) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let systems = cli.systems.as_deref().unwrap_or(peers);
    let mut runs: Vec<Vec<Outcome>> = systems.iter().map(|_| Vec::new()).collect();
    for round in 0..cli.runs as usize {
        for k in 0..systems.len() {
            let i = (round + k) % systems.len();
            let system = systems[i];
            let of = if cli.runs > 1 { format!(" (run {} of {})", round + 1, cli.runs) } else { String::new() };
            eprintln!("  {}{of} ...", system.name());
            runs[i].push(match run(system).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    eprintln!("  skipping {}: {err:#}", system.name());
                    Outcome::skipped(system.name(), system.fsync(), format!("{err:#}"))
                }
            });
        }
    }
    let mut results: Vec<Outcome> = runs.into_iter().filter_map(|r| Outcome::median(r, headline)).collect();
    if cli.runs == 1 {
        results.iter_mut().for_each(|r| r.runs = None);
    }
    results
}

/// The number a workload's ratio compares, and its median picks.
fn headline(workload: &str) -> &'static str {
    match workload {
        "ingest" => "points_per_s",
        "connections" => "kib_per_connection",
        "latency" => "p99_ms",
        _ => "msgs_per_s",
    }
}

async fn workload(cli: &Cli, sizes: &Sizes, name: &str) -> anyhow::Result<Value> {
    eprintln!("{name}:");
    const MESSAGING: &[System] = &[System::Relayhub, System::Nats, System::Mosquitto];
    const TELEMETRY: &[System] = &[System::Relayhub, System::VictoriaMetrics, System::Influxdb];
    const PROXIES: &[System] = &[System::Relayhub, System::RelayhubTunnel, System::Nginx];
    let h = headline(name);
    let results = match name {
        "relay" => each(cli, MESSAGING, h, |s| workloads::relay(s, sizes.relay)).await,
        "relay-fleet" => each(cli, MESSAGING, h, |s| workloads::relay(s, sizes.relay_fleet)).await,
        "latency" => each(cli, MESSAGING, h, |s| workloads::latency(s, sizes.latency)).await,
        "connections" => each(cli, MESSAGING, h, |s| connections::run(s, sizes.connections)).await,
        "uplink" => each(cli, MESSAGING, h, |s| workloads::uplink(s, sizes.uplink.0, sizes.uplink.1)).await,
        "ingest" => each(cli, TELEMETRY, h, |s| ingest::ingest(s, sizes.ingest)).await,
        "proxy" => each(cli, PROXIES, h, |s| proxy::proxy(s, sizes.proxy)).await,
        "face" => {
            let data = face::Data::new(sizes.face);
            each(cli, &[System::Relayhub, System::Chroma], h, |s| face::face(s, sizes.face, &data)).await
        }
        "scaling" => {
            let params = scaling::ScalingParams {
                relay: sizes.relay,
                counts: &core_counts(cli)?,
                systems: cli.systems.as_deref(),
                runs: cli.runs,
            };
            return scaling::run(params, size(sizes, name), machine()).await;
        }
        "storage" => {
            let outcome = storage::run(sizes.storage.1.as_deref(), sizes.storage.0).await?;
            return Ok(json!({"workload": "storage", "machine": machine(), "results": [outcome]}));
        }
        _ => anyhow::bail!("unknown workload {name}"),
    };
    Ok(json!({"workload": name, "size": size(sizes, name), "machine": machine(), "runs": cli.runs, "results": results}))
}

/// The core counts `scaling` runs the relay on: those asked for, or by
/// default 1, 2, 4 … and every core this process may use.
fn core_counts(cli: &Cli) -> anyhow::Result<Vec<usize>> {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let counts: Vec<usize> = match &cli.workload {
        Workload::Scaling { core_counts: Some(counts), .. } => counts.iter().map(|&n| usize::from(n)).collect(),
        _ => scaling::default_counts(available),
    };
    if let Some(n) = counts.iter().find(|&&n| n > available) {
        anyhow::bail!("--core-counts {n}: this process may use {available} core(s)");
    }
    Ok(counts)
}

/// What a workload was run at, for its table's title.
fn size(sizes: &Sizes, name: &str) -> Value {
    let relay = |r: RelayParams| {
        let mut size = json!({"devices": r.devices, "messages": r.messages, "producers": r.producers});
        if r.licenses > 1 {
            size["licenses"] = r.licenses.into();
        }
        size
    };
    match name {
        "relay" | "scaling" => relay(sizes.relay),
        "relay-fleet" => relay(sizes.relay_fleet),
        "latency" => json!({"devices": sizes.latency.devices, "rate": sizes.latency.rate}),
        "connections" => json!({"connections": sizes.connections}),
        "uplink" => json!({"devices": sizes.uplink.0, "records": sizes.uplink.1}),
        _ => Value::Null,
    }
}

/// The machine a table was measured on: ratios hold for it only.
fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({"cores": cores})
}

/// One line of a table: the first cell left-aligned, the others right,
/// each padded to its width, so header and rows always line up.
fn row(widths: &[usize], cells: &[String]) -> String {
    let mut line = String::from(" ");
    for (i, (cell, &width)) in cells.iter().zip(widths).enumerate() {
        line += &if i == 0 { format!(" {cell:<width$}") } else { format!(" {cell:>width$}") };
    }
    line + "\n"
}

/// A column of numbers: header, width, the result's key.
type Column = (&'static str, usize, &'static str);
/// The ratio column: header, width, and whether it is the peer's number ÷
/// relayhub's (latency) rather than relayhub's ÷ the peer's.
type RatioColumn = (&'static str, usize, bool);

/// The rows of a table: each system's numbers under `columns`, and its
/// ratio to relayhub's in the number named `key`.
fn numbers(results: &[Value], columns: &[Column], ratio: RatioColumn, key: &str) -> String {
    let (label, ratio_width, inverted) = ratio;
    let widths: Vec<usize> = std::iter::once(16).chain(columns.iter().map(|c| c.1)).chain([ratio_width]).collect();
    let header: Vec<String> =
        std::iter::once("system").chain(columns.iter().map(|c| c.0)).chain([label]).map(String::from).collect();
    let mut out = row(&widths, &header);
    let ours = results.iter().find(|r| r["system"] == "relayhub");
    let cell = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
    for r in results {
        let of = |v: &Value| v[key].as_f64();
        let ratio = ours.and_then(|o| if inverted { Some(of(r)? / of(o)?) } else { Some(of(o)? / of(r)?) });
        let mut cells = vec![r["system"].as_str().unwrap_or("").to_owned()];
        cells.extend(columns.iter().map(|c| cell(r[c.2].as_f64())));
        cells.push(cell(ratio.map(|x| (x * 100.0).round() / 100.0)));
        out += &row(&widths, &cells);
    }
    out
}

/// What follows a table's name: its size and the machine's cores.
fn title(report: &Value) -> String {
    let mut parts: Vec<String> = report["size"]
        .as_object()
        .map(|size| size.iter().map(|(key, value)| format!("{value} {key}")).collect())
        .unwrap_or_default();
    if let Some(cores) = report["machine"]["cores"].as_u64() {
        parts.push(format!("{cores} cores"));
    }
    if let Some(runs) = report["runs"].as_u64().filter(|&n| n > 1) {
        parts.push(format!("median of {runs} runs"));
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}

/// A table for people, with each peer's number as a ratio to relayhub's.
fn table(report: &Value) -> String {
    let name = report["workload"].as_str().unwrap_or("");
    let results = report["results"].as_array().cloned().unwrap_or_default();
    if name == "scaling" {
        return scaling::table(report, &title(report));
    }
    let mut out = format!("\n{name}{}\n", title(report));
    if name == "storage" {
        for r in &results {
            out += &format!(
                "  {:<10} {} messages: enqueue {} /s (one per call), {} /s (batches of 100), fetch {} /s, ack {} /s\n",
                r["backend"].as_str().unwrap_or(""),
                r["messages"],
                r["enqueue_per_s"],
                r["enqueue_batched_per_s"],
                r["fetch_per_s"],
                r["ack_per_s"]
            );
        }
        return out;
    }
    // Each workload's columns: (header, width, result key); then the ratio
    // column: (header, width, whether it is the peer's ÷ relayhub's), which
    // compares the workload's headline number.
    let (columns, ratio): (&[Column], RatioColumn) = match name {
        "ingest" => (
            &[
                ("points/s", 11, "points_per_s"),
                ("gzip MB/s", 10, "gzip_mb_per_s"),
                ("p50 ms", 8, "p50_ms"),
                ("p99 ms", 8, "p99_ms"),
                ("failed", 6, "failed"),
            ],
            ("relayhub ÷ system", 18, false),
        ),
        "proxy" => (
            &[
                ("req/s", 9, "msgs_per_s"),
                ("p50 ms", 8, "p50_ms"),
                ("p99 ms", 8, "p99_ms"),
                ("MiB/s", 8, "mib_per_s"),
                ("RSS MiB", 8, "rss_mib"),
                ("failed", 6, "failed"),
            ],
            ("relayhub ÷ system", 18, false),
        ),
        "face" => (
            &[
                ("queries/s", 10, "msgs_per_s"),
                ("p50 ms", 8, "p50_ms"),
                ("p99 ms", 8, "p99_ms"),
                ("recall@1", 9, "recall_at_1"),
                ("enrol/s", 8, "enrol_per_s"),
                ("index B/face", 13, "index_bytes_per_face"),
                ("RSS B/face", 11, "rss_bytes_per_face"),
            ],
            ("relayhub ÷ system", 18, false),
        ),
        "connections" => (
            &[
                ("connections", 12, "connections"),
                ("KiB/conn", 14, "kib_per_connection"),
                ("connects/s", 14, "connects_per_s"),
            ],
            ("relayhub ÷ system", 18, false),
        ),
        _ => (
            &[
                ("msgs/s", 10, "msgs_per_s"),
                ("p50 ms", 9, "p50_ms"),
                ("p99 ms", 9, "p99_ms"),
                ("p99.9 ms", 9, "p999_ms"),
                ("lost", 6, "lost"),
                ("dup", 6, "duplicates"),
                ("order", 6, "out_of_order"),
                ("server µs", 10, "server_cpu_us"),
                ("client µs", 10, "client_cpu_us"),
            ],
            // At a fixed rate the ratio that matters is latency; else throughput.
            if name == "latency" { ("system p99 ÷ relayhub's", 24, true) } else { ("relayhub ÷ system", 24, false) },
        ),
    };
    out += &numbers(&results, columns, ratio, headline(name));
    if results.iter().any(|r| r["server_cpu_us"].is_number()) {
        out += "  server µs, client µs: CPU time (user + system, every thread) per message of the server \
                and of this benchmark's clients, which share the machine's cores\n";
    }
    for r in &results {
        let system = r["system"].as_str().unwrap_or("");
        let disk = &r["bytes_per_point"];
        if disk.is_object() {
            out += &format!(
                "  {system} bytes per point: {} as a 93-point Telegraf write is stored, {} as a 5,000-line write, \
                 {} compacted, + {} for its 5-minute rollup ({} at 1 minute)\n",
                disk["interval_write"], disk["batch_write"], disk["compacted"], disk["rollup"], disk["rollup_1m"]
            );
        }
        if let Some(why) = r["skipped"].as_str() {
            out += &format!("  {system}: skipped ({why})\n");
        } else {
            out += &format!("  {system}: {}\n", r["fsync"].as_str().unwrap_or(""));
        }
        if let Some(runs) = r["runs"].as_array() {
            let runs: Vec<String> = runs.iter().map(|n| n.to_string()).collect();
            out += &format!("  {system} {} in each run: {}\n", headline(name), runs.join(", "));
        }
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Workload::ConnectWorker { system, addr, api_key, count, source, worker } = &cli.workload {
        return connections::worker(*system, addr, api_key, *count, source, *worker).await;
    }
    let names: Vec<&str> = match &cli.workload {
        Workload::Relay(_) => vec!["relay"],
        Workload::Scaling { .. } => vec!["scaling"],
        Workload::Latency { .. } => vec!["latency"],
        Workload::Connections { .. } => vec!["connections"],
        Workload::Uplink { .. } => vec!["uplink"],
        Workload::Storage { .. } => vec!["storage"],
        Workload::Ingest { .. } => vec!["ingest"],
        Workload::Proxy { .. } => vec!["proxy"],
        Workload::Face { .. } => vec!["face"],
        Workload::All => {
            vec!["relay", "relay-fleet", "latency", "connections", "uplink", "storage", "ingest", "proxy", "face"]
        }
        Workload::ConnectWorker { .. } => unreachable!("handled above"),
    };
    let sizes = Sizes::of(&cli);
    let r = &sizes.relay;
    anyhow::ensure!(
        r.producers.is_multiple_of(r.licenses),
        "--licenses {} must divide --producers {}: each producer posts for one license",
        r.licenses,
        r.producers
    );
    let mut reports = Vec::new();
    for name in names {
        let report = workload(&cli, &sizes, name).await?;
        if !cli.json {
            println!("{}", table(&report));
        }
        reports.push(report);
    }
    if cli.json {
        let out = if reports.len() == 1 { reports.remove(0) } else { Value::Array(reports) };
        println!("{out}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the runtime's threads exist: they, and every process started
    // from here, inherit the pin.
    if let Some(cores) = cli.cores
        && let Err(err) = scaling::pin(usize::from(cores))
    {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let Ok(runtime) = runtime else {
        eprintln!("error: starting the async runtime");
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
