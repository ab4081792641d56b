//! Clients generated from `/openapi.json` and fuzzers nobody here wrote:
//! the document passes a strict OpenAPI validator (PyPI
//! `openapi-spec-validator`), and schemathesis (PyPI) drives every
//! operation with every check — no server error, no status or body the
//! document does not describe, valid data accepted, invalid data refused.
//! Every capability's routes are covered without a line here.

use std::time::Duration;

use relayhub_fleet::FleetConfig;
use relayhub_relay::RelayConfig;

use crate::field;
use crate::helpers::TestApp;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/schemathesis.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_strict_and_schemathesis_finds_nothing() {
    let present = field::python_module("schemathesis") && field::python_module("openapi_spec_validator");
    if !field::available("Python schemathesis and openapi-spec-validator (pip install …)", present) {
        return;
    }
    // Long polls as short as the document then says, so the run stays short;
    // the guessing limits out of the way, so the fuzzer reaches the logic
    // behind them (tests/api/fleet.rs shows the limits work).
    let app = TestApp::spawn_with(|c| {
        c.edit(|r: &mut RelayConfig| r.max_wait = Duration::from_secs(1));
        c.edit(|f: &mut FleetConfig| {
            f.attempts = 100_000;
            f.pairings_per_address = 100_000;
        });
        c.edit(|r: &mut relayhub_registry::RegistryConfig| {
            r.rate_per_address = relayhub_registry::limits::Rate { per_second: 0, burst: 0 };
            // The documents' example instance is on the internet, which
            // tests do not reach: fail fast, within the fuzzer's patience.
            r.connect_timeout = Duration::from_secs(1);
            r.timeout = Duration::from_secs(2);
        });
        c.edit(|r: &mut relayhub_rail::RailConfig| r.engineer_attempts_per_minute = 100_000);
    })
    .await;
    let (user_token, robot_token) = crate::fleet::admin_with_robot(&app).await;
    let (_, rail_robot_token) = crate::rail::robot(&app, &app.token, &crate::rail::Key::ed25519(1)).await;
    let operator_token = crate::admin_api::operator_token(&app, "fuzz@example.com");
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("openapi.json");
    let body = app.http.get(app.url("/openapi.json")).send().await.unwrap().bytes().await.unwrap();
    std::fs::write(&document, &body).unwrap();
    let validated = tokio::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&document)
        .output()
        .await
        .unwrap();
    assert!(validated.status.success(), "{}", String::from_utf8_lossy(&validated.stdout));

    let run = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file", CONFIG, "run", "--no-color"])
        .arg(app.url("/openapi.json"))
        .args(["--max-examples", "25", "--seed", "20261130", "--workers", "1"])
        .args(["--request-timeout", "15", "--generation-database", "none"])
        .args(["--header", &format!("Authorization: Bearer {}", app.token)])
        .args(["--header", &format!("X-Api-Key: {}", app.api_key)])
        .env("FLEET_USER_TOKEN", user_token)
        .env("FLEET_ROBOT_TOKEN", robot_token)
        .env("RAIL_ROBOT_TOKEN", rail_robot_token)
        .env("OPERATOR_TOKEN", operator_token)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.expect("schemathesis finishes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
