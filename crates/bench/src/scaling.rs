//! How the relay's throughput grows with cores, measured on one machine:
//! the harness runs `relay` again as a child of itself, pinned with
//! `--cores` to the first 1, 2, 4 … of the cores it may use (the child's
//! clients and the servers it starts inherit the pin, and size their
//! thread pools to it), and compares each count's rate with the smallest
//! count's. The same build on more cores should gain at least 0.6× the
//! core ratio (issue 16) until the disk is the limit.

use std::process::Stdio;

use anyhow::{Context, bail, ensure};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::servers::System;
use crate::tables::{round2, row};
use crate::workloads::RelayParams;

/// The CPUs this process may run on, in ascending order.
fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).context("reading this process's CPU affinity")?;
    Ok((0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect())
}

/// Pins the calling thread, and so every thread and process it starts
/// afterwards, to the first `cores` of the CPUs it may use. Called before
/// the async runtime starts, so that its workers, and
/// `available_parallelism` everywhere, see only those.
pub fn pin(cores: usize) -> anyhow::Result<()> {
    let allowed = allowed_cpus()?;
    ensure!((1..=allowed.len()).contains(&cores), "--cores {cores}: this process may use {} core(s)", allowed.len());
    let mut set = CpuSet::new();
    for &cpu in &allowed[..cores] {
        set.set(cpu).context("a CPU number beyond the affinity mask")?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).context("setting the CPU affinity")
}

/// The core counts to measure when none are given: 1, 2, 4 … below
/// `available`, and `available` itself.
pub fn default_counts(available: usize) -> Vec<usize> {
    let mut counts: Vec<usize> =
        std::iter::successors(Some(1), |n| Some(n * 2)).take_while(|&n| n < available).collect();
    counts.push(available.max(1));
    counts
}

/// What to run at each core count.
pub struct ScalingParams<'a> {
    pub relay: RelayParams,
    pub counts: &'a [usize],
    pub systems: Option<&'a [System]>,
    pub runs: u32,
}

/// The `relay` report of a child of this harness pinned to `cores`.
async fn relay_on(cores: usize, params: &ScalingParams<'_>) -> anyhow::Result<Value> {
    let r = params.relay;
    let mut args: Vec<String> = vec!["--cores".into(), cores.to_string(), "--json".into()];
    args.extend(["--runs".into(), params.runs.to_string()]);
    if let Some(systems) = params.systems {
        let names: Vec<&str> = systems.iter().map(|s| s.name()).collect();
        args.extend(["--systems".into(), names.join(",")]);
    }
    args.push("relay".into());
    for (flag, value) in [
        ("--devices", r.devices),
        ("--messages", r.messages),
        ("--producers", r.producers),
        ("--batch", r.batch),
        ("--licenses", r.licenses),
    ] {
        args.extend([flag.into(), value.to_string()]);
    }
    let exe = std::env::current_exe().context("finding this harness's own binary")?;
    eprintln!("  on {cores} core(s):");
    // Progress and errors (stderr) pass through; the report comes on
    // stdout. Spawned, not `output()`: tokio's `output()` captures stderr
    // whatever was set.
    let child = tokio::process::Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("running the relay pinned to fewer cores")?;
    let out = child.wait_with_output().await.context("waiting for the pinned relay")?;
    if !out.status.success() {
        bail!("the relay on {cores} core(s) failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("the pinned relay's JSON report")
}

/// One row per system and core count: its rate, CPU per message, and gain
/// over the smallest count (1 where the gain is measured from).
fn rows(reports: &[(usize, Value)]) -> Vec<Value> {
    let mut systems: Vec<String> = Vec::new();
    for (_, report) in reports {
        for result in report["results"].as_array().into_iter().flatten() {
            if let Some(name) = result["system"].as_str().filter(|n| !systems.iter().any(|s| s == n)) {
                systems.push(name.to_owned());
            }
        }
    }
    let mut rows = Vec::new();
    for system in &systems {
        let mut base: Option<(f64, f64)> = None;
        for (requested, report) in reports {
            // The child says how many cores it saw: the pin, checked.
            let cores = report["machine"]["cores"].as_u64().map_or(*requested as f64, |c| c as f64);
            let results = report["results"].as_array().into_iter().flatten();
            let Some(result) = results.into_iter().find(|r| r["system"] == system.as_str()) else { continue };
            let rate = result["msgs_per_s"].as_f64();
            let mut row = json!({
                "system": system,
                "cores": cores,
                "msgs_per_s": rate,
                "server_cpu_us": result["server_cpu_us"],
                "client_cpu_us": result["client_cpu_us"],
                "lost": result["lost"],
                "duplicates": result["duplicates"],
                "out_of_order": result["out_of_order"],
            });
            if let Some(rate) = rate.filter(|r| *r > 0.0) {
                let (base_cores, base_rate) = *base.get_or_insert((cores, rate));
                let gain = rate / base_rate;
                row["gain"] = round2(gain).into();
                row["gain_per_core_ratio"] = round2(gain / (cores / base_cores)).into();
            }
            if let Some(why) = result["skipped"].as_str() {
                row["skipped"] = why.into();
            }
            rows.push(row);
        }
    }
    rows
}

/// Runs the relay at every core count and returns the `scaling` report
/// (`machine` is this process's, before pinning: what was available).
pub async fn run(params: ScalingParams<'_>, size: Value, machine: Value) -> anyhow::Result<Value> {
    let mut reports = Vec::with_capacity(params.counts.len());
    for &cores in params.counts {
        reports.push((cores, relay_on(cores, &params).await?));
    }
    Ok(json!({
        "workload": "scaling",
        "size": size,
        "machine": machine,
        "runs": params.runs,
        "results": rows(&reports),
    }))
}

/// The `scaling` table: a row per system and core count.
pub fn table(report: &Value, title: &str) -> String {
    const WIDTHS: [usize; 7] = [16, 7, 10, 10, 10, 7, 18];
    let header = ["system", "cores", "msgs/s", "server µs", "client µs", "gain", "gain ÷ core ratio"];
    let mut out = format!("\nscaling: relay{title}\n") + &row(&WIDTHS, &header.map(String::from));
    let cell = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), |v| format!("{v}"));
    for r in report["results"].as_array().into_iter().flatten() {
        let mut cells = vec![r["system"].as_str().unwrap_or("").to_owned()];
        cells.extend(
            ["cores", "msgs_per_s", "server_cpu_us", "client_cpu_us", "gain", "gain_per_core_ratio"]
                .map(|k| cell(&r[k])),
        );
        out += &row(&WIDTHS, &cells);
        if let Some(why) = r["skipped"].as_str() {
            out += &format!("    skipped: {why}\n");
        }
        let faults = ["lost", "duplicates", "out_of_order"].map(|k| r[k].as_u64().unwrap_or(0));
        if faults.iter().any(|&n| n > 0) {
            let [lost, dup, order] = faults;
            out += &format!("    NOT DELIVERED AS SENT: {lost} lost, {dup} duplicated, {order} out of order\n");
        }
    }
    out += "  gain: msgs/s ÷ the same system's at the fewest cores; gain ÷ core ratio: 1 is linear, \
            issue 16 asks relayhub for at least 0.6\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_double_up_to_the_machine() {
        assert_eq!(default_counts(1), [1]);
        assert_eq!(default_counts(2), [1, 2]);
        assert_eq!(default_counts(6), [1, 2, 4, 6]);
        assert_eq!(default_counts(16), [1, 2, 4, 8, 16]);
    }

    #[test]
    fn gain_is_measured_from_the_fewest_cores_of_each_system() {
        let report = |cores: u64, ours: f64, peer: f64| {
            json!({"machine": {"cores": cores}, "results": [
                {"system": "relayhub", "msgs_per_s": ours},
                {"system": "mosquitto", "msgs_per_s": peer},
            ]})
        };
        let rows = rows(&[(1, report(1, 10_000.0, 8_000.0)), (4, report(4, 30_000.0, 8_000.0))]);
        let of = |system: &str, cores: f64| {
            rows.iter().find(|r| r["system"] == system && r["cores"] == cores).cloned().unwrap()
        };
        assert_eq!(of("relayhub", 1.0)["gain"], 1.0);
        assert_eq!(of("relayhub", 4.0)["gain"], 3.0);
        assert_eq!(of("relayhub", 4.0)["gain_per_core_ratio"], 0.75);
        assert_eq!(of("mosquitto", 4.0)["gain_per_core_ratio"], 0.25);
    }

    #[test]
    fn a_skipped_run_has_no_gain_and_says_why() {
        let rows = rows(&[(
            2,
            json!({"machine": {"cores": 2}, "results": [
                {"system": "mosquitto", "msgs_per_s": null, "skipped": "mosquitto is not installed"},
            ]}),
        )]);
        assert_eq!(rows[0]["skipped"], "mosquitto is not installed");
        assert!(rows[0]["gain"].is_null());
    }
}
