//! Malformed, mistyped, oversized and unknown input gets a clear error in
//! the one error shape, and a device's connection stays up.

use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("an error body in JSON");
    let code = body["error"]["code"].as_str().expect("error.code").to_owned();
    let message = body["error"]["message"].as_str().expect("error.message").to_owned();
    (status, code, message)
}

#[tokio::test]
async fn http_errors_are_clear_and_shaped_alike() {
    let app = TestApp::spawn_with(|c| c.body_limit = 4096).await;
    let post_raw =
        |path: &str, body: String| app.post(path).header("content-type", "application/json").body(body).send();

    let (status, code, _) = error_of(post_raw("/api/v1/devices/d/messages", "{\"a\":".into()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "malformed_json"));
    let (status, code, _) = error_of(post_raw("/api/v1/devices/d/messages", String::new()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "malformed_json"));
    let (status, code, message) =
        error_of(post_raw("/api/v1/messages", r#"{"messages":[{"device_id":7,"data":1}]}"#.into()).await.unwrap())
            .await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));
    assert!(message.contains("messages[0].device_id"), "{message}");
    let (status, code, _) = error_of(post_raw("/api/v1/messages", r#"{"messages":[]}"#.into()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));
    let (status, code, _) = error_of(post_raw("/api/v1/inbox/ack", r#"{"ids":["nope"]}"#.into()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));

    let big = format!("\"{}\"", "x".repeat(5000));
    let (status, code, _) = error_of(post_raw("/api/v1/devices/d/messages", big).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let (status, code, _) = error_of(app.get("/api/v1/devices?size=1000").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));
    let (status, code, _) = error_of(app.get("/api/v1/messages/not-a-uuid").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "message_not_found"));
    let (status, code, _) =
        error_of(post_raw("/api/v1/devices/with%20space/messages", "1".into()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));
    let (status, code, _) = error_of(app.get("/api/v2/nothing").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = error_of(app.http.patch(app.url("/api/v1/license")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));

    // Nothing of the above was queued.
    let devices: Value = app.get("/api/v1/devices").send().await.unwrap().json().await.unwrap();
    assert_eq!(devices["total"], 0);
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_connection_stays_up() {
    let app = TestApp::spawn_with(|c| c.gateway.max_frame_bytes = 1024).await;
    let id = app.send_ok("handheld", json!({"job": 1})).await;
    let mut device = app.connect("handheld").await;
    device.expect("message").await;

    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "malformed_json"),
        ("[1,2]".into(), "invalid_field"),
        (r#"{"no":"type"}"#.into(), "missing_field"),
        (r#"{"type":"teleport"}"#.into(), "unknown_frame"),
        (r#"{"type":"ack","id":42}"#.into(), "invalid_field"),
        (r#"{"type":"ack"}"#.into(), "missing_field"),
        (r#"{"type":"publish","ref":"r","data":1,"#.into(), "malformed_json"),
        (r#"{"type":"publish","data":1}"#.into(), "invalid_field"),
        (format!(r#"{{"type":"publish","ref":"r","data":"{}"}}"#, "x".repeat(1500)), "payload_too_large"),
    ];
    for (frame, code) in &cases {
        device.send_text(frame.clone()).await;
        let error = device.expect("error").await;
        assert_eq!(error["code"], *code, "frame {frame}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    device.send_binary(vec![1, 2, 3]).await;
    assert_eq!(device.expect("error").await["code"], "unsupported_frame");

    // Still up, and still working.
    device.ack(&[&id]).await;
    assert!(device.sync().await.is_empty());
    assert_eq!(app.receipt(&id).await["status"], "delivered");
    let inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["records"], json!([]), "no bad publish was stored");
}

#[tokio::test]
async fn a_frame_far_over_the_limit_closes_with_1009() {
    let app = TestApp::spawn_with(|c| c.gateway.max_frame_bytes = 1024).await;
    let mut device = app.connect("greedy").await;
    device.send_text("x".repeat(10_000)).await;
    let close = device.closed().await;
    // tungstenite refuses to buffer it: "message too big".
    assert!(close.as_ref().is_none_or(|c| u16::from(c.code) == 1009), "{close:?}");
    // The server is fine and the device may come back.
    app.connect("greedy").await;
}
