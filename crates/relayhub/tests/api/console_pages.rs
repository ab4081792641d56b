//! The capabilities' console pages as an admin uses them, over real HTTP:
//! a device's settings saved with the API's merge rules, a receipt, the
//! registry's approve and block, the rail's stores, items and engineers,
//! and the calls in progress — each checked through the API it stands for.

use relayhub_core::identity::BindingPolicy;
use relayhub_fleet::model::Role;
use relayhub_registry::model::DeviceStatus;
use relayhub_registry::store::DeviceRegistry;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{Visitor, location};
use crate::fleet::{PASSWORD, user};
use crate::helpers::TestApp;
use crate::rail::{Key, call, ok, robot};
use crate::signal::connect_call;
use crate::signal_users::{member, users_only};

const ADMIN: &str = "admin@pages.example";
const WORKER: &str = "worker@pages.example";
const OTHER: &str = "admin@other-pages.example";

/// A visitor signed in as `email`, with its CSRF token.
async fn signed_in_visitor<'a>(app: &'a TestApp, email: &str) -> (Visitor<'a>, String) {
    let mut visitor = Visitor::new(app);
    let signed = visitor.sign_in(email, PASSWORD, "/console").await;
    assert_eq!(signed.status(), 303, "{email} signs in");
    let csrf = visitor.csrf().await;
    (visitor, csrf)
}

/// A form's answer: its status, where it leads and its page.
async fn submit(visitor: &Visitor<'_>, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
    let response = visitor.post(path, fields).send().await.unwrap();
    let (status, to) = (response.status().as_u16(), location(&response).to_owned());
    (status, to, response.text().await.unwrap())
}

/// Text as a page holds it, read back.
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The text of every `<tag …>…</tag>` in a page, unescaped.
fn texts_of(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    html.split(open.as_str())
        .skip(1)
        .filter_map(|rest| {
            let body = rest.split_once('>')?.1;
            Some(unescape(body.split(close.as_str()).next()?))
        })
        .collect()
}

/// The value of the first `name="…"` field of a page.
fn field_value(html: &str, name: &str) -> String {
    let after = html.split(&format!(r#"name="{name}" value=""#)).nth(1).unwrap_or_else(|| panic!("{name} in {html}"));
    unescape(after.split('"').next().unwrap())
}

async fn put_settings(app: &TestApp, device: &str, version: i64, settings: Value) -> Value {
    let (status, body) = crate::settings::put(app, device, version, settings).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn settings_of(app: &TestApp, device: &str) -> Value {
    app.get(&format!("/api/v1/devices/{device}/settings")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn settings_saved_in_the_console_follow_the_apis_merge_rules() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    put_settings(&app, "kiosk-1", 0, json!({"volume": 3})).await;
    let (visitor, csrf) = signed_in_visitor(&app, ADMIN).await;
    let path = "/console/devices/kiosk-1/settings";

    let (status, html) = visitor.page("/console/devices/kiosk-1").await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(field_value(&html, "version"), "1");
    let shown: Value = serde_json::from_str(&texts_of(&html, "textarea")[0]).unwrap();
    assert_eq!(shown, json!({"volume": 3}), "the form holds the current settings");

    let (status, to, _) =
        submit(&visitor, path, &[("csrf", &csrf), ("version", "1"), ("settings", r#"{"volume": 5}"#)]).await;
    assert_eq!((status, to.as_str()), (303, "/console/devices/kiosk-1?saved=1#settings-heading"));
    let current = settings_of(&app, "kiosk-1").await;
    assert_eq!((current["version"].as_i64(), &current["settings"]), (Some(2), &json!({"volume": 5})));
    assert_eq!(current["updated_by"], "back_office");

    // The API adds a key meanwhile; a save from version 2 that adds
    // another is merged.
    put_settings(&app, "kiosk-1", 2, json!({"volume": 5, "lang": "ru"})).await;
    let text = r#"{"volume": 5, "shift": "night"}"#;
    let (status, to, _) = submit(&visitor, path, &[("csrf", &csrf), ("version", "2"), ("settings", text)]).await;
    assert_eq!((status, to.as_str()), (303, "/console/devices/kiosk-1?saved=merged#settings-heading"));
    let current = settings_of(&app, "kiosk-1").await;
    assert_eq!(current["settings"], json!({"volume": 5, "lang": "ru", "shift": "night"}));
    assert_eq!(current["version"], 4);
    let (_, html) = visitor.page(&to).await;
    assert!(html.contains("merged with changes made since"), "the page says so: {html}");

    // The API changes the volume meanwhile; a save from version 4 that
    // changes it too is refused, naming it, and the text is kept.
    put_settings(&app, "kiosk-1", 4, json!({"volume": 7, "lang": "ru", "shift": "night"})).await;
    let text = r#"{"volume": 9, "lang": "ru", "shift": "night"}"#;
    let (status, _, html) = submit(&visitor, path, &[("csrf", &csrf), ("version", "4"), ("settings", text)]).await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("<code>volume</code>"), "the conflicting path: {html}");
    assert!(texts_of(&html, "pre").iter().any(|pre| pre == text), "the person's text in a <pre>: {html}");
    assert_eq!(field_value(&html, "version"), "5", "the form now holds the current version");
    let current = settings_of(&app, "kiosk-1").await;
    assert_eq!((current["version"].as_i64(), &current["settings"]["volume"]), (Some(5), &json!(7)));

    // Malformed JSON: the status the API gives the same text, the text
    // kept in the form, nothing changed.
    let broken = r#"{"volume": 10, "lang": <ru>"#;
    let api = app
        .http
        .put(app.url("/api/v1/devices/kiosk-1/settings"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"version": 5, "settings": {broken}}}"#))
        .send()
        .await
        .unwrap();
    let api_status = api.status().as_u16();
    assert_eq!(api_status, 400, "{:?}", api.text().await);
    let (status, _, html) = submit(&visitor, path, &[("csrf", &csrf), ("version", "5"), ("settings", broken)]).await;
    assert_eq!(status, api_status, "{html}");
    assert!(html.contains(r#"role="alert""#) && html.contains("Not saved"), "{html}");
    assert_eq!(texts_of(&html, "textarea"), vec![broken.to_owned()], "the person's text stays in the form");
    assert!(!html.contains("<ru>"), "and is escaped");
    let current = settings_of(&app, "kiosk-1").await;
    assert_eq!((current["version"].as_i64(), &current["settings"]["volume"]), (Some(5), &json!(7)));
}

#[tokio::test]
async fn a_receipt_page_shows_the_messages_status() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let id = app.send_ok("kiosk-2", json!({"text": "hello"})).await;
    let (visitor, _) = signed_in_visitor(&app, ADMIN).await;
    let receipt = format!("/console/receipt?id={id}");

    let (status, html) = visitor.page(&receipt).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"id="receipt""#) && html.contains(&id), "{html}");
    assert!(html.contains(r#"<span class="badge warn">queued</span>"#), "{html}");

    let mut kiosk = app.connect("kiosk-2").await;
    kiosk.expect("message").await;
    kiosk.ack(&[&id]).await;
    kiosk.sync().await;
    app.await_status(&id, "delivered").await;
    let (_, html) = visitor.page(&receipt).await;
    assert!(html.contains(r#"<span class="badge ok">delivered</span>"#), "{html}");
    assert!(html.contains(r#"href="/console/devices/kiosk-2""#), "{html}");
    assert_eq!(visitor.page(&format!("/console/receipt?id={}", uuid::Uuid::new_v4())).await.0, 404);
}

/// A device registering with its instance (no public URL: a tunnel).
async fn register(app: &TestApp, device: &str) {
    let body = json!({"device_uuid": device, "instance_id": "w1"});
    let response =
        app.post("/ECK/API/DEVICE/REGISTER").header("x-api-key", &app.api_key).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// What the registry's store and its proxy say of a device: its status,
/// and the proxy's refusal code.
async fn registry_sees(app: &TestApp, device: &str) -> (DeviceStatus, String) {
    let devices = app.admin().get::<dyn DeviceRegistry>().unwrap();
    let status = devices
        .device(&relayhub_registry::rules::device_uuid(device).unwrap())
        .await
        .unwrap()
        .expect("registered")
        .status;
    let response = app
        .http
        .post(app.url("/ECK/PROXY"))
        .header("x-api-key", &app.api_key)
        .header("x-device-id", device)
        .header("x-eckwms-target-url", "/echo")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_admin_of_the_only_license_approves_then_blocks_a_registered_device() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let device = uuid::Uuid::new_v4().to_string();
    register(&app, &device).await;
    assert_eq!(registry_sees(&app, &device).await, (DeviceStatus::Pending, "device_pending".into()));
    let (visitor, csrf) = signed_in_visitor(&app, ADMIN).await;

    let (status, html) = visitor.page("/console/registry").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!(r#"<tr data-device="{device}" data-status="pending">"#)), "{html}");
    assert!(html.contains(&format!(r#"action="/console/registry/{device}/approve""#)), "{html}");

    let form = [("csrf", csrf.as_str()), ("return_status", ""), ("return_page", "1"), ("action", "approve")];
    let (status, to, _) = submit(&visitor, &format!("/console/registry/{device}/approve"), &form).await;
    assert_eq!((status, to.as_str()), (303, "/console/registry"));
    // Active: the proxy lets it through, to an instance not connected.
    assert_eq!(registry_sees(&app, &device).await, (DeviceStatus::Active, "instance_unknown".into()));
    let (_, html) = visitor.page("/console/registry?status=active").await;
    assert!(html.contains(&format!(r#"<tr data-device="{device}" data-status="active">"#)), "{html}");

    let form = [("csrf", csrf.as_str()), ("return_status", "active"), ("return_page", "1"), ("action", "block")];
    let (status, to, _) = submit(&visitor, &format!("/console/registry/{device}/block"), &form).await;
    assert_eq!((status, to.as_str()), (303, "/console/registry?status=active"));
    assert_eq!(registry_sees(&app, &device).await, (DeviceStatus::Blocked, "device_blocked".into()));
    let (_, html) = visitor.page("/console/registry").await;
    assert!(html.contains(&format!(r#"<tr data-device="{device}" data-status="blocked">"#)), "{html}");

    let unknown = format!("/console/registry/{}/approve", uuid::Uuid::new_v4());
    assert_eq!(submit(&visitor, &unknown, &[("csrf", &csrf)]).await.0, 404);
}

#[tokio::test]
async fn the_registry_page_is_refused_to_plain_users_and_on_a_server_with_several_licenses() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    user(&app, &app.license, WORKER, Role::User).await;
    let device = uuid::Uuid::new_v4().to_string();
    register(&app, &device).await;
    let approve = format!("/console/registry/{device}/approve");

    let (worker, csrf) = signed_in_visitor(&app, WORKER).await;
    assert!(!worker.page("/console").await.1.contains(r#"href="/console/registry""#), "not offered to a user");
    assert_eq!(worker.page("/console/registry").await.0, 403);
    assert_eq!(submit(&worker, &approve, &[("csrf", &csrf)]).await.0, 403);

    let (admin, _) = signed_in_visitor(&app, ADMIN).await;
    let (_, home) = admin.page("/console").await;
    assert!(home.contains(r#"href="/console/registry""#), "offered to the only license's admin: {home}");
    app.create_license("LIC-B", None).await;
    let (_, home) = admin.page("/console/devices").await;
    assert!(!home.contains(r#"href="/console/registry""#), "the navigation offers only pages that open: {home}");
    assert!(home.contains(r#"href="/console/devices""#), "{home}");
    let (admin, csrf) = signed_in_visitor(&app, ADMIN).await;
    let (status, html) = admin.page("/console/registry").await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("relayhub registry") && !html.contains(&device), "{html}");
    assert_eq!(submit(&admin, &approve, &[("csrf", &csrf)]).await.0, 403);
    assert_eq!(registry_sees(&app, &device).await.0, DeviceStatus::Pending, "nothing changed");
}

/// The add-item form as a person fills it in.
fn item_form<'a>(csrf: &'a str, name: &'a str, price: &'a str, balance: &'a str) -> [(&'a str, &'a str); 7] {
    [
        ("csrf", csrf),
        ("name", name),
        ("price_penny", price),
        ("balance", balance),
        ("category", "drinks"),
        ("description", ""),
        ("logo_url", ""),
    ]
}

#[tokio::test]
async fn an_admin_opens_a_store_adds_an_item_and_sets_its_stock_as_the_api_sees_it() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let (visitor, csrf) = signed_in_visitor(&app, ADMIN).await;
    let op = app.token.clone();

    let store = [
        ("csrf", csrf.as_str()),
        ("name", "Buffet"),
        ("store_type", "RESTAURANT"),
        ("description", "Hot meals"),
        ("logo_url", ""),
    ];
    let (status, to, _) = submit(&visitor, "/console/rail/stores", &store).await;
    assert_eq!(status, 303);
    let id = to.strip_prefix("/console/rail/stores/").expect("to the store's page").to_owned();
    let seen = ok(&app, "GET", &format!("/store_api/admin/store/{id}"), &op, None).await;
    assert_eq!((seen["name"].as_str(), seen["store_type"].as_str()), (Some("Buffet"), Some("RESTAURANT")));
    let (status, html) = visitor.page(&to).await;
    assert_eq!(status, 200);
    assert!(html.contains("Buffet") && html.contains("Hot meals"), "{html}");

    let items = format!("/console/rail/stores/{id}/items");
    let tea = item_form(&csrf, "Tea", "150", "3");
    let (status, to, _) = submit(&visitor, &items, &tea).await;
    assert_eq!((status, to.as_str()), (303, format!("/console/rail/stores/{id}?page=1").as_str()));
    let listed = ok(&app, "GET", &format!("/store_api/store/items?store_id={id}"), &op, None).await;
    assert_eq!(listed["total"], 1);
    let tea = &listed["items"][0];
    assert_eq!(
        (tea["name"].as_str(), tea["price_penny"].as_i64(), tea["balance"].as_i64()),
        (Some("Tea"), Some(150), Some(3))
    );
    let tea = tea["id"].as_str().unwrap().to_owned();
    let (_, html) = visitor.page(&to).await;
    assert!(html.contains("1.50"), "the price as money: {html}");

    let stock = [("csrf", csrf.as_str()), ("balance", "12"), ("page", "1")];
    let (status, to, _) = submit(&visitor, &format!("{items}/{tea}/stock"), &stock).await;
    assert_eq!((status, to.as_str()), (303, format!("/console/rail/stores/{id}?page=1").as_str()));
    assert_eq!(ok(&app, "GET", &format!("/store_api/store/item/{tea}"), &op, None).await["balance"], 12);

    // A price the API refuses: its status and message, beside the form
    // that keeps what was typed.
    let bad = json!({"store_id": id, "name": "Coffee", "price_penny": -5, "balance": 1});
    let (api_status, api) = call(&app, "POST", "/store_api/store/item", &op, Some(bad)).await;
    assert_eq!(api_status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = api["error"]["message"].as_str().unwrap().to_owned();
    let (status, _, html) = submit(&visitor, &items, &item_form(&csrf, "Coffee", "-5", "1")).await;
    assert_eq!(status, api_status.as_u16(), "{html}");
    assert!(html.contains(&format!(r#"<p class="error" role="alert" id="new-item-error">{message}</p>"#)), "{html}");
    assert!(html.contains(r#"value="Coffee""#), "the name typed is kept: {html}");
    assert_eq!(ok(&app, "GET", &format!("/store_api/store/items?store_id={id}"), &op, None).await["total"], 1);
}

#[tokio::test]
async fn another_licenses_admin_finds_no_store_there() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    user(&app, "LIC-OTHER", OTHER, Role::Admin).await;
    let op = app.token.clone();
    let store = crate::rail::store(&app, &op, "Buffet").await;
    let tea = crate::rail::item(&app, &op, &store, "Tea", 5).await;
    let (other, csrf) = signed_in_visitor(&app, OTHER).await;

    let (status, html) = other.page(&format!("/console/rail/stores/{store}")).await;
    assert_eq!(status, 404);
    assert!(!html.contains("Buffet"), "{html}");
    assert!(!other.page("/console/rail/stores").await.1.contains("Buffet"));
    let base = format!("/console/rail/stores/{store}");
    for (path, fields) in [
        (format!("{base}/items"), vec![("name", "Mine"), ("price_penny", "1"), ("balance", "1")]),
        (format!("{base}/items/{tea}/stock"), vec![("balance", "0"), ("page", "1")]),
        (format!("{base}/items/{tea}/delete"), vec![("page", "1")]),
        (format!("{base}/token"), vec![]),
        (format!("{base}/delete"), vec![]),
    ] {
        let mut fields = fields;
        fields.push(("csrf", csrf.as_str()));
        let (status, _, html) = submit(&other, &path, &fields).await;
        assert_eq!(status, 404, "{path}: {html}");
        assert!(!html.contains("Buffet"), "{path}: {html}");
    }
    let seen = ok(&app, "GET", &format!("/store_api/store/items?store_id={store}"), &op, None).await;
    assert_eq!((seen["total"].as_u64(), seen["items"][0]["balance"].as_i64()), (Some(1), Some(5)), "untouched");
    assert_eq!(ok(&app, "GET", &format!("/store_api/admin/store/{store}"), &op, None).await["name"], "Buffet");
}

#[tokio::test]
async fn another_licenses_admin_finds_no_passenger_ticket_or_engineer_there() {
    let app = TestApp::spawn().await;
    user(&app, "LIC-OTHER", OTHER, Role::Admin).await;
    let op = app.token.clone();
    let vera = crate::rail::passenger(&app, &op, "Vera Passenger").await;
    crate::rail::ticket(&app, &op, &vera, "SPB").await;
    let engineer = json!({"login": "night-shift", "password": "a long password", "privileges": 1});
    let engineer = ok(&app, "POST", "/base_api/admin/engineer", &op, Some(engineer)).await;
    let engineer = engineer["id"].as_str().unwrap().to_owned();
    let (other, csrf) = signed_in_visitor(&app, OTHER).await;

    for path in ["/console/rail/passengers", "/console/rail/tickets", "/console/rail/engineers"] {
        let (status, html) = other.page(path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(!html.contains("Vera Passenger") && !html.contains("night-shift"), "{path}: {html}");
    }
    let (status, html) = other.page(&format!("/console/rail/tickets?user_id={vera}")).await;
    assert_eq!(status, 404, "{html}");
    assert!(!html.contains("Vera Passenger"), "{html}");
    let card = format!("/console/rail/engineers/{engineer}/cards");
    let (status, _, html) =
        submit(&other, &card, &[("csrf", csrf.as_str()), ("key", "a-card-key"), ("page", "1")]).await;
    assert_eq!(status, 404, "{html}");
    assert!(!html.contains("night-shift"), "{html}");
    let ticket = [
        ("csrf", csrf.as_str()),
        ("user_id", vera.as_str()),
        ("train_number", "7"),
        ("wagon_number", "3"),
        ("place_number", "12"),
        ("date", "2026-12-01"),
        ("station_id", "MOW"),
        ("destination_id", "SPB"),
        ("start_date", "2026-12-01T10:00"),
    ];
    let (status, _, html) = submit(&other, "/console/rail/tickets", &ticket).await;
    assert_eq!(status, 404, "a ticket for another license's passenger: {html}");
    assert!(!html.contains("Vera Passenger"), "{html}");
    let tickets = ok(&app, "GET", &format!("/base_api/admin/tickets?user_id={vera}"), &op, None).await;
    assert_eq!(tickets["total"], 1, "no ticket was added: {tickets}");
}

#[tokio::test]
async fn an_engineer_created_without_a_password_signs_in_with_the_one_shown_once() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let (visitor, csrf) = signed_in_visitor(&app, ADMIN).await;

    let form = [("csrf", csrf.as_str()), ("login", "eng"), ("password", ""), ("privileges", "5")];
    let (status, _, html) = submit(&visitor, "/console/rail/engineers", &form).await;
    assert_eq!(status, 200, "{html}");
    let shown: Vec<String> = html
        .split(r#"<pre id="secret">"#)
        .skip(1)
        .filter_map(|rest| rest.split("</pre>").next())
        .map(unescape)
        .collect();
    assert_eq!(shown.len(), 1, "the password once: {html}");
    let password = &shown[0];
    assert!(password.len() >= 16, "{password}");
    let (_, list) = visitor.page("/console/rail/engineers").await;
    assert!(list.contains("eng") && !list.contains(password.as_str()), "never shown again: {list}");

    let (_, robot_token) = robot(&app, &app.token, &Key::ed25519(41)).await;
    let login = json!({"login": "eng", "password": password});
    let signed = ok(&app, "POST", "/base_api/robot/engineer/login", &robot_token, Some(login)).await;
    assert_eq!((signed["login"].as_str(), signed["privileges"].as_i64()), (Some("eng"), Some(5)));
}

#[tokio::test]
async fn a_licenses_calls_are_listed_for_its_admins_and_no_one_elses() {
    let app = TestApp::spawn_with(users_only).await;
    let addr = app.addr.to_string();
    user(&app, &app.license, ADMIN, Role::Admin).await;
    user(&app, "LIC-B", OTHER, Role::Admin).await;
    let (ann, _, mut ann_socket) = member(&app, &addr, &app.license, "ann@pages.example").await;
    let (bob, _, mut bob_socket) = member(&app, &addr, &app.license, "bob@pages.example").await;
    let (cy, _, mut cy_socket) = member(&app, &addr, &app.license, "cy@pages.example").await;
    let (dee, _, mut dee_socket) = member(&app, &addr, &app.license, "dee@pages.example").await;
    connect_call(&mut ann_socket, &mut bob_socket).await;
    // Past the ICE swap the call is held, not just being connected.
    ann_socket.send("SWAP_ICE", json!({})).await;
    ann_socket.expect("/swapIce").await;
    bob_socket.expect("/swapIce").await;
    cy_socket.send("OFFER", json!({"candidateId": dee.to_string(), "sdp": "v=0"})).await;
    dee_socket.expect("/call").await;

    let (own, _) = signed_in_visitor(&app, ADMIN).await;
    let (status, html) = own.page("/console/calls").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<table id="calls">"#), "{html}");
    let row = |caller: i64, callee: i64, state: &str| {
        let opening = format!(r#"<tr data-caller="{caller}" data-callee="{callee}">"#);
        let cells = html.split(opening.as_str()).nth(1).and_then(|r| r.split("</tr>").next());
        cells.is_some_and(|cells| cells.contains(state))
    };
    assert!(row(ann, bob, "In call"), "ann calls bob: {html}");
    assert!(row(cy, dee, "Ringing"), "cy rings dee: {html}");
    assert!(html.contains("ann@pages.example"), "{html}");

    let (other, _) = signed_in_visitor(&app, OTHER).await;
    let (status, html) = other.page("/console/calls").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"id="no-calls""#) && !html.contains("data-caller"), "{html}");
    assert!(!html.contains("@pages.example"), "{html}");
}

#[tokio::test]
async fn an_admin_resets_a_reinstalled_phones_secret_and_the_phone_binds_again() {
    let app = TestApp::spawn().await;
    app.create_license_binding("LIC-FU", None, BindingPolicy::FirstUse).await;
    user(&app, "LIC-FU", ADMIN, Role::Admin).await;
    let phone = "7d0e2b4a-1c3f-4e5a-8b6c-9d0e1f2a3b4c";
    let first = app.try_connect_with(phone, &app.api_key, "LIC-FU", None).await.expect("first use binds");
    let old = first.hello["device_secret"].as_str().unwrap().to_owned();
    drop(first);
    let (visitor, csrf) = signed_in_visitor(&app, ADMIN).await;

    let (status, html) = visitor.page(&format!("/console/devices/{phone}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("set: its connections must present it"), "{html}");
    assert!(html.contains(&format!(r#"action="/console/devices/{phone}/reset""#)), "{html}");
    let (_, list) = visitor.page("/console/devices").await;
    assert!(list.contains("Device secret") && list.contains("set: its connections"), "{list}");

    let reset = format!("/console/devices/{phone}/reset");
    assert_eq!(submit(&visitor, &reset, &[]).await.0, 403, "no CSRF token, no reset");
    let (status, to, _) = submit(&visitor, &reset, &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, format!("/console/devices/{phone}?saved=reset").as_str()));
    let (_, html) = visitor.page(&to).await;
    assert!(html.contains("Device secret reset") && html.contains("none yet: its next connection gets one"), "{html}");

    let stale = app.try_connect_with(phone, &app.api_key, "LIC-FU", Some(&old)).await;
    let fresh = match stale {
        // The reset forgot the old secret: the next connection binds anew.
        Ok(device) => device.hello["device_secret"].as_str().expect("a new secret").to_owned(),
        Err(refused) => panic!("the reinstalled phone is refused: {refused:?}"),
    };
    assert_ne!(fresh, old);
    let unknown = format!("/console/devices/{}/reset", uuid::Uuid::new_v4());
    assert_eq!(submit(&visitor, &unknown, &[("csrf", &csrf)]).await.0, 404);
}

#[tokio::test]
async fn another_licenses_admin_cannot_reset_a_devices_secret() {
    let app = TestApp::spawn().await;
    app.create_license_binding("LIC-FU", None, BindingPolicy::FirstUse).await;
    app.create_license("LIC-OTHER", None).await;
    user(&app, "LIC-OTHER", OTHER, Role::Admin).await;
    let phone = "0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e";
    let first = app.try_connect_with(phone, &app.api_key, "LIC-FU", None).await.expect("first use binds");
    let secret = first.hello["device_secret"].as_str().unwrap().to_owned();
    drop(first);
    let (visitor, csrf) = signed_in_visitor(&app, OTHER).await;
    assert_eq!(visitor.page(&format!("/console/devices/{phone}")).await.0, 404);
    assert_eq!(submit(&visitor, &format!("/console/devices/{phone}/reset"), &[("csrf", &csrf)]).await.0, 404);
    let refused = app.try_connect_with(phone, &app.api_key, "LIC-FU", None).await.err().expect("still bound");
    assert_eq!((refused.0, refused.1["error"]["code"].as_str()), (401, Some("invalid_device_secret")));
    app.try_connect_with(phone, &app.api_key, "LIC-FU", Some(&secret)).await.expect("the secret still holds");
}

#[tokio::test]
async fn an_open_licenses_device_page_offers_no_secret_to_reset() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    drop(app.connect("kiosk-open").await);
    let (visitor, _) = signed_in_visitor(&app, ADMIN).await;
    let (status, html) = visitor.page("/console/devices/kiosk-open").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("none: the license is open") && !html.contains("Reset device secret"), "{html}");
}
