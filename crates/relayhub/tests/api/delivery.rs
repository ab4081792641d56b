//! Messages reach devices in order, are deleted on ack, and come back after
//! a reconnect if they were not acknowledged.

use relayhub_relay::RelayConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, ids, seqs};

const PHONE: &str = "7f1c2a9e-1111-4c3b-9d2a-000000000001";

#[tokio::test]
async fn messages_arrive_in_order_and_are_deleted_when_acknowledged() {
    let app = TestApp::spawn().await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(app.send_ok(PHONE, json!({"n": i})).await);
    }
    let mut phone = app.connect(PHONE).await;
    assert_eq!(phone.hello["pending"], 5);
    assert_eq!(phone.hello["device_id"], PHONE);
    assert_eq!(phone.hello["license"], "LIC-A");

    let frames = phone.messages(5).await;
    assert_eq!(ids(&frames), sent);
    assert_eq!(seqs(&frames), vec![1, 2, 3, 4, 5]);
    let data: Vec<Value> = frames.iter().map(|f| f["data"].clone()).collect();
    assert_eq!(data, (0..5).map(|i| json!({"n": i})).collect::<Vec<_>>());
    assert!(frames[0]["time"].as_str().unwrap().ends_with('Z'));

    // Sent but not acknowledged: still listed, as `sent`.
    app.await_status(&sent[0], "sent").await;
    phone.ack(&[&sent[0], &sent[1]]).await;
    phone.send(json!({"type": "ack", "id": sent[2]})).await;
    assert!(phone.sync().await.is_empty(), "nothing else was pending");

    for id in &sent[..3] {
        assert_eq!(app.receipt(id).await["status"], "delivered");
    }
    let pending: Value =
        app.get(&format!("/api/v1/devices/{PHONE}/messages")).send().await.unwrap().json().await.unwrap();
    assert_eq!(pending["total"], 2);
    assert_eq!(ids(pending["messages"].as_array().unwrap()), sent[3..].to_vec());
    assert_eq!(pending["messages"][0]["status"], "sent");
}

#[tokio::test]
async fn a_message_posted_while_online_is_pushed_at_once() {
    let app = TestApp::spawn().await;
    let mut phone = app.connect(PHONE).await;
    assert_eq!(phone.hello["pending"], 0);
    let id = app.send_ok(PHONE, json!("ping me")).await;
    let frame = phone.expect("message").await;
    assert_eq!(frame["id"], id.as_str());
    assert_eq!(frame["data"], "ping me");
}

#[tokio::test]
async fn unacknowledged_messages_are_redelivered_in_order_after_a_reconnect() {
    let app = TestApp::spawn().await;
    let sent: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(app.send_ok(PHONE, json!(i)).await);
        }
        v
    };
    let mut phone = app.connect(PHONE).await;
    let first = phone.messages(4).await;
    assert_eq!(ids(&first), sent);
    phone.ack(&[&sent[0]]).await;
    phone.sync().await;
    phone.close().await;

    let mut phone = app.connect(PHONE).await;
    assert_eq!(phone.hello["pending"], 3);
    let again = phone.messages(3).await;
    assert_eq!(ids(&again), sent[1..].to_vec());
    assert_eq!(seqs(&again), vec![2, 3, 4]);
}

#[tokio::test]
async fn the_newer_connection_of_a_device_wins() {
    let app = TestApp::spawn().await;
    let mut old = app.connect(PHONE).await;
    let mut new = app.connect(PHONE).await;
    let close = old.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4000);

    let id = app.send_ok(PHONE, json!("for the new one")).await;
    assert_eq!(new.expect("message").await["id"], id.as_str());

    // The old socket's disconnect does not mark the device offline.
    new.sync().await;
    let device: Value = app.get(&format!("/api/v1/devices/{PHONE}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(device["online"], true);
    assert_eq!(device["status"], "active");
}

#[tokio::test]
async fn at_most_a_window_of_messages_is_unacknowledged() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RelayConfig| r.window = 3)).await;
    let body = json!({"messages": (0..10).map(|i| json!({"device_id": PHONE, "data": i})).collect::<Vec<_>>()});
    assert_eq!(app.post("/api/v1/messages").json(&body).send().await.unwrap().status(), 202);

    let mut phone = app.connect(PHONE).await;
    let window = phone.messages(3).await;
    assert!(phone.sync().await.is_empty(), "a fourth message was sent before an ack");
    let mut received = ids(&window);
    while received.len() < 10 {
        let last = received.last().unwrap().clone();
        let oldest = received[received.len() - 3].clone();
        phone.ack(&[&oldest]).await;
        let more = phone.expect("message").await;
        received.push(more["id"].as_str().unwrap().to_owned());
        assert_ne!(received.last().unwrap(), &last);
    }
    assert_eq!(received.len(), 10);
}

#[tokio::test]
async fn a_batch_is_queued_all_or_nothing() {
    let app = TestApp::spawn().await;
    let (other_token, _) = app.create_license("LIC-B", None).await;
    // LIC-B owns this device, so LIC-A's batch naming it must fail whole.
    assert_eq!(app.send_as(&other_token, "theirs", json!(1)).await.status(), 202);

    let batch = json!({"messages": [
        {"device_id": "mine", "data": {"a": 1}},
        {"device_id": "theirs", "data": {"b": 2}},
    ]});
    let response = app.post("/api/v1/messages").json(&batch).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = app.get("/api/v1/devices/mine/messages").send().await.unwrap();
    assert_eq!(response.status(), 404, "the first device was not even bound");

    let batch = json!({"messages": [
        {"device_id": "mine", "data": {"a": 1}},
        {"device_id": "mine", "data": {"a": 2}},
        {"device_id": "also-mine", "data": [3]},
    ]});
    let response = app.post("/api/v1/messages").json(&batch).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ids"].as_array().unwrap().len(), 3);
    assert_eq!(body["messages"][1]["seq"], 2);
    assert_eq!(body["messages"][2]["seq"], 1);
    let mut phone = app.connect("mine").await;
    let frames = phone.messages(2).await;
    assert_eq!(frames[0]["id"], body["ids"][0]);
    assert_eq!(frames[1]["data"], json!({"a": 2}));
}

#[tokio::test]
async fn receipts_follow_a_message_from_queued_to_delivered() {
    let app = TestApp::spawn().await;
    let id = app.send_ok(PHONE, json!({"invoice": 42})).await;
    let receipt = app.receipt(&id).await;
    assert_eq!(receipt["status"], "queued");
    assert_eq!(receipt["device_id"], PHONE);
    assert_eq!(receipt["seq"], 1);

    let mut phone = app.connect(PHONE).await;
    phone.expect("message").await;
    app.await_status(&id, "sent").await;
    phone.ack(&[&id]).await;
    phone.sync().await;
    assert_eq!(app.receipt(&id).await["status"], "delivered");
    let pending: Value =
        app.get(&format!("/api/v1/devices/{PHONE}/messages")).send().await.unwrap().json().await.unwrap();
    assert_eq!(pending["total"], 0, "the data is gone once delivered");

    // Acknowledging twice is harmless; an id the device never had is named.
    let stranger = uuid::Uuid::now_v7().to_string();
    phone.ack(&[&id, &stranger]).await;
    let before_pong = phone.sync().await;
    assert_eq!(before_pong.len(), 1);
    assert_eq!(before_pong[0]["code"], "unknown_message");
    assert_eq!(before_pong[0]["ids"], json!([stranger]));
}
