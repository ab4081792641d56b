//! The security review's HTTP findings, replayed with real sockets: a body
//! that never arrives, a body that trickles, and clients behind the real
//! nginx who must each get their own per-address limits while a direct
//! client's forged `X-Forwarded-For` counts for nothing.

use std::time::Duration;

use relayhub_core::client::TrustedProxies;
use relayhub_fleet::FleetConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::Nginx;
use crate::hardening::{connect_from, until_closed};
use crate::helpers::{PATIENCE, TestApp, client_from};

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_408_and_frees_its_place() {
    let app = TestApp::spawn_with(|c| {
        c.http.request_timeout = Duration::from_millis(600);
        c.http.max_pending_per_ip = 3;
    })
    .await;
    // As in the review: a sign-in that announces 100 bytes and sends none,
    // from one address, as many times as that address may be pending.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.5", app.addr).await;
        stream
            .write_all(b"POST /api/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let started = tokio::time::Instant::now();
    for stream in &mut stalled {
        let answer = until_closed(stream, PATIENCE).await.expect("closed by the server");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    // Their places are free again: the same address is served.
    let mut next = connect_from("127.0.0.5", app.addr).await;
    next.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut next, PATIENCE).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_authenticated_upload_must_keep_up_the_minimum_rate_and_a_steady_one_is_kept() {
    let app = TestApp::spawn_with(|c| {
        c.http.min_body_rate = 2000;
        c.http.body_rate_grace = Duration::from_millis(400);
    })
    .await;
    let body = json!({"text": "x".repeat(4000)}).to_string();
    let head = format!(
        "POST /api/v1/devices/slow-1/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.token,
        body.len()
    );
    // A trickle: ten bytes, then nothing. The token does not save it.
    let mut trickle = connect_from("127.0.0.6", app.addr).await;
    trickle.write_all(head.as_bytes()).await.unwrap();
    trickle.write_all(&body.as_bytes()[..10]).await.unwrap();
    let answer = until_closed(&mut trickle, PATIENCE).await.expect("closed by the server");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The same body in four pieces, 100 ms apart (far above 2,000 B/s).
    let mut steady = connect_from("127.0.0.6", app.addr).await;
    steady.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(body.len().div_ceil(4)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        steady.write_all(piece).await.unwrap();
    }
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(PATIENCE, steady.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // The device gets the steady upload, and nothing of the trickle.
    let mut device = app.connect("slow-1").await;
    let delivered = device.sync().await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
}

/// Ten wrong sign-ins (the default limit) from `client`, each for another
/// email so that only the address counts; then the status of the 11th.
async fn exhaust_sign_ins(client: &reqwest::Client, url: &str, forged: Option<&str>) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..11 {
        let mut request =
            client.post(url).json(&json!({"email": format!("nobody-{i}@example.com"), "password": "wrong"}));
        if let Some(forged) = forged {
            // A different address on every try: it must not matter.
            request = request.header("x-forwarded-for", format!("{forged}{i}"));
        }
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn behind_nginx_each_client_has_its_own_limits_and_a_forged_header_is_ignored() {
    let app = TestApp::spawn_with(|c| {
        c.http.trusted_proxies = TrustedProxies::parse(&["127.0.0.1", "::1"]).unwrap();
        c.edit(|f: &mut FleetConfig| f.attempts = 10);
    })
    .await;
    let Some(nginx) = Nginx::start(&[app.addr.to_string()]).await else {
        crate::field::available("nginx", false);
        return;
    };
    let through = format!("http://{}/api/auth/login", nginx.addr);
    // The first client uses up its attempts through nginx...
    let first = exhaust_sign_ins(&client_from("127.0.0.7"), &through, None).await;
    assert_eq!(first[..10], [401; 10], "{first:?}");
    assert_eq!(first[10], 429, "the 11th wrong sign-in from one client: {first:?}");
    // ...and the second, through the same nginx, is not locked out.
    let second = client_from("127.0.0.8")
        .post(&through)
        .json(&json!({"email": "someone@example.com", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 401, "another client behind nginx shares no bucket");
    // A direct client (not a trusted proxy) that forges X-Forwarded-For
    // with a new address on every try is still one client.
    let direct = exhaust_sign_ins(&client_from("127.0.0.9"), &app.url("/api/auth/login"), Some("203.0.113.")).await;
    assert_eq!(direct[10], 429, "a forged header escaped the limit: {direct:?}");
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let app = TestApp::spawn().await;
    let odd = |i: usize| {
        let name = format!("FFUHKKUOCN{}{}", "QZ".repeat(i % 7), "X".repeat(i * 100));
        reqwest::Method::from_bytes(name.as_bytes()).unwrap()
    };
    let scrape = || async { app.get("/metrics").send().await.unwrap().text().await.unwrap() };
    // The first odd request and the first scrape make their series once.
    let _ = app.http.request(odd(0), app.url("/no/such/path/0")).send().await.unwrap();
    scrape().await;
    let before = scrape().await;
    for i in 1..50 {
        let _ = app.http.request(odd(i), app.url(&format!("/no/such/path/{i}"))).send().await.unwrap();
    }
    let after = scrape().await;
    assert!(!after.contains("FFUHKKUOCN"), "a made-up method became a label");
    assert!(!after.contains("/no/such/path"), "a raw path became a label");
    assert!(after.contains("method=\"other\""), "made-up methods are counted as other");
    // Counters and sums change their digits; no line is added.
    assert_eq!(after.lines().count(), before.lines().count(), "/metrics gained series");
}
