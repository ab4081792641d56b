//! The web console as a person meets it: over plain HTTP (the session
//! cookie, CSRF, who may see what, the headers that keep other hosts out)
//! and in a real Chromium driven by Playwright, at desktop and phone size.

use std::time::Duration;

use relayhub_fleet::model::Role;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::field;
use crate::fleet::{PASSWORD, as_user, paired_robot, signed_in, user};
use crate::helpers::{Device, TestApp};

const SESSION: &str = "relayhub_console";
const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/browser.py");

/// A browser as far as HTTP goes: no redirects followed, one cookie kept
/// (the license console's, or the one named).
pub(crate) struct Visitor<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    /// The session cookie's name.
    name: &'static str,
    pub(crate) cookie: Option<String>,
}

impl<'a> Visitor<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self::with_cookie(app, SESSION)
    }

    /// A visitor whose session is in cookie `name`.
    pub(crate) fn with_cookie(app: &'a TestApp, name: &'static str) -> Self {
        let http = relayhub_core::http_client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self { app, http, name, cookie: None }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.app.url(path));
        match &self.cookie {
            Some(value) => request.header(COOKIE, format!("{}={value}", self.name)),
            None => request,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path).send().await.unwrap()
    }

    /// A page: its status and HTML.
    pub(crate) async fn page(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A form sent as a browser sends it (`fields` URL-encoded).
    pub(crate) fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(fields))
    }

    /// Signs in on the sign-in page; keeps the session cookie it gets.
    pub(crate) async fn sign_in(&mut self, email: &str, password: &str, next: &str) -> reqwest::Response {
        self.sign_in_at("/console/login", email, password, next).await
    }

    /// Signs in on the sign-in page at `path`; keeps the session cookie.
    pub(crate) async fn sign_in_at(
        &mut self,
        path: &str,
        email: &str,
        password: &str,
        next: &str,
    ) -> reqwest::Response {
        let fields = [("email", email), ("password", password), ("next", next)];
        let response = self.post(path, &fields).send().await.unwrap();
        if let Some((value, _)) = session_cookie_named(&response, self.name).filter(|(value, _)| !value.is_empty()) {
            self.cookie = Some(value);
        }
        response
    }

    /// The CSRF token the console's forms carry for this session.
    pub(crate) async fn csrf(&self) -> String {
        self.csrf_at("/console").await
    }

    /// The CSRF token of the forms on the page at `path`.
    pub(crate) async fn csrf_at(&self, path: &str) -> String {
        let (status, html) = self.page(path).await;
        assert_eq!(status, 200, "{html}");
        let after = html.split(r#"name="csrf""#).nth(1).expect("a form with the csrf field");
        after.split(r#"value=""#).nth(1).and_then(|v| v.split('"').next()).expect("its value").to_owned()
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

/// The session cookie a response sets: its value and its attributes
/// (lowercased, as `name=value` or a bare flag).
fn session_cookie(response: &reqwest::Response) -> Option<(String, Vec<String>)> {
    session_cookie_named(response, SESSION)
}

/// Cookie `name` as a response sets it: its value and its attributes.
pub(crate) fn session_cookie_named(response: &reqwest::Response, name: &str) -> Option<(String, Vec<String>)> {
    response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|cookie| {
        let mut parts = cookie.split(';').map(str::trim);
        let value = parts.next()?.strip_prefix(&format!("{name}="))?.to_owned();
        Some((value, parts.map(str::to_ascii_lowercase).collect()))
    })
}

pub(crate) fn location(response: &reqwest::Response) -> &str {
    response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// An admin of the app's license, a user of it, and an admin of another.
const ADMIN: &str = "admin@console.example";
const WORKER: &str = "worker@console.example";
const OTHER: &str = "admin@other.example";

#[tokio::test]
async fn signing_in_leads_back_to_the_page_asked_for_with_a_locked_down_cookie() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let mut visitor = Visitor::new(&app);

    let away = visitor.get("/console/devices").await;
    assert_eq!(away.status(), 303);
    assert_eq!(location(&away), "/console/login?next=%2Fconsole%2Fdevices");
    let (status, html) = visitor.page(location(&away)).await;
    assert_eq!(status, 200);
    for wanted in
        [r#"<label for="email">Email</label>"#, r#"<label for="password">Password</label>"#, "Sign in</button>"]
    {
        assert!(html.contains(wanted), "{wanted} in {html}");
    }
    assert!(html.contains(r#"name="next" value="/console/devices""#), "{html}");

    let wrong = visitor.sign_in(ADMIN, "not the password", "/console/devices").await;
    assert_eq!(wrong.status(), 401);
    assert!(session_cookie(&wrong).is_none_or(|(value, _)| value.is_empty()), "no session for a wrong password");
    let html = wrong.text().await.unwrap();
    assert!(html.contains("wrong") && html.contains("Sign in</button>"), "the form again, saying why: {html}");
    assert!(visitor.cookie.is_none());

    let signed = visitor.sign_in(ADMIN, PASSWORD, "/console/devices").await;
    assert_eq!(signed.status(), 303);
    assert_eq!(location(&signed), "/console/devices");
    let (value, attributes) = session_cookie(&signed).expect("a session cookie");
    assert!(value.len() >= 32, "an unguessable token: {value}");
    for wanted in ["httponly", "secure", "samesite=lax", "path=/console"] {
        assert!(attributes.iter().any(|a| a == wanted), "{wanted} in {attributes:?}");
    }
    let (status, html) = visitor.page("/console/devices").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Sign out</button>"), "{html}");

    // Anywhere but the console is no place to be sent after signing in.
    let mut elsewhere = Visitor::new(&app);
    let signed = elsewhere.sign_in(ADMIN, PASSWORD, "https://evil.example/").await;
    assert_eq!((signed.status().as_u16(), location(&signed)), (303, "/console"));
}

#[tokio::test]
async fn forms_without_their_token_or_from_another_site_are_refused_and_signing_out_ends_the_session() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.sign_in(ADMIN, PASSWORD, "/console").await.status(), 303);
    let csrf = visitor.csrf().await;

    let without = visitor.post("/console/logout", &[]).send().await.unwrap();
    assert_eq!(without.status(), 403);
    let wrong = visitor.post("/console/logout", &[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let cross = [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")];
    for (name, value) in cross {
        let from = visitor.post("/console/logout", &[("csrf", &csrf)]).header(name, value).send().await.unwrap();
        assert_eq!(from.status(), 403, "{name}: {value}");
    }
    // Nor may another site sign someone in (into an account of its own).
    let planted = visitor
        .post("/console/login", &[("email", ADMIN), ("password", PASSWORD)])
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(planted.status(), 403);
    assert!(session_cookie(&planted).is_none_or(|(value, _)| value.is_empty()));
    assert_eq!(visitor.get("/console/devices").await.status(), 200, "the session outlived all of that");

    let out = visitor.post("/console/logout", &[("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(out.status(), 303);
    assert!(location(&out).starts_with("/console/login"), "{}", location(&out));
    let (cleared, _) = session_cookie(&out).expect("the cookie is cleared");
    assert!(cleared.is_empty());
    // The old cookie, replayed, opens nothing.
    let replayed = visitor.get("/console/devices").await;
    assert_eq!(replayed.status(), 303);
    assert!(location(&replayed).starts_with("/console/login?next="));
}

#[tokio::test]
async fn a_plain_user_sees_robots_but_not_the_admins_pages_and_is_out_once_deactivated() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    let worker = user(&app, &app.license, WORKER, Role::User).await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.sign_in(WORKER, PASSWORD, "/console").await.status(), 303);

    let (status, home) = visitor.page("/console").await;
    assert_eq!(status, 200);
    assert!(home.contains(r#"href="/console/robots""#), "{home}");
    assert!(!home.contains(r#"href="/console/devices""#), "no link to a page it may not open: {home}");
    assert_eq!(visitor.page("/console/robots").await.0, 200);
    for admins in ["/console/devices", "/console/inbox", "/console/license"] {
        let (status, html) = visitor.page(admins).await;
        assert_eq!(status, 403, "{admins}: {html}");
        assert!(html.contains("admin"), "it says why: {html}");
    }

    let admin = signed_in(&app, ADMIN).await;
    let off = as_user(&app, reqwest::Method::PATCH, &format!("/api/users/{worker}"), &admin)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    let out = visitor.get("/console/robots").await;
    assert_eq!(out.status(), 303, "a deactivated user's session ends at once");
    assert!(location(&out).starts_with("/console/login"));
    assert_eq!(visitor.sign_in(WORKER, PASSWORD, "/console").await.status(), 401);
}

#[tokio::test]
async fn another_licenses_devices_messages_and_robots_are_not_there() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    user(&app, "LIC-OTHER", OTHER, Role::Admin).await;
    app.connect("kiosk-secret").await.close().await;
    let message = app.send_ok("kiosk-secret", json!({"payload": "only-for-lic-a"})).await;
    let admin = signed_in(&app, ADMIN).await;
    let (robot, _) = paired_robot(&app, &admin, "robot-of-a").await;

    let mut own = Visitor::new(&app);
    assert_eq!(own.sign_in(ADMIN, PASSWORD, "/console").await.status(), 303);
    let (status, html) = own.page("/console/devices").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-device="kiosk-secret""#), "{html}");
    let (status, html) = own.page("/console/devices/kiosk-secret").await;
    assert_eq!(status, 200);
    assert!(html.contains(&message) && html.contains(r#"id="pending""#), "{html}");
    assert_eq!(own.page(&format!("/console/robots/{robot}")).await.0, 200);

    let mut other = Visitor::new(&app);
    assert_eq!(other.sign_in(OTHER, PASSWORD, "/console").await.status(), 303);
    let (status, html) = other.page("/console/devices").await;
    assert_eq!(status, 200);
    assert!(!html.contains("kiosk-secret"), "{html}");
    for path in [
        "/console/devices/kiosk-secret".to_owned(),
        format!("/console/receipt?id={message}"),
        format!("/console/robots/{robot}"),
    ] {
        let (status, html) = other.page(&path).await;
        assert_eq!(status, 404, "{path}: {html}");
        for secret in ["kiosk-secret", "only-for-lic-a", "robot-of-a"] {
            assert!(!html.contains(secret), "{path} shows {secret}: {html}");
        }
    }
    let csrf = other.csrf().await;
    let settings = [("csrf", csrf.as_str()), ("version", "0"), ("settings", r#"{"volume": 1}"#)];
    let write = other.post("/console/devices/kiosk-secret/settings", &settings).send().await.unwrap();
    assert_eq!(write.status(), 404, "nor can its settings be written");
    let current: Value = app.get("/api/v1/devices/kiosk-secret/settings").send().await.unwrap().json().await.unwrap();
    assert_ne!(current["settings"], json!({"volume": 1}), "{current}");
}

/// Where a page's `src`, `href`, `action` and `data-live` lead.
const LINKING: [&str; 5] = ["src", "href", "action", "data-live", "xlink:href"];

/// The values of these attributes in a page.
fn links(html: &str, attributes: &[&str]) -> Vec<String> {
    let mut links = Vec::new();
    for attribute in attributes {
        let opening = format!(" {attribute}=\"");
        links.extend(html.split(opening.as_str()).skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned));
    }
    links
}

#[tokio::test]
async fn every_console_page_keeps_other_hosts_out() {
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;
    app.connect("kiosk-1").await.close().await;
    app.send_ok("kiosk-1", json!({"text": "hello"})).await;
    let admin = signed_in(&app, ADMIN).await;
    let (robot, _) = paired_robot(&app, &admin, "robot-1").await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.sign_in(ADMIN, PASSWORD, "/console").await.status(), 303);

    // Every page the navigation offers, a device's and a robot's, the
    // sign-in page and a refusal.
    let (_, home) = visitor.page("/console").await;
    let mut pages: Vec<String> = links(&home, &["href"])
        .into_iter()
        .filter(|link| link.starts_with("/console/") && !link.starts_with("/console/assets/"))
        .collect();
    for wanted in ["/console/devices", "/console/inbox", "/console/license", "/console/robots", "/console/pair"] {
        assert!(pages.iter().any(|p| p == wanted), "{wanted} is in the navigation: {pages:?}");
    }
    pages.extend(["/console".into(), "/console/devices/kiosk-1".into(), format!("/console/robots/{robot}")]);
    pages.sort();
    pages.dedup();
    let mut checked = vec![];
    for path in &pages {
        checked.push((path.clone(), visitor.get(path).await, 200));
    }
    checked.push(("/console/login".into(), Visitor::new(&app).get("/console/login").await, 200));
    checked.push(("a refusal".into(), visitor.get("/console/devices/no-such-device").await, 404));
    for (path, response, status) in checked {
        assert_eq!(response.status(), status, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(header("content-type").starts_with("text/html"), "{path}: {}", header("content-type"));
        let csp = header("content-security-policy");
        for wanted in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(wanted), "{path}: {wanted} in {csp:?}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}: a license's data stays out of caches");
        let html = response.text().await.unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"), "{path} names another host: {html}");
        for link in links(&html, &LINKING) {
            // `data:,` is the empty icon: no request at all.
            let local = (link.starts_with('/') && !link.starts_with("//"))
                || link.starts_with('#')
                || link.starts_with('?')
                || link == "data:,";
            assert!(local, "{path} leads to {link}");
        }
    }

    for (path, content_type) in
        [("/console/assets/console.css", "text/css"), ("/console/assets/console.js", "text/javascript")]
    {
        let response = Visitor::new(&app).get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let got = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(got.starts_with(content_type), "{path}: {got}");
        assert_eq!(headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]), "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        assert!(!body.contains("http://") && !body.contains("https://"), "{path} names another host");
    }
}

pub(crate) fn chromium_and_playwright() -> bool {
    let present = std::path::Path::new("/usr/bin/chromium").exists() && field::python_module("playwright");
    field::available(
        "Debian chromium and Python playwright (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 pip install playwright)",
        present,
    )
}

/// A robot's write as Telegraf makes it: line protocol, seconds.
async fn write_telemetry(app: &TestApp, token: &str, lines: &str) {
    let response = app
        .http
        .post(app.url("/api/v2/write?org=o&bucket=b&precision=s"))
        .header("authorization", format!("Token {token}"))
        .body(lines.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

/// A robot that started pairing and waits for its code to be typed: the
/// code and the robot's id.
async fn start_pairing(app: &TestApp, hostname: &str) -> (String, i64) {
    let response = app.http.post(app.url("/api/pair")).json(&json!({"hostname": hostname})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (body["code"].as_str().unwrap().to_owned(), body["robot_id"].as_i64().unwrap())
}

/// Keeps a device connected and answering for as long as the test runs.
fn keep_online(mut device: Device) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            device.sync().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_console_in_chromium_on_a_desktop_and_a_phone() {
    if !chromium_and_playwright() {
        return;
    }
    let app = TestApp::spawn().await;
    user(&app, &app.license, ADMIN, Role::Admin).await;

    // A kiosk that was online once and has a message waiting; a scanner
    // online now that sent a record up.
    app.connect("kiosk-1").await.close().await;
    let message = app.send_ok("kiosk-1", json!({"text": "Shift starts at 6"})).await;
    let mut scanner = app.connect("scanner-1").await;
    scanner.send(json!({"type": "publish", "ref": "scan-1", "data": {"barcode": "4006381333931"}})).await;
    scanner.expect("published").await;
    let scanner = keep_online(scanner);

    // A robot that sends telemetry, and two waiting to be paired.
    let admin = signed_in(&app, ADMIN).await;
    let (robot, robot_token) = paired_robot(&app, &admin, "r1").await;
    let now = relayhub_core::time::Timestamp::now().millis() / 1000;
    let lines: Vec<String> = (1..=6)
        .map(|i| format!("cpu,host=r1 usage_user={} {}", 10.0 + f64::from(i) * 2.5, now - 360 + i64::from(i) * 50))
        .collect();
    write_telemetry(&app, &robot_token, &lines.join("\n")).await;
    let (desk_code, desk_robot) = start_pairing(&app, "pi-desk").await;
    let (phone_code, phone_robot) = start_pairing(&app, "pi-phone").await;

    // target/console-screenshots, which CI keeps.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_owned();
    let screenshots = std::env::var("CONSOLE_SCREENSHOTS")
        .unwrap_or_else(|_| target.join("console-screenshots").display().to_string());
    let case = json!({
        "base": app.url(""),
        "email": ADMIN,
        "password": PASSWORD,
        "license_token": app.token,
        "device": "kiosk-1",
        "message": message,
        "online_device": "scanner-1",
        "record": "scan-1",
        "robot": robot,
        "field": "usage_user",
        "pairings": [
            {"viewport": "desktop", "code": desk_code, "hostname": "pi-desk", "robot": desk_robot},
            {"viewport": "phone", "code": phone_code, "hostname": "pi-phone", "robot": phone_robot},
        ],
    });
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(BROWSER)
        .env("CONSOLE_CASE", case.to_string())
        .env("CONSOLE_SCREENSHOTS", &screenshots)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), command.output()).await.expect("the browser finishes");
    let out = out.expect("python3 runs");
    scanner.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\n(screenshots in {screenshots})", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("desktop: done") && stdout.contains("phone: done"), "{stdout}");
}
