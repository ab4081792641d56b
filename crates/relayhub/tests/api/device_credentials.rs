//! Device credentials beyond the app key (issue 34): the attacks of an app
//! key's holder — who unpacked the app — replayed under each binding
//! policy with real WebSocket clients: connecting as a known phone, filling
//! a license with made-up ids, using the key with another license.

use relayhub_core::identity::{self, BindingPolicy};
use relayhub_core::ids::LicenseNumber;
use relayhub_relay::RelayConfig;
use serde_json::{Value, json};

use crate::helpers::{Device, TestApp};

const PHONE: &str = "6f1c2a9e-4b7d-4e21-9a1f-3c5d7e9b0a12";

/// A license of `binding`; its bearer token.
async fn license(app: &TestApp, number: &str, max_devices: Option<u32>, binding: BindingPolicy) -> String {
    app.create_license_binding(number, max_devices, binding).await.0
}

async fn connect(app: &TestApp, license: &str, device: &str, secret: Option<&str>) -> Result<Device, (u16, Value)> {
    app.try_connect_with(device, &app.api_key, license, secret).await
}

fn code(refused: Result<Device, (u16, Value)>) -> (u16, String) {
    match refused {
        Ok(device) => panic!("connected: {}", device.hello),
        Err((status, body)) => (status, body["error"]["code"].as_str().unwrap_or_default().to_owned()),
    }
}

fn secret_of(device: &Device) -> String {
    let secret = device.hello["device_secret"].as_str().expect("hello carries the device secret").to_owned();
    assert!(secret.starts_with("rhd_") && secret.len() > 30, "{secret}");
    secret
}

async fn device_json(app: &TestApp, token: &str, device: &str) -> Value {
    let response = app.http.get(app.url(&format!("/api/v1/devices/{device}"))).bearer_auth(token).send().await;
    response.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn first_use_gives_the_first_connection_a_secret_and_refuses_a_copycat_without_disturbing_the_phone() {
    let app = TestApp::spawn().await;
    let token = license(&app, "LIC-FIRST", None, BindingPolicy::FirstUse).await;
    let mut phone = connect(&app, "LIC-FIRST", PHONE, None).await.expect("the first connection binds");
    let secret = secret_of(&phone);
    assert_eq!(device_json(&app, &token, PHONE).await["has_secret"], true);

    // Someone with the app key and the phone's UUID, without the secret,
    // with a wrong one, or with the secret of the phone in query text.
    assert_eq!(code(connect(&app, "LIC-FIRST", PHONE, None).await), (401, "invalid_device_secret".into()));
    let wrong = format!("rhd_{}", "x".repeat(40));
    assert_eq!(code(connect(&app, "LIC-FIRST", PHONE, Some(&wrong)).await), (401, "invalid_device_secret".into()));
    // The phone was not pushed off: it still gets what is posted to it.
    let id = app.send_as(&token, PHONE, json!({"n": 1})).await.json::<Value>().await.unwrap()["id"].clone();
    let message = phone.expect("message").await;
    assert_eq!((&message["id"], &message["data"]), (&id, &json!({"n": 1})));

    // The phone itself, with its secret, as a header or in the query.
    drop(phone);
    let again = connect(&app, "LIC-FIRST", PHONE, Some(&secret)).await.expect("the secret opens");
    assert!(again.hello.get("device_secret").is_none(), "shown once: {}", again.hello);
    drop(again);
    let url = format!(
        "ws://{}/ws/device?api_key={}&license=LIC-FIRST&device_id={PHONE}&device_secret={secret}",
        app.addr, app.api_key
    );
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    Device::open(url.into_client_request().unwrap()).await.expect("the secret in the query opens too");
}

#[tokio::test]
async fn a_reset_lets_a_reinstalled_app_bind_again_and_a_back_office_binding_gets_its_secret_on_first_connection() {
    let app = TestApp::spawn().await;
    let token = license(&app, "LIC-RESET", None, BindingPolicy::FirstUse).await;
    // Bound by the back office first, by posting to it.
    assert_eq!(app.send_as(&token, PHONE, json!({"hello": "phone"})).await.status(), 202);
    assert_eq!(device_json(&app, &token, PHONE).await["has_secret"], false);
    let mut phone = connect(&app, "LIC-RESET", PHONE, None).await.expect("its first connection");
    let old = secret_of(&phone);
    assert_eq!(phone.expect("message").await["data"], json!({"hello": "phone"}));
    drop(phone);

    // Reinstalled, the app lost its secret: the back office resets it.
    let reset =
        app.http.post(app.url(&format!("/api/v1/devices/{PHONE}/reset"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(reset.json::<Value>().await.unwrap()["has_secret"], false);
    let phone = connect(&app, "LIC-RESET", PHONE, None).await.expect("binds again");
    let new = secret_of(&phone);
    assert_ne!(new, old);
    drop(phone);
    assert_eq!(code(connect(&app, "LIC-RESET", PHONE, Some(&old)).await), (401, "invalid_device_secret".into()));
    connect(&app, "LIC-RESET", PHONE, Some(&new)).await.expect("the new secret opens");

    // Only its own license may reset it; an unknown device is 404 too.
    app.create_license("LIC-OTHER", None).await;
    let (other, _) = app.create_license("LIC-THIRD", None).await;
    for (token, device) in [(other.as_str(), PHONE), (token.as_str(), "never-bound")] {
        let response =
            app.http.post(app.url(&format!("/api/v1/devices/{device}/reset"))).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 404, "{device}");
    }
    connect(&app, "LIC-RESET", PHONE, Some(&new)).await.expect("a refused reset changed nothing");
}

#[tokio::test]
async fn a_preregistered_license_admits_only_ids_its_back_office_bound_and_strangers_use_none_of_its_room() {
    let app = TestApp::spawn().await;
    let token = license(&app, "LIC-PRE", Some(3), BindingPolicy::Preregistered).await;
    for stranger in ["made-up-1", "made-up-2", "made-up-3", "made-up-4"] {
        assert_eq!(code(connect(&app, "LIC-PRE", stranger, None).await), (403, "device_not_registered".into()));
    }
    let license: Value =
        app.http.get(app.url("/api/v1/license")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!((license["devices"].as_u64(), license["binding"].as_str()), (Some(0), Some("preregistered")));

    let bound = app.http.put(app.url(&format!("/api/v1/devices/{PHONE}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bound.status(), 201);
    let phone = connect(&app, "LIC-PRE", PHONE, None).await.expect("a preregistered id connects");
    let secret = secret_of(&phone);
    drop(phone);
    assert_eq!(code(connect(&app, "LIC-PRE", PHONE, None).await), (401, "invalid_device_secret".into()));
    connect(&app, "LIC-PRE", PHONE, Some(&secret)).await.expect("and comes back with its secret");
}

#[tokio::test]
async fn an_open_license_keeps_seed_000s_behaviour_and_a_scoped_key_knows_no_other_license() {
    let app = TestApp::spawn().await;
    // The suite's own license (LIC-A) is open, as licenses made before
    // binding policies are.
    let phone = app.connect(PHONE).await;
    assert!(phone.hello.get("device_secret").is_none(), "{}", phone.hello);
    drop(phone);
    app.connect(PHONE).await;

    // A key for LIC-B only: with LIC-A it reads exactly as an unknown license.
    app.create_license("LIC-B", None).await;
    let number = LicenseNumber::parse("LIC-B").unwrap();
    let scoped = identity::create_api_key(app.admin().identity.as_ref(), "b's app", &[number]).await.unwrap();
    let scoped = scoped.secret.expose().to_owned();
    let outside = app.try_connect("phone-x", &scoped, "LIC-A").await.err().expect("refused");
    let unknown = app.try_connect("phone-x", &scoped, "LIC-NOPE").await.err().expect("refused");
    assert_eq!(outside.0, 404);
    assert_eq!(outside.1["error"]["code"], "license_not_found");
    let shape =
        |v: &Value| v["error"]["message"].as_str().unwrap().replace("LIC-A", "LIC-?").replace("LIC-NOPE", "LIC-?");
    assert_eq!(shape(&outside.1), shape(&unknown.1), "the same answer as for no such license");
    app.try_connect("phone-x", &scoped, "LIC-B").await.expect("its own license");
    // The server-wide key still works with both.
    app.try_connect("phone-y", &app.api_key, "LIC-B").await.expect("a server-wide key");
}

#[tokio::test]
async fn a_leaked_key_cannot_fill_a_license_in_a_burst() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RelayConfig| r.new_devices_per_minute = 3)).await;
    license(&app, "LIC-BURST", Some(10), BindingPolicy::FirstUse).await;
    let mut secrets = Vec::new();
    for n in 0..3 {
        secrets.push(secret_of(&connect(&app, "LIC-BURST", &format!("fake-{n}"), None).await.expect("binds")));
    }
    let refused = connect(&app, "LIC-BURST", "fake-3", None).await.err().expect("the 4th in a minute is refused");
    assert_eq!((refused.0, refused.1["error"]["code"].as_str()), (429, Some("rate_limited")), "{}", refused.1);
    // Reconnects of bound devices are not new bindings.
    for (n, secret) in secrets.iter().enumerate() {
        connect(&app, "LIC-BURST", &format!("fake-{n}"), Some(secret)).await.expect("a bound device reconnects");
    }
    // Another key (another app) has its own budget.
    let other = identity::create_api_key(app.admin().identity.as_ref(), "second app", &[]).await.unwrap();
    app.try_connect("real-phone", other.secret.expose(), "LIC-BURST").await.expect("another key binds");
}

#[tokio::test]
async fn a_device_secret_holds_on_every_node() {
    if !crate::cluster::on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    license(&a, "LIC-NODES", None, BindingPolicy::FirstUse).await;
    // Two first connections at once, on two nodes: one gets the secret.
    let (on_a, on_b) = tokio::join!(connect(&a, "LIC-NODES", PHONE, None), connect(&b, "LIC-NODES", PHONE, None));
    let (winner, loser) = match (on_a, on_b) {
        (Ok(d), Err(e)) | (Err(e), Ok(d)) => (d, e),
        (Ok(x), Ok(y)) => panic!("both connected: {} / {}", x.hello, y.hello),
        (Err(x), Err(y)) => panic!("both refused: {x:?} / {y:?}"),
    };
    assert_eq!((loser.0, loser.1["error"]["code"].as_str()), (401, Some("invalid_device_secret")));
    let secret = secret_of(&winner);
    drop(winner);
    assert_eq!(code(connect(&b, "LIC-NODES", PHONE, None).await), (401, "invalid_device_secret".into()));
    connect(&b, "LIC-NODES", PHONE, Some(&secret)).await.expect("node B knows the secret");
    connect(&a, "LIC-NODES", PHONE, Some(&secret)).await.expect("so does node A");
}
