//! Records sent up by devices reach the back-office inbox.

use relayhub_relay::RelayConfig;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn published_records_are_on_disk_listed_in_order_and_deleted_on_ack() {
    let app = TestApp::spawn().await;
    let mut phone = app.connect("field-phone").await;
    for i in 0..3 {
        phone.send(json!({"type": "publish", "ref": format!("scan-{i}"), "data": {"barcode": i}})).await;
        let published = phone.expect("published").await;
        assert_eq!(published["ref"], format!("scan-{i}"));
        assert!(published["id"].is_string());
        assert!(published.get("duplicate").is_none());
    }
    // A retry of a ref is recognised, not stored twice.
    phone.send(json!({"type": "publish", "ref": "scan-1", "data": {"barcode": 1}})).await;
    let retry = phone.expect("published").await;
    assert_eq!(retry["duplicate"], true);

    let inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    let records = inbox["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[1]["id"], retry["id"]);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["device_id"], "field-phone");
        assert_eq!(record["ref"], format!("scan-{i}"));
        assert_eq!(record["data"], json!({"barcode": i}));
    }
    let limited: Value = app.get("/api/v1/inbox?limit=2").send().await.unwrap().json().await.unwrap();
    assert_eq!(limited["records"].as_array().unwrap().len(), 2);

    let first_two = json!({"ids": [records[0]["id"], records[1]["id"], uuid::Uuid::now_v7()]});
    let acked: Value = app.post("/api/v1/inbox/ack").json(&first_two).send().await.unwrap().json().await.unwrap();
    assert_eq!(acked["deleted"], 2);
    let inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["records"].as_array().unwrap().len(), 1);
    assert_eq!(inbox["records"][0]["ref"], "scan-2");
}

#[tokio::test]
async fn a_burst_of_records_is_stored_in_the_order_it_was_sent() {
    let app = TestApp::spawn().await;
    let mut phones = Vec::new();
    for name in ["burst-a", "burst-b"] {
        phones.push(app.connect(name).await);
    }
    const N: usize = 400;
    for phone in &mut phones {
        phone.send_burst((0..N).map(|i| json!({"type": "publish", "ref": format!("r{i}"), "data": i}))).await;
    }
    for phone in &mut phones {
        for i in 0..N {
            assert_eq!(phone.expect("published").await["ref"], format!("r{i}"), "answers come in order");
        }
    }
    let inbox: Value = app.get("/api/v1/inbox?limit=1000").send().await.unwrap().json().await.unwrap();
    for name in ["burst-a", "burst-b"] {
        let order: Vec<u64> = inbox["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["device_id"] == name)
            .map(|r| r["data"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (0..N as u64).collect::<Vec<_>>(), "{name}'s records, oldest first");
    }
}

#[tokio::test]
async fn a_long_poll_wakes_as_soon_as_a_record_arrives() {
    let app = TestApp::spawn().await;
    let mut phone = app.connect("sensor").await;
    let poll = {
        let request = app.get("/api/v1/inbox?wait=30");
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    // Make sure the poll is waiting before publishing: it must not answer
    // empty-handed meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!poll.is_finished(), "the poll answered without a record");
    let started = std::time::Instant::now();
    phone.send(json!({"type": "publish", "ref": "t1", "data": 21.5})).await;
    let body = tokio::time::timeout(Duration::from_secs(5), poll).await.expect("woken").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(body["records"][0]["data"], 21.5);

    // Without records, the poll ends empty at its deadline.
    let acked = json!({"ids": [body["records"][0]["id"]]});
    app.post("/api/v1/inbox/ack").json(&acked).send().await.unwrap();
    let empty: Value = app.get("/api/v1/inbox?wait=0.2").send().await.unwrap().json().await.unwrap();
    assert_eq!(empty["records"], json!([]));
    // A wait past the server's `max_wait` (here 300 ms) is refused, and the
    // document says where the bound is.
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RelayConfig| r.max_wait = Duration::from_millis(300))).await;
    assert_eq!(app.get("/api/v1/inbox?wait=0.3").send().await.unwrap().status(), 200);
    let too_long = app.get("/api/v1/inbox?wait=1e300").send().await.unwrap();
    assert_eq!(too_long.status(), 422);
    let body: Value = too_long.json().await.unwrap();
    assert_eq!(body["error"]["message"], "wait is a number of seconds from 0 to 0.3");
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let params = doc["paths"]["/api/v1/inbox"]["get"]["parameters"].as_array().unwrap();
    let wait = params.iter().find(|p| p["name"] == "wait").unwrap();
    assert_eq!(wait["schema"]["maximum"], 0.3);

    for bad in ["wait=-1", "wait=x", "wait=NaN", "limit=0", "limit=100000"] {
        let response = app.get(&format!("/api/v1/inbox?{bad}")).send().await.unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }
}
