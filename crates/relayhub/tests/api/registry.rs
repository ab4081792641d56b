//! The registry (seed 001): registration, approval, the reverse proxy to a
//! real HTTP server started here, its refusals (every SSRF spelling), a
//! 50 MiB download with bounded memory in a child server, rate limits, and
//! an instance behind NAT reached over its tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::StreamExt;
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use relayhub_registry::RegistryConfig;
use relayhub_registry::limits::Rate;
use relayhub_registry::model::DeviceStatus;
use relayhub_registry::store::{DeviceRegistry, InstanceTokens};
use relayhub_registry::tunnel::client::TunnelClient;
use serde_json::{Value, json};

use crate::helpers::{PATIENCE, PgDatabase, TestApp, database_args};
use crate::process::{ChildOptions, ChildServer, cli};

const BIG: usize = 50 * 1024 * 1024;

/// A warehouse instance: echoes requests, serves a large body, redirects.
pub(crate) async fn instance() -> SocketAddr {
    async fn echo(request: Request) -> axum::Json<Value> {
        let (parts, body) = request.into_parts();
        let headers: serde_json::Map<String, Value> =
            parts.headers.iter().map(|(n, v)| (n.to_string(), json!(v.to_str().unwrap_or("?")))).collect();
        let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap();
        axum::Json(json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "length": body.len(),
            "sum": body.iter().map(|b| u64::from(*b)).sum::<u64>(),
        }))
    }
    async fn big(headers: HeaderMap) -> Response {
        let size = headers.get("x-size").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(BIG);
        let chunks = futures_util::stream::iter((0..size).step_by(65536).map(move |at| {
            let n = (size - at).min(65536);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![(at / 65536 % 251) as u8; n]))
        }));
        ([("content-length", size.to_string())], Body::from_stream(chunks)).into_response()
    }
    let app = Router::new()
        .route("/wh/echo", any(echo))
        .route("/wh/big", get(big))
        .route("/wh/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
        .route("/wh/redirect", get(|| async { (StatusCode::FOUND, [("location", "http://169.254.169.254/latest")]) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The checksum [`instance`]'s large body has.
fn big_sum(size: usize) -> u64 {
    (0..size).step_by(65536).map(|at| ((at / 65536 % 251) as u64) * ((size - at).min(65536) as u64)).sum()
}

pub(crate) fn allow_loopback(config: &mut RegistryConfig) {
    config.allow_private = vec!["127.0.0.0/8".parse().unwrap()];
    config.timeout = Duration::from_secs(2);
}

pub(crate) async fn registry_app(tweak: impl FnOnce(&mut RegistryConfig)) -> TestApp {
    TestApp::spawn_with(|config| config.edit(tweak)).await
}

pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) async fn register(app: &TestApp, device: &str, instance: &str, url: Option<&str>) -> (u16, Value) {
    let mut body = json!({"device_uuid": device, "instance_id": instance});
    if let Some(url) = url {
        body["public_url"] = json!(url);
    }
    let response =
        app.post("/ECK/API/DEVICE/REGISTER").header("x-api-key", &app.api_key).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn set_status(app: &TestApp, device: &str, status: DeviceStatus) {
    let devices = app.admin().get::<dyn DeviceRegistry>().unwrap();
    devices.set_status(&relayhub_registry::rules::device_uuid(device).unwrap(), status).await.unwrap();
}

/// A proxy call as a device makes it: no credential but the API key.
pub(crate) fn proxy(app: &TestApp, device: &str, target: &str) -> reqwest::RequestBuilder {
    let device_client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    device_client
        .post(app.url("/ECK/PROXY"))
        .header("x-api-key", &app.api_key)
        .header("x-device-id", device)
        .header("x-eckwms-target-url", target)
}

pub(crate) async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_device_registers_waits_for_approval_then_reaches_its_instance() {
    let instance = instance().await;
    let app = registry_app(allow_loopback).await;
    let health: Value = app.get("/ECK/HEALTH").send().await.unwrap().json().await.unwrap();
    assert_eq!((health["status"].as_str(), health["database"].as_str()), (Some("ok"), Some("ok")));

    let device = uuid();
    let url = format!("http://{instance}/wh");
    let anonymous = app.post("/ECK/API/DEVICE/REGISTER").json(&json!({"device_uuid": device, "instance_id": "w1"}));
    assert_eq!(refusal(anonymous.send().await.unwrap()).await, (401, "invalid_api_key".into()));
    let spelled = device.replace('-', "").to_uppercase();
    let (status, body) = register(&app, &spelled, "w1", Some(&url)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["device"]["device_uuid"], device.as_str(), "one spelling of the UUID is kept");
    assert_eq!(body["device"]["status"], "pending");
    assert_eq!(body["device"]["public_url"], url.as_str());

    let pending = proxy(&app, &device, "/echo").send().await.unwrap();
    assert_eq!(refusal(pending).await, (403, "device_pending".into()));
    set_status(&app, &device, DeviceStatus::Active).await;
    let (_, again) = register(&app, &device, "w1", Some(&url)).await;
    assert_eq!(again["device"]["status"], "active", "registering again keeps the status");

    let answer = proxy(&app, &device, "/echo?x=1")
        .header("x-custom", "kept")
        .header("authorization", format!("Bearer {}", app.api_key))
        .header("content-type", "text/plain")
        .body("hello instance")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let seen: Value = answer.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/wh/echo?x=1");
    assert_eq!(seen["length"], 14);
    let headers = &seen["headers"];
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    for hidden in ["x-api-key", "authorization", "x-eckwms-target-url"] {
        assert!(headers.get(hidden).is_none(), "{hidden} reached the instance: {headers}");
    }

    let full =
        proxy(&app, &device, &format!("{url}/echo")).header("x-eckwms-target-method", "put").send().await.unwrap();
    assert_eq!(full.json::<Value>().await.unwrap()["method"], "PUT");
    let redirect = proxy(&app, &device, "/redirect").header("x-eckwms-target-method", "GET").send().await.unwrap();
    assert_eq!(redirect.status(), 302, "the redirect comes back, unfollowed");
    assert_eq!(redirect.headers()["location"], "http://169.254.169.254/latest");
    let slow = proxy(&app, &device, "/slow").header("x-eckwms-target-method", "GET").send().await.unwrap();
    assert_eq!(refusal(slow).await, (504, "instance_timeout".into()));

    set_status(&app, &device, DeviceStatus::Blocked).await;
    let blocked = proxy(&app, &device, "/echo").send().await.unwrap();
    assert_eq!(refusal(blocked).await, (403, "device_blocked".into()));
    let (status, body) = register(&app, &device, "w1", Some(&url)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("device_blocked")));
    let unknown = proxy(&app, &uuid(), "/echo").send().await.unwrap();
    assert_eq!(refusal(unknown).await, (404, "device_not_found".into()));
}

#[tokio::test]
async fn every_spelling_of_another_target_is_refused() {
    let instance = instance().await;
    let app = registry_app(allow_loopback).await;
    let device = uuid();
    let port = instance.port();
    register(&app, &device, "w1", Some(&format!("http://{instance}/wh"))).await;
    set_status(&app, &device, DeviceStatus::Active).await;
    for target in [
        format!("http://localhost:{port}/wh/echo"),
        format!("http://127.0.0.1:{}/wh/echo", port + 1),
        format!("http://user@127.0.0.1:{port}/wh/echo"),
        format!("http://127.0.0.1:{port}@169.254.169.254/wh/echo"),
        format!("https://127.0.0.1:{port}/wh/echo"),
        format!("http://127.0.0.1:{port}/other"),
        "/../other".to_owned(),
        "/%2e%2e/other".to_owned(),
        "//169.254.169.254/latest".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let refused = proxy(&app, &device, &target).send().await.unwrap();
        assert_eq!(refusal(refused).await, (403, "target_not_registered".into()), "{target}");
    }
    let (status, body) = register(&app, &uuid(), "w2", Some("http://10.1.2.3/")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_field")), "{body}");
    let (status, _) = register(&app, &uuid(), "w2", Some("ftp://example.com/")).await;
    assert_eq!(status, 422);

    // Without allow_private, loopback is refused however it is spelled:
    // by name at registration, by address at connect time.
    let strict = registry_app(|_| {}).await;
    let (status, body) = register(&strict, &uuid(), "w3", Some(&format!("http://localhost:{port}/wh"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_field")), "{body}");
    let (status, _) = register(&strict, &uuid(), "w3", Some(&format!("http://127.0.0.1:{port}/wh"))).await;
    assert_eq!(status, 422);
    // A name that resolved outside when it registered and inside now (DNS
    // rebinding) is refused when the proxy connects.
    let rebound = uuid();
    let devices = strict.admin().get::<dyn DeviceRegistry>().unwrap();
    let registration = relayhub_registry::model::Registration {
        device_uuid: relayhub_registry::rules::device_uuid(&rebound).unwrap(),
        instance_id: relayhub_registry::rules::instance_id("w3").unwrap(),
        public_url: Some(format!("http://localhost:{port}/wh")),
        initial: DeviceStatus::Active,
        at: Timestamp::now(),
    };
    devices.register(registration).await.unwrap();
    let refused = proxy(&strict, &rebound, "/echo").send().await.unwrap();
    assert_eq!(refusal(refused).await, (403, "target_not_registered".into()));
}

#[tokio::test]
async fn requests_past_the_rate_get_429_with_retry_after() {
    let app = registry_app(|c| c.rate_per_key = Rate { per_second: 1, burst: 3 }).await;
    for _ in 0..3 {
        assert_eq!(register(&app, &uuid(), "w1", None).await.0, 200);
    }
    let response = app
        .post("/ECK/API/DEVICE/REGISTER")
        .header("x-api-key", &app.api_key)
        .json(&json!({"device_uuid": uuid(), "instance_id": "w1"}))
        .send()
        .await
        .unwrap();
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(refusal(response).await, (429, "rate_limited".into()));
}

/// The resident memory of a process, and its peak, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn a_50_mib_download_to_a_slow_reader_keeps_the_server_small() {
    let instance = instance().await;
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDatabase::create().await;
    let database = database_args(dir.path(), pg.as_ref());
    let file = dir.path().join("relayhub.toml");
    std::fs::write(&file, "[registry]\nallow_private = [\"127.0.0.0/8\"]\n").unwrap();
    let config = file.display().to_string();
    let server = ChildServer::start_with(
        &database,
        ChildOptions { env: vec![("RELAYHUB_CONFIG", &config)], ..Default::default() },
    )
    .await;
    let key = cli(&database, &["apikey", "create"])["key"].as_str().unwrap().to_owned();
    let http = relayhub_core::http_client::client().unwrap();
    let base = format!("http://{}", server.addr);
    let device = uuid();
    let registered = http
        .post(format!("{base}/ECK/API/DEVICE/REGISTER"))
        .header("x-api-key", &key)
        .json(&json!({"device_uuid": device, "instance_id": "w1", "public_url": format!("http://{instance}/wh")}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let listed = cli(&database, &["registry", "list", "--status", "pending"]);
    assert_eq!(listed[0]["device_uuid"], device.as_str());
    cli(&database, &["registry", "approve", &device]);

    let pid = server.child.id().unwrap();
    let get = |size: usize| {
        http.post(format!("{base}/ECK/PROXY"))
            .header("x-api-key", &key)
            .header("x-device-id", &device)
            .header("x-eckwms-target-url", "/big")
            .header("x-eckwms-target-method", "GET")
            .header("x-size", size.to_string())
    };
    // Warm up the allocator and the connection pool first.
    let warm = get(1024 * 1024).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(warm.len(), 1024 * 1024);
    let (rss_before, _) = memory_kib(pid);
    let response = get(BIG).timeout(Duration::from_secs(120)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], BIG.to_string().as_str());
    let mut body = response.bytes_stream();
    let (mut length, mut sum, mut peak) = (0usize, 0u64, 0u64);
    let mut chunks = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        length += chunk.len();
        sum += chunk.iter().map(|b| u64::from(*b)).sum::<u64>();
        chunks += 1;
        if chunks.is_multiple_of(16) {
            // A slow reader: the instance is faster than this by far.
            tokio::time::sleep(Duration::from_millis(10)).await;
            peak = peak.max(memory_kib(pid).0);
        }
    }
    assert_eq!((length, sum), (BIG, big_sum(BIG)), "every byte arrived, in order");
    let grown = peak.saturating_sub(rss_before);
    // A server that held the body would grow by 50 MiB; a streaming one
    // still grows by a few MiB on a loaded machine (another worker thread
    // touching its own malloc arena), so the bound is well between.
    assert!(grown < 16 * 1024, "the server grew by {grown} KiB while streaming 50 MiB");

    cli(&database, &["registry", "block", &device]);
    let blocked = get(10).send().await.unwrap();
    assert_eq!(blocked.status(), 403);
}

#[tokio::test]
async fn an_instance_behind_nat_answers_over_its_tunnel() {
    let local = instance().await;
    let app = registry_app(|c| c.timeout = Duration::from_secs(5)).await;
    let device = uuid();
    let (status, body) = register(&app, &device, "nat-1", None).await;
    assert_eq!((status, body["device"]["public_url"].clone()), (200, Value::Null));
    set_status(&app, &device, DeviceStatus::Active).await;
    let unknown = proxy(&app, &device, "/echo").send().await.unwrap();
    assert_eq!(refusal(unknown).await, (404, "instance_unknown".into()));

    let token = Secret::generate(relayhub_registry::codes::INSTANCE_TOKEN);
    let tokens = app.admin().get::<dyn InstanceTokens>().unwrap();
    tokens
        .set_instance_token(&relayhub_registry::rules::instance_id("nat-1").unwrap(), token.hash(), Timestamp::now())
        .await
        .unwrap();
    let offline = proxy(&app, &device, "/echo").send().await.unwrap();
    assert_eq!(refusal(offline).await, (502, "instance_unreachable".into()));

    let client = |token: &str| TunnelClient {
        server: format!("ws://{}/ws/instance", app.addr),
        api_key: app.api_key.clone(),
        instance_id: "nat-1".into(),
        token: token.to_owned(),
        local: format!("http://{local}/wh"),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let refused = client("rhi_wrong").run(stop.clone(), None).await.unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let tunnel = client(token.expose());
    let held = tokio::spawn({
        let stop = stop.clone();
        async move { tunnel.run(stop, Some(ready_tx)).await }
    });
    tokio::time::timeout(PATIENCE, ready).await.unwrap().unwrap();

    // Several requests at once, bodies both ways past the window.
    let upload: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 256) as u8).collect();
    let upload_sum: u64 = upload.iter().map(|b| u64::from(*b)).sum();
    let calls = (0..6).map(|i| {
        let request = if i % 2 == 0 {
            proxy(&app, &device, "/echo?via=tunnel").body(upload.clone())
        } else {
            proxy(&app, &device, "/big").header("x-eckwms-target-method", "GET").header("x-size", (5 << 20).to_string())
        };
        async move { (i, request.send().await.unwrap()) }
    });
    for (i, response) in futures_util::future::join_all(calls).await {
        assert_eq!(response.status(), 200, "call {i}");
        if i % 2 == 0 {
            let seen: Value = response.json().await.unwrap();
            assert_eq!((seen["length"].as_u64(), seen["sum"].as_u64()), (Some(upload.len() as u64), Some(upload_sum)));
            assert_eq!(seen["uri"], "/wh/echo?via=tunnel");
            assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
            assert!(seen["headers"].get("x-api-key").is_none());
        } else {
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len(), 5 << 20);
            assert_eq!(body.iter().map(|b| u64::from(*b)).sum::<u64>(), big_sum(5 << 20));
        }
    }
    let redirect = proxy(&app, &device, "/redirect").header("x-eckwms-target-method", "GET").send().await.unwrap();
    assert_eq!(redirect.status(), 302, "the same answers as for a public URL");
    let full = proxy(&app, &device, "http://169.254.169.254/latest").send().await.unwrap();
    assert_eq!(refusal(full).await, (403, "target_not_registered".into()));

    stop.cancel();
    held.await.unwrap().unwrap();
    let gone = proxy(&app, &device, "/echo").send().await.unwrap();
    assert_eq!(refusal(gone).await, (502, "instance_unreachable".into()));
}

#[tokio::test]
async fn a_block_on_one_node_refuses_the_device_on_every_node() {
    if !crate::cluster::on_postgres() {
        return;
    }
    let instance = instance().await;
    let a = registry_app(allow_loopback).await;
    let b = a.join().await;
    let device = uuid();
    register(&a, &device, "w1", Some(&format!("http://{instance}/wh"))).await;
    set_status(&a, &device, DeviceStatus::Active).await;
    for node in [&a, &b] {
        let echoed = proxy(node, &device, "/echo").send().await.unwrap();
        assert_eq!(echoed.status(), 200, "approved on one node, served by both");
    }
    set_status(&b, &device, DeviceStatus::Blocked).await;
    for node in [&a, &b] {
        let refused = proxy(node, &device, "/echo").send().await.unwrap();
        assert_eq!(refusal(refused).await, (403, "device_blocked".into()));
    }
}

/// A raw tunnel socket of `instance`, past its `ready` frame.
async fn open_tunnel(app: &TestApp, instance: &str, token: &Secret) -> crate::helpers::Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws/instance", app.addr).into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("x-api-key", app.api_key.parse().unwrap());
    headers.insert("x-instance-id", instance.parse().unwrap());
    headers.insert("authorization", format!("Bearer {}", token.expose()).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let ready = tokio::time::timeout(PATIENCE, socket.next()).await.unwrap().unwrap().unwrap();
    assert!(ready.to_string().contains(r#""type":"ready""#), "{ready}");
    socket
}

async fn issue_token(app: &TestApp, instance: &str) -> Secret {
    let token = Secret::generate(relayhub_registry::codes::INSTANCE_TOKEN);
    let tokens = app.admin().get::<dyn InstanceTokens>().unwrap();
    tokens
        .set_instance_token(&relayhub_registry::rules::instance_id(instance).unwrap(), token.hash(), Timestamp::now())
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn revoking_the_api_key_or_replacing_the_token_closes_an_open_tunnel_with_4001() {
    let app = registry_app(|c| c.token_check_interval = Duration::from_millis(100)).await;
    let token = issue_token(&app, "nat-2").await;
    let mut socket = open_tunnel(&app, "nat-2", &token).await;
    relayhub_core::identity::revoke_api_key(app.admin().identity.as_ref(), &app.api_key_id).await.unwrap();
    let closed = crate::helpers::server_close(&mut socket).await.expect("a close frame");
    assert_eq!((u16::from(closed.code), closed.reason.as_str()), (4001, "api key revoked"));

    let app = registry_app(|c| c.token_check_interval = Duration::from_millis(100)).await;
    let leaked = issue_token(&app, "nat-3").await;
    let mut socket = open_tunnel(&app, "nat-3", &leaked).await;
    issue_token(&app, "nat-3").await;
    let closed = crate::helpers::server_close(&mut socket).await.expect("a close frame");
    assert_eq!((u16::from(closed.code), closed.reason.as_str()), (4001, "instance token replaced"));
}
