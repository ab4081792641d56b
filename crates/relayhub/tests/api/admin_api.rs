//! The operator plane: a customer onboarded from a script — an operator
//! made on the command line, then licenses, tokens and keys over
//! `/api/admin/v1` — with every act in the audit log, and every other
//! kind of credential refused there.

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// `relayhub ARGS --json` on the app's database, `stdin` piped in.
fn cli(app: &TestApp, args: &[&str], stdin: &str) -> Value {
    let (ok, out, err) = app.cli(args, stdin);
    assert!(ok, "relayhub {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// An operator made on the command line, and a token for them.
pub fn operator_token(app: &TestApp, email: &str) -> String {
    cli(app, &["operator", "create", "--email", email, "--name", "Ops"], "a long passphrase\n");
    let token = cli(app, &["operator", "token", "create", "--operator", email, "--name", "billing"], "");
    let secret = token["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rho_"), "{token}");
    secret
}

pub(crate) async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

async fn license_status(app: &TestApp, token: &str) -> u16 {
    app.http.get(app.url("/api/v1/license")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_operator_onboards_a_customer_from_a_script_and_every_act_is_in_the_audit_log() {
    use reqwest::Method;
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "Ops@Example.com");
    let call = |method: Method, path: &'static str, body: Option<Value>| admin(&app, method, path, &ops, body);

    let (status, created) = call(
        Method::POST,
        "/api/admin/v1/licenses",
        Some(json!({"number": "CUST-1", "name": "Customer One", "max_devices": 5, "expires": "2099-12-31"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let first = created["token"]["secret"].as_str().unwrap().to_owned();
    let first_id = created["token"]["id"].as_str().unwrap().to_owned();
    assert_eq!(license_status(&app, &first).await, 200, "the new customer's token works at once");
    let (status, again) = call(Method::POST, "/api/admin/v1/licenses", Some(json!({"number": "CUST-1"}))).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("already_exists")), "{again}");

    // A change names its fields; the others keep their values.
    let (status, patched) =
        call(Method::PATCH, "/api/admin/v1/licenses/CUST-1", Some(json!({"max_devices": null}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!((patched["name"].as_str(), patched["expires"].as_str()), (Some("Customer One"), Some("2099-12-31")));
    assert!(patched.get("max_devices").is_none(), "null clears the limit: {patched}");
    let (_, expired) =
        call(Method::PATCH, "/api/admin/v1/licenses/CUST-1", Some(json!({"expires": "2020-01-31"}))).await;
    assert_eq!(expired["expires"], "2020-01-31");
    assert_eq!(license_status(&app, &first).await, 403, "an expired license's token is refused");
    call(Method::PATCH, "/api/admin/v1/licenses/CUST-1", Some(json!({"expires": null}))).await;
    assert_eq!(license_status(&app, &first).await, 200);

    // A token rotation: a second token, then the first revoked.
    let (status, second) = call(Method::POST, "/api/admin/v1/licenses/CUST-1/tokens", None).await;
    assert_eq!(status, 201, "{second}");
    let second = second["secret"].as_str().unwrap().to_owned();
    let revoke = format!("/api/admin/v1/licenses/CUST-1/tokens/{first_id}");
    let (status, _) = admin(&app, Method::DELETE, &revoke, &ops, None).await;
    assert_eq!(status, 204);
    assert_eq!((license_status(&app, &first).await, license_status(&app, &second).await), (401, 200));
    let (_, shown) = call(Method::GET, "/api/admin/v1/licenses/CUST-1", None).await;
    assert_eq!(shown["tokens"].as_array().map(Vec::len), Some(2), "{shown}");
    assert_eq!(shown["devices"], 0);

    // An app key for this customer only.
    let (status, key) =
        call(Method::POST, "/api/admin/v1/apikeys", Some(json!({"name": "android", "licenses": ["CUST-1"]}))).await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["id"].as_str().unwrap().to_owned();
    let (_, keys) = call(Method::GET, "/api/admin/v1/apikeys", None).await;
    let listed = keys["keys"].as_array().unwrap().iter().find(|k| k["id"] == key_id.as_str()).cloned();
    assert_eq!(listed.map(|k| k["licenses"].clone()), Some(json!(["CUST-1"])), "{keys}");
    let (status, _) = admin(&app, Method::DELETE, &format!("/api/admin/v1/apikeys/{key_id}"), &ops, None).await;
    assert_eq!(status, 204);
    let (status, gone) = call(Method::DELETE, "/api/admin/v1/apikeys/key_nosuchkey", None).await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("credential_not_found")));

    // Acting on a license that does not exist.
    for (method, path) in
        [(Method::GET, "/api/admin/v1/licenses/NOPE"), (Method::POST, "/api/admin/v1/licenses/NOPE/tokens")]
    {
        let (status, body) = call(method, path, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("license_not_found")), "{path}");
    }
    let (status, _) = call(Method::PATCH, "/api/admin/v1/licenses/NOPE", Some(json!({"name": "x"}))).await;
    assert_eq!(status, 404);

    // The command line's acts are recorded too, as `cli`.
    cli(&app, &["license", "create", "--number", "CUST-2"], "");

    let (status, log) = call(Method::GET, "/api/admin/v1/audit", None).await;
    assert_eq!(status, 200, "{log}");
    let acts: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    let api = "ops@example.com";
    assert_eq!(
        acts,
        [
            ("license.create", "cli"),
            ("apikey.revoke", api),
            ("apikey.create", api),
            ("license_token.revoke", api),
            ("license_token.create", api),
            ("license.update", api),
            ("license.update", api),
            ("license.update", api),
            ("license.create", api),
            ("operator_token.create", "cli"),
            ("operator.create", "cli"),
        ],
        "newest first, refusals not recorded: {log}"
    );
    let newest_api_act = &log["items"][1];
    assert_eq!(newest_api_act["address"], "127.0.0.1", "{newest_api_act}");
    assert!(log["items"][0].get("address").is_none(), "the command line has no address");
    assert_eq!(log["items"][7]["detail"], json!({"max_devices": null}), "an update records what it named");
    let text = log.to_string();
    for secret in [&first, &second, &ops] {
        assert!(!text.contains(secret.as_str()), "no secret in the audit log");
    }
    let (_, one) = call(Method::GET, "/api/admin/v1/audit?license=CUST-2", None).await;
    assert_eq!((one["total"].as_u64(), one["items"][0]["license"].as_str()), (Some(1), Some("CUST-2")), "{one}");
    let (_, paged) = call(Method::GET, "/api/admin/v1/audit?size=2&page=2", None).await;
    assert_eq!(paged["items"][0]["action"], "apikey.create", "{paged}");
    assert_eq!(paged["total"], 11);
}

#[tokio::test]
async fn other_credentials_are_refused_at_the_admin_api_and_a_revoked_operator_token_at_once() {
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "ops@example.com");
    let list = || app.http.get(app.url("/api/admin/v1/licenses"));
    assert_eq!(list().bearer_auth(&ops).send().await.unwrap().status(), 200);
    let code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(code(list().send().await.unwrap()).await, (401, "missing_token".into()));
    for other in [&app.token, &app.api_key] {
        let refused = code(list().bearer_auth(other).send().await.unwrap()).await;
        assert_eq!(refused, (403, "forbidden".into()), "a license token or an app key is not an operator's");
    }
    // Every operation of the admin API, as the document lists them.
    let document: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap().iter().filter(|(p, _)| p.starts_with("/api/admin/")) {
        let url = app.url(
            &path
                .replace("{number}", "LIC-A")
                .replace("{token_id}", "tok_x")
                .replace("{key_id}", "key_x")
                .replace("{id}", "1")
                .replace("{device_uuid}", "6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10"),
        );
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let request = || app.http.request(method.clone(), &url).json(&json!({}));
            assert_eq!(code(request().send().await.unwrap()).await.0, 401, "{method} {path} without a token");
            let refused = code(request().bearer_auth(&app.token).send().await.unwrap()).await;
            assert_eq!(refused, (403, "forbidden".into()), "{method} {path} with the license's own token");
            operations += 1;
        }
    }
    assert_eq!(operations, 22, "the admin API's operations, of every capability");
    let forged = format!("rho_{}", "A".repeat(43));
    assert_eq!(code(list().bearer_auth(&forged).send().await.unwrap()).await, (401, "invalid_token".into()));

    let tokens = cli(&app, &["operator", "token", "list"], "");
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    cli(&app, &["operator", "token", "revoke", &id], "");
    assert_eq!(code(list().bearer_auth(&ops).send().await.unwrap()).await, (401, "invalid_token".into()));
    // The operator remains; the command line refuses a second with their email.
    let (ok, _, err) = app.cli(&["operator", "create", "--email", "OPS@example.com"], "another passphrase\n");
    assert!(!ok && err.contains("already exists"), "{err}");
}

#[tokio::test]
async fn a_suspended_license_is_refused_at_once_and_resumed_with_its_data() {
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "ops@example.com");
    app.send_ok("pos-1", json!({"invoice": 1})).await;
    let mut pos = app.connect("pos-1").await;
    pos.expect("message").await;

    let suspend = |on: bool| {
        admin(&app, reqwest::Method::PATCH, "/api/admin/v1/licenses/LIC-A", &ops, Some(json!({"suspended": on})))
    };
    let (status, suspended) = suspend(true).await;
    assert_eq!(status, 200, "{suspended}");
    assert!(suspended["suspended_at"].is_string(), "{suspended}");
    assert_eq!(suspended["name"], "", "only the suspension changed");
    assert_eq!(u16::from(pos.closed().await.expect("close frame").code), 4003, "its online device is disconnected");
    for response in [app.send("pos-1", json!(2)).await, app.get("/api/v1/license").send().await.unwrap()] {
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "license_suspended", "{body}");
    }
    let (_, again) = suspend(true).await;
    assert_eq!(again["suspended_at"], suspended["suspended_at"], "suspending again keeps the first instant");

    let (status, resumed) = suspend(false).await;
    assert_eq!(status, 200);
    assert!(resumed.get("suspended_at").is_none(), "{resumed}");
    app.send_ok("pos-1", json!({"invoice": 2})).await;
    let mut pos = app.connect("pos-1").await;
    let data: Vec<Value> = pos.messages(2).await.into_iter().map(|m| m["data"].clone()).collect();
    assert_eq!(data, [json!({"invoice": 1}), json!({"invoice": 2})], "nothing queued was lost");
    let (_, log) = admin(&app, reqwest::Method::GET, "/api/admin/v1/audit?license=LIC-A", &ops, None).await;
    let details: Vec<&Value> = log["items"].as_array().unwrap().iter().map(|e| &e["detail"]).collect();
    assert_eq!(details, [&json!({"suspended": false}), &json!({"suspended": true}), &json!({"suspended": true})]);
}

#[tokio::test]
async fn an_operator_adds_another_who_acts_with_their_own_token_until_it_is_revoked() {
    use reqwest::Method;
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "first@example.com");
    let body = json!({"email": "Second@Example.com", "name": "Night shift", "password": "a long passphrase"});
    let (status, second) = admin(&app, Method::POST, "/api/admin/v1/operators", &ops, Some(body.clone())).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["email"], "second@example.com");
    assert!(second.get("password").is_none() && second.get("password_hash").is_none(), "{second}");
    let (status, taken) = admin(&app, Method::POST, "/api/admin/v1/operators", &ops, Some(body)).await;
    assert_eq!((status, taken["error"]["code"].as_str()), (409, Some("already_exists")));
    let short = json!({"email": "third@example.com", "password": "short"});
    assert_eq!(admin(&app, Method::POST, "/api/admin/v1/operators", &ops, Some(short)).await.0, 422);

    let id = second["id"].as_str().unwrap();
    let tokens = format!("/api/admin/v1/operators/{id}/tokens");
    let (status, token) = admin(&app, Method::POST, &tokens, &ops, Some(json!({"name": "night script"}))).await;
    assert_eq!(status, 201, "{token}");
    let night = token["secret"].as_str().unwrap().to_owned();
    let (status, _) =
        admin(&app, Method::POST, "/api/admin/v1/licenses", &night, Some(json!({"number": "NIGHT-1"}))).await;
    assert_eq!(status, 201, "the new operator's token acts");

    let (_, listed) = admin(&app, Method::GET, "/api/admin/v1/operators", &ops, None).await;
    let emails: Vec<&str> =
        listed["operators"].as_array().unwrap().iter().map(|o| o["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["first@example.com", "second@example.com"]);
    assert_eq!(listed["tokens"].as_array().map(Vec::len), Some(2), "{listed}");
    assert!(!listed.to_string().contains(&night), "no secret is listed");

    // A token is revoked through its own operator only.
    let first_id = listed["operators"][0]["id"].as_str().unwrap();
    let wrong = format!("/api/admin/v1/operators/{first_id}/tokens/{}", token["id"].as_str().unwrap());
    let (status, body) = admin(&app, Method::DELETE, &wrong, &ops, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("credential_not_found")), "{body}");
    let revoke = format!("{tokens}/{}", token["id"].as_str().unwrap());
    assert_eq!(admin(&app, Method::DELETE, &revoke, &ops, None).await.0, 204);
    let (status, _) = admin(&app, Method::GET, "/api/admin/v1/licenses", &night, None).await;
    assert_eq!(status, 401, "revoked: refused at once");
    let unknown = format!("/api/admin/v1/operators/{}/tokens", uuid::Uuid::new_v4());
    let (status, body) = admin(&app, Method::POST, &unknown, &ops, Some(json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));

    let (_, log) = admin(&app, Method::GET, "/api/admin/v1/audit?size=5", &ops, None).await;
    let acts: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    let (first, night_shift) = ("first@example.com", "second@example.com");
    assert_eq!(
        acts,
        [
            ("operator_token.revoke", first),
            ("license.create", night_shift),
            ("operator_token.create", first),
            ("operator.create", first),
            ("operator_token.create", "cli"),
        ],
        "{log}"
    );
}

#[tokio::test]
async fn a_licenses_usage_counts_its_devices_queues_inbox_and_telemetry_and_nothing_of_another() {
    use relayhub_fleet::model::Role;
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "ops@example.com");
    let usage = |number: &'static str| {
        let path = format!("/api/admin/v1/licenses/{number}");
        let (app, ops) = (&app, &ops);
        async move {
            let (status, shown) = admin(app, reqwest::Method::GET, &path, ops, None).await;
            assert_eq!(status, 200, "{shown}");
            shown["usage"].clone()
        }
    };
    let nothing = json!({"devices_bound": 0, "devices_online": 0, "messages_queued": 0, "inbox_waiting": 0,
        "telemetry_points_day": 0, "telemetry_bytes": 0});
    assert_eq!(usage("LIC-A").await, nothing);

    app.send_ok("pos-1", json!({"invoice": 1})).await;
    app.send_ok("pos-1", json!({"invoice": 2})).await;
    let mut phone = app.connect("phone-1").await;
    phone.send(json!({"type": "publish", "ref": "scan-1", "data": {"barcode": 1}})).await;
    phone.expect("published").await;
    crate::fleet::user(&app, "LIC-A", "owner@example.com", Role::Admin).await;
    let session = crate::fleet::signed_in(&app, "owner@example.com").await;
    let (_, robot) = crate::fleet::paired_robot(&app, &session, "robot-1").await;
    let now = crate::telemetry::now_s();
    let lines =
        format!("cpu,host=r1 usage=1 {}\ncpu,host=r1 usage=2 {}\nmem,host=r1 used=3 {}", now - 60, now - 30, now);
    assert_eq!(crate::telemetry::write(&app, &robot, "s", &lines).await.status(), 204);
    // Another license's traffic is not this one's.
    admin(&app, reqwest::Method::POST, "/api/admin/v1/licenses", &ops, Some(json!({"number": "LIC-OTHER"}))).await;

    let used = usage("LIC-A").await;
    assert_eq!(
        (&used["devices_bound"], &used["devices_online"], &used["messages_queued"], &used["inbox_waiting"]),
        (&json!(2), &json!(1), &json!(2), &json!(1)),
        "{used}"
    );
    assert_eq!(used["telemetry_points_day"], 3, "{used}");
    assert!(used["telemetry_bytes"].as_u64().unwrap() > 0, "{used}");
    assert_eq!(usage("LIC-OTHER").await, nothing);
    let (_, page) = admin(&app, reqwest::Method::GET, "/api/admin/v1/licenses?size=1", &ops, None).await;
    assert_eq!((page["total"].as_u64(), page["items"][0]["number"].as_str()), (Some(2), Some("LIC-A")), "{page}");
    assert_eq!(page["items"][0]["usage"], used, "the list shows the same usage");

    phone.close().await;
    let mut pos = app.connect("pos-1").await;
    let messages = pos.messages(2).await;
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    pos.ack(&ids).await;
    pos.sync().await;
    let inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    let ids: Vec<Value> = inbox["records"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect();
    app.post("/api/v1/inbox/ack").json(&json!({"ids": ids})).send().await.unwrap();
    let after = usage("LIC-A").await;
    assert_eq!((&after["messages_queued"], &after["inbox_waiting"]), (&json!(0), &json!(0)), "{after}");
}
