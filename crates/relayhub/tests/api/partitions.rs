//! The embedded database spread over partition files (`--partitions`):
//! licenses in different files each keep their own queues, inbox and
//! settings, and see nothing of each other's; a single-file data directory
//! upgrades without moving anything; a backup copies every file and serves
//! as it is. (`.ci/run` also runs the whole suite with partitions.)

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::{TestApp, drain};
use crate::process::{ChildServer, cli};

/// Three partitions: license pk 1 (`LIC-A`, the app's own) lives in
/// partition 1, pk 2 in partition 2, pk 3 in the main file.
async fn three_partitions() -> TestApp {
    TestApp::spawn_embedded(|config| config.partitions = 3).await
}

/// `GET path` with a license's bearer token: the status and the body.
async fn get_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = app.http.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn licenses_in_different_partitions_keep_their_own_queues_inbox_and_settings() {
    let app = three_partitions().await;
    let (token_b, _) = app.create_license("LIC-B", None).await;
    let (token_c, _) = app.create_license("LIC-C", None).await;
    let tenants = [("LIC-A", app.token.clone()), ("LIC-B", token_b), ("LIC-C", token_c)];
    for n in 1..=2 {
        assert!(app.config.data.join(format!("relayhub.p{n}.db")).is_file(), "partition file {n}");
    }

    for (license, token) in &tenants {
        for n in 0..5 {
            let response = app.send_as(token, &format!("till-{license}"), json!({"license": license, "n": n})).await;
            assert_eq!(response.status(), 202, "{license}");
            assert_eq!(response.json::<Value>().await.unwrap()["seq"], n + 1, "{license}: one sequence per device");
        }
        // A device is one license's, whichever file its queue is in.
        if *license != "LIC-A" {
            let other = app.send_as(token, "till-LIC-A", json!("not yours")).await;
            assert_eq!(other.status(), 404, "{license} reached LIC-A's device");
        }
        let (_, devices) = get_as(&app, token, "/api/v1/devices").await;
        assert_eq!(devices["total"], 1, "{license}: {devices}");
        assert_eq!(devices["devices"][0]["pending"], 5, "{license}: {devices}");
    }
    for (license, token) in &tenants {
        let device = format!("till-{license}");
        let ids = drain(&app.addr.to_string(), &app.api_key, license, &device).await;
        assert_eq!(ids.len(), 5, "{license}: every message once, in order");
        let receipt = format!("/api/v1/messages/{}", ids[0]);
        assert_eq!(get_as(&app, token, &receipt).await.1["device_id"], device.as_str());
        for (other, other_token) in &tenants {
            if other != license {
                assert_eq!(get_as(&app, other_token, &receipt).await.0, 404, "{other} saw {license}'s receipt");
            }
        }

        // Records go up to the license's own inbox, from a device that
        // connecting binds (main file) and whose records are the
        // partition's.
        let mut phone = app.try_connect(&format!("scanner-{license}"), &app.api_key, license).await.expect("connects");
        phone.send(json!({"type": "publish", "ref": "r1", "data": {"from": license}})).await;
        phone.expect("published").await;

        // A back-office settings write binds a new device in the main file
        // and keeps its settings in the license's partition.
        let new = format!("new-{license}");
        let put = app
            .http
            .put(app.url(&format!("/api/v1/devices/{new}/settings")))
            .bearer_auth(token)
            .json(&json!({"version": 0, "settings": {"printer": license}}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200, "{license}: {:?}", put.text().await);
        let (bound, _) = get_as(&app, token, &format!("/api/v1/devices/{new}")).await;
        assert_eq!(bound, 200, "{license}: the settings write bound the device");
        let (_, settings) = get_as(&app, token, &format!("/api/v1/devices/{new}/settings")).await;
        assert_eq!(settings["settings"], json!({"printer": license}));
    }
    for (license, token) in &tenants {
        let (_, inbox) = get_as(&app, token, "/api/v1/inbox").await;
        let records = inbox["records"].as_array().unwrap();
        assert_eq!(records.len(), 1, "{license}: {records:?}");
        assert_eq!(records[0]["data"], json!({"from": license}));
    }
}

#[tokio::test]
async fn a_device_limit_holds_when_binding_and_queueing_are_in_different_files() {
    let app = three_partitions().await;
    // pk 2: partition 2.
    let (token, _) = app.create_license("LIC-2", Some(1)).await;
    let batch = json!({"messages": [
        {"device_id": "first", "data": 1},
        {"device_id": "second", "data": 2},
    ]});
    let refused = app.http.post(app.url("/api/v1/messages")).bearer_auth(&token).json(&batch).send().await.unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "device_limit");
    let (_, license) = get_as(&app, &token, "/api/v1/license").await;
    assert_eq!(license["devices"], 0, "a refused call binds nothing");

    assert_eq!(app.send_as(&token, "first", json!(1)).await.status(), 202);
    let second = app.send_as(&token, "second", json!(2)).await;
    assert_eq!(second.status(), 409);
    let ids = drain(&app.addr.to_string(), &app.api_key, "LIC-2", "first").await;
    assert_eq!(ids.len(), 1);
}

fn data(dir: &Path, partitions: usize) -> Vec<String> {
    vec!["--data".into(), dir.display().to_string(), "--partitions".into(), partitions.to_string()]
}

async fn post(server: &ChildServer, token: &str, device: &str, n: i64) -> Value {
    let url = format!("http://{}/api/v1/devices/{device}/messages", server.addr);
    let http = relayhub_core::http_client::client().unwrap();
    let response = http.post(url).bearer_auth(token).json(&json!({"n": n})).send().await.unwrap();
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_single_file_directory_gains_partitions_without_moving_anything_and_backs_up_whole() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let token_u =
        cli(&data(&live, 1), &["license", "create", "--number", "LIC-U"])["token"].as_str().unwrap().to_owned();
    let key = cli(&data(&live, 1), &["apikey", "create"])["key"].as_str().unwrap().to_owned();
    let mut server = ChildServer::start(&data(&live, 1)).await;
    for n in 1..=3 {
        post(&server, &token_u, "u1", n).await;
    }
    server.child.kill().await.unwrap();
    assert!(!live.join("relayhub.p1.db").exists(), "one partition is the main file alone");

    // Four partitions now: the old license stays in the main file, its
    // queue goes on where it was; a new license goes to partition 2.
    let token_v =
        cli(&data(&live, 4), &["license", "create", "--number", "LIC-V"])["token"].as_str().unwrap().to_owned();
    let server = ChildServer::start(&data(&live, 4)).await;
    assert_eq!(post(&server, &token_u, "u1", 4).await["seq"], 4);
    for n in 1..=2 {
        assert_eq!(post(&server, &token_v, "v1", n).await["seq"], n);
    }
    for n in 1..=3 {
        assert!(live.join(format!("relayhub.p{n}.db")).is_file(), "partition file {n}");
    }

    let into = dir.path().join("copy");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .arg("backup")
        .arg(&into)
        .arg("--json")
        .args(data(&live, 4))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["partitions"], 3, "{report}");
    for n in 1..=3 {
        assert!(into.join(format!("relayhub.p{n}.db")).is_file(), "copy of partition file {n}");
    }
    drop(server);

    // The copy serves as it is, even told to spread new licenses over
    // fewer files: the partitions its licenses live in are opened anyway.
    let copy = ChildServer::start(&data(&into, 1)).await;
    let addr = copy.addr.to_string();
    assert_eq!(drain(&addr, &key, "LIC-U", "u1").await.len(), 4);
    assert_eq!(drain(&addr, &key, "LIC-V", "v1").await.len(), 2);
}
