//! Several nodes on one PostgreSQL database: everything works across nodes
//! as on one, a killed node's devices carry on elsewhere, and the cluster
//! rides out a PostgreSQL restart and a proxy in front.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::field::{self, FieldLog};
use crate::helpers::{PATIENCE, POSTGRES_ENV, PgDatabase, TestApp};
use crate::private_pg::PrivatePostgres;
use crate::process::{ChildServer, cli};

/// How long traffic through a cluster may take to get going, and devices
/// to receive everything, on a loaded 2-core CI machine where every commit
/// waits for a busy disk: a bound that fails a stuck test, not a speed.
const TRAFFIC_PATIENCE: Duration = Duration::from_secs(60);

/// What each device must end up with, once the producers are done.
type ExpectedTx = watch::Sender<Option<HashSet<String>>>;
type ExpectedRx = watch::Receiver<Option<HashSet<String>>>;

pub fn on_postgres() -> bool {
    field::available(&format!("PostgreSQL ({POSTGRES_ENV})"), std::env::var_os(POSTGRES_ENV).is_some())
}

#[tokio::test]
async fn nodes_share_queues_presence_settings_and_the_inbox() {
    if !on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let c = a.join().await;

    // Posted on A, delivered to a device on B.
    let mut phone = b.connect("roamer").await;
    let started = std::time::Instant::now();
    let id = a.send_ok("roamer", json!({"from": "A"})).await;
    assert_eq!(phone.expect("message").await["id"], id.as_str());
    eprintln!("cross-node delivery: {:?} from post to frame", started.elapsed());
    let online: Value = c.get("/api/v1/devices/roamer").send().await.unwrap().json().await.unwrap();
    assert_eq!(online["online"], true, "presence is shared");

    // The device moves to C: B's socket is closed, and C gets the rest.
    let mut moved = c.connect("roamer").await;
    assert_eq!(u16::from(phone.closed().await.expect("close frame").code), 4000);
    assert_eq!(moved.expect("message").await["id"], id.as_str(), "unacknowledged: sent again");
    moved.ack(&[&id]).await;
    moved.sync().await;
    assert_eq!(a.receipt(&id).await["status"], "delivered");
    let next = b.send_ok("roamer", json!({"from": "B"})).await;
    assert_eq!(moved.expect("message").await["id"], next.as_str());

    // A long poll on A wakes for a record published through C.
    let poll = {
        let request = a.get("/api/v1/inbox?wait=20");
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    a.await_metric("relayhub_inbox_waiting", 1.0).await;
    moved.send(json!({"type": "publish", "ref": "r1", "data": {"km": 12}})).await;
    let woke = tokio::time::timeout(PATIENCE, poll).await.expect("woken across nodes").unwrap();
    assert_eq!(woke["records"][0]["data"], json!({"km": 12}));

    // Settings changed through B reach the device on C.
    let put = b
        .http
        .put(b.url("/api/v1/devices/roamer/settings"))
        .bearer_auth(&b.token)
        .json(&json!({"version": 0, "settings": {"route": 7}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let pushed = loop {
        let frame = moved.next().await;
        if frame["type"] == "settings" {
            break frame;
        }
    };
    assert_eq!(pushed["settings"], json!({"route": 7}));

    // Unbinding on A closes the socket on C.
    let del = a.http.delete(a.url("/api/v1/devices/roamer")).bearer_auth(&a.token).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(u16::from(moved.closed().await.expect("close frame").code), 4004);
}

/// Devices spread over `nodes`, each running until it has `expected`.
fn spawn_devices(
    nodes: &[String],
    count: usize,
    key: &str,
    license: &str,
    expected: &BTreeMap<String, ExpectedRx>,
) -> Vec<tokio::task::JoinHandle<FieldLog>> {
    (0..count)
        .map(|i| {
            let device = format!("dev-{i}");
            let mut order: Vec<String> = nodes.to_vec();
            order.rotate_left(i % nodes.len());
            tokio::spawn(field::run(
                order,
                device.clone(),
                key.to_owned(),
                license.to_owned(),
                expected[&device].clone(),
                2 * TRAFFIC_PATIENCE,
            ))
        })
        .collect()
}

/// A back-office system posting through one node.
struct Producer {
    http: reqwest::Client,
    node: String,
    token: String,
    name: &'static str,
    /// Messages accepted so far, by all producers sharing it.
    accepted: Arc<AtomicUsize>,
}

impl Producer {
    /// Posts `count` messages round-robin over `devices`, with idempotency
    /// keys, retrying 503s and lost connections for up to a minute per
    /// message, unless `give_up_when_gone` (its node is to be killed).
    /// Returns the accepted (device, id) and how many 503s it got.
    async fn run(self, count: usize, devices: usize, give_up_when_gone: bool) -> (Vec<(String, String)>, usize) {
        let mut accepted = Vec::new();
        let mut refused = 0;
        'messages: for n in 0..count {
            let device = format!("dev-{}", n % devices);
            let deadline = tokio::time::Instant::now() + TRAFFIC_PATIENCE;
            while tokio::time::Instant::now() < deadline {
                let response = self
                    .http
                    .post(format!("http://{}/api/v1/devices/{device}/messages", self.node))
                    .bearer_auth(&self.token)
                    .header("Idempotency-Key", format!("{}-{n}", self.name))
                    .json(&json!({"producer": self.name, "n": n}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 202 => {
                        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                        accepted.push((device, id));
                        self.accepted.fetch_add(1, Ordering::Relaxed);
                        continue 'messages;
                    }
                    Ok(r) => {
                        assert_eq!(r.status(), 503, "only storage outages may refuse: {:?}", r.text().await);
                        refused += 1;
                    }
                    Err(_) if give_up_when_gone => break 'messages,
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{}: message {n} was never accepted", self.name);
        }
        (accepted, refused)
    }
}

/// Waits for the devices and checks that each got everything promised to
/// it, in order on every connection.
async fn settle(
    promised: BTreeMap<String, HashSet<String>>,
    senders: BTreeMap<String, ExpectedTx>,
    devices: Vec<tokio::task::JoinHandle<FieldLog>>,
) -> Vec<FieldLog> {
    for (device, sender) in senders {
        sender.send_replace(Some(promised.get(&device).cloned().unwrap_or_default()));
    }
    let mut logs = Vec::new();
    for device in devices {
        let log = device.await.unwrap();
        let want = promised.get(&log.device).cloned().unwrap_or_default();
        let lost: Vec<_> = want.difference(&log.received).collect();
        assert!(lost.is_empty(), "{}: {} accepted messages never arrived", log.device, lost.len());
        assert!(log.out_of_order.is_empty(), "{}: {:?}", log.device, log.out_of_order);
        logs.push(log);
    }
    logs
}

fn expectations(count: usize) -> (BTreeMap<String, ExpectedTx>, BTreeMap<String, ExpectedRx>) {
    (0..count)
        .map(|i| {
            let (tx, rx) = watch::channel(None);
            let name = format!("dev-{i}");
            ((name.clone(), tx), (name, rx))
        })
        .unzip()
}

#[tokio::test]
async fn a_killed_nodes_devices_reconnect_elsewhere_and_get_everything_in_order() {
    if !on_postgres() {
        return;
    }
    const DEVICES: usize = 9;
    const PER_PRODUCER: usize = 300;
    let pg = PgDatabase::create().await.unwrap();
    let database = pg.args();
    let token = cli(&database, &["license", "create", "--number", "LIC-C"])["token"].as_str().unwrap().to_owned();
    let key = cli(&database, &["apikey", "create"])["key"].as_str().unwrap().to_owned();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(ChildServer::start(&database).await);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let (senders, receivers) = expectations(DEVICES);
    let devices = spawn_devices(&addrs, DEVICES, &key, "LIC-C", &receivers);

    let http = relayhub_core::http_client::client().unwrap();
    // Every device on its own node before anything happens, so that the
    // killed node surely has devices to lose.
    await_online(&http, &addrs[0], &token, DEVICES).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = ["p0", "p1", "p2"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let node = addrs[i].clone();
            let producer =
                Producer { http: http.clone(), node, token: token.clone(), name, accepted: accepted.clone() };
            tokio::spawn(producer.run(PER_PRODUCER, DEVICES, i == 2))
        })
        .collect();
    // A third of the way through, node 2 dies without warning.
    let deadline = tokio::time::Instant::now() + TRAFFIC_PATIENCE;
    while accepted.load(Ordering::Relaxed) < PER_PRODUCER {
        assert!(tokio::time::Instant::now() < deadline, "traffic never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes[2].child.start_kill().unwrap();
    nodes[2].child.wait().await.unwrap();

    let mut promised: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for producer in producers {
        for (device, id) in producer.await.unwrap().0 {
            promised.entry(device).or_default().insert(id);
        }
    }
    let total: usize = promised.values().map(HashSet::len).sum();
    assert!(total >= 2 * PER_PRODUCER, "the surviving producers finished: {total}");
    let logs = settle(promised, senders, devices).await;
    let killed = &addrs[2];
    let on_killed: Vec<_> = logs.iter().filter(|l| l.connections.contains(killed)).collect();
    assert!(!on_killed.is_empty(), "some devices were on the killed node: {logs:?}");
    for log in on_killed {
        assert_ne!(log.connections.last(), Some(killed), "{} reconnected elsewhere", log.device);
    }
}

/// Waits until `count` devices `dev-0..` are online, as node `addr` sees it.
async fn await_online(http: &reqwest::Client, addr: &str, token: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for i in 0..count {
        loop {
            let url = format!("http://{addr}/api/v1/devices/dev-{i}");
            let device: Value = http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            if device["online"] == true {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "dev-{i} never came online: {device}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_postgres_restart_under_load_answers_503_meanwhile_and_loses_nothing() {
    let Some(pg) = PrivatePostgres::start() else {
        field::available("PostgreSQL programs (RELAYHUB_TEST_PG_BIN)", false);
        return;
    };
    const DEVICES: usize = 6;
    const PER_PRODUCER: usize = 200;
    let a = TestApp::spawn_on(&pg.url).await;
    let b = a.join().await;
    let addrs = vec![a.addr.to_string(), b.addr.to_string()];
    let (senders, receivers) = expectations(DEVICES);
    let devices = spawn_devices(&addrs, DEVICES, &a.api_key, &a.license, &receivers);
    let accepted = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = ["q0", "q1"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let producer = Producer {
                http: a.http.clone(),
                node: addrs[i].clone(),
                token: a.token.clone(),
                name,
                accepted: accepted.clone(),
            };
            tokio::spawn(producer.run(PER_PRODUCER, DEVICES, false))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + TRAFFIC_PATIENCE;
    while accepted.load(Ordering::Relaxed) < PER_PRODUCER / 2 {
        assert!(tokio::time::Instant::now() < deadline, "traffic never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let pg = Arc::new(pg);
    let stopping = pg.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await.unwrap();
    // While the database is down: 503 with the error shape, not ready.
    let probe = a.send("dev-0", json!("while down")).await;
    assert_eq!(probe.status(), 503);
    assert_eq!(probe.json::<Value>().await.unwrap()["error"]["code"], "storage_unavailable");
    assert_eq!(b.http.get(b.url("/readyz")).send().await.unwrap().status(), 503);
    let starting = pg.clone();
    tokio::task::spawn_blocking(move || starting.start_again()).await.unwrap();

    let mut promised: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut refused = 0;
    for producer in producers {
        let (ids, r) = producer.await.unwrap();
        refused += r;
        for (device, id) in ids {
            promised.entry(device).or_default().insert(id);
        }
    }
    eprintln!("503s seen by the producers during the restart: {refused}");
    // Nobody restarted the nodes: they reconnected by themselves.
    settle(promised, senders, devices).await;
    for node in [&a, &b] {
        node.await_ready().await;
    }
}

/// nginx with the shipped site configuration, in front of `nodes`.
pub struct Nginx {
    binary: &'static str,
    pub addr: String,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Through the master, so that its workers stop too.
        let _ = std::process::Command::new(self.binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .args(["-s", "stop"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Nginx {
    pub async fn start(nodes: &[String]) -> Option<Self> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| std::path::Path::new(p).exists())?;
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let site = include_str!("../../../../deploy/nginx/relayhub.conf");
        let mut upstreams = String::new();
        for node in nodes {
            upstreams.push_str(&format!("    server {node} max_fails=1 fail_timeout=5s;\n"));
        }
        let mut rendered = String::new();
        for line in site.lines() {
            if line.trim_start().starts_with("server 127.0.0.1:808") {
                continue;
            }
            rendered.push_str(&line.replace("listen 80;", &format!("listen 127.0.0.1:{port};")));
            rendered.push('\n');
            if line.trim_start().starts_with("least_conn;") {
                rendered.push_str(&upstreams);
            }
        }
        let prefix = dir.path().display().to_string();
        let main = format!(
            "daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log; worker_processes 1;
             {user}
             events {{ worker_connections 1024; }}
             http {{ access_log off; client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
                     fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
                     {rendered} }}",
            user = if crate::private_pg::is_root() { "user root;" } else { "" },
        );
        std::fs::write(dir.path().join("nginx.conf"), main).ok()?;
        let child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not start: {:?}",
                std::fs::read_to_string(dir.path().join("error.log"))
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Self { binary, addr, dir, _child: child })
    }
}

#[tokio::test]
async fn devices_and_the_back_office_work_through_nginx() {
    if !on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let Some(nginx) = Nginx::start(&[a.addr.to_string(), b.addr.to_string()]).await else {
        field::available("nginx", false);
        return;
    };
    // Devices and the back-office only know nginx's address.
    let mut phones = Vec::new();
    for i in 0..4 {
        let url = format!("ws://{}/ws/device?api_key={}&device_id=n-{i}&license=LIC-A", nginx.addr, a.api_key);
        let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        phones.push(crate::helpers::Device::open(request).await.expect("a socket through nginx"));
    }
    let via = |path: &str| format!("http://{}{path}", nginx.addr);
    let on_a = a.metric("relayhub_devices_online").await.unwrap_or(0.0);
    let on_b = b.metric("relayhub_devices_online").await.unwrap_or(0.0);
    assert_eq!(on_a + on_b, 4.0);
    assert!(on_a >= 1.0 && on_b >= 1.0, "least_conn spread the sockets: {on_a} / {on_b}");
    for (i, phone) in phones.iter_mut().enumerate() {
        let response = a
            .http
            .post(via(&format!("/api/v1/devices/n-{i}/messages")))
            .bearer_auth(&a.token)
            .json(&json!({"n": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let frame = phone.expect("message").await;
        assert_eq!(frame["data"], json!({"n": i}));
        phone.ack(&[frame["id"].as_str().unwrap()]).await;
        assert!(phone.sync().await.is_empty());
    }
    // A long poll through nginx wakes when a device publishes.
    let poll = {
        let request = a.http.get(via("/api/v1/inbox?wait=20")).bearer_auth(&a.token);
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    let waiting = || async {
        a.metric("relayhub_inbox_waiting").await.unwrap_or(0.0)
            + b.metric("relayhub_inbox_waiting").await.unwrap_or(0.0)
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while waiting().await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    phones[0].send(json!({"type": "publish", "ref": "via-nginx", "data": true})).await;
    let woke = tokio::time::timeout(PATIENCE, poll).await.unwrap().unwrap();
    assert_eq!(woke["records"][0]["ref"], "via-nginx");
}
