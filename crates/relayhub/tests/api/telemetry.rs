//! Robot telemetry (seed 002) over HTTP: written with clients nobody here
//! wrote (Python's `influxdb-client`, which speaks what Telegraf's
//! `outputs.influxdb_v2` speaks), read back as charts and logs, kept whole
//! through a SIGKILL, compacted and downsampled without changing what
//! charts show, and forwarded to a real VictoriaMetrics and InfluxDB.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use relayhub_fleet::FleetConfig;
use relayhub_fleet::model::Role;
use serde_json::{Value, json};

use crate::field;
use crate::fleet::{PASSWORD, as_user, pair_at, paired_robot, sign_in_at, signed_in, user, user_json};
use crate::helpers::{PATIENCE, TestApp};

pub(crate) fn now_s() -> i64 {
    relayhub_core::time::Timestamp::now().millis() / 1000
}

pub(crate) fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A robot's write as Telegraf sends it (`Token` auth, gzip).
pub(crate) async fn write(app: &TestApp, token: &str, precision: &str, body: &str) -> reqwest::Response {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(body.as_bytes()).unwrap();
    app.http
        .post(app.url(&format!("/api/v2/write?org=o&bucket=b&precision={precision}")))
        .header("authorization", format!("Token {token}"))
        .header("content-encoding", "gzip")
        .body(gzip.finish().unwrap())
        .send()
        .await
        .unwrap()
}

/// A chart as JSON.
pub(crate) async fn chart(app: &TestApp, user: &str, robot: i64, query: &str) -> Value {
    let response =
        as_user(app, reqwest::Method::GET, &format!("/api/robots/{robot}/metrics?{query}"), user).send().await.unwrap();
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// A signed-in user of LIC-T and a robot it paired: (access token, robot id, robot token).
pub(crate) async fn owner_and_robot(app: &TestApp, hostname: &str) -> (String, i64, String) {
    let email = format!("owner-{hostname}@example.com");
    user(app, "LIC-T", &email, Role::User).await;
    let access = signed_in(app, &email).await;
    let (robot, token) = paired_robot(app, &access, hostname).await;
    (access, robot, token)
}

#[tokio::test]
async fn influxdb_client_writes_what_charts_and_logs_read_back_to_their_owner_only() {
    if !field::available(
        "Python influxdb-client (pip install influxdb-client)",
        field::python_module("influxdb_client"),
    ) {
        return;
    }
    let app = TestApp::spawn().await;
    let (owner, robot, token) = owner_and_robot(&app, "pi-kitchen").await;
    // Aligned to 10 minutes, as chart steps are (to the epoch).
    let base = now_s() / 600 * 600 - 600;
    // Ten minutes of cpu every 10 s (usage_idle 90 + i % 6: a minute's mean
    // is 92.5), a robot trying to write as another, and two log lines.
    let script = format!(
        r#"
import sys
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
with InfluxDBClient(url=sys.argv[1], token=sys.argv[2], org="robots", enable_gzip=True) as client:
    # The health checks a client (or Grafana) makes before it writes.
    assert client.ping(), "ping"
    assert client.version() == "2.7.0", client.version()
    health = client.health()
    assert health.status == "pass" and health.name == "influxdb", health
    api = client.write_api(write_options=SYNCHRONOUS)
    points = [Point("cpu").tag("cpu", "cpu-total").tag("robot", "someone-else").field("usage_idle", 90.0 + i % 6)
              .field("busy", i % 2 == 0).time({base} + i * 10, WritePrecision.S) for i in range(60)]
    api.write(bucket="robots", record=points)
    api.write(bucket="robots", record=[
        'syslog,appname=sshd,severity=err message="Failed password for root",procid="77" {first}',
        'syslog message="disk full",level="warning",program="df" {second}',
    ], write_precision=WritePrecision.S)
"#,
        first = base + 100,
        second = base + 200
    );
    let out =
        tokio::process::Command::new("python3").args(["-c", &script, &app.url(""), &token]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let range = format!("from={}&to={}", rfc3339(base), rfc3339(base + 600));
    let view = chart(&app, &owner, robot, &format!("measurement=cpu&field=usage_idle&step=60s&{range}")).await;
    let series = view["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{view}");
    assert_eq!(series[0]["tags"]["robot"], "pi-kitchen", "the server names the robot, not the robot");
    assert_eq!(series[0]["tags"]["cpu"], "cpu-total");
    let points = series[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert_eq!(points[0], json!([base * 1000, 92.5]));
    let max = chart(&app, &owner, robot, &format!("measurement=cpu&field=usage_idle&step=5m&agg=max&{range}")).await;
    assert_eq!(max["series"][0]["points"][0], json!([base * 1000, 95.0]));
    let busy = chart(&app, &owner, robot, &format!("measurement=cpu&field=busy&step=10m&{range}")).await;
    assert_eq!(busy["series"][0]["points"][0][1], 0.5, "booleans chart as 0 and 1");

    let logs: Value = user_json(&app, &format!("/api/robots/{robot}/logs?{range}"), &owner).await;
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!((logs[0]["message"].as_str(), logs[0]["level"].as_str()), (Some("disk full"), Some("warning")));
    assert_eq!((logs[1]["program"].as_str(), logs[1]["level"].as_str()), (Some("sshd"), Some("err")));
    let errors: Value =
        user_json(&app, &format!("/api/robots/{robot}/logs?level=ERR&q=password&{range}"), &owner).await;
    assert_eq!(errors["logs"].as_array().unwrap().len(), 1);

    let robot_view: Value = user_json(&app, &format!("/api/robots/{robot}"), &owner).await;
    assert!(robot_view["last_seen_at"].is_string(), "a write updates last_seen_at: {robot_view}");

    // Another user of the license, and another license's admin: 404.
    user(&app, "LIC-T", "neighbour@example.com", Role::User).await;
    user(&app, "LIC-OTHER", "admin@other.example", Role::Admin).await;
    for email in ["neighbour@example.com", "admin@other.example"] {
        let stranger = signed_in(&app, email).await;
        for what in ["metrics?measurement=cpu", "logs", "series"] {
            let response = as_user(&app, reqwest::Method::GET, &format!("/api/robots/{robot}/{what}"), &stranger)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{email} {what}");
        }
    }
}

#[tokio::test]
async fn a_write_is_all_or_nothing_and_bad_input_gets_a_clear_error() {
    let app = TestApp::spawn().await;
    let (owner, robot, token) = owner_and_robot(&app, "pi-edge").await;
    let t = now_s() - 60;
    // Every precision, and no timestamp at all (the server's time).
    for (precision, stamp) in
        [("s", t.to_string()), ("ms", format!("{t}001")), ("us", format!("{t}000002")), ("ns", format!("{t}000000003"))]
    {
        let response = write(&app, &token, precision, &format!("prec,unit={precision} v=1 {stamp}")).await;
        assert_eq!(response.status(), 204, "{precision}");
    }
    assert_eq!(write(&app, &token, "s", "prec,unit=none v=1").await.status(), 204);
    let range = format!("from={}&to={}", rfc3339(t - 5), rfc3339(now_s() + 5));
    let all = chart(&app, &owner, robot, &format!("measurement=prec&field=v&step=1s&{range}")).await;
    let units: Vec<&str> =
        all["series"].as_array().unwrap().iter().map(|s| s["tags"]["unit"].as_str().unwrap()).collect();
    assert_eq!(units, ["ms", "none", "ns", "s", "us"]);
    for series in all["series"].as_array().unwrap().iter().filter(|s| s["tags"]["unit"] != "none") {
        assert_eq!(series["points"][0][0], t * 1000, "{series}");
    }

    // Line 3 is bad: 400 names it, and lines 1 and 2 are not stored either.
    let bad = write(&app, &token, "s", &format!("whole v=1 {t}\nwhole v=2 {}\nwhole v=three {}", t + 1, t + 2)).await;
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_line_protocol");
    assert!(error["error"]["message"].as_str().unwrap().starts_with("line 3:"), "{error}");
    let whole = chart(&app, &owner, robot, &format!("measurement=whole&{range}")).await;
    assert_eq!(whole["series"], json!([]));

    let raw = |body: Vec<u8>, encoding: Option<&str>| {
        let mut request =
            app.http.post(app.url("/api/metrics")).header("authorization", format!("Bearer {token}")).body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null)["error"]["code"].clone())
        }
    };
    assert_eq!(raw(format!("seed v=1 {t}000000000").into_bytes(), None).await.0, 204, "seed 002's route, Bearer");
    assert_eq!(raw(b"# only a comment\n\n".to_vec(), None).await.0, 204);
    assert_eq!(raw(vec![b'm', b' ', b'v', b'=', 0xff], None).await, (400, json!("invalid_line_protocol")));
    assert_eq!(raw(b"m v=1".to_vec(), Some("br")).await, (400, json!("bad_request")));
    assert_eq!(raw(b"not gzip".to_vec(), Some("gzip")).await, (400, json!("bad_request")));
    // 40 MiB of zeros is 40 KiB of gzip: refused for what it expands to.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b'0'; 40 << 20]).unwrap();
    assert_eq!(raw(bomb.finish().unwrap(), Some("gzip")).await, (413, json!("payload_too_large")));
    assert_eq!(raw(vec![b'x'; 2 << 20], None).await, (413, json!("payload_too_large")));
    let precision = app
        .http
        .post(app.url("/api/v2/write?precision=h"))
        .header("authorization", format!("Token {token}"))
        .body("m v=1");
    assert_eq!(precision.send().await.unwrap().status(), 422);

    // No token, an unknown one, and a robot switched off: 401.
    let anonymous = app.http.post(app.url("/api/v2/write")).body("m v=1").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(write(&app, "rhr_not-a-token", "s", "m v=1").await.status(), 401);
    let off = as_user(&app, reqwest::Method::PATCH, &format!("/api/robots/{robot}"), &owner)
        .json(&json!({"status": "inactive"}));
    assert_eq!(off.send().await.unwrap().status(), 200);
    assert_eq!(write(&app, &token, "s", "m v=1").await.status(), 401, "refused at once");
}

#[tokio::test]
async fn compaction_and_retention_keep_what_charts_show() {
    let app = TestApp::spawn_with(|c| {
        c.edit(|f: &mut FleetConfig| {
            f.telemetry.compact_after = Duration::from_secs(1);
            f.telemetry.maintain_interval = Duration::from_millis(100);
        })
    })
    .await;
    let (owner, robot, token) = owner_and_robot(&app, "pi-old").await;
    // A day of points 40 days ago (past the 30-day raw retention), and ten
    // minutes of recent ones, in many small writes as Telegraf sends them.
    let old = (now_s() - 40 * 86_400) / 86_400 * 86_400;
    let recent = now_s() / 60 * 60 - 600;
    for batch in 0..12 {
        let mut body = String::new();
        for i in 0..10 {
            let n = batch * 10 + i;
            body += &format!("temp,sensor=cpu t={} {}\n", 40 + n % 5, recent + n * 5);
            body += &format!("temp,sensor=cpu t={} {}\n", 40 + n % 5, old + n * 600);
        }
        assert_eq!(write(&app, &token, "s", &body).await.status(), 204);
    }
    let recent_range = format!("from={}&to={}", rfc3339(recent), rfc3339(recent + 600));
    let before = chart(&app, &owner, robot, &format!("measurement=temp&step=60s&{recent_range}")).await;
    assert_eq!(before["series"][0]["points"].as_array().unwrap().len(), 10);

    // The maintenance merges the writes, rolls them up and drops raw points
    // past their retention.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let merged = app.metric("relayhub_fleet_telemetry_compactions_total").await.unwrap_or(0.0);
        let old_raw: Value = as_user(
            &app,
            reqwest::Method::GET,
            &format!("/api/robots/{robot}/series?from={}&to={}", rfc3339(old), rfc3339(old + 86_400)),
            &owner,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if merged >= 1.0 && old_raw["series"] == json!([]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "compaction and expiry did not happen: {old_raw}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = chart(&app, &owner, robot, &format!("measurement=temp&step=60s&{recent_range}")).await;
    assert_eq!(after["series"], before["series"], "a merge changes nothing a chart shows");
    // The old day is there in its rollup: hourly maxima of points
    // every 10 minutes (40..44 repeating), from the rollup alone.
    let old_range = format!("from={}&to={}", rfc3339(old), rfc3339(old + 86_400));
    let rolled = chart(&app, &owner, robot, &format!("measurement=temp&step=1h&agg=max&{old_range}")).await;
    let points = rolled["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 20, "{rolled}");
    assert_eq!(points[0], json!([old * 1000, 44.0]));
}

/// `relayhub user create` with the password on stdin, then a robot paired
/// over HTTP: the user's access token and the robot's token.
async fn robot_of_child(database: &[String], base: &str) -> (String, String) {
    crate::process::cli(database, &["license", "create", "--number", "LIC-K"]);
    let mut create = tokio::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .args(["user", "create", "--license", "LIC-K", "--email", "kill@example.com"])
        .args(database)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let password = format!("{PASSWORD}\n");
    tokio::io::AsyncWriteExt::write_all(&mut create.stdin.take().unwrap(), password.as_bytes()).await.unwrap();
    assert!(create.wait().await.unwrap().success());
    let http = relayhub_core::http_client::client().unwrap();
    let access = sign_in_at(&http, base, "kill@example.com").await;
    let (_, token) = pair_at(&http, base, &access, "pi-k").await;
    (access, token)
}

#[tokio::test]
async fn every_204_survives_sigkill_during_a_burst() {
    use crate::helpers::{PgDatabase, database_args};
    use crate::process::ChildServer;
    const WRITERS: i64 = 8;
    const KILL_AFTER: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDatabase::create().await;
    let database = database_args(dir.path(), pg.as_ref());
    let mut server = ChildServer::start(&database).await;
    let (_, token) = robot_of_child(&database, &format!("http://{}", server.addr)).await;
    let http = relayhub_core::http_client::client().unwrap();
    let start = now_s() - 3600;
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, token, addr, accepted) = (http.clone(), token.clone(), server.addr.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut stored = Vec::new();
                // Bounded: stops at the first failure (the kill) or after 3,000.
                for n in 0..3000i64 {
                    let body = format!("crash,writer=w{w} n={n}i {}", start + n);
                    let url = format!("http://{addr}/api/v2/write?precision=s");
                    let Ok(response) =
                        http.post(url).header("authorization", format!("Token {token}")).body(body).send().await
                    else {
                        break;
                    };
                    if response.status() != 204 {
                        break;
                    }
                    stored.push(n);
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                stored
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while accepted.load(std::sync::atomic::Ordering::Relaxed) < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "the writers stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let mut stored = Vec::new();
    for writer in writers {
        stored.push(writer.await.unwrap());
    }

    let server = ChildServer::start(&database).await;
    let base = format!("http://{}", server.addr);
    // A new access token: the signing key lives in the database too.
    let access = &sign_in_at(&http, &base, "kill@example.com").await;
    let robots: Value =
        http.get(format!("{base}/api/robots")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    let robot = robots["robots"][0]["id"].as_i64().unwrap();
    for (w, stored) in stored.iter().enumerate() {
        let query = format!(
            "measurement=crash&field=n&step=1s&agg=last&tag=writer:w{w}&from={}&to={}",
            rfc3339(start),
            rfc3339(start + 3001)
        );
        let chart: Value = http
            .get(format!("{base}/api/robots/{robot}/metrics?{query}"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found: std::collections::HashSet<i64> = chart["series"][0]["points"]
            .as_array()
            .map(|points| points.iter().map(|p| p[1].as_f64().unwrap() as i64).collect())
            .unwrap_or_default();
        let lost: Vec<&i64> = stored.iter().filter(|n| !found.contains(n)).collect();
        assert!(lost.is_empty(), "writer {w}: {} of {} acknowledged writes lost: {lost:?}", lost.len(), stored.len());
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn installed(program: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"].iter().any(|dir| std::path::Path::new(dir).join(program).exists())
}

/// Five minutes of seed 002's measurements every 10 s, as Telegraf writes them.
fn telegraf_minutes(end: i64) -> String {
    let mut body = String::new();
    for i in 0..30 {
        let t = end - 300 + i * 10;
        body += &format!("cpu,cpu=cpu-total,host=pi usage_idle={},usage_user=5.5,usage_system=2.25 {t}\n", 90 + i % 5);
        body += &format!("mem,host=pi used_percent=41.5,available={}i,total=4000000000i {t}\n", 2_000_000_000 + i);
        body += &format!(
            "disk,host=pi,path=/ used_percent=31.5,free={}i,total=31000000000i {t}\n",
            21_000_000_000i64 - i * 4096
        );
        body += &format!(
            "net,host=pi,interface=eth0 bytes_recv={}i,bytes_sent={}i {t}\n",
            1_000_000 + i * 15_000,
            500_000 + i * 7_000
        );
        body += &format!("temp,host=pi,sensor=cpu_thermal temp=48.{i} {t}\n");
        body += &format!("system,host=pi uptime={}i,load1=0.5,load5=0.4,load15=0.3 {t}\n", 86_400 + i * 10);
    }
    body
}

/// A VictoriaMetrics (Debian `victoria-metrics`) on `port`, or `None`.
fn victoria_metrics(port: u16, dir: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        // Queries see what was just written (the default hides the last 30 s).
        .arg("-search.latencyOffset=0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("victoria-metrics starts")
}

/// Polls `url` until `done` says its JSON is complete.
async fn poll_json(http: &reqwest::Client, url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        if let Ok(response) = http.get(url).send().await
            && let Ok(body) = response.json::<Value>().await
            && done(&body)
        {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} never came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn forwarding_outlives_an_outage_and_feeds_victoria_metrics_and_the_dashboard() {
    if !field::available("VictoriaMetrics (apt-get install victoria-metrics)", installed("victoria-metrics")) {
        return;
    }
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        c.edit(|f: &mut FleetConfig| f.forward.url = Some(format!("http://127.0.0.1:{port}/write?db=robots")))
    })
    .await;
    let (_, _, token) = owner_and_robot(&app, "pi-forward").await;
    // The target is down: robots' writes are answered all the same.
    let end = now_s();
    assert_eq!(write(&app, &token, "s", &telegraf_minutes(end)).await.status(), 204);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.metric("relayhub_fleet_telemetry_forward_failures_total").await.unwrap_or(0.0) < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the forwarder never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let _vm = victoria_metrics(port, dir.path());

    // The backlog reaches it, tagged by the server.
    let http = relayhub_core::http_client::client().unwrap();
    let series = format!("http://127.0.0.1:{port}/api/v1/series?match[]=cpu_usage_idle&start={}", end - 600);
    let found = poll_json(&http, &series, "cpu_usage_idle in VictoriaMetrics", |v| {
        v["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let labels = &found["data"][0];
    assert_eq!(
        (labels["robot"].as_str(), labels["hostname"].as_str(), labels["db"].as_str()),
        (Some("pi-forward"), Some("pi-forward"), Some("robots"))
    );

    // Every panel of the shipped dashboard has data.
    let dashboard: Value =
        serde_json::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/robots.json")))
            .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$robot", "pi-forward");
            let url = reqwest::Url::parse_with_params(
                &format!("http://127.0.0.1:{port}/api/v1/query_range"),
                &[
                    ("query", expr.as_str()),
                    ("start", &(end - 300).to_string()),
                    ("end", &end.to_string()),
                    ("step", "30"),
                ],
            )
            .unwrap();
            let what = format!("{} ({expr})", panel["title"]);
            poll_json(&http, url.as_str(), &what, |v| v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()))
                .await;
            queries += 1;
        }
    }
    assert!(queries >= 10, "the dashboard has its panels");
    let backlog = app.metric("relayhub_fleet_telemetry_forward_sent_total").await.unwrap_or(0.0);
    assert!(backlog >= 1.0);
}

#[tokio::test]
async fn forwarding_feeds_influxdb_1() {
    if !field::available("InfluxDB 1.x (apt-get install influxdb)", installed("influxd")) {
        return;
    }
    let (port, rpc) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = dir.path().join("influxdb.conf");
    std::fs::write(
        &config,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n"
        ),
    )
    .unwrap();
    let _influxd = tokio::process::Command::new("influxd")
        .arg("-config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = relayhub_core::http_client::client().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let created = http.post(format!("http://127.0.0.1:{port}/query?q=CREATE%20DATABASE%20robots")).send().await;
        if created.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "influxd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = TestApp::spawn_with(|c| {
        c.edit(|f: &mut FleetConfig| f.forward.url = Some(format!("http://127.0.0.1:{port}/write?db=robots")))
    })
    .await;
    let (_, _, token) = owner_and_robot(&app, "pi-influx").await;
    assert_eq!(write(&app, &token, "s", &telegraf_minutes(now_s())).await.status(), 204);
    let query = format!(
        "http://127.0.0.1:{port}/query?db=robots&q=SELECT%20count(usage_idle)%20FROM%20cpu%20WHERE%20robot%3D%27pi-influx%27"
    );
    let counted =
        poll_json(&http, &query, "the points in InfluxDB", |v| v["results"][0]["series"][0]["values"][0][1] == 30)
            .await;
    assert_eq!(counted["results"][0]["series"][0]["name"], "cpu");
}
