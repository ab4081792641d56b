//! The harness's tables for people: one per workload, each system's
//! numbers in columns and, in the last, its ratio to relayhub's.

use serde_json::Value;

use crate::scaling;

/// The number a workload's ratio compares, and its median picks.
pub fn headline(workload: &str) -> &'static str {
    match workload {
        "ingest" => "points_per_s",
        "connections" => "kib_per_connection",
        "latency" => "p99_ms",
        _ => "msgs_per_s",
    }
}

/// One line of a table: the first cell left-aligned, the others right,
/// each padded to its width, so header and rows always line up.
pub fn row(widths: &[usize], cells: &[String]) -> String {
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
        cells.push(cell(ratio.map(round2)));
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
pub fn table(report: &Value) -> String {
    let name = report["workload"].as_str().unwrap_or("");
    if name == "scaling" {
        return scaling::table(report, &title(report));
    }
    let results = report["results"].as_array().cloned().unwrap_or_default();
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

/// `x` to two decimals, as ratios are shown.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
