//! The harness's contract with scripts: `relay --json` prints one JSON
//! object with each system's verified result. Runs against the `relayhub`
//! binary built next to the harness (as `cargo test --workspace` does).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The harness's JSON report for `args`, run against the `relayhub` built
/// beside it; `None` (skipped) when there is none and no run requires it.
fn report(args: &[&str]) -> Option<Value> {
    let bench = Path::new(env!("CARGO_BIN_EXE_relayhub-bench"));
    if !bench.with_file_name("relayhub").exists() {
        assert!(
            std::env::var_os("RELAYHUB_TEST_REQUIRE_ALL").is_none(),
            "required for this run: the relayhub binary (cargo test --workspace builds it)"
        );
        eprintln!("skipped: build relayhub first (cargo test --workspace)");
        return None;
    }
    let out = Command::new(bench).args(args).output().expect("the harness runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("one JSON object on stdout"))
}

/// `relay --json` for relayhub alone, 2,000 messages to 20 devices, with
/// `extra` options.
fn relay_report(extra: &[&str]) -> Option<Value> {
    let base = ["relay", "--json", "--systems", "relayhub", "--devices", "20", "--messages", "2000"];
    report(&[&base[..], extra].concat())
}

/// Nothing lost, duplicated or out of order in relayhub's result.
fn every_message_once_in_order(report: &Value) -> &Value {
    let ours = &report["results"][0];
    assert_eq!(ours["system"], "relayhub");
    assert_eq!((&ours["lost"], &ours["duplicates"], &ours["out_of_order"]), (&0.into(), &0.into(), &0.into()));
    ours
}

#[test]
fn relay_json_reports_every_message_delivered_once_and_in_order() {
    let Some(report) = relay_report(&["--producers", "2", "--batch", "50"]) else {
        return;
    };
    assert_eq!(report["workload"], "relay");
    assert_eq!(report["size"]["devices"], 20, "the size it ran at: {report}");
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c >= 1), "the machine's cores: {report}");
    let ours = every_message_once_in_order(&report);
    assert!(ours["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "{ours}");
    assert!(ours["p99_ms"].as_f64().is_some_and(|p| p >= ours["p50_ms"].as_f64().unwrap()), "{ours}");
    assert!(ours["fsync"].as_str().is_some_and(|f| f.contains("fsync before every 202")), "{ours}");
}

#[test]
fn relay_across_licenses_delivers_each_tenants_messages_to_its_devices() {
    // A device bound to one license is refused to another's producer: a
    // device and a producer of different licenses would fail the run.
    let Some(report) = relay_report(&["--producers", "4", "--licenses", "2"]) else {
        return;
    };
    assert_eq!(report["size"]["licenses"], 2, "the size it ran at: {report}");
    every_message_once_in_order(&report);
}

#[test]
fn scaling_json_runs_the_relay_pinned_to_each_core_count() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    let counts: Vec<String> = (1..=cores).map(|n| n.to_string()).collect();
    let counts = counts.join(",");
    let Some(report) = report(&[
        "scaling",
        "--json",
        "--systems",
        "relayhub",
        "--devices",
        "20",
        "--messages",
        "2000",
        "--core-counts",
        &counts,
    ]) else {
        return;
    };
    assert_eq!(report["workload"], "scaling");
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), cores, "a row per core count: {report}");
    for (n, row) in (1..=cores).zip(rows) {
        assert_eq!(row["system"], "relayhub");
        // The pinned run's own `available_parallelism`: the pin took.
        assert_eq!(row["cores"], n as f64, "{row}");
        assert_eq!((&row["lost"], &row["duplicates"], &row["out_of_order"]), (&0.into(), &0.into(), &0.into()));
        assert!(row["gain"].as_f64().is_some_and(|g| g > 0.0), "{row}");
    }
    assert_eq!(rows[0]["gain"], 1.0, "gains are measured from the fewest cores: {report}");
}

#[test]
fn more_cores_than_the_machine_has_is_refused_before_anything_runs() {
    let bench = Path::new(env!("CARGO_BIN_EXE_relayhub-bench"));
    let out = Command::new(bench).args(["--cores", "4096", "relay"]).output().expect("the harness runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cores 4096: this process may use"), "{stderr}");
    assert!(out.stdout.is_empty(), "no table: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn ingest_json_reports_every_point_stored() {
    let Some(report) = report(&[
        "ingest",
        "--json",
        "--systems",
        "relayhub",
        "--robots",
        "2",
        "--batches",
        "4",
        "--lines",
        "260",
        "--senders",
        "2",
    ]) else {
        return;
    };
    assert_eq!(report["workload"], "ingest");
    let ours = &report["results"][0];
    // 4 batches of 20 ten-second steps of 13 lines, 93 points each; the
    // harness also checked relayhub's own count of stored points.
    assert_eq!((&ours["failed"], &ours["points"]), (&0.into(), &(4 * 20 * 93).into()), "{ours}");
    assert!(ours["points_per_s"].as_f64().is_some_and(|r| r > 0.0), "{ours}");
    assert!(ours["bytes_per_point"]["compacted"].as_f64().is_some_and(|b| b > 0.0 && b < 4.0), "{ours}");
}

#[test]
fn proxy_json_reports_every_answer_carried_whole() {
    let Some(report) = report(&[
        "proxy",
        "--json",
        "--systems",
        "relayhub,relayhub-tunnel",
        "--small",
        "200",
        "--large",
        "8",
        "--clients",
        "4",
    ]) else {
        return;
    };
    assert_eq!(report["workload"], "proxy");
    for (result, system) in report["results"].as_array().unwrap().iter().zip(["relayhub", "relayhub-tunnel"]) {
        assert_eq!(result["system"], system);
        // Every answer came back with its status and its whole body.
        assert_eq!(result["failed"], 0, "{result}");
        assert!(result["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "{result}");
        assert!(result["mib_per_s"].as_f64().is_some_and(|r| r > 0.0), "{result}");
    }
}

#[test]
fn face_json_reports_recall_against_exact_search() {
    let Some(report) =
        report(&["face", "--json", "--systems", "relayhub", "--faces", "300", "--queries", "100", "--clients", "4"])
    else {
        return;
    };
    assert_eq!(report["workload"], "face");
    let ours = &report["results"][0];
    assert_eq!(ours["system"], "relayhub");
    // 300 faces: the graph finds the exact nearest for practically every query.
    assert!(ours["recall_at_1"].as_f64().is_some_and(|r| r >= 0.98), "{ours}");
    assert!(ours["msgs_per_s"].as_f64().is_some_and(|q| q > 0.0), "{ours}");
    assert!(ours["index_bytes_per_face"].as_f64().is_some_and(|b| b > 512.0), "at least the vector itself: {ours}");
}
