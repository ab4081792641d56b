//! Issue 33's edges: a registry approval does not follow a device to
//! another host; `/ws/device` tells an app-key holder an unknown license
//! and an expired one alike; robots' sign-in challenges, which need no
//! credential, are limited per robot and per address.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use chrono::NaiveDate;
use relayhub_core::identity::LicenseUpdate;
use relayhub_core::ids::LicenseNumber;
use relayhub_core::time::Timestamp;
use relayhub_registry::RegistryConfig;
use relayhub_registry::model::DeviceStatus;
use relayhub_registry::store::DeviceRegistry;
use serde_json::{Value, json};

use crate::helpers::{TestApp, client_from};
use crate::process::cli;

/// An instance that answers with its own name, so a test sees which host a
/// proxied call reached.
async fn named_instance(name: &'static str) -> SocketAddr {
    let app = Router::new().route("/wh/who", any(move || async move { name }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn registry_app() -> TestApp {
    TestApp::spawn_with(|config| {
        config.edit(|r: &mut RegistryConfig| {
            r.allow_private = vec!["127.0.0.0/8".parse().unwrap()];
            r.timeout = Duration::from_secs(2);
        })
    })
    .await
}

async fn register(app: &TestApp, device: &str, url: &str) -> Value {
    let body = json!({"device_uuid": device, "instance_id": "w1", "public_url": url});
    let response =
        app.post("/ECK/API/DEVICE/REGISTER").header("x-api-key", &app.api_key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["device"].clone()
}

/// The proxied answer of `/who`: its status and body.
async fn who(app: &TestApp, device: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(app.url("/ECK/PROXY"))
        .header("x-api-key", &app.api_key)
        .header("x-device-id", device)
        .header("x-eckwms-target-url", "/who")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn an_approved_device_that_registers_another_url_waits_for_approval_again() {
    let honest = named_instance("honest").await;
    let other = named_instance("other").await;
    let app = registry_app().await;
    let devices = app.admin().get::<dyn DeviceRegistry>().unwrap();
    let device = uuid::Uuid::new_v4().to_string();
    let (honest_url, other_url) = (format!("http://{honest}/wh"), format!("http://{other}/wh"));

    register(&app, &device, &honest_url).await;
    devices.set_status(&relayhub_registry::rules::device_uuid(&device).unwrap(), DeviceStatus::Active).await.unwrap();
    let restarted = register(&app, &device, &honest_url).await;
    assert_eq!(restarted["status"], "active", "the same URL keeps the approval");
    assert_eq!(who(&app, &device).await, (200, "honest".to_owned()));

    let moved = register(&app, &device, &other_url).await;
    assert_eq!(moved["status"], "pending", "{moved}");
    let (status, body) = who(&app, &device).await;
    assert_eq!(status, 403);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "device_pending", "{body}");
    let listed = cli(&app.database_args(), &["registry", "list", "--status", "pending"]);
    let row = listed.as_array().unwrap().iter().find(|d| d["device_uuid"] == device.as_str()).cloned();
    assert_eq!(row.as_ref().map(|d| d["public_url"].clone()), Some(json!(other_url)), "{listed}");

    devices.set_status(&relayhub_registry::rules::device_uuid(&device).unwrap(), DeviceStatus::Active).await.unwrap();
    assert_eq!(who(&app, &device).await, (200, "other".to_owned()), "approved again, at the new URL");
}

#[tokio::test]
async fn an_unknown_and_an_expired_license_read_alike_on_ws_device() {
    let app = TestApp::spawn().await;
    app.create_license("LIC-OLD", None).await;
    let expired = LicenseUpdate {
        expires_at: Some(Some(Timestamp::end_of_day(NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()))),
        ..LicenseUpdate::default()
    };
    app.admin().identity.update_license(&LicenseNumber::parse("LIC-OLD").unwrap(), expired).await.unwrap();

    let (old_status, old_body) = app.try_connect("phone-1", &app.api_key, "LIC-OLD").await.err().expect("refused");
    let (none_status, none_body) = app.try_connect("phone-1", &app.api_key, "LIC-NONE").await.err().expect("refused");
    assert_eq!((old_status, old_body["error"]["code"].as_str()), (404, Some("license_not_found")), "{old_body}");
    assert_eq!(none_status, old_status);
    let unnamed = |body: &Value, number: &str| body.to_string().replace(number, "N");
    assert_eq!(unnamed(&old_body, "LIC-OLD"), unnamed(&none_body, "LIC-NONE"), "the same words, but the number");
    app.try_connect("phone-1", &app.api_key, "LIC-A").await.expect("a license in force still works");
}

/// `POST /base_api/robot/auth/challenge` for `robot`, from `client`.
async fn challenge(app: &TestApp, client: &reqwest::Client, robot: &str) -> (u16, Value) {
    let answer =
        client.post(app.url("/base_api/robot/auth/challenge")).json(&json!({"robot_id": robot})).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn robot_challenges_are_limited_per_robot_and_per_address() {
    let app = TestApp::spawn_with(|c| {
        c.edit(|r: &mut relayhub_rail::RailConfig| {
            r.challenges_per_minute = 3;
            r.challenges_per_minute_per_address = 5;
        })
    })
    .await;
    let key = crate::rail::Key::ed25519(7);
    let (robot, _) = crate::rail::robot(&app, &app.token, &key).await;
    // One robot: three challenges a minute, whoever asks (each is a live
    // nonce the store keeps until it expires); creating the robot signed
    // it in once already.
    let asker = client_from("127.0.0.11");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(challenge(&app, &asker, &robot).await.0);
    }
    assert_eq!(statuses, [200, 200, 429], "per robot");
    let (status, body) = challenge(&app, &client_from("127.0.0.12"), &robot).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "another address, same robot");
    // One address, random robot ids: counted before anything is looked up.
    let prober = client_from("127.0.0.13");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(challenge(&app, &prober, &uuid::Uuid::new_v4().to_string()).await.0);
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429], "per address");
    // Another robot, from another address, signs in as before.
    let other_key = crate::rail::Key::ed25519(8);
    let (other, _) = crate::rail::robot(&app, &app.token, &other_key).await;
    let token = crate::rail::sign_in(&app, &other, &other_key).await;
    assert!(!token.is_empty());
}
