//! Grafana on relayhub itself: the Prometheus HTTP API over the embedded
//! telemetry, held against the real thing. The same points go to relayhub
//! (line protocol, as Telegraf writes) and into a real Prometheus 2.42
//! (`promtool tsdb create-blocks-from openmetrics`, then the server on that
//! data); every query of deploy/grafana/robots.json and a set of edge cases
//! (counter resets, gaps, offsets, regex matchers, aggregations, vector
//! matching) are answered by both and must agree. A user's read token sees
//! that user's robots only, an admin's the license's, never another's.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use relayhub_fleet::model::Role;
use serde_json::{Value, json};

use crate::field;
use crate::fleet::{paired_robot, signed_in, user};
use crate::helpers::{PATIENCE, TestApp};
use crate::telemetry::{free_port, installed, now_s, write};

/// A series as the reference knows it: its metric name and tags.
type SeriesName = (String, Vec<(String, String)>);

/// One robot's points as the test writes them: (line protocol, and per
/// series its samples as written) for the reference.
struct Points {
    lines: String,
    series: BTreeMap<SeriesName, Vec<(i64, String)>>,
}

impl Points {
    fn new() -> Self {
        Self { lines: String::new(), series: BTreeMap::new() }
    }

    /// A line: `measurement,tags fields t` (`fields` as `name=value`, an
    /// `i` suffix for integers).
    fn add(&mut self, measurement: &str, tags: &[(&str, &str)], fields: &[(&str, String)], t: i64) {
        let tag_text: String = tags.iter().map(|(k, v)| format!(",{k}={v}")).collect();
        let field_text: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.lines += &format!("{measurement}{tag_text} {} {t}\n", field_text.join(","));
        for (field, value) in fields {
            let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let number = value.trim_end_matches('i').to_owned();
            self.series.entry((format!("{measurement}_{field}"), tags)).or_default().push((t, number));
        }
    }
}

/// An hour and a quarter of seed 002's measurements for robot `n`, every
/// 10 s (the network every 15 s), ending at `end`: a counter reset on
/// robot 0, a seven-minute gap on robot 2.
fn measurements(n: i64, end: i64) -> Points {
    let mut points = Points::new();
    let start = end - 75 * 60;
    let (mut received, mut sent) = (1_000 * n, 500 * n);
    for i in 0..(75 * 6) {
        let t = start + i * 10;
        if n == 2 && (200..242).contains(&i) {
            continue;
        }
        let wave = ((i * 7 + n * 3) % 13) as f64;
        let cpu = [
            ("usage_idle", format!("{}", 60.0 + wave * 2.5 - n as f64)),
            ("usage_user", format!("{}", 20.0 + wave)),
            ("usage_system", format!("{}", 5.0 + wave / 4.0)),
        ];
        points.add("cpu", &[("cpu", "cpu-total")], &cpu, t);
        let mem = [
            ("used_percent", format!("{}", 40.0 + wave)),
            ("available", format!("{}i", 4_000_000 - i * 1_000)),
            ("total", "8000000i".into()),
        ];
        points.add("mem", &[], &mem, t);
        points.add(
            "disk",
            &[("path", "/")],
            &[("used_percent", format!("{}", 30.0 + n as f64)), ("free", format!("{}i", 9_000 - i))],
            t,
        );
        points.add("temp", &[("sensor", "cpu_thermal")], &[("temp", format!("{}", 45.0 + wave / 2.0))], t);
        let load = [("load1", format!("{}", wave / 10.0)), ("load5", "0.5".into()), ("load15", "0.25".into())];
        points.add("system", &[], &load, t);
        points.add("system", &[], &[("uptime", format!("{}i", 86_400 + i * 10))], t);
        if i % 3 == 0 {
            received += 700 + (i % 5) * 100;
            sent += 300;
            if n == 0 && i == 150 {
                received = 50; // the robot restarted: the counter starts again
            }
            points.add(
                "net",
                &[("interface", "eth0")],
                &[("bytes_recv", format!("{received}i")), ("bytes_sent", format!("{sent}i"))],
                t,
            );
        }
    }
    points
}

/// A Prometheus 2.42 on `port` over the blocks in `dir`.
fn prometheus(port: u16, dir: &std::path::Path) -> tokio::process::Child {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    tokio::process::Command::new("prometheus")
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=10y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts")
}

/// The range query's matrix: per label set, its points.
type Matrix = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn matrix(answer: &Value) -> Matrix {
    answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no matrix: {answer}"))
        .iter()
        .map(|r| {
            let labels =
                r["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()));
            let points = r["values"].as_array().unwrap().iter().map(|p| {
                ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().parse::<f64>().unwrap())
            });
            (labels.collect(), points.collect())
        })
        .collect()
}

/// Where two answers differ beyond float tolerance, if anywhere.
fn difference(ours: &Matrix, theirs: &Matrix) -> Option<String> {
    if ours.keys().ne(theirs.keys()) {
        return Some(format!(
            "series {:?} vs {:?}",
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>()
        ));
    }
    for (labels, points) in ours {
        let other = &theirs[labels];
        if points.len() != other.len() {
            return Some(format!("{labels:?}: {} points vs {}", points.len(), other.len()));
        }
        for (a, b) in points.iter().zip(other) {
            let close = (a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(1.0) || (a.1.is_nan() && b.1.is_nan());
            if a.0 != b.0 || !close {
                return Some(format!("{labels:?}: {a:?} vs {b:?}"));
            }
        }
    }
    None
}

/// Parameters as a query string or form body.
fn encoded(pairs: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://relayhub/", pairs).unwrap().query().unwrap_or("").to_owned()
}

async fn read_token(app: &TestApp, access: &str) -> String {
    let response = crate::fleet::as_user(app, reqwest::Method::POST, "/api/users/me/tokens", access)
        .json(&json!({"name": "grafana"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("rhq_"), "{body}");
    token
}

async fn prom_get(http: &reqwest::Client, base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The license's robots (two of its admin's, one of a plain user's) and
/// another license's, each with its measurements written as Telegraf does.
struct Fleet {
    admin: String,
    user: String,
    stranger: String,
    names: Vec<String>,
    points: Vec<Points>,
}

async fn fleet(app: &TestApp, end: i64) -> Fleet {
    user(app, "LIC-A", "admin@prom.example", Role::Admin).await;
    user(app, "LIC-A", "user@prom.example", Role::User).await;
    user(app, "LIC-P2", "stranger@prom.example", Role::Admin).await;
    let (admin, plain, stranger) = (
        signed_in(app, "admin@prom.example").await,
        signed_in(app, "user@prom.example").await,
        signed_in(app, "stranger@prom.example").await,
    );
    let mut names = Vec::new();
    let mut all = Vec::new();
    for (n, owner) in [&admin, &admin, &plain, &stranger].into_iter().enumerate() {
        let name = format!("r{n}");
        let (_, token) = paired_robot(app, owner, &name).await;
        let points = measurements(n as i64, end);
        assert_eq!(write(app, &token, "s", &points.lines).await.status(), 204);
        names.push(name);
        all.push(points);
    }
    Fleet {
        admin: read_token(app, &admin).await,
        user: read_token(app, &plain).await,
        stranger: read_token(app, &stranger).await,
        names,
        points: all,
    }
}

/// The dashboard's queries, with `$robot` as Grafana fills it in for "all".
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(include_str!("../../../../deploy/grafana/robots.json")).unwrap();
    let mut found = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    match value {
                        Value::String(expr) if key == "expr" => out.push(expr.replace("$robot", ".+")),
                        other => walk(other, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut found);
    assert!(found.len() >= 15, "the dashboard's queries: {found:?}");
    found
}

const EDGE_CASES: &[&str] = &[
    "rate(net_bytes_recv[1m])",
    "irate(net_bytes_recv[5m])",
    "increase(net_bytes_recv[10m])",
    "delta(temp_temp[5m])",
    "rate(net_bytes_recv[5m] offset 3m)",
    "cpu_usage_idle offset 5m",
    "cpu_usage_idle{robot!~\"r0|r1\"}",
    "cpu_usage_idle{robot!=\"r2\", cpu=~\"cpu-.*\"}",
    "{__name__=~\"system_load(1|5)\"}",
    "avg_over_time(cpu_usage_idle[5m])",
    "max_over_time(temp_temp[2m]) - min_over_time(temp_temp[2m])",
    "count_over_time(cpu_usage_idle[3m])",
    "last_over_time(cpu_usage_idle[10m])",
    "quantile_over_time(0.9, cpu_usage_user[5m])",
    "sum by (robot) (rate(net_bytes_recv[5m]))",
    "avg without (robot, hostname) (cpu_usage_idle)",
    "max(mem_used_percent)",
    "count(cpu_usage_idle)",
    "topk(2, cpu_usage_user)",
    "quantile(0.5, temp_temp)",
    "mem_available / mem_total * 100",
    "cpu_usage_idle > 70",
    "cpu_usage_idle > bool 70",
    "disk_free and on(robot) cpu_usage_idle > 80",
    "cpu_usage_user unless on(robot) cpu_usage_idle{robot=\"r0\"}",
    "clamp_max(cpu_usage_idle, 65)",
    "round(temp_temp)",
    "time() - system_uptime",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayhub_answers_the_dashboard_and_the_edge_cases_as_prometheus_does() {
    if !field::available(
        "Prometheus 2.42 (apt-get install --no-install-recommends prometheus)",
        installed("prometheus") && installed("promtool"),
    ) {
        return;
    }
    let app = TestApp::spawn().await;
    let end = (now_s() / 10) * 10 - 60;
    let fleet = fleet(&app, end).await;

    // The same points into Prometheus, with the labels relayhub gives them
    // (read back from relayhub's own /series, so its naming is checked too).
    let http = relayhub_core::http_client::client().unwrap();
    let base = app.url("/prometheus");
    let (status, found) =
        prom_get(&http, &base, "/api/v1/series?match[]={__name__=~\".%2B\"}", Some(&fleet.admin)).await;
    assert_eq!(status, 200, "{found}");
    let label_sets = found["data"].as_array().unwrap();
    let (mut openmetrics, mut family) = (String::new(), String::new());
    let mut written = 0;
    for labels in label_sets {
        let labels: BTreeMap<String, String> =
            labels.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
        let robot = fleet.names.iter().position(|n| Some(n) == labels.get("robot")).expect("a robot label");
        assert_eq!(labels.get("hostname"), labels.get("robot"), "the robot's record gives its labels");
        let own: Vec<(String, String)> = labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "robot" | "hostname" | "arch"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let samples = &fleet.points[robot].series[&(labels["__name__"].clone(), own)];
        let text: Vec<String> =
            labels.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        // A family's samples stand together under one TYPE line (the
        // series come sorted by name).
        if labels["__name__"] != family {
            family = labels["__name__"].clone();
            openmetrics += &format!("# TYPE {family} gauge\n");
        }
        for (t, v) in samples {
            openmetrics += &format!("{}{{{}}} {v} {t}\n", labels["__name__"], text.join(","));
            written += 1;
        }
    }
    openmetrics += "# EOF\n";
    assert!(written > 15_000 && label_sets.len() == 3 * 15, "{} series, {written} samples", label_sets.len());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("points.om"), &openmetrics).unwrap();
    let created = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.path().join("points.om"))
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let port = free_port();
    let _prometheus = prometheus(port, dir.path());
    let reference = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    while http.get(format!("{reference}/-/ready")).send().await.ok().map(|r| r.status().as_u16()) != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "Prometheus never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (start, stop) = (end - 60 * 60, end);
    let mut differences = Vec::new();
    let queries: Vec<String> =
        dashboard_queries().into_iter().chain(EDGE_CASES.iter().map(|q| q.to_string())).collect();
    for query in &queries {
        let (start, stop) = (start.to_string(), stop.to_string());
        let path = format!(
            "/api/v1/query_range?{}",
            encoded(&[("query", query), ("start", &start), ("end", &stop), ("step", "30")])
        );
        let (status, ours) = prom_get(&http, &base, &path, Some(&fleet.admin)).await;
        assert_eq!(status, 200, "{query}: {ours}");
        let (_, theirs) = prom_get(&http, &reference, &path, None).await;
        assert_eq!(theirs["status"], "success", "{query}: {theirs}");
        let (ours, theirs) = (matrix(&ours), matrix(&theirs));
        assert!(!theirs.is_empty(), "{query}: Prometheus answers something");
        if let Some(how) = difference(&ours, &theirs) {
            differences.push(format!("{query}: {how}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} queries differ:\n{}",
        differences.len(),
        queries.len(),
        differences.join("\n")
    );

    // An instant query, as Grafana's table panels send it (form POST).
    let instant = |url: String, token: Option<String>| {
        let http = http.clone();
        async move {
            let form = encoded(&[("query", "sum by (robot) (cpu_usage_idle)"), ("time", &stop.to_string())]);
            let mut request =
                http.post(url).header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let ours = instant(format!("{base}/api/v1/query"), Some(fleet.admin.clone())).await;
    let theirs = instant(format!("{reference}/api/v1/query"), None).await;
    assert_eq!(ours["data"]["resultType"], "vector", "{ours}");
    assert_eq!(ours["data"], theirs["data"], "an instant query's vector");

    // promtool, a real Prometheus client, queries relayhub with a read token.
    let promtool = std::process::Command::new("promtool")
        .args(["query", "range", "--start", &start.to_string(), "--end", &stop.to_string(), "--step", "5m"])
        .arg(format!("--header=Authorization=Bearer {}", fleet.admin))
        .arg(&base)
        .arg("rate(net_bytes_recv{robot=\"r0\"}[5m])")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&promtool.stdout);
    assert!(promtool.status.success(), "{printed}{}", String::from_utf8_lossy(&promtool.stderr));
    assert!(printed.contains("robot=\"r0\"") && printed.contains("interface=\"eth0\""), "{printed}");

    // What each caller sees: a plain user their own robot, another
    // license's admin theirs, in every answer.
    for (token, robots) in
        [(&fleet.user, vec!["r2"]), (&fleet.stranger, vec!["r3"]), (&fleet.admin, vec!["r0", "r1", "r2"])]
    {
        let (_, values) = prom_get(&http, &base, "/api/v1/label/robot/values", Some(token)).await;
        assert_eq!(values["data"], json!(robots), "label values");
        let (_, series) = prom_get(&http, &base, "/api/v1/series?match[]=cpu_usage_idle", Some(token)).await;
        let seen: Vec<&str> = series["data"].as_array().unwrap().iter().map(|s| s["robot"].as_str().unwrap()).collect();
        assert_eq!(seen, robots, "series");
        let path = format!("/api/v1/query?query=count(cpu_usage_idle)&time={stop}");
        let (_, counted) = prom_get(&http, &base, &path, Some(token)).await;
        assert_eq!(counted["data"]["result"][0]["value"][1], json!(robots.len().to_string()), "a query");
    }
    let (_, names) = prom_get(&http, &base, "/api/v1/labels", Some(&fleet.user)).await;
    assert_eq!(
        names["data"],
        json!(["__name__", "cpu", "hostname", "interface", "path", "robot", "sensor"]),
        "label names"
    );
}

#[tokio::test]
async fn read_tokens_are_shown_once_revoked_at_once_and_bad_queries_are_refused_as_prometheus_does() {
    let app = TestApp::spawn().await;
    user(&app, "LIC-A", "grafana@prom.example", Role::User).await;
    let access = signed_in(&app, "grafana@prom.example").await;
    let (_, robot) = paired_robot(&app, &access, "pi-prom").await;
    let now = now_s();
    assert_eq!(write(&app, &robot, "s", &format!("cpu usage_idle=42 {}", now - 5)).await.status(), 204);
    let token = read_token(&app, &access).await;
    let http = relayhub_core::http_client::client().unwrap();
    let base = app.url("/prometheus");

    let (status, answer) =
        prom_get(&http, &base, &format!("/api/v1/query?query=cpu_usage_idle&time={now}"), Some(&token)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["result"][0]["value"][1], "42");
    let (status, answer) = prom_get(&http, &base, "/api/v1/query?query=cpu_usage_idle", Some(&access)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("success")), "an access token reads too");

    for (path, kind) in [
        ("/api/v1/query?query=sum(", "bad_data"),
        ("/api/v1/query", "bad_data"),
        ("/api/v1/query?query=rate(cpu_usage_idle[5m])[30m:1m]", "bad_data"),
        ("/api/v1/query?query=label_replace(cpu_usage_idle,\"a\",\"b\",\"c\",\"d\")", "bad_data"),
        ("/api/v1/query_range?query=up&start=0&end=100000&step=1", "bad_data"),
        ("/api/v1/query_range?query=up&start=10&end=5&step=1", "bad_data"),
        ("/api/v1/query_range?query=up&start=0&end=10", "bad_data"),
        ("/api/v1/query?query=up&time=yesterday", "bad_data"),
        ("/api/v1/series", "bad_data"),
    ] {
        let (status, answer) = prom_get(&http, &base, path, Some(&token)).await;
        assert_eq!(
            (status, answer["status"].as_str(), answer["errorType"].as_str()),
            (400, Some("error"), Some(kind)),
            "{path}: {answer}"
        );
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {answer}");
    }
    let (status, answer) = prom_get(&http, &base, "/api/v1/query?query=rate(x[5m])[30m:1m]", Some(&token)).await;
    assert!(answer["error"].as_str().unwrap().contains("subqueries"), "{status}: the part is named: {answer}");

    // The token is listed without its secret, made only by a signed-in
    // user, and stops working once revoked.
    let listed = crate::fleet::user_json(&app, "/api/users/me/tokens", &access).await;
    assert_eq!(listed["tokens"].as_array().map(Vec::len), Some(1), "{listed}");
    assert!(!listed.to_string().contains(&token));
    let made_with_read_token = crate::fleet::as_user(&app, reqwest::Method::POST, "/api/users/me/tokens", &token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made_with_read_token.status(), 401, "a read token makes no tokens");
    let id = listed["tokens"][0]["id"].as_str().unwrap();
    let revoked = crate::fleet::as_user(&app, reqwest::Method::DELETE, &format!("/api/users/me/tokens/{id}"), &access)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let (status, _) = prom_get(&http, &base, "/api/v1/labels", Some(&token)).await;
    assert_eq!(status, 401, "revoked: refused at once");
    let (status, _) = prom_get(&http, &base, "/api/v1/labels", None).await;
    assert_eq!(status, 401, "no token");
}
