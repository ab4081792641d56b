//! Seed 004's calls as robots on a train make them (issue 35): answers lost
//! in tunnels and retried, updates that name some fields, tickets shown on
//! the wrong train or day, and passengers who enrol and delete their own
//! face — over real HTTP, on the backend this run uses (and across two
//! nodes on PostgreSQL).

use std::time::Duration;

use relayhub_rail::RailConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::rail::{Key, call, item, ok, passenger, realm_claims, robot, store, ticket, with_realm};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A purchase with an `Idempotency-Key`: status, whether the answer says it
/// was replayed, body.
async fn buy(app: &TestApp, token: &str, key: &str, body: &Value) -> (StatusCode, bool, Value) {
    let response = app
        .http
        .post(app.url("/store_api/store/purchase"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (status, replayed, response.json().await.unwrap())
}

async fn check(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    call(app, "POST", "/base_api/robot/ticket/check", token, Some(body)).await
}

async fn balance(app: &TestApp, item: &str) -> i64 {
    ok(app, "GET", &format!("/store_api/store/item/{item}"), &app.token, None).await["balance"].as_i64().unwrap()
}

#[tokio::test]
async fn seed_004s_update_body_changes_the_price_and_keeps_the_stock() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let shop = store(&app, &op, "Buffet").await;
    let full = json!({"store_id": shop, "name": "Tea", "description": "Black", "price_penny": 250, "balance": 40,
        "category": "drinks", "logo_url": "https://cdn.example/tea.png"});
    let tea = ok(&app, "POST", "/store_api/store/item", &op, Some(full)).await;
    let id = tea["id"].as_str().unwrap();

    // Seed 004's own body for "Update Item".
    let seed = json!({"id": id, "name": "Tea", "description": "Black, with lemon", "price_penny": 300});
    let updated = ok(&app, "PUT", "/store_api/store/item", &op, Some(seed)).await;
    assert_eq!(
        (updated["price_penny"].as_i64(), updated["description"].as_str()),
        (Some(300), Some("Black, with lemon"))
    );
    assert_eq!(updated["balance"], 40, "the stock is not emptied: {updated}");
    assert_eq!(
        (updated["category"].as_str(), updated["logo_url"].as_str()),
        (Some("drinks"), Some("https://cdn.example/tea.png"))
    );

    let restock = ok(&app, "PUT", "/store_api/store/item", &op, Some(json!({"id": id, "balance": 55}))).await;
    assert_eq!(
        (restock["balance"].as_i64(), restock["price_penny"].as_i64(), restock["name"].as_str()),
        (Some(55), Some(300), Some("Tea"))
    );
    let read = ok(&app, "GET", &format!("/store_api/store/item/{id}"), &op, None).await;
    assert_eq!(read, restock, "what the answer says is what is stored");

    // A null is refused, not taken as "keep" or as "clear"; bounds hold per field.
    let (status, body) =
        call(&app, "PUT", "/store_api/store/item", &op, Some(json!({"id": id, "category": null}))).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "category"])),
        "{body}"
    );
    let (status, body) = call(&app, "PUT", "/store_api/store/item", &op, Some(json!({"id": id, "balance": -1}))).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "balance"]))
    );
    let (status, body) = call(&app, "PUT", "/store_api/store/item", &op, Some(json!({"id": id, "name": ""}))).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "name"])));
    let (status, body) = call(&app, "PUT", "/store_api/store/item", &op, Some(json!({"name": "Tea"}))).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "id"])));
    assert_eq!(ok(&app, "GET", &format!("/store_api/store/item/{id}"), &op, None).await, restock, "nothing changed");

    // Another store's staff cannot reach it, partly or wholly.
    let kiosk = store(&app, &op, "Kiosk").await;
    let staff = ok(&app, "POST", &format!("/store_api/admin/store/{kiosk}/token"), &op, None).await;
    let staff = staff["token"].as_str().unwrap();
    let (status, body) = call(&app, "PUT", "/store_api/store/item", staff, Some(json!({"id": id, "balance": 0}))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "item_not_found"));
    assert_eq!(balance(&app, id).await, 55);
}

#[tokio::test]
async fn the_robot_that_lost_the_answer_is_answered_again_and_no_other_robot_is() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let user = passenger(&app, &op, "Anna").await;
    let ticket = ticket(&app, &op, &user, "SPB").await;
    let (_, porter) = robot(&app, &op, &Key::ed25519(61)).await;
    let (_, other) = robot(&app, &op, &Key::ed25519(62)).await;
    let scan = json!({"code": ticket["code"], "train_number": 7});

    // Twenty retries at once from the robot whose answer was lost in a tunnel.
    let scans =
        (0..20).map(|_| app.http.post(app.url("/base_api/robot/ticket/check")).bearer_auth(&porter).json(&scan).send());
    let mut firsts = 0;
    for response in futures_util::future::join_all(scans).await {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["repeat"], replayed, "the header and the body agree: {body}");
        assert_eq!((body["ticket"]["used"].as_bool(), body["user"]["name"].as_str()), (Some(true), Some("Anna")));
        firsts += usize::from(!replayed);
    }
    assert_eq!(firsts, 1, "one acceptance, nineteen repeats of it");
    let (status, body) = check(&app, &other, scan.clone()).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "ticket_used"), "another robot is refused");
    let tickets = ok(&app, "GET", &format!("/base_api/admin/tickets?user_id={user}"), &op, None).await;
    assert_eq!(tickets["items"][0]["used"], true);
}

#[tokio::test]
async fn a_repeat_past_the_recheck_time_is_refused() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RailConfig| r.ticket_recheck = Duration::ZERO)).await;
    let op = app.token.clone();
    let user = passenger(&app, &op, "Anna").await;
    let ticket = ticket(&app, &op, &user, "SPB").await;
    let (_, porter) = robot(&app, &op, &Key::ed25519(63)).await;
    let scan = json!({"code": ticket["code"]});
    let (status, body) = check(&app, &porter, scan.clone()).await;
    assert_eq!((status, body["repeat"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    let (status, body) = check(&app, &porter, scan).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "ticket_used"));
}

#[tokio::test]
async fn a_ticket_for_another_train_or_day_is_refused_with_what_it_says_and_stays_unused() {
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RailConfig| r.time_zone = chrono_tz::Europe::Moscow)).await;
    let op = app.token.clone();
    let user = passenger(&app, &op, "Anna").await;
    let today = ticket(&app, &op, &user, "SPB").await;
    let (_, porter) = robot(&app, &op, &Key::ed25519(64)).await;

    let (status, body) = check(&app, &porter, json!({"code": today["code"], "train_number": 8})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "ticket_wrong_train"));
    assert!(body["detail"].as_str().unwrap().contains("train 7"), "it says which train: {body}");
    let (status, body) = check(&app, &porter, json!({"code": today["code"], "train_number": -1})).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "train_number"]))
    );

    let in_two_days = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let later = json!({"user_id": user, "train_number": 7, "wagon_number": 3, "place_number": 12, "date": in_two_days,
        "station_id": "MOW", "destination_id": "SPB", "start_date": in_two_days});
    let later = ok(&app, "POST", "/base_api/admin/ticket", &op, Some(later)).await;
    let (status, body) = check(&app, &porter, json!({"code": later["code"], "train_number": 7})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "ticket_not_today"));
    let message = body["detail"].as_str().unwrap();
    let day = (chrono::Utc::now() + chrono::Duration::days(2)).with_timezone(&chrono_tz::Europe::Moscow).date_naive();
    assert!(message.contains(&day.to_string()) && message.contains("Europe/Moscow"), "{message}");

    // Neither refusal used the ticket: on its train, today, it is accepted.
    let (status, body) = check(&app, &porter, json!({"code": today["code"], "train_number": 7})).await;
    assert_eq!((status, body["repeat"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    let tickets = ok(&app, "GET", &format!("/base_api/admin/tickets?user_id={user}"), &op, None).await;
    let unused = tickets["items"].as_array().unwrap().iter().filter(|t| t["used"] == false).count();
    assert_eq!(unused, 1, "the later ticket is still unused: {tickets}");
}

#[tokio::test]
async fn a_retried_purchase_answers_the_first_and_sells_once() {
    let app = TestApp::spawn().await;
    let op = app.token.clone();
    let shop = store(&app, &op, "Buffet").await;
    let coffee = item(&app, &op, &shop, "Coffee", 30).await;
    let tea = item(&app, &op, &shop, "Tea", 30).await;
    let (_, porter) = robot(&app, &op, &Key::ed25519(65)).await;
    let (_, other) = robot(&app, &op, &Key::ed25519(66)).await;
    let user = passenger(&app, &op, "Anna").await;
    // A cart listing coffee twice: the purchase merges it, a retry must too.
    let cart = json!({"user_id": user, "items": [{"item_id": coffee, "count": 1}, {"item_id": tea, "count": 2},
        {"item_id": coffee, "count": 1}]});

    let buys = (0..20).map(|_| buy(&app, &porter, "cart-7f3a", &cart));
    let answers = futures_util::future::join_all(buys).await;
    let first = answers.iter().find(|(_, replayed, _)| !replayed).expect("one purchase").2.clone();
    for (status, _, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body, &first, "every retry answers the same purchase");
    }
    assert_eq!(answers.iter().filter(|(_, replayed, _)| !replayed).count(), 1);
    assert_eq!((balance(&app, &coffee).await, balance(&app, &tea).await), (28, 28), "sold once");
    let tasks = ok(&app, "GET", &format!("/store_api/store/tasks?store_id={shop}"), &op, None).await;
    assert_eq!(tasks["total"], 1, "one task");

    // The same key for another cart is the client's mistake: refused, nothing sold.
    let another = json!({"user_id": user, "items": [{"item_id": tea, "count": 5}]});
    let (status, _, body) = buy(&app, &porter, "cart-7f3a", &another).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"), "{body}");
    assert_eq!(balance(&app, &tea).await, 28);
    // Keys are the caller's own: another robot's is its own purchase.
    let (status, replayed, body) = buy(&app, &other, "cart-7f3a", &cart).await;
    assert_eq!((status, replayed), (StatusCode::OK, false));
    assert_ne!(body["id"], first["id"]);
    assert_eq!(balance(&app, &coffee).await, 26);

    // A purchase refused for stock is not remembered: after a restock the retry buys.
    let (status, _, body) =
        buy(&app, &porter, "cart-8b21", &json!({"user_id": user, "items": [{"item_id": tea, "count": 40}]})).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "insufficient_balance"));
    ok(&app, "PUT", "/store_api/store/item", &op, Some(json!({"id": tea, "balance": 50}))).await;
    let (status, replayed, _) =
        buy(&app, &porter, "cart-8b21", &json!({"user_id": user, "items": [{"item_id": tea, "count": 40}]})).await;
    assert_eq!((status, replayed), (StatusCode::OK, false));
    assert_eq!(balance(&app, &tea).await, 10);

    let (status, _, body) = buy(&app, &porter, &"k".repeat(256), &cart).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"));
}

#[tokio::test]
async fn purchase_retries_on_two_nodes_sell_once() {
    if !crate::cluster::on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let op = a.token.clone();
    let shop = store(&a, &op, "Buffet").await;
    let coffee = item(&a, &op, &shop, "Coffee", 100).await;
    let (_, porter) = robot(&a, &op, &Key::ed25519(67)).await;
    let user = passenger(&a, &op, "Anna").await;
    let cart = json!({"user_id": user, "items": [{"item_id": coffee, "count": 3}]});
    // The robot's retries land on either node behind the balancer.
    let buys = (0..20).map(|n| buy(if n % 2 == 0 { &a } else { &b }, &porter, "cart-two-nodes", &cart));
    let answers = futures_util::future::join_all(buys).await;
    assert!(
        answers.iter().all(|(status, _, body)| *status == StatusCode::OK && body["id"] == answers[0].2["id"]),
        "{answers:?}"
    );
    assert_eq!(answers.iter().filter(|(_, replayed, _)| !replayed).count(), 1);
    assert_eq!(balance(&b, &coffee).await, 97);
}

fn embedding(seed: u64) -> Vec<f32> {
    (0..128).map(|i| (((i as u64 + 1) * (seed + 7)) % 97) as f32 / 97.0 - 0.5).collect()
}

#[tokio::test]
async fn a_passenger_enrols_sees_and_deletes_their_own_face() {
    let (app, realm, _dir) = with_realm(|_| {}).await;
    let anna = realm.sign(&realm_claims("kc-anna"));
    let boris = realm.sign(&realm_claims("kc-boris"));
    let (_, porter) = robot(&app, &app.token, &Key::ed25519(68)).await;

    let none = ok(&app, "GET", "/face_api/me", &anna, None).await;
    assert_eq!(none, json!({"enrolled": false, "faces": []}));
    let face = ok(&app, "POST", "/face_api/me", &anna, Some(json!({"embedding": embedding(1)}))).await;
    let me = ok(&app, "GET", "/base_api/users/me", &anna, None).await;
    assert_eq!(face["user_id"], me["id"], "enrolled as the token's passenger");
    let mine = ok(&app, "GET", "/face_api/me", &anna, None).await;
    assert_eq!((mine["enrolled"].as_bool(), mine["faces"][0]["id"].clone()), (Some(true), face["id"].clone()));
    assert!(mine.to_string().len() < 400, "the embedding is never shown back: {mine}");
    assert_eq!(ok(&app, "GET", "/face_api/me", &boris, None).await["enrolled"], false, "another passenger has none");

    let found = ok(&app, "POST", "/face_api/identify", &porter, Some(json!({"embedding": embedding(1)}))).await;
    assert_eq!(found["user_id"], me["id"]);
    let gone = ok(&app, "DELETE", "/face_api/me", &boris, None).await;
    assert_eq!(gone["deleted"], 0, "Boris deletes only his own");
    let gone = ok(&app, "DELETE", "/face_api/me", &anna, None).await;
    assert_eq!(gone["deleted"], 1);
    assert_eq!(ok(&app, "GET", "/face_api/me", &anna, None).await["enrolled"], false);
    let (status, body) =
        call(&app, "POST", "/face_api/identify", &porter, Some(json!({"embedding": embedding(1)}))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "no_match"), "withdrawn means not recognised");

    // The routes are a passenger's: a robot or the operator is refused.
    for token in [&porter, &app.token] {
        let (status, body) = call(&app, "GET", "/face_api/me", token, None).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    let (status, body) = call(&app, "POST", "/face_api/me", &anna, Some(json!({"embedding": [1.0, 2.0]}))).await;
    assert_eq!(
        (status, body["detail"][0]["loc"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(["body", "embedding"]))
    );
}

#[tokio::test]
async fn where_only_passengers_enrol_robots_and_the_operator_cannot() {
    let (app, realm, _dir) = with_realm(|r| r.face.self_enrol_only = true).await;
    let (_, porter) = robot(&app, &app.token, &Key::ed25519(69)).await;
    let user = passenger(&app, &app.token, "Clara").await;
    for token in [&porter, &app.token] {
        let body = json!({"user_id": user, "embedding": embedding(2)});
        let (status, body) = call(&app, "POST", "/face_api/enrol", token, Some(body)).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(body["detail"].as_str().unwrap().contains("/face_api/me"), "it says where: {body}");
    }
    let clara = realm.sign(&realm_claims("kc-clara"));
    ok(&app, "POST", "/face_api/me", &clara, Some(json!({"embedding": embedding(2)}))).await;
    let found = ok(&app, "POST", "/face_api/identify", &porter, Some(json!({"embedding": embedding(2)}))).await;
    assert_eq!(found["user_id"], ok(&app, "GET", "/base_api/users/me", &clara, None).await["id"]);
    // The operator can still forget a passenger (a request made in person).
    let gone =
        ok(&app, "DELETE", &format!("/face_api/user/{}", found["user_id"].as_str().unwrap()), &app.token, None).await;
    assert_eq!(gone["deleted"], 1);
}
