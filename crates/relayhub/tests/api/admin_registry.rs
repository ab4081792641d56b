//! The device registry run by an operator over `/api/admin/v1`: a
//! registered device listed, approved, blocked and unblocked — the proxy
//! answers each change on the device's next call — with each change in
//! the audit log, like `relayhub registry approve` on the command line.

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_api::{admin, operator_token};
use crate::registry::{allow_loopback, instance, proxy, refusal, register, registry_app, uuid};

#[tokio::test]
async fn an_operator_approves_blocks_and_unblocks_a_registered_device() {
    let instance = instance().await;
    let app = registry_app(allow_loopback).await;
    let ops = operator_token(&app, "ops@example.com");
    let (device, other) = (uuid(), uuid());
    let url = format!("http://{instance}/wh");
    assert_eq!(register(&app, &device, "w1", Some(&url)).await.0, 200);
    assert_eq!(register(&app, &other, "w2", Some(&url)).await.0, 200);

    let (status, listed) = admin(&app, Method::GET, "/api/admin/v1/registry/devices?status=pending", &ops, None).await;
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|d| d["device_uuid"].as_str().unwrap()).collect();
    assert_eq!(ids, [device.as_str(), other.as_str()], "earliest registered first");
    let (_, one) = admin(&app, Method::GET, "/api/admin/v1/registry/devices?instance=w2&limit=1", &ops, None).await;
    assert_eq!(
        (one["items"][0]["device_uuid"].as_str(), one["truncated"].as_bool()),
        (Some(other.as_str()), Some(false))
    );
    let (_, first) = admin(&app, Method::GET, "/api/admin/v1/registry/devices?limit=1", &ops, None).await;
    assert_eq!(first["truncated"], true, "{first}");

    let path = format!("/api/admin/v1/registry/devices/{}", device.to_uppercase());
    let set = |status: &'static str| admin(&app, Method::PATCH, &path, &ops, Some(json!({"status": status})));
    assert_eq!(refusal(proxy(&app, &device, "/echo").send().await.unwrap()).await, (403, "device_pending".into()));
    let (status, approved) = set("active").await;
    assert_eq!((status, approved["status"].as_str()), (200, Some("active")), "{approved}");
    assert_eq!(proxy(&app, &device, "/echo").send().await.unwrap().status(), 200, "approved: it reaches its instance");
    let (status, _) = set("active").await;
    assert_eq!(status, 200, "approving again answers the same");
    set("blocked").await;
    assert_eq!(refusal(proxy(&app, &device, "/echo").send().await.unwrap()).await, (403, "device_blocked".into()));
    set("active").await;
    assert_eq!(proxy(&app, &device, "/echo").send().await.unwrap().status(), 200, "unblocked");

    let (status, body) = set("pending").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_field")), "{body}");
    let unknown = format!("/api/admin/v1/registry/devices/{}", uuid());
    let (status, body) = admin(&app, Method::PATCH, &unknown, &ops, Some(json!({"status": "blocked"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("device_not_found")), "{body}");
    let (status, _) = admin(
        &app,
        Method::PATCH,
        "/api/admin/v1/registry/devices/not-a-uuid",
        &ops,
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(status, 422);

    // The command line's change is recorded as `cli`.
    let (ok, _, err) = app.cli(&["registry", "block", &other], "");
    assert!(ok, "{err}");
    let (_, log) = admin(&app, Method::GET, "/api/admin/v1/audit", &ops, None).await;
    let acts: Vec<(&str, &str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("registry_device."))
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    let api = "ops@example.com";
    assert_eq!(
        acts,
        [
            ("registry_device.block", "cli", other.as_str()),
            ("registry_device.unblock", api, device.as_str()),
            ("registry_device.block", api, device.as_str()),
            ("registry_device.approve", api, device.as_str()),
        ],
        "a repeated approval changed nothing and is not recorded: {log}"
    );
    let detail: &Value =
        &log["items"].as_array().unwrap().iter().find(|e| e["action"] == "registry_device.approve").unwrap()["detail"];
    assert_eq!(detail, &json!({"from": "pending", "to": "active", "instance_id": "w1"}));
}
