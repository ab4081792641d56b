//! A customer deleted by an operator: refused until the confirmation names
//! the license, then gone with everything of theirs — devices and queues,
//! inbox, fleet users and robots with their telemetry, rail rows and faces
//! — from every table of the database, while another license keeps all of
//! its data, and the number can be given to a new customer who starts
//! empty.

use std::collections::HashSet;

use relayhub_fleet::model::Role;
use reqwest::Method;
use serde_json::json;

use crate::admin_api::{admin, operator_token};
use crate::helpers::TestApp;
use crate::rail::{Key, ok, sign_in};

/// Rows that hang off another table's row without a `license_pk` of their
/// own: (table, column, parent table, parent column). A row whose parent
/// is gone is a leftover.
const CHILDREN: &[(&str, &str, &str, &str)] = &[
    ("fleet_sessions", "user_id", "fleet_users", "id"),
    ("fleet_password_resets", "user_id", "fleet_users", "id"),
    ("fleet_read_tokens", "user_id", "fleet_users", "id"),
    ("telemetry_chunks", "robot_id", "fleet_robots", "id"),
    ("telemetry_series", "robot_id", "fleet_robots", "id"),
    ("rail_purchase_items", "purchase_id", "rail_purchases", "id"),
    ("queues", "device_pk", "devices", "pk"),
    ("settings", "device_pk", "devices", "pk"),
    ("settings_history", "device_pk", "devices", "pk"),
];

/// The license's row key, read from the database.
async fn license_pk(app: &TestApp, number: &str) -> i64 {
    let number = relayhub_core::ids::LicenseNumber::parse(number).unwrap();
    app.admin().identity.license(&number).await.unwrap().expect("the license exists").pk.0
}

/// What the database still holds of license `pk`: "table: rows" for every
/// table with a `license_pk` column that has rows of it, and for every
/// child row whose parent is gone.
async fn leftovers(app: &TestApp, pk: i64) -> Vec<String> {
    match app.postgres_url() {
        Some(url) => postgres_leftovers(url, pk).await,
        None => sqlite_leftovers(&app.config.data, pk),
    }
}

async fn postgres_leftovers(url: &str, pk: i64) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_name = 'license_pk' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.len() > 20, "the tables of every capability: {tables:?}");
    let mut left = Vec::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM {table} WHERE license_pk = $1");
        let n: i64 = sqlx::query_scalar(&sql).bind(pk).fetch_one(&pool).await.unwrap();
        if n > 0 {
            left.push(format!("{table}: {n}"));
        }
    }
    for (table, column, parent, key) in CHILDREN {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(&pool).await.unwrap();
        if !exists {
            continue; // the relay keeps its queue heads on devices here
        }
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} NOT IN (SELECT {key} FROM {parent})");
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        if n > 0 {
            left.push(format!("{table} without its {parent}: {n}"));
        }
    }
    pool.close().await;
    left
}

/// Every file of the embedded database (the main one and the partitions),
/// read as they are on disk.
fn sqlite_leftovers(dir: &std::path::Path, pk: i64) -> Vec<String> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "db"))
        .collect();
    let open = |path: &std::path::Path| {
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    };
    let columns = |conn: &rusqlite::Connection, table: &str| -> Vec<String> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})")).unwrap();
        stmt.query_map([], |row| row.get::<_, String>(1)).unwrap().map(Result::unwrap).collect()
    };
    let values = |conn: &rusqlite::Connection, table: &str, column: &str| -> Vec<String> {
        let mut stmt = conn.prepare(&format!("SELECT hex({column}) FROM {table}")).unwrap();
        stmt.query_map([], |row| row.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
    };
    let (mut left, mut with_license, mut children, mut parents) = (Vec::new(), 0, Vec::new(), HashSet::new());
    for path in &files {
        let conn = open(path);
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").unwrap();
        let tables: Vec<String> = stmt.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
        for table in &tables {
            if columns(&conn, table).iter().any(|c| c == "license_pk") {
                with_license += 1;
                let sql = format!("SELECT count(*) FROM {table} WHERE license_pk = ?1");
                let n: i64 = conn.query_row(&sql, [pk], |row| row.get(0)).unwrap();
                if n > 0 {
                    left.push(format!("{table}: {n}"));
                }
            }
            for (child, column, parent, key) in CHILDREN {
                if table == child {
                    children.extend(values(&conn, table, column).into_iter().map(|v| (*child, *parent, v)));
                }
                if table == parent {
                    parents.extend(values(&conn, table, key).into_iter().map(|v| (*parent, v)));
                }
            }
        }
    }
    assert!(with_license > 20, "the tables of every capability, in {files:?}");
    for (child, parent, value) in children {
        if !parents.contains(&(parent, value.clone())) {
            left.push(format!("{child} without its {parent}: {value}"));
        }
    }
    left
}

/// Gives license LIC-A something in every capability: a queued message
/// and an online device with an inbox record waiting, a fleet admin with a
/// session, a reset link and a paired robot's telemetry, and seed 004's
/// train (robot session, ticket scan, purchase and task, a face).
async fn fill(app: &TestApp, ops: &str) -> Fill {
    app.send_ok("pos-1", json!({"invoice": 1})).await;
    let mut phone = app.connect("phone-1").await;
    phone.send(json!({"type": "publish", "ref": "scan-1", "data": {"barcode": 1}})).await;
    phone.expect("published").await;

    let user = crate::fleet::user(app, "LIC-A", "owner@example.com", Role::Admin).await;
    let session = crate::fleet::signed_in(app, "owner@example.com").await;
    let (_, robot) = crate::fleet::paired_robot(app, &session, "robot-1").await;
    let now = crate::telemetry::now_s();
    let lines = format!("cpu,host=r1 usage=1 {}\nmem,host=r1 used=3 {now}", now - 30);
    assert_eq!(crate::telemetry::write(app, &robot, "s", &lines).await.status(), 204);
    let reset = format!("/api/admin/v1/licenses/LIC-A/users/{user}/password-reset");
    assert_eq!(admin(app, Method::POST, &reset, ops, None).await.0, 201);

    let key = Key::ed25519(31);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("robot.pub");
    std::fs::write(&key_file, key.public()).unwrap();
    let key_path = key_file.display().to_string();
    let args = ["rail", "demo-data", "--license", "LIC-A", "--robot-key", key_path.as_str()];
    let demo = crate::process::cli(&app.database_args(), &args);
    let rail_robot = sign_in(app, demo["robot"]["id"].as_str().unwrap(), &key).await;
    let code = demo["tickets"][0]["code"].as_str().unwrap();
    let checked = ok(app, "POST", "/base_api/robot/ticket/check", &rail_robot, Some(json!({"code": code}))).await;
    let passenger = checked["user"]["id"].as_str().unwrap();
    let buffet = demo["store_token"]["store_id"].as_str().unwrap();
    let menu = ok(app, "GET", &format!("/store_api/store/items?store_id={buffet}"), &rail_robot, None).await;
    let buy = json!({"user_id": passenger, "items": [{"item_id": menu["items"][0]["id"], "count": 1}]});
    ok(app, "POST", "/store_api/store/purchase", &rail_robot, Some(buy)).await;
    crate::face::enrol_people(app, &rail_robot, &["p1"]).await;
    let stores = format!("/base_api/robot/stores?train_number=7&date={}", demo["train_date"].as_str().unwrap());
    ok(app, "GET", &stores, &rail_robot, None).await;
    Fill { phone, session, robot, rail_robot, stores }
}

struct Fill {
    phone: crate::helpers::Device,
    session: String,
    robot: String,
    rail_robot: String,
    /// A rail robot's call that works while the license does.
    stores: String,
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_deleted_license_leaves_nothing_behind_and_another_keeps_everything() {
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "ops@example.com");
    let mut filled = fill(&app, &ops).await;
    // Another customer, with data of its own.
    let (other, _) = app.create_license("LIC-B", None).await;
    assert_eq!(app.send_as(&other, "till-1", json!({"receipt": 9})).await.status(), 202);
    crate::fleet::user(&app, "LIC-B", "b@example.com", Role::Admin).await;
    let other_usage =
        || async { admin(&app, Method::GET, "/api/admin/v1/licenses/LIC-B", &ops, None).await.1["usage"].clone() };
    let before = other_usage().await;
    let pk = license_pk(&app, "LIC-A").await;
    assert!(!leftovers(&app, pk).await.is_empty(), "the license has data to delete");

    let delete = |confirm: &str| {
        let body = json!({"confirm": confirm});
        admin(&app, Method::DELETE, "/api/admin/v1/licenses/LIC-A", &ops, Some(body))
    };
    for wrong in ["lic-a", "LIC-B", ""] {
        let (status, body) = delete(wrong).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("confirmation_mismatch")), "{body}");
    }
    assert_eq!(status(app.get("/api/v1/license")).await, 200, "a refused delete changes nothing");

    let (status_code, body) = delete("LIC-A").await;
    assert_eq!(status_code, 204, "{body}");
    assert_eq!(leftovers(&app, pk).await, Vec::<String>::new(), "nothing of the license in any table");
    assert!(filled.phone.closed().await.is_some(), "its online device is disconnected");
    assert_eq!(status(app.get("/api/v1/license")).await, 401, "its bearer token is gone");
    let me = crate::fleet::as_user(&app, Method::GET, "/api/users/me", &filled.session);
    assert_ne!(status(me).await, 200, "its fleet user is gone");
    let telemetry = crate::telemetry::write(&app, &filled.robot, "s", "cpu usage=1").await;
    assert_eq!(telemetry.status(), 401, "its robot's token is gone");
    let stores = app.http.get(app.url(&filled.stores)).bearer_auth(&filled.rail_robot);
    assert_eq!(status(stores).await, 401, "its rail robot's session is gone");
    let (status_code, body) = delete("LIC-A").await;
    assert_eq!((status_code, body["error"]["code"].as_str()), (404, Some("license_not_found")), "a repeat");

    assert_eq!(other_usage().await, before, "the other license keeps all its data");
    let (_, log) = admin(&app, Method::GET, "/api/admin/v1/audit?license=LIC-A&size=1", &ops, None).await;
    assert_eq!(log["items"][0]["action"], "license.delete", "{log}");

    // The number is free again: a new customer with it starts empty, and
    // sees none of the old one's faces or devices.
    let (status_code, created) =
        admin(&app, Method::POST, "/api/admin/v1/licenses", &ops, Some(json!({"number": "LIC-A"}))).await;
    assert_eq!(status_code, 201, "{created}");
    assert!(license_pk(&app, "LIC-A").await > pk, "a deleted license's key is never given again");
    let (_, shown) = admin(&app, Method::GET, "/api/admin/v1/licenses/LIC-A", &ops, None).await;
    let nothing = json!({"devices_bound": 0, "devices_online": 0, "messages_queued": 0, "inbox_waiting": 0,
        "telemetry_points_day": 0, "telemetry_bytes": 0});
    assert_eq!(shown["usage"], nothing, "{shown}");
}
