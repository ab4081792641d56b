//! The rail capability (seed 004) over HTTP: the operator's admin routes,
//! robots signing in with keys, tickets accepted once, stores, items,
//! purchases that never oversell, tasks, engineers, passengers by OpenID
//! Connect — on the backend this run uses.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use relayhub_core::oidc::testing::TestIssuer;
use relayhub_rail::RailConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::process::cli;

/// A key pair a robot (or store) signs its challenges with.
pub enum Key {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl Key {
    pub fn ed25519(seed: u8) -> Self {
        Key::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    pub fn p256(seed: u8) -> Self {
        Key::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    /// The public key as it is registered: PEM for Ed25519 (what `openssl
    /// pkey -pubout` writes), a base64 SEC1 point for P-256.
    pub fn public(&self) -> String {
        match self {
            Key::Ed25519(key) => {
                let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
                der.extend_from_slice(key.verifying_key().as_bytes());
                format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
            }
            Key::P256(key) => STANDARD.encode(key.verifying_key().to_encoded_point(false).as_bytes()),
        }
    }

    pub fn sign(&self, message: &str) -> String {
        match self {
            Key::Ed25519(key) => STANDARD.encode(key.sign(message.as_bytes()).to_bytes()),
            Key::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message.as_bytes());
                STANDARD.encode(signature.to_der().as_bytes())
            }
        }
    }
}

/// A request with a bearer token; answers the status and JSON body.
pub async fn call(app: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A call that must succeed; its body.
pub async fn ok(app: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, body) = call(app, method, path, token, body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// A robot of the app's license, registered and signed in.
pub async fn robot(app: &TestApp, operator: &str, key: &Key) -> (String, String) {
    let body = json!({"robot_model_id": "r-1", "robot_model_name": "Porter", "public_key": key.public()});
    let robot = ok(app, "POST", "/base_api/admin/robot", operator, Some(body)).await;
    let id = robot["id"].as_str().unwrap().to_owned();
    (id.clone(), sign_in(app, &id, key).await)
}

/// A robot's access token from a fresh challenge.
pub async fn sign_in(app: &TestApp, robot_id: &str, key: &Key) -> String {
    let challenge = ok(app, "POST", "/base_api/robot/auth/challenge", "", Some(json!({"robot_id": robot_id}))).await;
    let nonce = challenge["nonce"].as_str().unwrap();
    let body = json!({"robot_id": robot_id, "nonce": nonce, "signature": key.sign(nonce)});
    let token = ok(app, "POST", "/base_api/robot/auth", "", Some(body)).await;
    token["access_token"].as_str().unwrap().to_owned()
}

pub async fn passenger(app: &TestApp, operator: &str, name: &str) -> String {
    let user = ok(app, "POST", "/base_api/admin/user", operator, Some(json!({"name": name}))).await;
    user["id"].as_str().unwrap().to_owned()
}

pub async fn ticket(app: &TestApp, operator: &str, user: &str, destination: &str) -> Value {
    let now = chrono::Utc::now().to_rfc3339();
    let body = json!({
        "user_id": user, "train_number": 7, "wagon_number": 3, "place_number": 12, "date": now,
        "station_id": "MOW", "destination_id": destination, "start_date": now,
    });
    ok(app, "POST", "/base_api/admin/ticket", operator, Some(body)).await
}

pub async fn store(app: &TestApp, operator: &str, name: &str) -> String {
    let body = json!({"name": name, "description": "Hot meals", "logo_url": "", "store_type": "RESTAURANT"});
    let store = ok(app, "POST", "/store_api/admin/store", operator, Some(body)).await;
    store["id"].as_str().unwrap().to_owned()
}

pub async fn item(app: &TestApp, operator: &str, store: &str, name: &str, balance: i64) -> String {
    let body = json!({"store_id": store, "name": name, "description": "", "price_penny": 250, "balance": balance});
    let item = ok(app, "POST", "/store_api/store/item", operator, Some(body)).await;
    item["id"].as_str().unwrap().to_owned()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_operator_creates_and_lists_seed_004s_rows_in_pages() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let user = passenger(&app, &op, "Anna").await;
    for name in ["Boris", "Clara"] {
        passenger(&app, &op, name).await;
    }
    let page = ok(&app, "GET", "/base_api/admin/users?page=2&size=2", &op, None).await;
    assert_eq!((page["total"].as_u64(), page["page"].as_u64(), page["size"].as_u64()), (Some(3), Some(2), Some(2)));
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(ok(&app, "GET", "/base_api/admin/users", &op, None).await["size"], 50, "seed 004 pages by 50");

    let ticket = ticket(&app, &op, &user, "SPB").await;
    assert_eq!(ticket["used"], false);
    assert!(ticket["code"].as_str().unwrap().len() >= 22, "an unguessable code: {ticket}");
    let tickets = ok(&app, "GET", &format!("/base_api/admin/tickets?user_id={user}"), &op, None).await;
    assert_eq!(tickets["items"][0]["code"], ticket["code"]);

    let engineer = json!({"login": "eng", "password": "correct horse", "privileges": 5});
    let engineer = ok(&app, "POST", "/base_api/admin/engineer", &op, Some(engineer)).await;
    assert_eq!(engineer["privileges"], 5);
    assert!(engineer.get("password").is_none(), "the password is never answered: {engineer}");
    let again = json!({"login": "eng", "password": "another one", "privileges": 1});
    let (status, body) = call(&app, "POST", "/base_api/admin/engineer", &op, Some(again)).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "already_exists"));
    let card = format!("/base_api/admin/engineer/{}/card", engineer["id"].as_str().unwrap());
    let card = ok(&app, "POST", &card, &op, Some(json!({"key": "card-0001"}))).await;
    assert!(card.get("key").is_none(), "the card key is kept hashed: {card}");
    let engineers = ok(&app, "GET", "/base_api/admin/engineers", &op, None).await;
    assert_eq!(engineers["total"], 1);

    let hotel = json!({"name": "Hotel Neva", "description": "", "logo_url": "", "destination_id": "SPB"});
    ok(&app, "POST", "/base_api/admin/hotel", &op, Some(hotel)).await;
    let sight = json!({"name": "Hermitage", "description": "Museum", "logo_url": "", "destination_id": "SPB"});
    ok(&app, "POST", "/base_api/admin/attraction", &op, Some(sight)).await;
    assert_eq!(ok(&app, "GET", "/base_api/admin/hotels?destination_id=SPB", &op, None).await["total"], 1);
    assert_eq!(ok(&app, "GET", "/base_api/admin/hotels?destination_id=NNV", &op, None).await["total"], 0);
    assert_eq!(ok(&app, "GET", "/base_api/admin/attractions", &op, None).await["items"][0]["name"], "Hermitage");

    let shop = store(&app, &op, "Buffet").await;
    let train = json!({"store_id": shop, "train_number": 7, "train_date": chrono::Utc::now().to_rfc3339()});
    ok(&app, "POST", "/base_api/admin/train_store", &op, Some(train)).await;
    assert_eq!(ok(&app, "GET", "/base_api/admin/train_stores", &op, None).await["items"][0]["store_id"], shop);
    let (_, _) = robot(&app, &op, &Key::ed25519(1)).await;
    assert_eq!(ok(&app, "GET", "/base_api/admin/robots", &op, None).await["total"], 1);
}

#[tokio::test]
async fn invalid_input_answers_fastapis_422_with_where_it_is() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let shop = store(&app, &op, "Buffet").await;
    let bad = json!({"store_id": shop, "name": "Tea", "description": "", "price_penny": "cheap"});
    let (status, body) = call(&app, "POST", "/store_api/store/item", &op, Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "price_penny"]), "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");

    let missing = json!({"description": "", "logo_url": "", "store_type": "SHOP"});
    let (status, body) = call(&app, "POST", "/store_api/admin/store", &op, Some(missing)).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "name"])));
    let wrong_type = json!({"name": "X", "description": "", "logo_url": "", "store_type": "BAR"});
    let (_, body) = call(&app, "POST", "/store_api/admin/store", &op, Some(wrong_type)).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "store_type"]));
    let long = json!({"name": "x".repeat(101), "description": "", "logo_url": "", "store_type": "SHOP"});
    let (status, body) = call(&app, "POST", "/store_api/admin/store", &op, Some(long)).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "name"])));

    let nul = json!({"name": "Tea\u{0}room", "description": "", "logo_url": "", "store_type": "SHOP"});
    let (status, body) = call(&app, "POST", "/store_api/admin/store", &op, Some(nul)).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "name"])));

    let (status, body) = call(&app, "GET", "/store_api/admin/stores?size=101", &op, None).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["query", "size"]))
    );
    let (status, _) = call(&app, "GET", "/store_api/admin/store/not-a-uuid", &op, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) =
        call(&app, "GET", &format!("/store_api/admin/store/{}", uuid::Uuid::new_v4()), &op, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "store_not_found"));
    assert!(body["detail"].is_string(), "other errors carry FastAPI's detail string too: {body}");

    let (status, body) = call(&app, "GET", "/store_api/admin/stores", "rhb_not-a-token", None).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let (status, _) = call(&app, "GET", "/store_api/admin/stores", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad_key = json!({"robot_model_id": "r", "robot_model_name": "r", "public_key": "not a key"});
    let (status, body) = call(&app, "POST", "/base_api/admin/robot", &op, Some(bad_key)).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "public_key"]))
    );
}

#[tokio::test]
async fn robots_sign_in_with_their_keys_and_a_nonce_works_once() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    for key in [Key::ed25519(3), Key::p256(4)] {
        let (robot_id, token) = robot(&app, &op, &key).await;
        assert!(token.starts_with("rht_"));
        let challenge =
            ok(&app, "POST", "/base_api/robot/auth/challenge", "", Some(json!({"robot_id": robot_id}))).await;
        assert_eq!(challenge["expires_in"], 60);
        let nonce = challenge["nonce"].as_str().unwrap();

        let forged = json!({"robot_id": robot_id, "nonce": nonce, "signature": Key::ed25519(99).sign(nonce)});
        let (status, body) = call(&app, "POST", "/base_api/robot/auth", "", Some(forged)).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "signature_invalid"));

        let signed = json!({"robot_id": robot_id, "nonce": nonce, "signature": key.sign(nonce)});
        ok(&app, "POST", "/base_api/robot/auth", "", Some(signed.clone())).await;
        let (status, body) = call(&app, "POST", "/base_api/robot/auth", "", Some(signed)).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "nonce_invalid"), "a replayed nonce is refused");
    }
    let (status, body) =
        call(&app, "POST", "/base_api/robot/auth/challenge", "", Some(json!({"robot_id": uuid::Uuid::new_v4()}))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "robot_not_found"));

    // A robot's token opens robot routes only.
    let (_, token) = robot(&app, &op, &Key::ed25519(5)).await;
    let (status, body) = call(&app, "GET", "/store_api/admin/stores", &token, None).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test]
async fn a_nonce_past_its_time_is_refused() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RailConfig| r.challenge_ttl = Duration::ZERO)).await;
    let key = Key::ed25519(6);
    let body = json!({"robot_model_id": "r", "robot_model_name": "r", "public_key": key.public()});
    let robot = ok(&app, "POST", "/base_api/admin/robot", &app.token, Some(body)).await;
    let id = robot["id"].as_str().unwrap();
    let challenge = ok(&app, "POST", "/base_api/robot/auth/challenge", "", Some(json!({"robot_id": id}))).await;
    let nonce = challenge["nonce"].as_str().unwrap();
    let signed = json!({"robot_id": id, "nonce": nonce, "signature": key.sign(nonce)});
    let (status, body) = call(&app, "POST", "/base_api/robot/auth", "", Some(signed)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "nonce_invalid"));
}

#[tokio::test]
async fn of_twenty_robots_scanning_one_ticket_exactly_one_is_accepted() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let user = passenger(&app, &op, "Anna").await;
    let ticket = ticket(&app, &op, &user, "SPB").await;
    let mut tokens = Vec::new();
    for seed in 0..20u8 {
        tokens.push(robot(&app, &op, &Key::ed25519(100 + seed)).await.1);
    }
    let check = json!({"code": ticket["code"]});
    let scans =
        tokens.iter().map(|token| call(&app, "POST", "/base_api/robot/ticket/check", token, Some(check.clone())));
    let answers = futures_util::future::join_all(scans).await;
    let accepted: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::OK).collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert_eq!(accepted[0].1["ticket"]["used"], true);
    assert_eq!(accepted[0].1["user"]["name"], "Anna");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != StatusCode::OK)
            .all(|(s, b)| *s == StatusCode::CONFLICT && code(b) == "ticket_used")
    );

    let refused = answers.iter().position(|(s, _)| *s != StatusCode::OK).unwrap();
    let (status, body) = call(&app, "POST", "/base_api/robot/ticket/check", &tokens[refused], Some(check)).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "ticket_used"), "and every later check by them");
    let (status, body) =
        call(&app, "POST", "/base_api/robot/ticket/check", &tokens[0], Some(json!({"code": "nope"}))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "ticket_not_found"));
}

#[tokio::test]
async fn of_twenty_concurrent_purchases_only_the_stock_is_sold() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let shop = store(&app, &op, "Buffet").await;
    let (_, robot_token) = robot(&app, &op, &Key::ed25519(7)).await;
    let user = passenger(&app, &op, "Anna").await;
    for stock in [1, 5] {
        let coffee = item(&app, &op, &shop, &format!("Coffee x{stock}"), stock).await;
        let buy = json!({"user_id": user, "items": [{"item_id": coffee, "count": 1}], "is_default_ready": false});
        let buys = (0..20).map(|_| call(&app, "POST", "/store_api/store/purchase", &robot_token, Some(buy.clone())));
        let answers = futures_util::future::join_all(buys).await;
        let sold = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(sold as i64, stock, "{answers:?}");
        assert!(
            answers
                .iter()
                .filter(|(s, _)| *s != StatusCode::OK)
                .all(|(s, b)| *s == StatusCode::CONFLICT && code(b) == "insufficient_balance")
        );
        let left = ok(&app, "GET", &format!("/store_api/store/item/{coffee}"), &op, None).await;
        assert_eq!(left["balance"], 0, "never below zero");
    }
    let tasks = ok(&app, "GET", &format!("/store_api/store/tasks?store_id={shop}"), &op, None).await;
    assert_eq!(tasks["total"], 6, "one task per purchase");

    // A cart that cannot be filled whole buys nothing.
    let tea = item(&app, &op, &shop, "Tea", 3).await;
    let cake = item(&app, &op, &shop, "Cake", 1).await;
    let cart = json!({"user_id": user, "items": [{"item_id": tea, "count": 2}, {"item_id": cake, "count": 2}]});
    let (status, body) = call(&app, "POST", "/store_api/store/purchase", &robot_token, Some(cart)).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "insufficient_balance"));
    assert_eq!(ok(&app, "GET", &format!("/store_api/store/item/{tea}"), &op, None).await["balance"], 3);
    let other = store(&app, &op, "Kiosk").await;
    let water = item(&app, &op, &other, "Water", 9).await;
    let mixed = json!({"user_id": user, "items": [{"item_id": tea, "count": 1}, {"item_id": water, "count": 1}]});
    let (status, body) = call(&app, "POST", "/store_api/store/purchase", &robot_token, Some(mixed)).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body"])));
}

#[tokio::test]
async fn a_purchase_makes_a_task_the_store_readies_and_the_robot_follows() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let shop = store(&app, &op, "Buffet").await;
    let other = store(&app, &op, "Kiosk").await;
    let staff = ok(&app, "POST", &format!("/store_api/admin/store/{shop}/token"), &op, None).await;
    let staff = staff["token"].as_str().unwrap().to_owned();

    // Staff manage their own store's items only.
    let body = json!({"name": "Borscht", "description": "Soup", "price_penny": 590, "balance": 4, "category": "meals"});
    let soup = ok(&app, "POST", "/store_api/store/item", &staff, Some(body)).await;
    assert_eq!((soup["store_id"].as_str(), soup["balance"].as_i64()), (Some(shop.as_str()), Some(4)));
    let soup = soup["id"].as_str().unwrap().to_owned();
    let foreign = item(&app, &op, &other, "Water", 10).await;
    let (status, body) = call(&app, "GET", &format!("/store_api/store/item/{foreign}"), &staff, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "item_not_found"));
    let (status, _) = call(&app, "DELETE", &format!("/store_api/store/item/{foreign}"), &staff, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ok(&app, "GET", "/store_api/store/items", &staff, None).await["total"], 1);
    let update = json!({"id": soup, "name": "Borscht", "description": "Soup", "price_penny": 650, "balance": 3});
    assert_eq!(ok(&app, "PUT", "/store_api/store/item", &staff, Some(update)).await["price_penny"], 650);

    // A robot buys for a passenger; the store sees the task and readies it.
    let (_, robot_token) = robot(&app, &op, &Key::ed25519(8)).await;
    let (_, stranger) = robot(&app, &op, &Key::ed25519(9)).await;
    let user = passenger(&app, &op, "Anna").await;
    let items = ok(&app, "GET", &format!("/store_api/store/items?store_id={shop}"), &robot_token, None).await;
    assert_eq!(items["items"][0]["name"], "Borscht");
    let buy = json!({"user_id": user, "items": [{"item_id": soup, "count": 2}], "is_default_ready": false});
    let purchase = ok(&app, "POST", "/store_api/store/purchase", &robot_token, Some(buy)).await;
    assert_eq!(purchase["store_id"], shop.as_str());
    assert_eq!(purchase["items"], json!([{"item_id": soup, "count": 2}]));
    let task_id = purchase["task_id"].as_str().unwrap();
    let waiting = ok(&app, "GET", "/store_api/store/tasks?is_ready=false", &staff, None).await;
    assert_eq!(waiting["items"][0]["purchase_id"], purchase["id"]);
    let task_path = format!("/store_api/store/task/{task_id}");
    assert_eq!(ok(&app, "GET", &task_path, &robot_token, None).await["is_ready"], false);
    let (status, _) = call(&app, "GET", &task_path, &stranger, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another robot does not see it");
    assert_eq!(ok(&app, "POST", &format!("{task_path}/ready"), &staff, None).await["is_ready"], true);
    assert_eq!(ok(&app, "GET", &task_path, &robot_token, None).await["is_ready"], true);
    assert_eq!(ok(&app, "GET", "/store_api/store/tasks?is_ready=false", &staff, None).await["total"], 0);

    // A deleted store keeps its history; its staff token stops working.
    assert_eq!(ok(&app, "DELETE", &format!("/store_api/admin/store/{shop}"), &op, None).await, json!({"status": "OK"}));
    let (status, _) = call(&app, "GET", &format!("/store_api/admin/store/{shop}"), &op, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ok(&app, "GET", &task_path, &robot_token, None).await["purchase_id"], purchase["id"]);
    let (status, _) = call(&app, "GET", "/store_api/store/items", &staff, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ok(&app, "GET", "/store_api/admin/stores", &op, None).await["total"], 1);
    let (status, _) = call(&app, "DELETE", &format!("/store_api/store/item/{foreign}"), &op, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn store_staff_sign_in_with_the_stores_key() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let shop = store(&app, &op, "Buffet").await;
    let key = Key::p256(11);
    let path = format!("/store_api/admin/store/{shop}/key");
    assert_eq!(ok(&app, "POST", &path, &op, Some(json!({"public_key": key.public()}))).await["status"], "OK");
    let challenge = ok(&app, "POST", "/store_api/store/auth/challenge", "", Some(json!({"store_id": shop}))).await;
    let nonce = challenge["nonce"].as_str().unwrap();
    let signed = json!({"store_id": shop, "nonce": nonce, "signature": key.sign(nonce)});
    let token = ok(&app, "POST", "/store_api/store/auth", "", Some(signed.clone())).await;
    let token = token["access_token"].as_str().unwrap();
    let body = json!({"name": "Tea", "price_penny": 150});
    assert_eq!(ok(&app, "POST", "/store_api/store/item", token, Some(body)).await["store_id"], shop.as_str());
    let (status, body) = call(&app, "POST", "/store_api/store/auth", "", Some(signed)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "nonce_invalid"));
}

#[tokio::test]
async fn engineers_sign_in_at_a_robot_by_card_or_password_within_a_limit() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RailConfig| r.engineer_attempts_per_minute = 4)).await;
    let op = app.token.clone();
    let engineer = json!({"login": "eng", "password": "correct horse", "privileges": 6});
    let engineer = ok(&app, "POST", "/base_api/admin/engineer", &op, Some(engineer)).await;
    ok(
        &app,
        "POST",
        &format!("/base_api/admin/engineer/{}/card", engineer["id"].as_str().unwrap()),
        &op,
        Some(json!({"key": "card-7"})),
    )
    .await;
    let (_, token) = robot(&app, &op, &Key::ed25519(12)).await;

    let by_card = ok(&app, "POST", "/base_api/robot/engineer/card", &token, Some(json!({"key": "card-7"}))).await;
    assert_eq!(by_card, json!({"engineer_id": engineer["id"], "login": "eng", "privileges": 6}));
    let by_password = json!({"login": "eng", "password": "correct horse"});
    assert_eq!(ok(&app, "POST", "/base_api/robot/engineer/login", &token, Some(by_password)).await["login"], "eng");
    let wrong = json!({"login": "eng", "password": "wrong horse"});
    let (status, body) = call(&app, "POST", "/base_api/robot/engineer/login", &token, Some(wrong.clone())).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let (status, body) =
        call(&app, "POST", "/base_api/robot/engineer/card", &token, Some(json!({"key": "card-8"}))).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let (status, body) = call(&app, "POST", "/base_api/robot/engineer/login", &token, Some(wrong)).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"), "four a minute per robot");
    // Another robot has its own allowance.
    let (_, other) = robot(&app, &op, &Key::ed25519(13)).await;
    ok(&app, "POST", "/base_api/robot/engineer/card", &other, Some(json!({"key": "card-7"}))).await;
}

#[tokio::test]
async fn a_robot_looks_up_a_passenger_and_the_stores_on_its_train() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let user = passenger(&app, &op, "Anna").await;
    ticket(&app, &op, &user, "SPB").await;
    for (kind, name, destination) in
        [("hotel", "Neva", "SPB"), ("hotel", "Volga", "NNV"), ("attraction", "Hermitage", "SPB")]
    {
        let body = json!({"name": name, "description": "", "logo_url": "", "destination_id": destination});
        ok(&app, "POST", &format!("/base_api/admin/{kind}"), &op, Some(body)).await;
    }
    let shop = store(&app, &op, "Buffet").await;
    store(&app, &op, "Elsewhere").await;
    let train = json!({"store_id": shop, "train_number": 7, "train_date": "2026-12-01T09:30:00Z"});
    ok(&app, "POST", "/base_api/admin/train_store", &op, Some(train)).await;
    let (_, token) = robot(&app, &op, &Key::ed25519(14)).await;

    let card = ok(&app, "GET", &format!("/base_api/robot/user/{user}"), &token, None).await;
    assert_eq!(card["name"], "Anna");
    assert_eq!(card["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(
        card["hotels"].as_array().unwrap().iter().map(|h| h["name"].clone()).collect::<Vec<_>>(),
        vec![json!("Neva")]
    );
    assert_eq!(card["attractions"][0]["name"], "Hermitage");

    let on_train = ok(&app, "GET", "/base_api/robot/stores?train_number=7&date=2026-12-01", &token, None).await;
    assert_eq!((on_train["total"].as_u64(), on_train["items"][0]["id"].as_str()), (Some(1), Some(shop.as_str())));
    let next_day = ok(&app, "GET", "/base_api/robot/stores?train_number=7&date=2026-12-02", &token, None).await;
    assert_eq!(next_day["total"], 0);
    let (status, body) = call(&app, "GET", "/base_api/robot/stores?train_number=7&date=yesterday", &token, None).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["query", "date"]))
    );
    let (status, body) =
        call(&app, "GET", &format!("/base_api/robot/user/{}", uuid::Uuid::new_v4()), &token, None).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));
}

/// Claims of a passenger's access token from the test realm.
pub fn realm_claims(sub: &str) -> Value {
    let mut claims = TestIssuer::claims(sub);
    claims["iss"] = json!("https://keycloak.test/realms/rail");
    claims["aud"] = json!("rail-app");
    claims["name"] = json!("Anna Petrova");
    claims
}

/// A rail whose passengers sign in at the test realm (LIC-A's), with
/// `edit` applied to its settings; the realm, and its key file's
/// directory (kept while the app runs).
pub async fn with_realm(edit: impl FnOnce(&mut RailConfig)) -> (TestApp, TestIssuer, tempfile::TempDir) {
    let realm = TestIssuer::new("realm-key");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, TestIssuer::jwks(&[&realm])).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.edit(|r: &mut RailConfig| {
            r.oidc.issuer = "https://keycloak.test/realms/rail".into();
            r.oidc.audience = "rail-app".into();
            r.oidc.jwks = jwks.display().to_string();
            r.oidc.license = "LIC-A".into();
            edit(r);
        })
    })
    .await;
    (app, realm, dir)
}

#[tokio::test]
async fn passengers_sign_in_with_the_realms_tokens_and_see_their_tickets() {
    let (app, realm, _dir) = with_realm(|_| {}).await;
    let token = realm.sign(&realm_claims("kc-1"));
    let me = ok(&app, "GET", "/base_api/users/me", &token, None).await;
    assert_eq!(me["name"], "Anna Petrova");
    let again = ok(&app, "GET", "/base_api/users/me", &realm.sign(&realm_claims("kc-1")), None).await;
    assert_eq!(again["id"], me["id"], "the same subject is the same passenger");
    ticket(&app, &app.token, me["id"].as_str().unwrap(), "SPB").await;
    let mine = ok(&app, "GET", "/base_api/users/me/tickets", &token, None).await;
    assert_eq!((mine["total"].as_u64(), mine["items"][0]["destination_id"].as_str()), (Some(1), Some("SPB")));
    let other = ok(&app, "GET", "/base_api/users/me/tickets", &realm.sign(&realm_claims("kc-2")), None).await;
    assert_eq!(other["total"], 0, "another passenger sees none of them");
    let (status, _) = call(&app, "GET", "/store_api/admin/stores", &token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let stranger = TestIssuer::new("realm-key");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = realm_claims("kc-1");
        edit(&mut claims);
        realm.sign(&claims)
    };
    for (token, expected) in [
        (with(&|c| c["iss"] = json!("https://elsewhere.test/realms/rail")), "token_wrong_issuer"),
        (with(&|c| c["aud"] = json!("another-app")), "token_wrong_audience"),
        (with(&|c| c["exp"] = json!(c["iat"].as_u64().unwrap() - 3600)), "token_expired"),
        (stranger.sign(&realm_claims("kc-1")), "token_bad_signature"),
    ] {
        let (status, body) = call(&app, "GET", "/base_api/users/me", &token, None).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, expected));
    }
}

#[tokio::test]
async fn without_a_realm_passenger_routes_say_so() {
    let app = TestApp::spawn().await;
    let (status, body) = call(&app, "GET", "/base_api/users/me", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", None).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert!(body["detail"].as_str().unwrap().contains("rail.oidc"), "{body}");
}

#[tokio::test]
async fn demo_data_gives_a_working_train_in_one_command() {
    let app = TestApp::spawn().await;
    let key = Key::ed25519(21);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("robot.pub");
    std::fs::write(&key_file, key.public()).unwrap();
    let database = app.database_args();
    let mut args = vec!["rail", "demo-data", "--license", "LIC-A", "--robot-key"];
    let key_path = key_file.display().to_string();
    args.push(&key_path);
    let demo = cli(&database, &args);
    let robot_id = demo["robot"]["id"].as_str().unwrap();
    let token = sign_in(&app, robot_id, &key).await;

    let code = demo["tickets"][0]["code"].as_str().unwrap();
    let checked = ok(&app, "POST", "/base_api/robot/ticket/check", &token, Some(json!({"code": code}))).await;
    let user = checked["user"]["id"].as_str().unwrap();
    let date = demo["train_date"].as_str().unwrap();
    let stores = ok(&app, "GET", &format!("/base_api/robot/stores?train_number=7&date={date}"), &token, None).await;
    assert_eq!(stores["total"], 2);
    let buffet = demo["store_token"]["store_id"].as_str().unwrap();
    let menu = ok(&app, "GET", &format!("/store_api/store/items?store_id={buffet}"), &token, None).await;
    let coffee = menu["items"][0]["id"].as_str().unwrap();
    let buy = json!({"user_id": user, "items": [{"item_id": coffee, "count": 1}]});
    let purchase = ok(&app, "POST", "/store_api/store/purchase", &token, Some(buy)).await;
    let staff = demo["store_token"]["token"].as_str().unwrap();
    let tasks = ok(&app, "GET", "/store_api/store/tasks?is_ready=false", staff, None).await;
    assert_eq!(tasks["items"][0]["purchase_id"], purchase["id"]);
    let login = json!({"login": "engineer", "password": demo["engineer"]["password"]});
    ok(&app, "POST", "/base_api/robot/engineer/login", &token, Some(login)).await;
    let card = json!({"key": demo["engineer"]["card_key"]});
    ok(&app, "POST", "/base_api/robot/engineer/card", &token, Some(card)).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .args(["rail", "demo-data", "--license", "LIC-A"])
        .args(&database)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second load is refused, nothing doubled");
}
