//! Producer-side rules: idempotency keys, time to live, queue bound,
//! device limit.

use relayhub_relay::RelayConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, ids};

#[tokio::test]
async fn a_retried_idempotency_key_answers_the_first_message() {
    let app = TestApp::spawn().await;
    let post = |data: Value, key: &'static str| {
        app.post("/api/v1/devices/till-1/messages").header("Idempotency-Key", key).json(&data).send()
    };
    let first = post(json!({"doc": 1}), "order-77").await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let retry = post(json!({"doc": 1}), "order-77").await.unwrap();
    assert_eq!(retry.status(), 202);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);

    let misuse = post(json!({"doc": 2}), "order-77").await.unwrap();
    assert_eq!(misuse.status(), 422);
    assert_eq!(misuse.json::<Value>().await.unwrap()["error"]["code"], "idempotency_key_reused");

    // In a batch: a key seen before, and a key repeated within the batch.
    let batch = json!({"messages": [
        {"device_id": "till-1", "data": {"doc": 1}, "idempotency_key": "order-77"},
        {"device_id": "till-1", "data": {"doc": 3}, "idempotency_key": "order-78"},
        {"device_id": "till-1", "data": {"doc": 3}, "idempotency_key": "order-78"},
    ]});
    let body: Value = app.post("/api/v1/messages").json(&batch).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["ids"][0], first["id"]);
    assert_eq!(body["ids"][1], body["ids"][2]);

    let mut till = app.connect("till-1").await;
    let frames = till.messages(2).await;
    assert!(till.sync().await.is_empty(), "each message is delivered once");
    assert_eq!(frames[0]["data"], json!({"doc": 1}));
    assert_eq!(frames[1]["data"], json!({"doc": 3}));
}

#[tokio::test]
async fn an_expired_message_is_never_delivered() {
    let app = TestApp::spawn().await;
    let short = app
        .post("/api/v1/devices/robot-1/messages?ttl=1")
        .json(&json!("stale soon"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lasting = app.send_ok("robot-1", json!("still good")).await;
    assert!(app.receipt(&short).await["expires_at"].is_string());

    app.await_status(&short, "expired").await;
    let mut robot = app.connect("robot-1").await;
    let frames = robot.messages(1).await;
    assert_eq!(ids(&frames), vec![lasting]);
    assert!(robot.sync().await.is_empty());
    assert_eq!(app.receipt(&short).await["status"], "expired");

    for bad in ["ttl=0", "ttl=-1", "ttl=soon"] {
        let response =
            app.post(&format!("/api/v1/devices/robot-1/messages?{bad}")).json(&json!(1)).send().await.unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn a_full_queue_refuses_with_429_and_loses_nothing() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RelayConfig| r.queue_limit = 3)).await;
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(app.send_ok("scanner", json!(i)).await);
    }
    let refused = app.send("scanner", json!(3)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "queue_full");
    let batch = json!({"messages": [{"device_id": "other", "data": 1}, {"device_id": "scanner", "data": 4}]});
    assert_eq!(app.post("/api/v1/messages").json(&batch).send().await.unwrap().status(), 429);

    let mut scanner = app.connect("scanner").await;
    let frames = scanner.messages(3).await;
    assert_eq!(ids(&frames), accepted);
    scanner.ack(&[&accepted[0]]).await;
    scanner.sync().await;
    // Room for one more now.
    assert_eq!(app.send("scanner", json!(5)).await.status(), 202);
    assert_eq!(app.send("scanner", json!(6)).await.status(), 429);
}

#[tokio::test]
async fn binding_past_max_devices_is_refused_everywhere() {
    let app = TestApp::spawn().await;
    let (token, _) = app.create_license("LIC-2", Some(2)).await;
    assert_eq!(app.send_as(&token, "d1", json!(1)).await.status(), 202);
    let put = app.http.put(app.url("/api/v1/devices/d2")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let again = app.http.put(app.url("/api/v1/devices/d2")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(again.status(), 200);

    let third = app.send_as(&token, "d3", json!(1)).await;
    assert_eq!(third.status(), 409);
    assert_eq!(third.json::<Value>().await.unwrap()["error"]["code"], "device_limit");
    let put = app.http.put(app.url("/api/v1/devices/d3")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(put.status(), 409);
    let (status, body) = app.try_connect("d3", &app.api_key, "LIC-2").await.err().expect("refused");
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "device_limit");

    // Known devices keep working, and unbinding frees a place.
    assert_eq!(app.send_as(&token, "d1", json!(2)).await.status(), 202);
    app.try_connect("d2", &app.api_key, "LIC-2").await.expect("a bound device connects");
    let del = app.http.delete(app.url("/api/v1/devices/d1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(app.send_as(&token, "d3", json!(1)).await.status(), 202);
    let license: Value =
        app.http.get(app.url("/api/v1/license")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(license["devices"], 2);
    assert_eq!(license["max_devices"], 2);
}

#[tokio::test]
async fn unbinding_drops_the_queue_and_closes_the_socket() {
    let app = TestApp::spawn().await;
    let id = app.send_ok("kiosk", json!("doomed")).await;
    let mut kiosk = app.connect("kiosk").await;
    kiosk.expect("message").await;
    let del = app.http.delete(app.url("/api/v1/devices/kiosk")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(u16::from(kiosk.closed().await.expect("close frame").code), 4004);
    assert_eq!(app.get(&format!("/api/v1/messages/{id}")).send().await.unwrap().status(), 404);
    assert_eq!(app.get("/api/v1/devices/kiosk").send().await.unwrap().status(), 404);
    let again = app.http.delete(app.url("/api/v1/devices/kiosk")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn an_idempotency_key_is_free_again_once_its_device_is_unbound() {
    let app = TestApp::spawn().await;
    let post = || {
        app.post("/api/v1/devices/kiosk/messages").header("Idempotency-Key", "order-9").json(&json!({"doc": 9})).send()
    };
    let first: Value = post().await.unwrap().json().await.unwrap();
    let del = app.http.delete(app.url("/api/v1/devices/kiosk")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(del.status(), 204);

    // The same key for the device bound anew is a new message, delivered.
    let second = post().await.unwrap();
    assert_eq!(second.status(), 202);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let second: Value = second.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
    let mut kiosk = app.connect("kiosk").await;
    assert_eq!(kiosk.expect("message").await["id"], second["id"]);
}
