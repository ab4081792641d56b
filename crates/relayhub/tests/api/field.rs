//! A simulated field device for cluster tests: it connects to its node,
//! moves on to the next one when that node dies, acknowledges everything,
//! and checks that every connection delivers in `seq` order.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What a field device saw.
#[derive(Debug, Default)]
pub struct FieldLog {
    pub device: String,
    pub received: HashSet<String>,
    /// The node (`host:port`) of each connection, in the order made.
    pub connections: Vec<String>,
    /// `seq` that went backwards within one connection.
    pub out_of_order: Vec<String>,
}

/// Whether the test should require what is missing rather than skip: set
/// in CI (`RELAYHUB_TEST_REQUIRE_ALL=1`) so that a skipped test fails.
///
/// A skip is never silent: it is written straight to the terminal (past
/// the test harness's capture, which hides a passing test's output) and
/// appended to `target/skipped-tests.txt`.
pub fn available(what: &str, present: bool) -> bool {
    if !present {
        assert!(std::env::var_os("RELAYHUB_TEST_REQUIRE_ALL").is_none(), "required for this run: {what}");
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        let line = format!(
            "SKIPPED {test}: {what} is not available here (RELAYHUB_TEST_REQUIRE_ALL=1 makes this a failure)\n"
        );
        use std::io::Write;
        let _ = std::io::stderr().write_all(line.as_bytes());
        let list = concat!(env!("CARGO_TARGET_TMPDIR"), "/../skipped-tests.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(list) {
            let _ = write!(file, "{} {line}", relayhub_core::time::Timestamp::now());
        }
    }
    present
}

/// Whether Python 3 can import `module` (a PyPI tool a test drives).
pub fn python_module(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a device until it has received every id `expected` names (once
/// known), or `patience` runs out. `nodes` are `host:port`, its own first.
pub async fn run(
    nodes: Vec<String>,
    device: String,
    key: String,
    license: String,
    mut expected: watch::Receiver<Option<HashSet<String>>>,
    patience: Duration,
) -> FieldLog {
    let deadline = tokio::time::Instant::now() + patience;
    let mut log = FieldLog { device: device.clone(), ..FieldLog::default() };
    let mut node = 0;
    // Kept from the first hello, as the app keeps it: a license that binds
    // devices to a secret refuses a reconnection without it.
    let mut secret: Option<String> = None;
    let done = |log: &FieldLog, expected: &Option<HashSet<String>>| {
        expected.as_ref().is_some_and(|e| e.is_subset(&log.received))
    };
    while tokio::time::Instant::now() < deadline {
        let addr = &nodes[node % nodes.len()];
        let mut url = format!("ws://{addr}/ws/device?api_key={key}&device_id={device}&license={license}");
        if let Some(secret) = &secret {
            url.push_str(&format!("&device_secret={secret}"));
        }
        let request = url.into_client_request().unwrap();
        let Ok(Ok((ws, _))) =
            tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(request)).await
        else {
            // That node is gone (refused at once) or hung: try the next.
            node += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        log.connections.push(addr.clone());
        let (mut tx, mut rx) = ws.split();
        let mut last_seq = 0;
        loop {
            if done(&log, &expected.borrow()) {
                return log;
            }
            let frame = tokio::select! {
                frame = rx.next() => frame,
                _ = expected.changed() => continue,
                () = tokio::time::sleep_until(deadline) => return log,
            };
            let Some(Ok(Message::Text(text))) = frame else {
                // Closed or broken: reconnect (elsewhere if the node died).
                if !matches!(frame, Some(Ok(Message::Close(_)))) {
                    node += 1;
                }
                break;
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if let Some(issued) = frame["device_secret"].as_str() {
                secret = Some(issued.to_owned());
            }
            if frame["type"] != "message" {
                continue;
            }
            let seq = frame["seq"].as_i64().unwrap();
            if seq <= last_seq {
                log.out_of_order.push(format!("seq {seq} after {last_seq}"));
            }
            last_seq = seq;
            let id = frame["id"].as_str().unwrap().to_owned();
            let _ = tx.send(Message::text(json!({"type": "ack", "id": id}).to_string())).await;
            log.received.insert(id);
        }
    }
    log
}
