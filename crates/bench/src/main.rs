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
mod tables;
mod workloads;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::face::FaceParams;
use crate::ingest::IngestParams;
use crate::proxy::ProxyParams;
use crate::servers::System;
use crate::stats::Outcome;
use crate::tables::{headline, table};
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
