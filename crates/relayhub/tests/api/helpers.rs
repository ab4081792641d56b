//! The test harness: every test gets its own server on 127.0.0.1:0 with its
//! own temporary database, a license, an API key, and real clients (HTTP
//! and WebSocket). Logs only with TEST_LOG=1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use relayhub::Config;
use relayhub::stores::StoreOptions;
use relayhub_core::backend::Stores;
use relayhub_core::bus::Bus;
use relayhub_core::identity::{self, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::metrics::Metrics;
use relayhub_relay::RelayConfig;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        relayhub::logging::init(relayhub::config::LogFormat::Text);
    }
}

/// The environment variable naming a PostgreSQL server (an admin URL such
/// as `postgres://relayhub@127.0.0.1/postgres`): when set, the suite runs
/// against PostgreSQL instead of SQLite, each test in a database of its own.
pub const POSTGRES_ENV: &str = "RELAYHUB_TEST_POSTGRES";

/// A test's database on the PostgreSQL server, dropped when the test ends.
pub struct PgDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// A fresh database, if the suite runs against PostgreSQL.
    pub async fn create() -> Option<Self> {
        let admin = std::env::var(POSTGRES_ENV).ok()?;
        let name = format!("relayhub_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("the test PostgreSQL answers");
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a test database");
        let base = admin.split('?').next().unwrap_or(&admin);
        let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
        Some(Self { url: format!("{base}/{name}"), admin, name })
    }

    /// The command-line options that select this database.
    pub fn args(&self) -> Vec<String> {
        vec!["--database".into(), self.url.clone()]
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside any runtime's reach: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::Executor::execute(&mut conn, sql.as_str()).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// The command-line options that select a test's database: `--data DIR`,
/// or `--database URL` when the suite runs against PostgreSQL.
pub fn database_args(dir: &std::path::Path, pg: Option<&PgDatabase>) -> Vec<String> {
    match pg {
        Some(pg) => pg.args(),
        None => vec!["--data".into(), dir.display().to_string()],
    }
}

/// A configuration for tests: fast housekeeping, everything else default.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config { listen: "127.0.0.1:0".parse().unwrap(), data: dir.to_owned(), ..Config::default() };
    config.edit(|r: &mut RelayConfig| {
        r.sweep_interval = Duration::from_millis(100);
        r.credential_check_interval = Duration::from_millis(100);
        // The suite connects hundreds of devices with one key;
        // device_credentials.rs tests the bound itself.
        r.new_devices_per_minute = 1_000_000;
    });
    config.gateway.shutdown_grace = Duration::from_secs(5);
    config.pool_size = 4;
    // `.ci/run` runs the suite once more with the relay's data spread over
    // partition files: the first license then lives in partition 1.
    if let Some(n) = std::env::var("RELAYHUB_PARTITIONS").ok().and_then(|n| n.parse().ok()) {
        config.partitions = n;
    }
    config
}

/// A running server and the credentials of one license.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub license: String,
    pub token: String,
    pub api_key: String,
    pub api_key_id: String,
    pub config: Config,
    admin: Stores,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    dir: Option<tempfile::TempDir>,
    pg: Option<std::sync::Arc<PgDatabase>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Another node on this app's database, with the same credentials.
    pub async fn join(&self) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.data = dir.path().to_owned();
        let mut node = Self::start(config, Some(dir), self.pg.clone()).await;
        node.license = self.license.clone();
        node.token = self.token.clone();
        node.api_key = self.api_key.clone();
        node.api_key_id = self.api_key_id.clone();
        node
    }

    /// Starts a server on an existing PostgreSQL database (`url`).
    pub async fn spawn_on(url: &str) -> Self {
        Self::spawn_inner(Some(url.to_owned()), None, |_| {}).await
    }

    /// Starts a server on the embedded database whatever the suite runs
    /// on, for what only it has (partition files).
    pub async fn spawn_embedded(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(None, None, tweak).await
    }

    /// Starts a server whose configuration `tweak` may change.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let pg = PgDatabase::create().await.map(std::sync::Arc::new);
        Self::spawn_inner(pg.as_ref().map(|pg| pg.url.clone()), pg, tweak).await
    }

    async fn spawn_inner(
        database: Option<String>,
        pg: Option<std::sync::Arc<PgDatabase>>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        config.database = database;
        tweak(&mut config);
        let mut app = Self::start(config, Some(dir), pg).await;
        let (token, _) = app.create_license("LIC-A", None).await;
        app.license = "LIC-A".into();
        app.token = token;
        let key = identity::create_api_key(app.admin.identity.as_ref(), "tests", &[]).await.unwrap();
        app.api_key = key.secret.expose().to_owned();
        app.api_key_id = key.id;
        app
    }

    async fn start(config: Config, dir: Option<tempfile::TempDir>, pg: Option<std::sync::Arc<PgDatabase>>) -> Self {
        let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
        let server = relayhub::Server::build(config.clone(), listener).await.expect("server builds");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        // The administration handle opens the same database, as the CLI
        // does from another process.
        let url = config.database_url().expect("a database URL");
        let admin = relayhub::stores::open(
            &url,
            &Bus::new(),
            &Metrics::new(),
            StoreOptions::admin(config.store_options().partitions),
        )
        .await
        .expect("admin store");
        let app = Self {
            addr,
            http: relayhub_core::http_client::client().expect("an HTTP client"),
            license: String::new(),
            token: String::new(),
            api_key: String::new(),
            api_key_id: String::new(),
            config,
            admin,
            shutdown: Some(tx),
            task: Some(task),
            dir,
            pg,
        };
        app.await_ready().await;
        app
    }

    /// Waits until `/readyz` says 200, as a load balancer does before it
    /// sends a node traffic (a capability may still be loading, such as
    /// the face index, which answers 503 meanwhile).
    pub async fn await_ready(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.http.get(self.url("/readyz")).send().await.map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 200) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server never became ready: {status:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server gracefully and starts a new one on the same data,
    /// keeping the credentials.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        let mut next = Self::start(config, self.dir.take(), self.pg.take()).await;
        next.license = self.license.clone();
        next.token = self.token.clone();
        next.api_key = self.api_key.clone();
        next.api_key_id = self.api_key_id.clone();
        next
    }

    /// Graceful shutdown; fails the test if the server reports an error.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task).await.expect("server stops in time").unwrap().unwrap();
        }
        self.admin.close().await;
    }

    pub fn admin(&self) -> &Stores {
        &self.admin
    }

    /// The PostgreSQL database this app runs on, if it does.
    pub fn postgres_url(&self) -> Option<&str> {
        self.pg.as_deref().map(|pg| pg.url.as_str())
    }

    /// The arguments that point an administration command at this app's
    /// database.
    pub fn database_args(&self) -> Vec<String> {
        database_args(&self.config.data, self.pg.as_deref())
    }

    /// Runs `relayhub ARGS --json` on this app's database, `stdin` piped
    /// in: whether it succeeded, its stdout and its stderr.
    pub fn cli(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
            .args(args)
            .arg("--json")
            .args(self.database_args())
            .env_remove("RELAYHUB_DATABASE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run relayhub");
        child.stdin.take().expect("its stdin").write_all(stdin.as_bytes()).expect("writing to its stdin");
        let out = child.wait_with_output().expect("relayhub ends");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Creates a license; returns its bearer token and token id. It is
    /// `open`, as licenses made before binding policies are: the suite's
    /// devices are seed 000's app (device_credentials.rs tests the others).
    pub async fn create_license(&self, number: &str, max_devices: Option<u32>) -> (String, String) {
        self.create_license_binding(number, max_devices, identity::BindingPolicy::Open).await
    }

    /// Creates a license with a binding policy; its bearer token and token id.
    pub async fn create_license_binding(
        &self,
        number: &str,
        max_devices: Option<u32>,
        binding: identity::BindingPolicy,
    ) -> (String, String) {
        let new = NewLicense {
            number: LicenseNumber::parse(number).unwrap(),
            name: String::new(),
            expires_at: None,
            max_devices,
            binding,
        };
        let (_, token) = identity::create_license(self.admin.identity.as_ref(), new).await.unwrap();
        (token.secret.expose().to_owned(), token.id)
    }

    /// A request with this app's bearer token.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.token)
    }

    /// Queues one message; returns the response.
    pub async fn send(&self, device: &str, data: Value) -> reqwest::Response {
        self.send_as(&self.token, device, data).await
    }

    pub async fn send_as(&self, token: &str, device: &str, data: Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/devices/{device}/messages")))
            .bearer_auth(token)
            .json(&data)
            .send()
            .await
            .expect("request")
    }

    /// Queues one message and returns its id, asserting 202.
    pub async fn send_ok(&self, device: &str, data: Value) -> String {
        let response = self.send(device, data).await;
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// The receipt of a message.
    pub async fn receipt(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/messages/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits until the receipt's status is `status`.
    pub async fn await_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let receipt = self.receipt(id).await;
            if receipt["status"] == status {
                return receipt;
            }
            assert!(tokio::time::Instant::now() < deadline, "message {id} never became {status}: {receipt}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The current value of a metric series (a line's prefix), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    }

    /// Waits until a metric reaches `value`.
    pub async fn await_metric(&self, series: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.metric(series).await != Some(value) {
            assert!(tokio::time::Instant::now() < deadline, "{series} never reached {value}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Opens a device socket with this app's key and license.
    pub async fn connect(&self, device: &str) -> Device {
        self.try_connect(device, &self.api_key, &self.license).await.expect("device connects")
    }

    /// Opens a device socket; `Err` carries the HTTP status and error body
    /// of a refused upgrade.
    pub async fn try_connect(&self, device: &str, key: &str, license: &str) -> Result<Device, (u16, Value)> {
        self.try_connect_with(device, key, license, None).await
    }

    /// [`Self::try_connect`] presenting a device secret (`X-Device-Secret`).
    pub async fn try_connect_with(
        &self,
        device: &str,
        key: &str,
        license: &str,
        secret: Option<&str>,
    ) -> Result<Device, (u16, Value)> {
        let mut request = format!("ws://{}/ws/device", self.addr).into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("x-api-key", key.parse().unwrap());
        headers.insert("x-device-id", device.parse().unwrap());
        headers.insert("x-license", license.parse().unwrap());
        if let Some(secret) = secret {
            headers.insert("x-device-secret", secret.parse().unwrap());
        }
        Device::open(request).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A device's WebSocket, as a phone would hold it.
pub struct Device {
    ws: Socket,
    pub hello: Value,
}

impl Device {
    pub async fn open(request: http::Request<()>) -> Result<Device, (u16, Value)> {
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => {
                let mut device = Device { ws, hello: Value::Null };
                let hello = device.next().await;
                assert_eq!(hello["type"], "hello", "first frame: {hello}");
                device.hello = hello;
                Ok(device)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body =
                    response.body().as_deref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(other) => panic!("websocket connect failed: {other}"),
        }
    }

    /// The next JSON frame; fails the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("JSON frame");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must be of this type.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
        frame
    }

    /// The next `n` message frames.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.expect("message").await);
        }
        out
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    /// Writes all frames back to back, then flushes once: the server gets
    /// them as fast as a busy device would send them.
    pub async fn send_burst(&mut self, frames: impl IntoIterator<Item = Value>) {
        for frame in frames {
            self.ws.feed(Message::text(frame.to_string())).await.expect("send");
        }
        self.ws.flush().await.expect("flush");
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    pub async fn ack(&mut self, ids: &[&str]) {
        self.send(json!({"type": "ack", "ids": ids})).await;
    }

    /// Sends a ping and returns every frame that came before the pong. The
    /// server answers a ping only after the effects of earlier frames are
    /// committed, and after sending what was ready to send.
    pub async fn sync(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["type"] == "pong" {
                return before;
            }
            before.push(frame);
        }
    }

    /// Waits for the server to close the socket; returns the close frame.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        server_close(&mut self.ws).await
    }

    /// Closes from the device side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close arrives so the server has seen it.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, self.ws.next()).await {}
    }
}

/// A client's WebSocket to the server under test.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Waits for the server to close `ws`; its close frame, if it sent one
/// (`None` when the socket just ended).
pub async fn server_close(ws: &mut Socket) -> Option<CloseFrame> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Ids of message frames, as &str.
pub fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect()
}

/// `seq` of message frames.
pub fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect()
}

/// Connects `device` of `license` to the server at `addr` and takes every
/// message it has pending, acknowledging each; their ids, in order, after
/// checking that `seq` only rises.
pub async fn drain(addr: &str, key: &str, license: &str, device: &str) -> Vec<String> {
    let url = format!("ws://{addr}/ws/device?api_key={key}&device_id={device}&license={license}");
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    let mut phone = Device::open(request).await.expect("the device connects");
    let pending = phone.hello["pending"].as_u64().unwrap() as usize;
    let mut received = Vec::new();
    let mut last_seq = 0;
    while received.len() < pending {
        let frame = phone.expect("message").await;
        let seq = frame["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "{device}: seq {seq} after {last_seq}");
        last_seq = seq;
        let id = frame["id"].as_str().unwrap().to_owned();
        phone.ack(&[&id]).await;
        received.push(id);
    }
    received
}

/// An HTTP client whose connections come from the loopback address
/// `address` (`127.0.0.x`): one of several distinct clients for the
/// per-address limits.
pub fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(address.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}
