//! A license's fleet users run by an operator over `/api/admin/v1`:
//! created without a password and given a one-time reset link, which the
//! console's page spends (the user's sessions end); deactivated, which
//! signs them out at once; and never reached through another license.

use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_api::{admin, operator_token};
use crate::console::Visitor;
use crate::helpers::TestApp;

async fn login(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    let response =
        app.http.post(app.url("/api/auth/login")).json(&json!({"email": email, "password": password})).send().await;
    let response = response.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn refresh(app: &TestApp, token: &str) -> u16 {
    let response = app.http.post(app.url("/api/auth/refresh")).json(&json!({"refresh_token": token})).send().await;
    response.unwrap().status().as_u16()
}

/// The reset page's token, from the link's path.
fn token_of(link: &Value) -> String {
    let path = link["path"].as_str().unwrap();
    path.strip_prefix("/console/password-reset?token=").unwrap_or_else(|| panic!("{path}")).to_owned()
}

/// The reset form sent as the browser sends it.
async fn choose(visitor: &Visitor<'_>, token: &str, password: &str, repeat: &str) -> reqwest::Response {
    let fields = [("token", token), ("password", password), ("repeat", repeat)];
    visitor.post("/console/password-reset", &fields).send().await.unwrap()
}

#[tokio::test]
async fn an_operator_invites_a_user_who_chooses_a_password_through_the_one_time_link() {
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "ops@example.com");
    let users = "/api/admin/v1/licenses/LIC-A/users";
    let body = json!({"email": "Owner@Example.com", "name": "Owner", "role": "admin"});
    let (status, created) = admin(&app, Method::POST, users, &ops, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["user"]["email"].as_str(), created["user"]["role"].as_str()),
        (Some("owner@example.com"), Some("admin"))
    );
    let id = created["user"]["id"].as_i64().unwrap();
    let first = token_of(&created["password_reset"]);
    assert!(first.starts_with("rhw_"), "{created}");

    // A second link replaces the first.
    let reset = format!("{users}/{id}/password-reset");
    let (status, link) = admin(&app, Method::POST, &reset, &ops, None).await;
    assert_eq!(status, 201, "{link}");
    let token = token_of(&link);
    let visitor = Visitor::new(&app);
    let (status, _) = visitor.page(&format!("/console/password-reset?token={first}")).await;
    assert_eq!(status, 410, "the replaced link is spent");
    let (status, page) = visitor.page(&format!("/console/password-reset?token={token}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"autocomplete="new-password""#), "{page}");

    let refused = choose(&visitor, &token, "a new passphrase", "a different one").await;
    assert_eq!(refused.status(), 422, "two different passwords");
    let refused = choose(&visitor, &token, "short", "short").await;
    assert_eq!(refused.status(), 422, "a password too short");
    let done = choose(&visitor, &token, "a new passphrase", "a new passphrase").await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/console/login?password_set=1");
    let (status, _) = login(&app, "owner@example.com", "a new passphrase").await;
    assert_eq!(status, 200, "the chosen password signs in");
    let again = choose(&visitor, &token, "another passphrase", "another passphrase").await;
    assert_eq!(again.status(), 410, "a link works once");
    assert_eq!(login(&app, "owner@example.com", "another passphrase").await.0, 401);

    let (_, log) = admin(&app, Method::GET, "/api/admin/v1/audit?license=LIC-A", &ops, None).await;
    let acts: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    let user = format!("user:{id}");
    assert_eq!(
        acts,
        [
            ("user.password_reset_used", user.as_str()),
            ("user.password_reset", "ops@example.com"),
            ("user.password_reset", "ops@example.com"),
            ("user.create", "ops@example.com"),
        ],
        "{log}"
    );
    assert!(!log.to_string().contains(&token), "no link in the audit log");
}

#[tokio::test]
async fn deactivating_or_resetting_a_user_ends_their_sessions_and_another_license_cannot_reach_them() {
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, "ops@example.com");
    let body = json!({"email": "driver@example.com", "password": "driver passphrase"});
    let (status, created) = admin(&app, Method::POST, "/api/admin/v1/licenses/LIC-A/users", &ops, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("password_reset").is_none(), "a user with a password needs no link");
    let id = created["user"]["id"].as_i64().unwrap();
    let (status, session) = login(&app, "driver@example.com", "driver passphrase").await;
    assert_eq!(status, 200, "{session}");

    // Another license, and the user addressed through it.
    admin(&app, Method::POST, "/api/admin/v1/licenses", &ops, Some(json!({"number": "LIC-OTHER"}))).await;
    let through_other = format!("/api/admin/v1/licenses/LIC-OTHER/users/{id}");
    let (status, body) = admin(&app, Method::PATCH, &through_other, &ops, Some(json!({"is_active": false}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("user_not_found")), "{body}");
    let (status, body) = admin(&app, Method::POST, &format!("{through_other}/password-reset"), &ops, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("user_not_found")), "{body}");
    let (_, listed) = admin(&app, Method::GET, "/api/admin/v1/licenses/LIC-OTHER/users", &ops, None).await;
    assert_eq!(listed["users"], json!([]), "{listed}");
    assert_eq!(refresh(&app, session["refresh_token"].as_str().unwrap()).await, 200, "untouched so far");

    let (_, session) = login(&app, "driver@example.com", "driver passphrase").await;
    let path = format!("/api/admin/v1/licenses/LIC-A/users/{id}");
    let (status, off) = admin(&app, Method::PATCH, &path, &ops, Some(json!({"is_active": false}))).await;
    assert_eq!(
        (status, off["is_active"].as_bool(), off["email"].as_str()),
        (200, Some(false), Some("driver@example.com"))
    );
    assert_eq!(refresh(&app, session["refresh_token"].as_str().unwrap()).await, 401, "signed out at once");
    assert_eq!(login(&app, "driver@example.com", "driver passphrase").await.0, 401);
    admin(&app, Method::PATCH, &path, &ops, Some(json!({"is_active": true}))).await;

    let (_, session) = login(&app, "driver@example.com", "driver passphrase").await;
    let (_, link) = admin(&app, Method::POST, &format!("{path}/password-reset"), &ops, None).await;
    assert_eq!(refresh(&app, session["refresh_token"].as_str().unwrap()).await, 200, "a link alone ends nothing");
    let done = choose(&Visitor::new(&app), &token_of(&link), "chosen again", "chosen again").await;
    assert_eq!(done.status(), 303);
    assert_eq!(refresh(&app, session["refresh_token"].as_str().unwrap()).await, 401, "its sessions ended");
    assert_eq!(login(&app, "driver@example.com", "driver passphrase").await.0, 401, "the old password is gone");

    let (status, body) = admin(&app, Method::GET, "/api/admin/v1/licenses/NOPE/users", &ops, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("license_not_found")));
}

#[tokio::test]
async fn the_reset_page_refuses_unknown_links_and_other_sites() {
    let app = TestApp::spawn().await;
    let visitor = Visitor::new(&app);
    for token in ["", "rhw_unknown", "rho_notthekind", &format!("rhw_{}", "x".repeat(500))] {
        let (status, page) = visitor.page(&format!("/console/password-reset?token={token}")).await;
        assert_eq!(status, 410, "{token}: {page}");
        assert!(page.contains("Ask your operator"), "{page}");
        assert_eq!(choose(&visitor, token, "a passphrase", "a passphrase").await.status(), 410);
    }
    let fields = [("token", "rhw_x"), ("password", "a passphrase"), ("repeat", "a passphrase")];
    let cross = visitor.post("/console/password-reset", &fields).header("sec-fetch-site", "cross-site");
    assert_eq!(cross.send().await.unwrap().status(), 403, "another site's form");
}
