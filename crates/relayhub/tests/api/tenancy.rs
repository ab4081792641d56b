//! Licenses are isolated; expired licenses, revoked tokens and revoked keys
//! stop working at once.

use chrono::NaiveDate;
use relayhub_core::identity::{self, LicenseUpdate};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::time::Timestamp;
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn two_licenses_cannot_see_each_others_devices_messages_or_inbox() {
    let app = TestApp::spawn().await;
    let (b_token, _) = app.create_license("LIC-B", None).await;
    let a_msg = app.send_ok("a-phone", json!({"secret": "A"})).await;
    let mut a_phone = app.connect("a-phone").await;
    a_phone.expect("message").await;
    a_phone.send(json!({"type": "publish", "ref": "r1", "data": {"from": "A"}})).await;
    a_phone.expect("published").await;

    let b = |method: reqwest::Method, path: &str| app.http.request(method, app.url(path)).bearer_auth(&b_token);
    use reqwest::Method;
    // Every read and write B could try on A's objects: 404, as if absent.
    for (method, path) in [
        (Method::GET, "/api/v1/devices/a-phone"),
        (Method::GET, "/api/v1/devices/a-phone/messages"),
        (Method::DELETE, "/api/v1/devices/a-phone"),
        (Method::PUT, "/api/v1/devices/a-phone"),
        (Method::POST, "/api/v1/devices/a-phone/reset"),
        (Method::GET, &format!("/api/v1/messages/{a_msg}")),
    ] {
        let response = b(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert!(!body.to_string().contains("LIC-A"), "{body}");
    }
    let post = b(Method::POST, "/api/v1/devices/a-phone/messages").json(&json!(1)).send().await.unwrap();
    assert_eq!(post.status(), 404);
    let batch = json!({"messages": [{"device_id": "a-phone", "data": 1}]});
    assert_eq!(b(Method::POST, "/api/v1/messages").json(&batch).send().await.unwrap().status(), 404);

    let devices: Value = b(Method::GET, "/api/v1/devices").send().await.unwrap().json().await.unwrap();
    assert_eq!(devices["total"], 0);
    let inbox: Value = b(Method::GET, "/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["records"], json!([]));
    let license: Value = b(Method::GET, "/api/v1/license").send().await.unwrap().json().await.unwrap();
    assert_eq!(license["number"], "LIC-B");
    assert_eq!(license["devices"], 0);

    // B cannot acknowledge A's inbox record away.
    let a_inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    let record = a_inbox["records"][0]["id"].clone();
    let acked: Value = b(Method::POST, "/api/v1/inbox/ack")
        .json(&json!({"ids": [record]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(acked["deleted"], 0);
    let a_inbox: Value = app.get("/api/v1/inbox").send().await.unwrap().json().await.unwrap();
    assert_eq!(a_inbox["records"].as_array().unwrap().len(), 1);

    // A's phone cannot be taken over by connecting with license B.
    let (status, body) = app.try_connect("a-phone", &app.api_key, "LIC-B").await.err().expect("refused");
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "device_bound_elsewhere");
}

#[tokio::test]
async fn an_expired_license_gets_403_and_its_devices_are_disconnected() {
    let app = TestApp::spawn().await;
    app.send_ok("pos-1", json!(1)).await;
    let mut pos = app.connect("pos-1").await;
    pos.expect("message").await;

    // As `relayhub license update LIC-A --expires 2020-01-01` would, from
    // another process.
    let update = LicenseUpdate {
        expires_at: Some(Some(Timestamp::end_of_day(NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()))),
        ..LicenseUpdate::default()
    };
    app.admin().identity.update_license(&LicenseNumber::parse("LIC-A").unwrap(), update).await.unwrap();

    assert_eq!(u16::from(pos.closed().await.expect("close frame").code), 4003);
    for response in [
        app.send("pos-1", json!(2)).await,
        app.get("/api/v1/devices").send().await.unwrap(),
        app.get("/api/v1/inbox").send().await.unwrap(),
        app.get("/api/v1/license").send().await.unwrap(),
    ] {
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "license_expired");
        assert!(body["error"]["message"].as_str().unwrap().contains("2020-01-01"));
    }
    let (status, body) = app.try_connect("pos-1", &app.api_key, "LIC-A").await.err().expect("refused");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("license_not_found")), "as if unknown");

    // Renewal brings everything back, the queue included.
    let renew = LicenseUpdate { expires_at: Some(None), ..LicenseUpdate::default() };
    app.admin().identity.update_license(&LicenseNumber::parse("LIC-A").unwrap(), renew).await.unwrap();
    let mut pos = app.connect("pos-1").await;
    assert_eq!(pos.expect("message").await["data"], 1);
}

#[tokio::test]
async fn a_revoked_token_stops_working_and_others_keep_working() {
    let app = TestApp::spawn().await;
    let number = LicenseNumber::parse("LIC-A").unwrap();
    let second = identity::issue_token(app.admin().identity.as_ref(), &number).await.unwrap();
    let tokens =
        app.admin().identity.tokens(app.admin().identity.license(&number).await.unwrap().unwrap().pk).await.unwrap();
    let first_id = tokens.iter().find(|t| t.id != second.id).unwrap().id.clone();

    assert_eq!(app.get("/api/v1/license").send().await.unwrap().status(), 200);
    identity::revoke_token(app.admin().identity.as_ref(), &number, &first_id).await.unwrap();
    let refused = app.get("/api/v1/license").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "invalid_token");
    let ok = app.http.get(app.url("/api/v1/license")).bearer_auth(second.secret.expose()).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    let none = app.http.get(app.url("/api/v1/license")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.json::<Value>().await.unwrap()["error"]["code"], "missing_token");
}

#[tokio::test]
async fn a_revoked_api_key_refuses_new_sockets_and_closes_open_ones() {
    let app = TestApp::spawn().await;
    let mut phone = app.connect("phone-1").await;
    identity::revoke_api_key(app.admin().identity.as_ref(), &app.api_key_id).await.unwrap();
    assert_eq!(u16::from(phone.closed().await.expect("close frame").code), 4001);
    let (status, body) = app.try_connect("phone-1", &app.api_key, "LIC-A").await.err().expect("refused");
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")));

    let other = identity::create_api_key(app.admin().identity.as_ref(), "v2", &[]).await.unwrap();
    app.try_connect("phone-1", other.secret.expose(), "LIC-A").await.expect("a new key works");
}

#[tokio::test]
async fn the_upgrade_refuses_missing_or_unknown_credentials_before_upgrading() {
    let app = TestApp::spawn().await;
    let (status, body) = app.try_connect("p", "rhk_nope", "LIC-A").await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let (status, body) = app.try_connect("p", &app.api_key, "LIC-NONE").await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("license_not_found")));
    let (status, body) = app.try_connect("bad id!", &app.api_key, "LIC-A").await.err().unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_field")));

    // Query parameters work for clients that cannot set headers.
    let url = format!("ws://{}/ws/device?api_key={}&device_id=q-phone&license=LIC-A", app.addr, app.api_key);
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    let device = crate::helpers::Device::open(request).await.expect("connects with query credentials");
    assert_eq!(device.hello["device_id"], "q-phone");

    // A plain GET is not an upgrade.
    let plain = app
        .http
        .get(app.url("/ws/device"))
        .header("x-api-key", &app.api_key)
        .header("x-device-id", "p")
        .header("x-license", "LIC-A")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.json::<Value>().await.unwrap()["error"]["code"].is_string());
}

/// Every fleet route that names a robot or a user, called by another
/// license's admin: 404, nothing changed; the lists show none of it; a
/// robot's token opens no user route.
#[tokio::test]
async fn another_licenses_admin_reaches_no_robot_user_chart_or_log_of_this_one() {
    use crate::fleet::{as_user, paired_robot, signed_in, user, user_json};
    use relayhub_fleet::model::Role;
    use reqwest::Method;

    let app = TestApp::spawn().await;
    let owner_id = user(&app, "LIC-A", "owner@a.example", Role::Admin).await;
    let owner = signed_in(&app, "owner@a.example").await;
    let (robot, robot_token) = paired_robot(&app, &owner, "pi-a").await;
    user(&app, "LIC-B", "admin@b.example", Role::Admin).await;
    let intruder = signed_in(&app, "admin@b.example").await;

    let range = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z";
    let calls: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, format!("/api/robots/{robot}"), None, "robot_not_found"),
        (Method::PATCH, format!("/api/robots/{robot}"), Some(json!({"name": "taken"})), "robot_not_found"),
        (Method::DELETE, format!("/api/robots/{robot}"), None, "robot_not_found"),
        (Method::GET, format!("/api/robots/{robot}/metrics?measurement=cpu&{range}"), None, "robot_not_found"),
        (Method::GET, format!("/api/robots/{robot}/logs?{range}"), None, "robot_not_found"),
        (Method::GET, format!("/api/robots/{robot}/series?{range}"), None, "robot_not_found"),
        (Method::PATCH, format!("/api/users/{owner_id}"), Some(json!({"is_active": false})), "user_not_found"),
    ];
    for (method, path, body, code) in calls {
        let mut request = as_user(&app, method.clone(), &path, &intruder);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], code, "{method} {path}");
    }
    let robots = user_json(&app, "/api/robots", &intruder).await;
    assert_eq!(robots["robots"], json!([]), "{robots}");
    let users = user_json(&app, "/api/users", &intruder).await;
    assert!(!users.to_string().contains("owner@a.example"), "{users}");

    let mine = user_json(&app, &format!("/api/robots/{robot}"), &owner).await;
    assert_eq!((mine["name"].as_str(), mine["status"].as_str()), (Some("pi-a"), Some("active")), "untouched");
    assert_eq!(user_json(&app, "/api/users/me", &owner).await["is_active"], true);
    let robot_as_user = as_user(&app, Method::GET, "/api/robots", &robot_token).send().await.unwrap();
    assert_eq!(robot_as_user.status(), 401, "a robot's token is not a user's");
}

/// The registry's tenant is the instance: a device approved for one
/// instance that registers with another starts over, pending.
#[tokio::test]
async fn a_device_that_moves_to_another_instance_needs_approval_again() {
    use relayhub_registry::model::DeviceStatus;
    use relayhub_registry::store::DeviceRegistry;

    let app = TestApp::spawn().await;
    let device = uuid::Uuid::new_v4().to_string();
    let register = |instance: &'static str| {
        let body = json!({"device_uuid": device, "instance_id": instance, "public_url": format!("https://{instance}.example.com")});
        app.post("/ECK/API/DEVICE/REGISTER").header("x-api-key", &app.api_key).json(&body).send()
    };
    assert_eq!(register("wh-a").await.unwrap().status(), 200);
    app.admin()
        .get::<dyn DeviceRegistry>()
        .unwrap()
        .set_status(&relayhub_registry::rules::device_uuid(&device).unwrap(), DeviceStatus::Active)
        .await
        .unwrap();
    let again: Value = register("wh-a").await.unwrap().json().await.unwrap();
    assert_eq!(again["device"]["status"], "active");
    let moved: Value = register("wh-b").await.unwrap().json().await.unwrap();
    assert_eq!(
        (moved["device"]["instance_id"].as_str(), moved["device"]["status"].as_str()),
        (Some("wh-b"), Some("pending"))
    );
    let proxied = app
        .post("/ECK/PROXY")
        .header("x-api-key", &app.api_key)
        .header("x-device-id", &device)
        .header("x-eckwms-target-url", "/api")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 403);
    assert_eq!(proxied.json::<Value>().await.unwrap()["error"]["code"], "device_pending");
}

/// Every rail route that names a row, called with another license's
/// operator, robot and store staff: 404 (or an empty list), and nothing of
/// the first license changes.
#[tokio::test]
async fn another_railway_reaches_no_store_item_ticket_task_or_passenger_of_this_one() {
    use crate::rail::{Key, call, ok, passenger, robot, store, ticket};
    use reqwest::StatusCode;

    let app = TestApp::spawn().await;
    let a = app.token.clone();
    let (b, _) = app.create_license("LIC-B", None).await;
    // License A's rows.
    let user = passenger(&app, &a, "Anna").await;
    let code = ticket(&app, &a, &user, "SPB").await["code"].as_str().unwrap().to_owned();
    let shop = store(&app, &a, "Buffet").await;
    let coffee = crate::rail::item(&app, &a, &shop, "Coffee", 5).await;
    let (_, a_robot) = robot(&app, &a, &Key::ed25519(31)).await;
    let buy = json!({"user_id": user, "items": [{"item_id": coffee, "count": 1}]});
    let buy_again = buy.clone();
    let bought =
        app.http.post(app.url("/store_api/store/purchase")).bearer_auth(&a_robot).header("Idempotency-Key", "cart-a");
    let bought: Value = bought.json(&buy).send().await.unwrap().json().await.unwrap();
    let task = bought["task_id"].as_str().unwrap().to_owned();
    let task = task.as_str();
    let engineer = json!({"login": "eng", "password": "correct horse", "privileges": 1});
    let engineer = ok(&app, "POST", "/base_api/admin/engineer", &a, Some(engineer)).await["id"].clone();
    let engineer = engineer.as_str().unwrap();
    ok(&app, "POST", &format!("/base_api/admin/engineer/{engineer}/card"), &a, Some(json!({"key": "card-a"}))).await;
    let train = json!({"store_id": shop, "train_number": 7, "train_date": chrono::Utc::now().to_rfc3339()});
    ok(&app, "POST", "/base_api/admin/train_store", &a, Some(train.clone())).await;

    // License B's callers.
    let (_, b_robot) = robot(&app, &b, &Key::ed25519(32)).await;
    let b_shop = store(&app, &b, "Kiosk").await;
    let b_staff = ok(&app, "POST", &format!("/store_api/admin/store/{b_shop}/token"), &b, None).await;
    let b_staff = b_staff["token"].as_str().unwrap().to_owned();
    let item_body = json!({"id": coffee, "store_id": shop, "name": "Free coffee", "price_penny": 0, "balance": 999});
    let ticket_body = json!({"user_id": user, "train_number": 1, "wagon_number": 1, "place_number": 1,
        "date": "2026-12-01T00:00:00Z", "station_id": "X", "destination_id": "Y", "start_date": "2026-12-01T00:00:00Z"});
    let today = chrono::Utc::now().date_naive();
    let calls: Vec<(&str, String, &str, Option<Value>)> = vec![
        ("GET", format!("/store_api/admin/store/{shop}"), &b, None),
        ("DELETE", format!("/store_api/admin/store/{shop}"), &b, None),
        ("POST", format!("/store_api/admin/store/{shop}/token"), &b, None),
        (
            "POST",
            format!("/store_api/admin/store/{shop}/key"),
            &b,
            Some(json!({"public_key": Key::ed25519(33).public()})),
        ),
        ("GET", format!("/store_api/store/item/{coffee}"), &b, None),
        ("PUT", "/store_api/store/item".into(), &b, Some(item_body.clone())),
        ("POST", "/store_api/store/item".into(), &b, Some(item_body.clone())),
        ("DELETE", format!("/store_api/store/item/{coffee}"), &b, None),
        ("GET", format!("/store_api/store/task/{task}"), &b, None),
        ("POST", format!("/store_api/store/task/{task}/ready"), &b, None),
        ("POST", format!("/base_api/admin/engineer/{engineer}/card"), &b, Some(json!({"key": "card-b"}))),
        ("POST", "/base_api/admin/train_store".into(), &b, Some(train.clone())),
        ("POST", "/base_api/admin/ticket".into(), &b, Some(ticket_body)),
        ("POST", "/base_api/robot/ticket/check".into(), &b_robot, Some(json!({"code": code}))),
        ("GET", format!("/base_api/robot/user/{user}"), &b_robot, None),
        ("POST", "/store_api/store/purchase".into(), &b_robot, Some(buy)),
        ("GET", format!("/store_api/store/task/{task}"), &b_robot, None),
        ("GET", format!("/store_api/store/item/{coffee}"), &b_staff, None),
        ("PUT", "/store_api/store/item".into(), &b_staff, Some(item_body)),
        ("GET", format!("/store_api/store/task/{task}"), &b_staff, None),
        ("POST", format!("/store_api/store/task/{task}/ready"), &b_staff, None),
    ];
    for (method, path, token, body) in calls {
        let (status, answer) = call(&app, method, &path, token, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    // The key of A's robot's purchase, sent by B's robot: no replay of it.
    let stolen =
        app.http.post(app.url("/store_api/store/purchase")).bearer_auth(&b_robot).header("Idempotency-Key", "cart-a");
    let stolen = stolen.json(&buy_again).send().await.unwrap();
    assert_eq!(stolen.status(), 404, "another railway's key replays nothing");
    assert!(stolen.headers().get("idempotent-replayed").is_none());
    let card = call(&app, "POST", "/base_api/robot/engineer/card", &b_robot, Some(json!({"key": "card-a"}))).await;
    assert_eq!(card.0, StatusCode::UNAUTHORIZED, "another railway's card opens nothing");
    for (path, token) in [
        ("/store_api/admin/stores".to_owned(), &b),
        (format!("/store_api/store/items?store_id={shop}"), &b),
        (format!("/store_api/store/items?store_id={shop}"), &b_robot),
        ("/store_api/store/items".to_owned(), &b_staff),
        (format!("/store_api/store/tasks?store_id={shop}"), &b),
        ("/base_api/admin/users".to_owned(), &b),
        ("/base_api/admin/tickets".to_owned(), &b),
        ("/base_api/admin/engineers".to_owned(), &b),
        ("/base_api/admin/train_stores".to_owned(), &b),
        (format!("/base_api/robot/stores?train_number=7&date={today}"), &b_robot),
    ] {
        let page = ok(&app, "GET", &path, token, None).await;
        let own = page["items"].as_array().unwrap().iter().filter(|row| row["name"] != "Kiosk").count();
        assert_eq!(own, 0, "{path}: {page}");
    }

    // License A's rows are as they were.
    assert_eq!(ok(&app, "GET", &format!("/store_api/store/item/{coffee}"), &a, None).await["balance"], 4);
    assert_eq!(ok(&app, "GET", &format!("/store_api/store/task/{task}"), &a, None).await["is_ready"], false);
    let checked = ok(&app, "POST", "/base_api/robot/ticket/check", &a_robot, Some(json!({"code": code}))).await;
    assert_eq!(checked["user"]["name"], "Anna");
}
