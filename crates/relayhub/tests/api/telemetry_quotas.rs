//! Telemetry quotas (issue 33): a robot whose Telegraf writes a series per
//! point, a robot writing too fast, and a license whose store is full are
//! each refused whole, with the limit they met named and counted on
//! `/metrics`, while every other robot's writes go on.

use std::time::Duration;

use relayhub_fleet::FleetConfig;
use relayhub_fleet::model::Role;
use serde_json::{Value, json};

use crate::fleet::{paired_robot, signed_in, user};
use crate::helpers::{PATIENCE, TestApp};
use crate::telemetry::{chart, now_s, owner_and_robot, rfc3339, write};

/// Ten CPUs, four fields each: 40 series, as Telegraf's `inputs.cpu` writes.
fn cpus(t: i64) -> String {
    (0..10)
        .map(|cpu| format!("cpu,cpu=cpu{cpu} usage_idle=90,usage_user=5,usage_system=3,usage_iowait=2 {t}\n"))
        .collect()
}

/// The error body's code and message.
async fn refusal(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    (status, error["code"].as_str().unwrap_or_default().into(), error["message"].as_str().unwrap_or_default().into())
}

/// The series a robot's chart of `measurement` shows around `t`.
async fn stored(app: &TestApp, owner: &str, robot: i64, measurement: &str, t: i64) -> Value {
    let range = format!("from={}&to={}", rfc3339(t - 60), rfc3339(t + 60));
    chart(app, owner, robot, &format!("measurement={measurement}&step=1s&{range}")).await["series"].clone()
}

async fn limited(app: &TestApp, limit: &str) -> f64 {
    app.metric(&format!("relayhub_fleet_telemetry_limited_total{{limit=\"{limit}\"}}")).await.unwrap_or(-1.0)
}

#[tokio::test]
async fn a_tag_that_changes_with_every_point_is_refused_whole_and_other_robots_write_on() {
    let app = TestApp::spawn_with(|c| c.edit(|f: &mut FleetConfig| f.telemetry.max_series_per_robot = 50)).await;
    assert_eq!(limited(&app, "max_series_per_robot").await, 0.0, "the limit's counter is there from the start");
    let (owner, robot, token) = owner_and_robot(&app, "pi-pid").await;
    let t = now_s() - 60;
    assert_eq!(write(&app, &token, "s", &cpus(t)).await.status(), 204, "40 series fit in 50");

    // procstat with the PID as a tag: a new series per process, 15 of them.
    let pids: String = (0..15).map(|i| format!("procstat,pid={} cpu_usage=1 {t}\n", 1000 + i)).collect();
    let (status, code, message) = refusal(write(&app, &token, "s", &format!("{pids}cpu v=1 {t}")).await).await;
    assert_eq!((status, code.as_str()), (422, "too_many_series"), "{message}");
    assert!(message.contains("has 40 series") && message.contains("16 new"), "says how many: {message}");
    assert!(message.contains("max_series_per_robot (50)"), "names the setting: {message}");
    assert!(message.contains("procstat,pid=10"), "names some of the new series: {message}");
    assert_eq!(stored(&app, &owner, robot, "procstat", t).await, json!([]), "nothing of the write was stored");
    let cpu = stored(&app, &owner, robot, "cpu", t).await;
    let fields: Vec<&str> = cpu.as_array().unwrap().iter().filter_map(|s| s["field"].as_str()).collect();
    assert_eq!(fields.len(), 40, "the first write's series, not the refused one's: {fields:?}");
    assert!(!fields.contains(&"v"));
    assert_eq!(limited(&app, "max_series_per_robot").await, 1.0);

    // The robot's known series still go in, and so do a few new ones.
    let few: String = (0..10).map(|i| format!("procstat,pid={} cpu_usage=1 {t}\n", 2000 + i)).collect();
    assert_eq!(write(&app, &token, "s", &format!("{few}{}", cpus(t + 2))).await.status(), 204, "50 of 50");
    assert_eq!(stored(&app, &owner, robot, "procstat", t).await.as_array().unwrap().len(), 10);

    // Another robot of the same license has its own count.
    let (_, _, calm) = owner_and_robot(&app, "pi-calm").await;
    assert_eq!(write(&app, &calm, "s", &format!("{few}{}", cpus(t))).await.status(), 204);

    // A write that alone holds more than the bound, from a new robot.
    let (_, _, fresh) = owner_and_robot(&app, "pi-fresh").await;
    let many: String = (0..60).map(|i| format!("procstat,pid={i} cpu_usage=1 {t}\n")).collect();
    let (status, code, message) = refusal(write(&app, &fresh, "s", &many).await).await;
    assert_eq!((status, code.as_str()), (422, "too_many_series"));
    assert!(message.contains("the write alone holds 60 series"), "{message}");
    assert_eq!(limited(&app, "max_series_per_robot").await, 2.0);

    // The count lives in the database (every node, every restart): the
    // 51st series is still refused after a restart.
    let app = app.restart().await;
    let (status, code, _) = refusal(write(&app, &token, "s", &format!("procstat,pid=1 cpu_usage=1 {t}")).await).await;
    assert_eq!((status, code.as_str()), (422, "too_many_series"));
    assert_eq!(write(&app, &token, "s", &cpus(t + 3)).await.status(), 204, "known series still go in");
}

#[tokio::test]
async fn a_robot_past_its_points_per_minute_waits_and_others_write_on() {
    let app = TestApp::spawn_with(|c| c.edit(|f: &mut FleetConfig| f.telemetry.max_points_per_minute = 120)).await;
    let (owner, robot, token) = owner_and_robot(&app, "pi-fast").await;
    let t = now_s() - 60;
    let lines = |measurement: &str, n: i64| -> String {
        (0..n).map(|i| format!("{measurement} v={i} {}\n", t * 1000 + i)).collect()
    };
    assert_eq!(write(&app, &token, "ms", &lines("first", 100)).await.status(), 204);

    let response = write(&app, &token, "ms", &lines("late", 60)).await;
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let (status, code, message) = refusal(response).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"), "{message}");
    // 20 points are left; 40 more come back in 20 s.
    assert!((15..=21).contains(&retry), "Retry-After {retry}");
    assert!(message.contains("max_points_per_minute (120)"), "{message}");
    assert_eq!(stored(&app, &owner, robot, "late", t).await, json!([]), "nothing of the write was stored");
    assert_eq!(limited(&app, "max_points_per_minute").await, 1.0);
    assert_eq!(write(&app, &token, "ms", &lines("small", 20)).await.status(), 204, "what is left still fits");

    let (_, _, other) = owner_and_robot(&app, "pi-slow").await;
    assert_eq!(write(&app, &other, "ms", &lines("first", 100)).await.status(), 204, "each robot has its own");
}

#[tokio::test]
async fn a_full_license_store_refuses_writes_and_other_licenses_write_on() {
    let app = TestApp::spawn_with(|c| c.edit(|f: &mut FleetConfig| f.telemetry.max_bytes_per_license = 6_000)).await;
    let (owner, robot, token) = owner_and_robot(&app, "pi-full").await;
    let t = now_s() - 3_600;
    // Values that do not compress away: a few hundred bytes a write.
    let batch = |n: i64| -> String {
        (0..50).map(|i| format!("load v={} {}\n", (n * 7_919 + i * 104_729) % 1_000_003, t + n * 50 + i)).collect()
    };
    let mut accepted = 0;
    let refused = loop {
        let response = write(&app, &token, "s", &batch(accepted)).await;
        if response.status() != 204 {
            break refusal(response).await;
        }
        accepted += 1;
        assert!(accepted < 200, "6,000 bytes never filled up");
    };
    let (status, code, message) = refused;
    assert_eq!((status, code.as_str()), (409, "telemetry_store_full"), "{message}");
    assert!(message.contains("max_bytes_per_license (6000)"), "{message}");
    assert!(accepted >= 2, "a few writes fit first: {accepted}");
    // Just the written span, so that a point is a step of the chart.
    let range = format!("from={}&to={}", rfc3339(t), rfc3339(t + (accepted + 1) * 50));
    let view = chart(&app, &owner, robot, &format!("measurement=load&step=1s&{range}")).await;
    let points = view["series"][0]["points"].as_array().unwrap().len() as i64;
    assert_eq!(points, accepted * 50, "the refused write stored nothing");
    assert_eq!(limited(&app, "max_bytes_per_license").await, 1.0);

    user(&app, "LIC-OTHER", "other@example.com", Role::User).await;
    let access = signed_in(&app, "other@example.com").await;
    let (_, other) = paired_robot(&app, &access, "pi-elsewhere").await;
    assert_eq!(write(&app, &other, "s", &batch(0)).await.status(), 204, "another license has its own store");

    // A restarted node (as any node) measures the store itself.
    let app = app.restart().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = write(&app, &token, "s", &format!("tiny v=1 {t}")).await;
        if response.status() == 409 {
            break;
        }
        assert_eq!(response.status(), 204);
        assert!(tokio::time::Instant::now() < deadline, "the new node never measured the license's store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
