//! Password checks and pairing under attack (issue 33): simultaneous
//! wrong passwords never pass the limit nor pile up Argon2's memory, and a
//! pairing code's status tells nothing to whoever lacks its poll secret.

use std::net::IpAddr;
use std::time::Duration;

use relayhub_fleet::FleetConfig;
use relayhub_fleet::model::Role;
use relayhub_rail::RailConfig;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

use crate::console::Visitor;
use crate::fleet::{PASSWORD, signed_in, user};
use crate::helpers::TestApp;
use crate::rail::{Key, call, ok, robot};

/// A client whose requests come from `source` (a loopback address), so
/// that one test can be several clients.
fn client_from(source: &str) -> reqwest::Client {
    relayhub_core::http_client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// This process's resident memory (the server runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The highest [`rss`] while `work` runs, sampled every 2 ms.
async fn peak_rss_during<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = rss();
        loop {
            peak = peak.max(rss());
            tokio::select! {
                _ = &mut stopped => return peak.max(rss()),
                () = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    });
    let out = work.await;
    let _ = stop.send(());
    (out, sampler.await.unwrap())
}

/// How many of `statuses` are `status`.
fn count(statuses: &[StatusCode], status: u16) -> usize {
    statuses.iter().filter(|s| s.as_u16() == status).count()
}

/// A JSON sign-in that may meet a busy node: retried after its
/// `Retry-After` (a few times), as a client should.
async fn login_from(http: &reqwest::Client, app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    for _ in 0..5 {
        let body = json!({"email": email, "password": password});
        let response = http.post(app.url("/api/auth/login")).json(&body).send().await.unwrap();
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            return response;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the node stayed busy");
}

#[tokio::test]
async fn two_hundred_simultaneous_wrong_passwords_pass_at_most_the_limit_and_memory_stays_flat() {
    let app = TestApp::spawn().await;
    let limit = FleetConfig::default().attempts;
    user(&app, "LIC-S", "bob@example.com", Role::User).await;
    user(&app, "LIC-S", "ann@example.com", Role::User).await;
    let attacker = client_from("127.0.0.2");
    // Warm the connection pool's first request, so RSS's baseline has the
    // server's steady state.
    attacker.get(app.url("/healthz")).send().await.unwrap();
    let before = rss();

    let guesses = (0..200).map(|i| {
        let request = attacker
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": "bob@example.com", "password": format!("guess number {i}")}));
        async move { request.send().await.unwrap() }
    });
    let (answers, peak) = peak_rss_during(futures_util::future::join_all(guesses)).await;

    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    let (checked, limited, busy) = (count(&statuses, 401), count(&statuses, 429), count(&statuses, 503));
    assert_eq!(checked + limited + busy, 200, "only 401, 429 or 503: {statuses:?}");
    assert!(checked <= limit, "{checked} wrong passwords were checked; the limit is {limit}");
    assert!(limited >= 200 - limit - busy);
    for refused in answers.iter().filter(|r| r.status() == 429 || r.status() == 503) {
        assert!(refused.headers().contains_key(RETRY_AFTER), "{refused:?}");
    }
    let grown = peak.saturating_sub(before);
    eprintln!("200 wrong passwords: {checked} x 401, {limited} x 429, {busy} x 503; RSS +{} MiB", grown >> 20);
    assert!(grown < 150 << 20, "RSS grew by {} MiB during the burst (from {} MiB)", grown >> 20, before >> 20);

    // The server still serves: another user, from another address, signs in;
    // the attacked email is held for the window, wherever it comes from.
    let elsewhere = client_from("127.0.0.3");
    assert_eq!(login_from(&elsewhere, &app, "ann@example.com", PASSWORD).await.status(), 200);
    let held = login_from(&elsewhere, &app, "bob@example.com", PASSWORD).await;
    assert_eq!(held.status(), 429);
    let body: Value = held.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");
}

/// A console sign-in form, as a browser posts it.
fn console_sign_in(http: &reqwest::Client, app: &TestApp, email: &str, password: &str) -> reqwest::RequestBuilder {
    let encode = |s: &str| s.replace('@', "%40").replace(' ', "+");
    let form = format!("email={}&password={}&next=%2Fconsole", encode(email), encode(password));
    http.post(app.url("/console/login")).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form)
}

#[tokio::test]
async fn simultaneous_wrong_console_sign_ins_pass_at_most_the_limit() {
    let app = TestApp::spawn().await;
    let limit = FleetConfig::default().attempts;
    user(&app, "LIC-S", "carol@example.com", Role::Admin).await;
    user(&app, "LIC-S", "dave@example.com", Role::Admin).await;
    let attacker = client_from("127.0.0.4");
    let guesses = (0..40).map(|i| {
        let request = console_sign_in(&attacker, &app, "carol@example.com", &format!("guess {i}"));
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = count(&statuses, 401);
    assert_eq!(checked + count(&statuses, 429) + count(&statuses, 503), 40, "{statuses:?}");
    assert!(checked <= limit, "{checked} wrong console passwords were checked; the limit is {limit}");
    assert!(count(&statuses, 429) >= 40 - limit - count(&statuses, 503));

    let elsewhere = client_from("127.0.0.5");
    let mut signed_in = None;
    for _ in 0..5 {
        let response = console_sign_in(&elsewhere, &app, "dave@example.com", PASSWORD).send().await.unwrap();
        if response.status() != 503 {
            signed_in = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let signed_in = signed_in.expect("the node stayed busy");
    assert_eq!(signed_in.status(), 303, "another user signs in from elsewhere");
    assert!(signed_in.headers().get_all("set-cookie").iter().any(|c| !c.is_empty()));
}

#[tokio::test]
async fn simultaneous_wrong_engineer_passwords_pass_at_most_the_robots_limit() {
    let limit = 5;
    let app = TestApp::spawn_with(|c| c.edit(|r: &mut RailConfig| r.engineer_attempts_per_minute = limit)).await;
    let op = app.token.clone();
    let engineer = json!({"login": "eng", "password": "correct horse", "privileges": 6});
    ok(&app, "POST", "/base_api/admin/engineer", &op, Some(engineer)).await;
    let (_, token) = robot(&app, &op, &Key::ed25519(31)).await;

    let guesses = (0..30).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            let wrong = json!({"login": "eng", "password": format!("guess {i}")});
            call(app, "POST", "/base_api/robot/engineer/login", token, Some(wrong)).await.0
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = count(&statuses, 401);
    assert_eq!(checked + count(&statuses, 429) + count(&statuses, 503), 30, "{statuses:?}");
    assert!(checked <= limit as usize, "{checked} engineer passwords were checked; the limit is {limit}");

    let (_, other) = robot(&app, &op, &Key::ed25519(32)).await;
    let right = json!({"login": "eng", "password": "correct horse"});
    assert_eq!(ok(&app, "POST", "/base_api/robot/engineer/login", &other, Some(right)).await["login"], "eng");
}

fn polls_freely(c: &mut relayhub::Config) {
    c.edit(|f: &mut FleetConfig| f.pair_interval = Duration::from_millis(1));
}

/// A robot starts pairing from `robot`; its code and poll secret.
async fn start_pairing(robot: &reqwest::Client, app: &TestApp, claimed_ip: &str) -> (String, String) {
    let body = json!({"hostname": "pi-hall", "ip_address": claimed_ip});
    let started = robot.post(app.url("/api/pair")).json(&body).send().await.unwrap();
    assert_eq!(started.status(), 201);
    let started: Value = started.json().await.unwrap();
    (started["code"].as_str().unwrap().to_owned(), started["poll_secret"].as_str().unwrap().to_owned())
}

/// A status poll: its status, its headers but `date`, its body's bytes.
async fn poll(http: &reqwest::Client, app: &TestApp, code: &str, secret: Option<&str>) -> (u16, Vec<String>, Vec<u8>) {
    let mut request = http.get(app.url(&format!("/api/pair/{code}/status")));
    if let Some(secret) = secret {
        request = request.header("x-pair-secret", secret);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut headers: Vec<String> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
        .collect();
    headers.sort();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// Eight letters of the code alphabet, different for each `i` (its
/// digits in base 20).
fn some_code(i: u32) -> String {
    const LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    (0..8).rev().map(|d| LETTERS[(i / 20u32.pow(d) % 20) as usize] as char).collect()
}

#[tokio::test]
async fn a_pairing_status_tells_nothing_without_the_secret_and_misses_run_out() {
    let app = TestApp::spawn_with(polls_freely).await;
    let limit = FleetConfig::default().attempts;
    let robot = client_from("127.0.0.2");
    let (code, secret) = start_pairing(&robot, &app, "10.9.9.9").await;

    let prober = client_from("127.0.0.6");
    let unknown = poll(&prober, &app, "ZZZZ-ZZZZ", None).await;
    assert_eq!(unknown.0, 404);
    assert_eq!(poll(&prober, &app, &code, None).await, unknown, "a live code without its secret");
    assert_eq!(poll(&prober, &app, &code, Some("rhp_not-the-secret")).await, unknown, "with another secret");
    let body: Value = serde_json::from_slice(&unknown.2).unwrap();
    assert_eq!(body["error"]["code"], "pair_code_not_found");

    // The robot, with its secret, learns where its pairing is.
    let (status, _, body) = poll(&robot, &app, &code, Some(&secret)).await;
    assert_eq!((status, serde_json::from_slice::<Value>(&body).unwrap()), (200, json!({"status": "pending"})));

    // A hundred guesses at once from one address: misses are counted, before
    // the look-up, against the same limit as wrong confirmations.
    let guesser = client_from("127.0.0.7");
    let guesses = (0..100).map(|i| {
        let request = guesser.get(app.url(&format!("/api/pair/{}/status", some_code(i))));
        async move { request.send().await.unwrap() }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    assert!(count(&statuses, 404) <= limit, "{} misses answered; the limit is {limit}", count(&statuses, 404));
    assert_eq!(count(&statuses, 429), 100 - count(&statuses, 404), "{statuses:?}");
    let refused = answers.iter().find(|r| r.status() == 429).expect("a refusal");
    assert!(refused.headers().contains_key(RETRY_AFTER));
    // Even the live code is refused to that address now, with its secret.
    assert_eq!(poll(&guesser, &app, &code, Some(&secret)).await.0, 429);
    // The robot's own address is not the guesser's.
    assert_eq!(poll(&robot, &app, &code, Some(&secret)).await.0, 200);
}

#[tokio::test]
async fn the_robot_pairs_as_before_and_the_user_sees_where_it_asked_from() {
    let app = TestApp::spawn_with(polls_freely).await;
    user(&app, "LIC-S", "erin@example.com", Role::Admin).await;
    let access = signed_in(&app, "erin@example.com").await;
    let robot = client_from("127.0.0.2");
    let (code, secret) = start_pairing(&robot, &app, "10.9.9.9").await;

    let preview = app.http.get(app.url(&format!("/api/pair/{code}"))).bearer_auth(&access).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    let preview: Value = preview.json().await.unwrap();
    assert_eq!(
        (preview["ip_address"].as_str(), preview["observed_ip_address"].as_str()),
        (Some("10.9.9.9"), Some("127.0.0.2"))
    );

    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.sign_in("erin@example.com", PASSWORD, "/console").await.status(), 303);
    let csrf = visitor.csrf().await;
    let page = visitor.post("/console/pair/lookup", &[("csrf", &csrf), ("code", &code)]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for wanted in ["<code>10.9.9.9</code>", "<code>127.0.0.2</code>", r#"id="address-mismatch""#] {
        assert!(html.contains(wanted), "{wanted} in {html}");
    }

    assert_eq!(poll(&robot, &app, &code, Some(&secret)).await.0, 200);
    let confirmed = app.http.post(app.url(&format!("/api/pair/{code}/confirm"))).bearer_auth(&access).send().await;
    assert_eq!(confirmed.unwrap().status(), 200);
    let (status, _, body) = poll(&robot, &app, &code, Some(&secret)).await;
    let first: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, first["status"].as_str()), (200, Some("confirmed")));
    let token = first["token"].as_str().expect("the token, once");
    let (_, _, body) = poll(&robot, &app, &code, Some(&secret)).await;
    assert!(serde_json::from_slice::<Value>(&body).unwrap().get("token").is_none(), "the token is never shown again");
    let me = robot.get(app.url("/api/robot")).header("authorization", format!("Token {token}")).send().await;
    assert_eq!(me.unwrap().status(), 200);
    // Confirmed, the code still tells nothing to anyone else.
    let stranger = client_from("127.0.0.8");
    assert_eq!(poll(&stranger, &app, &code, None).await, poll(&stranger, &app, "ZZZZ-ZZZZ", None).await);
}
