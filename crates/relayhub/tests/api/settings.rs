//! Device settings: synced both ways, merged or refused on concurrent
//! edits, delivered to offline devices on reconnect, and restored onto a new
//! device through a Google account (real RS256 tokens against a JWKS file).

use relayhub_core::oidc::testing::{TEST_CLIENT_ID, TestIssuer};
use relayhub_relay::RelayConfig;
use serde_json::{Value, json};

use crate::helpers::{Device, TestApp};

/// `PUT …/settings` as the back-office sends it: the status and the body.
pub(crate) async fn put(app: &TestApp, device: &str, version: i64, settings: Value) -> (u16, Value) {
    let response = app
        .http
        .put(app.url(&format!("/api/v1/devices/{device}/settings")))
        .bearer_auth(&app.token)
        .json(&json!({"version": version, "settings": settings}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(app: &TestApp, device: &str) -> Value {
    app.get(&format!("/api/v1/devices/{device}/settings")).send().await.unwrap().json().await.unwrap()
}

/// The next `settings` frame with at least this version (pushes of earlier
/// versions may come first).
async fn settings_frame(device: &mut Device, version: i64) -> Value {
    loop {
        let frame = device.expect("settings").await;
        if frame["version"].as_i64().unwrap() >= version {
            return frame;
        }
    }
}

#[tokio::test]
async fn settings_round_trip_between_back_office_and_device() {
    let app = TestApp::spawn().await;
    let mut phone = app.connect("p1").await;

    let (status, written) = put(&app, "p1", 0, json!({"volume": 3})).await;
    assert_eq!(status, 200);
    assert_eq!((written["version"].as_i64(), written["merged"].as_bool()), (Some(1), Some(false)));
    let pushed = phone.expect("settings").await;
    assert_eq!((pushed["version"].as_i64(), &pushed["settings"]), (Some(1), &json!({"volume": 3})));

    phone.send(json!({"type": "settings", "version": 1, "settings": {"volume": 3, "lang": "ru"}})).await;
    let stored = phone.expect("settings").await;
    assert_eq!(stored["version"], 2);
    assert!(stored.get("merged").is_none());

    let response = app.get("/api/v1/devices/p1/settings").send().await.unwrap();
    assert_eq!(response.headers()["etag"], "\"2\"");
    let current: Value = response.json().await.unwrap();
    assert_eq!(current["settings"], json!({"volume": 3, "lang": "ru"}));
    assert_eq!(current["updated_by"], "device");
    assert!(phone.sync().await.is_empty(), "the device's own write is not echoed twice");
}

#[tokio::test]
async fn concurrent_edits_merge_when_disjoint_and_conflict_when_not() {
    let app = TestApp::spawn().await;
    let mut phone = app.connect("p2").await;
    put(&app, "p2", 0, json!({"volume": 3, "lang": "ru", "printer": {"ip": "10.0.0.5", "port": 9100}})).await;
    settings_frame(&mut phone, 1).await;

    // Both start from version 1: the office changes the volume and the
    // printer's ip, the phone the language and the printer's port.
    let (status, _) =
        put(&app, "p2", 1, json!({"volume": 5, "lang": "ru", "printer": {"ip": "10.0.0.9", "port": 9100}})).await;
    assert_eq!(status, 200);
    phone
        .send(json!({"type": "settings", "version": 1,
                     "settings": {"volume": 3, "lang": "en", "printer": {"ip": "10.0.0.5", "port": 9200}}}))
        .await;
    let merged = settings_frame(&mut phone, 3).await;
    assert_eq!(merged["merged"], true);
    let want = json!({"volume": 5, "lang": "en", "printer": {"ip": "10.0.0.9", "port": 9200}});
    assert_eq!(merged["settings"], want);

    // Now both change the volume from version 3: the second is refused,
    // with the current document and the conflicting path.
    let (status, _) =
        put(&app, "p2", 3, json!({"volume": 7, "lang": "en", "printer": {"ip": "10.0.0.9", "port": 9200}})).await;
    assert_eq!(status, 200);
    phone.send(json!({"type": "settings", "version": 3, "settings": {"volume": 1, "lang": "en", "printer": {"ip": "10.0.0.9", "port": 9200}}})).await;
    let refused = loop {
        let frame = phone.next().await;
        if frame["type"] == "error" {
            break frame;
        }
        assert_eq!(frame["type"], "settings", "{frame}");
    };
    assert_eq!(refused["code"], "settings_conflict");
    assert_eq!(refused["version"], 4);
    assert_eq!(refused["settings"]["volume"], 7);
    assert_eq!(refused["conflicts"], json!(["volume"]));

    let (status, body) =
        put(&app, "p2", 3, json!({"volume": 9, "lang": "en", "printer": {"ip": "10.0.0.9", "port": 9200}})).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "settings_conflict");
    assert_eq!(body["current"]["version"], 4);
    assert_eq!(body["conflicts"], json!(["volume"]));
    let (status, body) = put(&app, "p2", 99, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("settings_conflict")));
    assert_eq!(get(&app, "p2").await["settings"]["volume"], 7, "nothing was overwritten blindly");
}

#[tokio::test]
async fn an_offline_device_gets_changed_settings_when_it_reconnects() {
    let app = TestApp::spawn().await;
    let (status, _) = put(&app, "tab-9", 0, json!({"shop": 12})).await;
    assert_eq!(status, 200, "writing settings binds the device, like a message");
    let mut tab = app.connect("tab-9").await;
    let frame = tab.expect("settings").await;
    assert_eq!((frame["version"].as_i64(), &frame["settings"]), (Some(1), &json!({"shop": 12})));
    tab.close().await;

    // A device that says it has the current version is not sent it again.
    let connect = |version: &str| {
        let url = format!("ws://{}/ws/device", app.addr);
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        for (k, v) in [
            ("x-api-key", app.api_key.as_str()),
            ("x-device-id", "tab-9"),
            ("x-license", "LIC-A"),
            ("x-settings-version", version),
        ] {
            request.headers_mut().insert(k, v.parse().unwrap());
        }
        Device::open(request)
    };
    let mut tab = connect("1").await.unwrap();
    assert!(tab.sync().await.is_empty());
    tab.close().await;

    put(&app, "tab-9", 1, json!({"shop": 14})).await;
    let mut tab = connect("1").await.unwrap();
    let frame = tab.expect("settings").await;
    assert_eq!((frame["version"].as_i64(), &frame["settings"]), (Some(2), &json!({"shop": 14})));
}

#[tokio::test]
async fn bad_settings_are_refused_clearly() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RelayConfig| r.settings_limit = 100)).await;
    let send =
        |body: String| app.http.put(app.url("/api/v1/devices/d/settings")).bearer_auth(&app.token).body(body).send();
    for (body, status, code) in [
        (r#"{"version":0,"settings":[1]}"#.to_owned(), 422, "invalid_field"),
        (r#"{"settings":{}}"#.to_owned(), 422, "invalid_field"),
        (r#"{"version":-1,"settings":{}}"#.to_owned(), 422, "invalid_field"),
        (r#"{"version":0,"settings":{}"#.to_owned(), 400, "malformed_json"),
        (format!(r#"{{"version":0,"settings":{{"x":"{}"}}}}"#, "y".repeat(200)), 413, "payload_too_large"),
    ] {
        let response = send(body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], code, "{body}");
    }
    assert_eq!(app.get("/api/v1/devices/never-seen/settings").send().await.unwrap().status(), 404);

    let mut device = app.connect("d").await;
    device.send(json!({"type": "settings", "version": 0, "settings": {"x": "y".repeat(200)}})).await;
    assert_eq!(device.expect("error").await["code"], "payload_too_large");
    device.send(json!({"type": "settings", "settings": {}})).await;
    assert_eq!(device.expect("error").await["code"], "invalid_field");
    device.send(json!({"type": "link_account", "id_token": "x"})).await;
    assert_eq!(device.expect("error").await["code"], "not_configured", "no Google client id here");
}

/// A server that trusts the test issuer's keys from a JWKS file.
async fn google_app(issuers: &[&TestIssuer]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, TestIssuer::jwks(issuers)).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.google.client_id = Some(TEST_CLIENT_ID.to_owned());
        c.google.jwks = Some(jwks.display().to_string());
    })
    .await;
    (app, dir)
}

#[tokio::test]
async fn settings_linked_to_a_google_account_are_restored_on_a_new_device() {
    let google = TestIssuer::new("key-1");
    let (app, _dir) = google_app(&[&google]).await;

    let mut old = app.connect("old-phone").await;
    old.send(json!({"type": "settings", "version": 0, "settings": {"printer": "10.0.0.5", "volume": 4}})).await;
    settings_frame(&mut old, 1).await;
    old.send(json!({"type": "link_account", "id_token": google.token("user-42")})).await;
    assert_eq!(old.expect("linked").await["account"], "google:user-42");

    // The phone is replaced: the new one has a new id and no settings.
    let mut new = app.connect("new-phone").await;
    new.send(json!({"type": "restore", "id_token": google.token("user-42")})).await;
    let restored = new.expect("settings").await;
    assert_eq!(restored["restored_from"], "google:user-42");
    assert_eq!(restored["settings"], json!({"printer": "10.0.0.5", "volume": 4}));
    assert_eq!(get(&app, "new-phone").await["updated_by"], "restore");

    // The account now follows the new phone; its settings survive even its
    // unbinding, for the next phone.
    new.send(json!({"type": "settings", "version": restored["version"], "settings": {"printer": "10.0.0.7"}})).await;
    settings_frame(&mut new, 2).await;
    let unbind = app.http.delete(app.url("/api/v1/devices/new-phone")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(unbind.status(), 204);
    let mut third = app.connect("third-phone").await;
    third.send(json!({"type": "restore", "id_token": google.token("user-42")})).await;
    assert_eq!(third.expect("settings").await["settings"], json!({"printer": "10.0.0.7"}));
}

#[tokio::test]
async fn forged_expired_or_misdirected_tokens_are_refused() {
    let google = TestIssuer::new("key-1");
    let stranger = TestIssuer::new("key-9");
    let (app, _dir) = google_app(&[&google]).await;
    let mut phone = app.connect("p").await;

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = TestIssuer::claims("user-1");
        change(&mut claims);
        google.sign(&claims)
    };
    let valid = google.token("user-1");
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut forged_claims = TestIssuer::claims("someone-else");
    forged_claims["email"] = json!("x@example.com");
    let forged_payload =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, forged_claims.to_string());
    let tampered = format!("{head}.{forged_payload}.{signature}");

    let cases = [
        (with(&|c| c["exp"] = json!(c["iat"].as_u64().unwrap() - 3600)), "token_expired"),
        (with(&|c| c["aud"] = json!("another-app.apps.googleusercontent.com")), "token_wrong_audience"),
        (with(&|c| c["iss"] = json!("https://evil.example.com")), "token_wrong_issuer"),
        (with(&|c| c["email_verified"] = json!(false)), "email_unverified"),
        (tampered, "token_bad_signature"),
        (stranger.token("user-1"), "token_unknown_key"),
        ("not-a-jwt".to_owned(), "token_malformed"),
    ];
    for (token, code) in cases {
        phone.send(json!({"type": "link_account", "id_token": token})).await;
        let error = phone.expect("error").await;
        assert_eq!(error["code"], code);
        phone.send(json!({"type": "restore", "id_token": token})).await;
        assert_eq!(phone.expect("error").await["code"], code);
    }
    // None of them linked anything.
    phone.send(json!({"type": "restore", "id_token": google.token("someone-else")})).await;
    assert_eq!(phone.expect("error").await["code"], "account_not_linked");
}

#[tokio::test]
async fn a_device_of_another_license_cannot_restore_the_settings() {
    let google = TestIssuer::new("key-1");
    let (app, _dir) = google_app(&[&google]).await;
    app.create_license("LIC-B", None).await;
    let mut mine = app.connect("a-phone").await;
    mine.send(json!({"type": "settings", "version": 0, "settings": {"secret": "A's"}})).await;
    settings_frame(&mut mine, 1).await;
    mine.send(json!({"type": "link_account", "id_token": google.token("user-7")})).await;
    mine.expect("linked").await;

    let mut theirs = app.try_connect("b-phone", &app.api_key, "LIC-B").await.unwrap();
    theirs.send(json!({"type": "restore", "id_token": google.token("user-7")})).await;
    let error = theirs.expect("error").await;
    assert_eq!(error["code"], "account_not_linked");
    assert!(!error.to_string().contains("A's"));
}
