//! What an attacker or a careless client tries, with real sockets: idle and
//! half-sent connections, floods from one source, running the process out
//! of file descriptors, secrets in logs, JSON nested without end, messages
//! larger than a device accepts, frames far over the limit, refused writes
//! that leave traces, and two servers on one data directory.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use relayhub_relay::RelayConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{PATIENCE, TestApp};
use crate::process::{ChildOptions, ChildServer};

/// A TCP connection to `addr` from the loopback address `from`.
pub async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// What the server sends before closing the connection; `None` if it is
/// still open after `wait`.
pub async fn until_closed(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthz_from(from: &str, addr: SocketAddr) -> String {
    let mut stream = connect_from(from, addr).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    until_closed(&mut stream, PATIENCE).await.expect("an answer")
}

#[tokio::test]
async fn idle_half_sent_and_kept_alive_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.http.header_timeout = Duration::from_millis(500)).await;
    let mut idle = connect_from("127.0.0.1", app.addr).await;
    let mut half = connect_from("127.0.0.1", app.addr).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: slow").await.unwrap();
    let mut kept = connect_from("127.0.0.1", app.addr).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    for (what, stream) in [("idle", &mut idle), ("half-sent", &mut half), ("kept alive", &mut kept)] {
        let closed = until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "the {what} connection is still open after 5 s");
    }
}

#[tokio::test]
async fn a_flood_of_idle_sockets_from_one_source_leaves_others_served() {
    let app = TestApp::spawn_with(|c| c.http.max_pending_per_ip = 20).await;
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(connect_from("127.0.0.3", app.addr).await);
    }
    // The 21st from the same source is told at once and closed.
    let mut extra = connect_from("127.0.0.3", app.addr).await;
    let refused = until_closed(&mut extra, PATIENCE).await.expect("refused at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("\"overloaded\""), "{refused}");
    // Everyone else is served: health checks, and devices.
    assert!(healthz_from("127.0.0.4", app.addr).await.starts_with("HTTP/1.1 200"));
    let mut device = app.connect("after-the-flood").await;
    assert!(device.sync().await.is_empty());
    assert!(app.metric("relayhub_http_connections_refused_total{reason=\"pending_per_address\"}").await >= Some(1.0));
}

#[tokio::test]
async fn running_out_of_file_descriptors_sheds_connections_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let options = ChildOptions {
        env: vec![("RELAYHUB_HTTP__HEADER_TIMEOUT", "1s")],
        open_files: Some(128),
        ..ChildOptions::default()
    };
    let server = ChildServer::start_with(&["--data".into(), dir.path().display().to_string()], options).await;
    let addr: SocketAddr = server.addr.parse().unwrap();
    // More idle sockets than the process has descriptors, from a few sources.
    let mut idle = Vec::new();
    for i in 0..160 {
        idle.push(connect_from(&format!("127.0.0.{}", 10 + i % 4), addr).await);
    }
    let mut shed = 0;
    for stream in idle.iter_mut() {
        if let Some(answer) = until_closed(stream, Duration::from_millis(20)).await {
            assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "{answer}");
            shed += 1;
        }
    }
    assert!(shed > 0, "no connection was refused with 128 descriptors and 160 sockets");
    // The idle ones time out; the node answers again and never stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(healthz_from("127.0.0.20", addr).await.starts_with("HTTP/1.1 200"));
    let log = server.logged();
    let warnings = log.matches("refusing connections").count();
    assert!(warnings <= 3, "the log was flooded: {warnings} warnings\n{log}");
    assert!(!log.contains("accept error"), "{log}");
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_any_level_and_a_log_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let database = vec!["--data".to_owned(), dir.path().display().to_string()];
    let license = crate::process::cli(&database, &["license", "create", "--number", "LIC-LOG"]);
    let key = crate::process::cli(&database, &["apikey", "create"]);
    let (token, key) = (license["token"].as_str().unwrap(), key["key"].as_str().unwrap());
    let options = ChildOptions { env: vec![("RELAYHUB_LOG", "trace")], text_log: true, ..ChildOptions::default() };
    let server = ChildServer::start_with(&database, options).await;
    let http = relayhub_core::http_client::client().unwrap();
    let url = |path: &str| format!("http://{}{path}", server.addr);
    http.get(url("/api/v1/devices")).bearer_auth(token).send().await.unwrap();
    http.get(url("/api/v1/devices")).bearer_auth(format!("{token}x")).send().await.unwrap();
    for path in
        [format!("/ws/device?api_key={key}&device_id=log-1&license=LIC-LOG"), format!("/ws/signal?api_key={key}")]
    {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", server.addr)).await.unwrap();
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws/device",
        server.addr
    ))
    .unwrap();
    for (name, value) in [("x-api-key", key), ("x-device-id", "log-2"), ("x-license", "LIC-LOG")] {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.logged();
    assert!(log.contains("api_key=[redacted]"), "the requests were logged, redacted:\n{log}");
    let secret_part = |s: &str| s[4..].to_owned();
    for secret in [secret_part(token), secret_part(key)] {
        assert!(!log.contains(&secret), "a secret reached the log");
    }
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal");
}

#[tokio::test]
async fn json_nested_past_64_levels_is_refused_on_every_path() {
    let app = TestApp::spawn().await;
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep: Value = serde_json::from_str(&nested(64)).unwrap();
    assert_eq!(app.send("d-deep", deep).await.status(), 202, "64 levels are fine");
    let single = app.post("/api/v1/devices/d-deep/messages").body(nested(100_000)).send().await.unwrap();
    assert_eq!(single.status(), 422);
    let body: Value = single.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("64 levels"), "{body}");
    let batch = format!(r#"{{"messages":[{{"device_id":"d-deep","data":{}}}]}}"#, nested(65));
    assert_eq!(app.post("/api/v1/messages").body(batch).send().await.unwrap().status(), 422);
    let settings = format!(r#"{{"version":0,"settings":{{"a":{}}}}}"#, nested(64));
    let put = app.http.put(app.url("/api/v1/devices/d-deep/settings")).bearer_auth(&app.token).body(settings);
    assert_eq!(put.send().await.unwrap().status(), 422, "settings follow the same rule");
    let mut device = app.connect("d-deep").await;
    device.send_text(format!(r#"{{"type":"publish","ref":"r","data":{}}}"#, nested(10_000))).await;
    let frames = device.sync().await;
    assert!(frames.iter().any(|f| f["type"] == "error" && f["code"] == "invalid_field"), "{frames:?}");
    let inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["records"], json!([]), "nothing deep was stored");
}

#[tokio::test]
async fn a_message_whose_frame_a_device_could_not_take_is_refused_when_posted() {
    let app = TestApp::spawn_with(|c| c.gateway.max_frame_bytes = 16 * 1024).await;
    let data = |len: usize| json!("x".repeat(len - 2));
    let too_big = app.send("d-big", data(16 * 1024 - 100)).await;
    assert_eq!(too_big.status(), 413);
    let batch = json!({"messages": [{"device_id": "d-big", "data": data(16 * 1024 - 100)}]});
    assert_eq!(app.post("/api/v1/messages").json(&batch).send().await.unwrap().status(), 413);
    let fits = app.send_ok("d-big", data(16 * 1024 - 256)).await;
    let mut device = app.connect("d-big").await;
    let frame = device.expect("message").await;
    assert_eq!(frame["id"], fits);
    assert!(frame.to_string().len() <= 16 * 1024, "the frame is within what the server itself accepts");
}

#[tokio::test]
async fn a_frame_far_over_the_limit_is_closed_with_1009() {
    let app = TestApp::spawn_with(|c| c.gateway.max_frame_bytes = 4096).await;
    let mut device = app.connect("d-huge").await;
    device.send_text("x".repeat(6000)).await;
    assert_eq!(device.expect("error").await["code"], "payload_too_large", "over the limit: an error frame");
    device.send_text(format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(10_000))).await;
    let close = device.closed().await.expect("a close frame, not a dropped connection");
    assert_eq!(u16::from(close.code), 1009);
}

#[tokio::test]
async fn a_refused_settings_write_binds_nothing() {
    let app = TestApp::spawn().await;
    let write = json!({"version": 3, "settings": {"a": 1}});
    let put = app.http.put(app.url("/api/v1/devices/never-bound/settings")).bearer_auth(&app.token).json(&write);
    assert_eq!(put.send().await.unwrap().status(), 409);
    assert_eq!(app.get("/api/v1/devices/never-bound").send().await.unwrap().status(), 404);
    let devices: Value = app.get("/api/v1/devices").send().await.unwrap().json().await.unwrap();
    assert_eq!(devices["total"], 0);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_says_who_holds_it_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let database = vec!["--data".to_owned(), dir.path().display().to_string()];
    let first = ChildServer::start(&database).await;
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(&database)
        .output();
    let second = tokio::time::timeout(PATIENCE, second).await.expect("exits at once").unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    let pid = first.child.id().unwrap().to_string();
    assert!(said.contains("in use by another relayhub") && said.contains(&pid), "{said}");
}

#[tokio::test]
async fn acknowledging_ids_that_are_not_inbox_records_says_so() {
    let app = TestApp::spawn().await;
    let message = app.send_ok("d-ack", json!(1)).await;
    let mut device = app.connect("d-ack").await;
    device.send(json!({"type": "publish", "ref": "r-1", "data": true})).await;
    device.expect("message").await;
    let published = device.expect("published").await;
    let body = json!({"ids": [message, published["id"]]});
    let acked: Value = app.post("/api/v1/inbox/ack").json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(acked, json!({"deleted": 1, "unknown": [message]}));
}

#[tokio::test]
async fn websocket_frames_over_the_limit_do_not_reach_the_store() {
    // A publish whose frame is over the limit is refused whole.
    let app = TestApp::spawn_with(|c| {
        c.gateway.max_frame_bytes = 4096;
        c.edit(|r: &mut RelayConfig| r.window = 4)
    })
    .await;
    let mut device = app.connect("d-pub").await;
    let frame = json!({"type": "publish", "ref": "big", "data": "x".repeat(5000)});
    device.send_text(frame.to_string()).await;
    assert_eq!(device.expect("error").await["code"], "payload_too_large");
    let inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["records"], json!([]));
}
