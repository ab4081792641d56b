//! The operator console as an operator meets it: over plain HTTP (its own
//! session cookie, CSRF, sign-in limits, a session that is not a license
//! user's and the other way round, every change in the audit log) and in
//! a real Chromium at desktop and phone size.

use std::time::Duration;

use relayhub_fleet::model::Role;
use reqwest::header::LOCATION;
use serde_json::json;

use crate::admin_api::{admin, operator_token};
use crate::console::{Visitor, chromium_and_playwright, location, session_cookie_named};
use crate::fleet::{PASSWORD, user};
use crate::helpers::TestApp;

const COOKIE: &str = "relayhub_operator";
const OPERATOR: &str = "ops@example.com";
/// The password `operator_token` gives the operator it makes.
const OPERATOR_PASSWORD: &str = "a long passphrase";
const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/operator.py");

async fn signed_in_operator(app: &TestApp) -> Visitor<'_> {
    let mut visitor = Visitor::with_cookie(app, COOKIE);
    let response =
        visitor.sign_in_at("/console/operator/login", OPERATOR, OPERATOR_PASSWORD, "/console/operator").await;
    assert_eq!((response.status().as_u16(), location(&response)), (303, "/console/operator"));
    visitor
}

#[tokio::test]
async fn an_operator_signs_in_to_a_console_of_their_own_and_every_form_is_an_act_in_the_audit_log() {
    let app = TestApp::spawn().await;
    let ops = operator_token(&app, OPERATOR);
    let anonymous = Visitor::with_cookie(&app, COOKIE);
    let asked = anonymous.get("/console/operator/licenses/LIC-A").await;
    assert_eq!(asked.status(), 303);
    assert_eq!(location(&asked), "/console/operator/login?next=%2Fconsole%2Foperator%2Flicenses%2FLIC-A");

    let mut visitor = Visitor::with_cookie(&app, COOKIE);
    let response =
        visitor.sign_in_at("/console/operator/login", OPERATOR, OPERATOR_PASSWORD, "/console/operator").await;
    assert_eq!(response.status(), 303);
    let (value, attributes) = session_cookie_named(&response, COOKIE).expect("the session cookie");
    assert!(value.starts_with("rhc_"), "{value}");
    for wanted in ["httponly", "secure", "samesite=lax", "path=/console/operator"] {
        assert!(attributes.iter().any(|a| a == wanted), "{wanted} in {attributes:?}");
    }
    let (status, html) = visitor.page("/console/operator").await;
    assert_eq!(status, 200);
    assert!(html.contains("LIC-A") && html.contains(OPERATOR), "the licenses, and who is signed in");

    // A form without its token, or from another site, changes nothing.
    let fields = [("number", "CUST-9"), ("name", "Nine")];
    assert_eq!(visitor.post("/console/operator/licenses", &fields).send().await.unwrap().status(), 403);
    let csrf = visitor.csrf_at("/console/operator").await;
    let with_token = [("csrf", csrf.as_str()), ("number", "CUST-9"), ("name", "Nine")];
    let forged = visitor.post("/console/operator/licenses", &with_token).header("sec-fetch-site", "cross-site");
    assert_eq!(forged.send().await.unwrap().status(), 403);
    let created = visitor.post("/console/operator/licenses", &with_token).send().await.unwrap();
    assert_eq!(created.status(), 200);
    let html = created.text().await.unwrap();
    let secret = html.split("rhb_").nth(1).and_then(|rest| rest.split('<').next()).expect("the token, shown once");
    let token = format!("rhb_{secret}");
    let license = app.http.get(app.url("/api/v1/license")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(license.status(), 200, "the new customer's token works");
    let (_, page) = visitor.page("/console/operator/licenses/CUST-9").await;
    assert!(!page.contains(&token), "a secret is shown once only");

    // Suspending from the console refuses the token at once; resuming
    // lets it in again.
    let suspend = |on: &'static str| {
        let fields = [("csrf", csrf.as_str()), ("suspended", on)];
        visitor.post("/console/operator/licenses/CUST-9/suspend", &fields).send()
    };
    assert_eq!(suspend("true").await.unwrap().status(), 303);
    let refused = app.http.get(app.url("/api/v1/license")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(suspend("false").await.unwrap().status(), 303);
    let edit = [("csrf", csrf.as_str()), ("name", "Nine Ltd"), ("expires", "2099-01-31"), ("max_devices", "")];
    assert_eq!(visitor.post("/console/operator/licenses/CUST-9/edit", &edit).send().await.unwrap().status(), 303);
    let bad = [("csrf", csrf.as_str()), ("name", "x"), ("expires", "31.01.2099"), ("max_devices", "")];
    let refused = visitor.post("/console/operator/licenses/CUST-9/edit", &bad).send().await.unwrap();
    assert_eq!(refused.status(), 422, "a date that is not one is refused, nothing changed");

    // A wrong confirmation deletes nothing; the right one deletes it.
    let delete = |confirm: &'static str| {
        let fields = [("csrf", csrf.as_str()), ("confirm", confirm)];
        visitor.post("/console/operator/licenses/CUST-9/delete", &fields).send()
    };
    assert_eq!(delete("CUST-8").await.unwrap().status(), 422);
    let deleted = delete("CUST-9").await.unwrap();
    assert_eq!((deleted.status().as_u16(), location(&deleted)), (303, "/console/operator?deleted=CUST-9"));
    let gone = app.http.get(app.url("/api/v1/license")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(gone.status(), 401);

    let (_, log) = admin(&app, reqwest::Method::GET, "/api/admin/v1/audit?license=CUST-9", &ops, None).await;
    let acts: Vec<(&str, &str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap(), e["address"].as_str().unwrap_or("")))
        .collect();
    let by = (OPERATOR, "127.0.0.1");
    assert_eq!(
        acts,
        [
            ("license.delete", by.0, by.1),
            ("license.update", by.0, by.1),
            ("license.update", by.0, by.1),
            ("license.update", by.0, by.1),
            ("license.create", by.0, by.1),
        ],
        "{log}"
    );
    let (status, audit) = visitor.page("/console/operator/audit?license=CUST-9").await;
    assert_eq!(status, 200);
    assert!(audit.contains("license.delete") && audit.contains("5 acts"), "the console's audit log");

    // Signing out ends the session: the old cookie opens nothing.
    let csrf = visitor.csrf_at("/console/operator").await;
    let out = visitor.post("/console/operator/logout", &[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!((out.status().as_u16(), location(&out)), (303, "/console/operator/login?signed_out=1"));
    assert_eq!(visitor.get("/console/operator").await.status(), 303);
}

#[tokio::test]
async fn a_license_users_session_is_not_an_operators_nor_the_other_way_round() {
    let app = TestApp::spawn().await;
    operator_token(&app, OPERATOR);
    user(&app, &app.license, "owner@example.com", Role::Admin).await;
    let mut owner = Visitor::new(&app);
    assert_eq!(owner.sign_in("owner@example.com", PASSWORD, "/console").await.status(), 303);
    let license_cookie = owner.cookie.clone().unwrap();
    let operator = signed_in_operator(&app).await;
    let operator_cookie = operator.cookie.clone().unwrap();

    let mut as_operator = Visitor::with_cookie(&app, COOKIE);
    as_operator.cookie = Some(license_cookie);
    let response = as_operator.get("/console/operator").await;
    assert_eq!(response.status(), 303, "a license user's session is no operator's");
    assert!(response.headers()[LOCATION].to_str().unwrap().starts_with("/console/operator/login"));
    let mut as_user = Visitor::new(&app);
    as_user.cookie = Some(operator_cookie);
    let response = as_user.get("/console/devices").await;
    assert_eq!(response.status(), 303, "an operator's session opens no license's pages");
    assert!(location(&response).starts_with("/console/login"));
    // A fleet user's email and password do not open the operator console.
    let mut visitor = Visitor::with_cookie(&app, COOKIE);
    let refused =
        visitor.sign_in_at("/console/operator/login", "owner@example.com", PASSWORD, "/console/operator").await;
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn operator_sign_ins_are_limited_per_email_and_address_before_the_password_is_checked() {
    let app = TestApp::spawn().await;
    operator_token(&app, OPERATOR);
    let mut visitor = Visitor::with_cookie(&app, COOKIE);
    for _ in 0..10 {
        let wrong = visitor.sign_in_at("/console/operator/login", OPERATOR, "not the passphrase", "/console").await;
        assert_eq!(wrong.status(), 401);
    }
    let limited = visitor.sign_in_at("/console/operator/login", OPERATOR, OPERATOR_PASSWORD, "/console").await;
    assert_eq!(limited.status(), 429, "the eleventh attempt is refused, even with the right password");
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    assert!(visitor.cookie.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_customers_from_the_console_in_chromium_on_a_desktop_and_a_phone() {
    if !chromium_and_playwright() {
        return;
    }
    let app = TestApp::spawn().await;
    operator_token(&app, OPERATOR);
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_owned();
    let screenshots = std::env::var("CONSOLE_SCREENSHOTS")
        .unwrap_or_else(|_| target.join("console-screenshots").display().to_string());
    let case = json!({"base": app.url(""), "email": OPERATOR, "password": OPERATOR_PASSWORD, "license": app.license});
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(BROWSER)
        .env("CONSOLE_CASE", case.to_string())
        .env("CONSOLE_SCREENSHOTS", &screenshots)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), command.output()).await.expect("the browser finishes");
    let out = out.expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\n(screenshots in {screenshots})", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("desktop: done") && stdout.contains("phone: done"), "{stdout}");
}
