//! Operator endpoints, the OpenAPI document, and the administration CLI.

use serde_json::{Value, json};

use crate::helpers::{PgDatabase, TestApp, database_args};

#[tokio::test]
async fn health_readiness_and_metrics_report_what_happens() {
    let app = TestApp::spawn().await;
    let health: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    for i in 0..3 {
        app.send_ok("m-phone", json!(i)).await;
    }
    let mut phone = app.connect("m-phone").await;
    let frames = phone.messages(3).await;
    phone.ack(&[frames[0]["id"].as_str().unwrap()]).await;
    phone.sync().await;

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    };
    assert_eq!(value("relayhub_messages_in_total"), 3.0);
    assert_eq!(value("relayhub_messages_sent_total"), 3.0);
    assert_eq!(value("relayhub_messages_delivered_total"), 1.0);
    assert_eq!(value("relayhub_queue_depth"), 2.0);
    assert_eq!(value("relayhub_devices_online"), 1.0);
    assert_eq!(value("relayhub_ws_connections{kind=\"device\"}"), 1.0);
    assert_eq!(value("relayhub_delivery_latency_seconds_count"), 3.0);
    assert!(value("relayhub_store_commit_batch_size_count") >= 1.0);
    assert!(text.contains(
        "relayhub_http_requests_total{method=\"POST\",route=\"/api/v1/devices/{device_id}/messages\",status=\"202\"} 3"
    ));
}

#[tokio::test]
async fn the_openapi_document_covers_the_contract_and_the_docs_page_is_served() {
    let app = TestApp::spawn().await;
    let api: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = api["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/devices/{device_id}/messages", "post"),
        ("/api/v1/devices/{device_id}/messages", "get"),
        ("/api/v1/messages", "post"),
        ("/api/v1/messages/{id}", "get"),
        ("/api/v1/inbox", "get"),
        ("/api/v1/inbox/ack", "post"),
        ("/api/v1/devices", "get"),
        ("/api/v1/devices/{device_id}", "put"),
        ("/api/v1/devices/{device_id}", "delete"),
        ("/api/v1/license", "get"),
        ("/api/v1/devices/{device_id}/settings", "get"),
        ("/api/v1/devices/{device_id}/settings", "put"),
        ("/ws/device", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} undocumented");
    }
    assert!(api["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(api["info"]["version"], env!("CARGO_PKG_VERSION"));

    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "the docs page is Swagger UI");
}

fn relayhub(database: &[String], args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .args(args)
        .args(database)
        .env_remove("RELAYHUB_DATABASE")
        .output()
        .expect("run relayhub")
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn administration_commands_print_json_and_act_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDatabase::create().await;
    let data = &database_args(dir.path(), pg.as_ref());
    let created = json_of(&relayhub(
        data,
        &[
            "license",
            "create",
            "--number",
            "LIC-9",
            "--name",
            "Acme",
            "--expires",
            "2099-12-31",
            "--max-devices",
            "3",
            "--json",
        ],
    ));
    assert_eq!(created["license"], "LIC-9");
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("rhb_"));

    let list = json_of(&relayhub(data, &["--json", "license", "list"]));
    assert_eq!(list[0]["number"], "LIC-9");
    assert_eq!(list[0]["expires"], "2099-12-31");
    assert_eq!(list[0]["max_devices"], 3);
    assert_eq!(list[0]["devices"], 0);

    let updated = json_of(&relayhub(data, &["license", "update", "LIC-9", "--max-devices", "unlimited", "--json"]));
    assert!(updated.get("max_devices").is_none());
    assert_eq!(updated["expires"], "2099-12-31");
    assert_eq!(updated["binding"], "first_use", "a new license binds each device to a secret");
    let bound = json_of(&relayhub(data, &["license", "update", "LIC-9", "--binding", "preregistered", "--json"]));
    assert_eq!(bound["binding"], "preregistered");
    assert!(bound.get("max_devices").is_none(), "an update changes only what it names");

    let second = json_of(&relayhub(data, &["license", "token", "create", "LIC-9", "--json"]));
    let shown = json_of(&relayhub(data, &["license", "show", "LIC-9", "--json"]));
    assert_eq!(shown["tokens"].as_array().unwrap().len(), 2);
    assert!(!shown.to_string().contains(token), "secrets are never shown again");
    let revoked = json_of(&relayhub(
        data,
        &["license", "token", "revoke", "LIC-9", second["token_id"].as_str().unwrap(), "--json"],
    ));
    assert_eq!(revoked["revoked"], true);
    let tokens = json_of(&relayhub(data, &["license", "token", "list", "LIC-9", "--json"]));
    assert_eq!(tokens.as_array().unwrap().iter().filter(|t| t["revoked_at"].is_string()).count(), 1);

    let key = json_of(&relayhub(data, &["apikey", "create", "--name", "android", "--json"]));
    assert!(key["key"].as_str().unwrap().starts_with("rhk_"));
    assert_eq!(key["licenses"], "all", "a key without --license is server-wide");
    let scoped = json_of(&relayhub(data, &["apikey", "create", "--name", "acme app", "--license", "LIC-9", "--json"]));
    assert_eq!(scoped["licenses"], json!(["LIC-9"]));
    let keys = json_of(&relayhub(data, &["apikey", "list", "--json"]));
    let listed = |name: &str| keys.as_array().unwrap().iter().find(|k| k["name"] == name).cloned().unwrap();
    assert_eq!(listed("android")["licenses"], "all");
    assert_eq!(listed("acme app")["licenses"], json!(["LIC-9"]));
    assert!(!keys.to_string().contains(key["key"].as_str().unwrap()));
    let list_text = String::from_utf8(relayhub(data, &["apikey", "list"]).stdout).unwrap();
    assert!(list_text.contains("all licenses") && list_text.contains("licenses LIC-9"), "{list_text}");
    let unknown = relayhub(data, &["apikey", "create", "--name", "x", "--license", "LIC-NOPE", "--json"]);
    let err: Value = serde_json::from_slice(&unknown.stderr).unwrap();
    assert_eq!(err["error"]["code"], "license_not_found", "a key is scoped only to licenses that exist");
    json_of(&relayhub(data, &["apikey", "revoke", key["id"].as_str().unwrap(), "--json"]));

    // Failures: non-zero exit, the error shape on stderr, nothing on stdout.
    let dup = relayhub(data, &["license", "create", "--number", "LIC-9", "--json"]);
    assert!(!dup.status.success());
    assert!(dup.stdout.is_empty());
    let err: Value = serde_json::from_slice(&dup.stderr).unwrap();
    assert_eq!(err["error"]["code"], "already_exists");
    let missing = relayhub(data, &["license", "show", "NOPE", "--json"]);
    let err: Value = serde_json::from_slice(&missing.stderr).unwrap();
    assert_eq!(err["error"]["code"], "license_not_found");
    let bad_date = relayhub(data, &["license", "create", "--number", "X", "--expires", "31.12.2099"]);
    assert_eq!(bad_date.status.code(), Some(2), "usage errors exit 2");

    // Without --json: sentences for people, the secret shown once.
    let text = relayhub(data, &["license", "create", "--number", "LIC-10"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("shown only once") && text.contains("rhb_"), "{text}");
}

#[tokio::test]
async fn the_demo_shows_traffic_both_ways_and_checks_it() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .args(["demo", "--devices", "4", "--messages", "400", "--records", "3"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("delivered   400/400 messages, 0 duplicates, 0 out of order"), "{stdout}");
    assert!(stdout.contains("returned    12 records"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");
}
