//! Signaling for peers nobody here wrote: two aiortc WebRTC peers (Python,
//! from PyPI) set up a call through `/ws/signal` and talk over a data
//! channel; with a real coturn, they do it through TURN relays only, with
//! the time-limited credentials relayhub hands out.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relayhub_signal::SignalConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::field;
use crate::helpers::{PATIENCE, TestApp};

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webrtc/peers.py");

fn aiortc_installed() -> bool {
    let present = std::process::Command::new("python3")
        .args(["-c", "import aiortc, websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    field::available("Python aiortc and websockets (pip install aiortc websockets)", present)
}

/// Runs the two peers against `app`; their output.
async fn run_peers(app: &TestApp, relay_only: bool, context: impl Fn() -> String) -> String {
    run_peers_on(app, app, relay_only, context).await
}

/// Runs the caller against `app` and the callee against `other` (another
/// node, or the same).
async fn run_peers_on(app: &TestApp, other: &TestApp, relay_only: bool, context: impl Fn() -> String) -> String {
    let url = |node: &TestApp| format!("ws://{}/ws/signal?api_key={}", node.addr, node.api_key);
    let mut command = tokio::process::Command::new("python3");
    command.arg(PEERS).arg(url(app)).arg(url(other)).kill_on_drop(true);
    if relay_only {
        command.arg("--relay-only");
    }
    let out = tokio::time::timeout(Duration::from_secs(90), command.output()).await.expect("the peers finish");
    let out = out.expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), context());
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_webrtc_peers_open_a_data_channel_through_our_signaling() {
    if !aiortc_installed() {
        return;
    }
    let app = TestApp::spawn().await;
    let out = run_peers(&app, false, String::new).await;
    assert!(out.contains("signaling: connected"), "{out}");
    assert!(out.contains("data channel: pong: hello over webrtc"), "{out}");
    assert!(out.contains("hangup: hangup"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_webrtc_peers_on_different_nodes_open_a_data_channel() {
    if !aiortc_installed() || !crate::cluster::on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let out = run_peers_on(&a, &b, false, String::new).await;
    assert!(out.contains("signaling: connected"), "{out}");
    assert!(out.contains("data channel: pong: hello over webrtc"), "{out}");
    assert!(out.contains("hangup: hangup"), "{out}");
}

/// A coturn on a free loopback port with `use-auth-secret`, UDP only.
struct Coturn {
    _child: tokio::process::Child,
    port: u16,
    /// Everything coturn printed, for the failure message.
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

/// Relay ports just below the kernel's ephemeral range: inside it, the
/// other tests' sockets take ports coturn then fails to bind.
fn relay_port_range() -> (u16, u16) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let max = first_ephemeral.saturating_sub(1).max(2048);
    (max - 1000, max)
}

impl Coturn {
    async fn start(secret: &str) -> Option<Self> {
        let binary =
            ["/usr/bin/turnserver", "/usr/sbin/turnserver"].into_iter().find(|p| std::path::Path::new(p).exists())?;
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let (min_port, max_port) = relay_port_range();
        let mut child = tokio::process::Command::new(binary)
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--realm=relayhub.test"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={min_port}"))
            .arg(format!("--max-port={max_port}"))
            .args(["--use-auth-secret"])
            .arg(format!("--static-auth-secret={secret}"))
            // One UDP port only: no RFC 5780 second port, no TCP listener.
            .args(["--no-rfc5780", "--no-tcp", "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli"])
            .args(["--allow-loopback-peers", "--log-file=stdout", "--simple-log", "--verbose"])
            .arg(format!("--pidfile={}", dir.path().join("turn.pid").display()))
            .arg(format!("--userdb={}", dir.path().join("turndb").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        for stream in [Box::pin(child.stdout.take()?) as Pin<Box<dyn AsyncRead + Send>>, Box::pin(child.stderr.take()?)]
        {
            let log = log.clone();
            // coturn announces readiness on stdout, the first stream.
            let mut ready_tx = ready_tx.take();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("Total General servers")
                        && let Some(tx) = ready_tx.take()
                    {
                        let _ = tx.send(());
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let ready = tokio::time::timeout(PATIENCE, ready_rx).await;
        assert!(matches!(ready, Ok(Ok(()))), "coturn did not start:\n{}", log.lock().unwrap());
        Some(Self { _child: child, port, log, _dir: dir })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_our_turn_credentials_and_relays_the_call() {
    if !aiortc_installed() {
        return;
    }
    let secret = "shared-with-coturn";
    let Some(coturn) = Coturn::start(secret).await else {
        field::available("coturn (Debian package coturn)", false);
        return;
    };
    let app = TestApp::spawn_with(|c| {
        c.edit(|s: &mut SignalConfig| {
            s.turn.urls = vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)];
            s.turn.secret = Some(secret.to_owned());
            s.turn.ttl = Duration::from_secs(600);
        })
    })
    .await;
    let out = run_peers(&app, true, || format!("coturn said:\n{}", coturn.log.lock().unwrap())).await;
    assert!(out.contains("relay candidates: yes"), "{out}");
    assert!(out.contains("data channel: pong: hello over webrtc"), "{out}");
    let username = out.lines().find_map(|l| l.strip_prefix("turn username: ")).expect("a TURN username");
    let (expiry, user) = username.split_once(':').expect("<expiry>:<userId>");
    assert_eq!(user, "py-alice");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > now + 500 && expiry <= now + 600, "valid for the configured 10 minutes");
}
