//! The robot fleet (seed 002) over HTTP: users and their sessions, robots
//! seen by their owners and admins only, pairing by code hardened as RFC
//! 8628, `install.sh` run by `sh`, and `relayhub user` on the command line.

use std::process::Stdio;
use std::time::{Duration, Instant};

use relayhub_core::identity::{self, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_fleet::FleetConfig;
use relayhub_fleet::auth::hash_password;
use relayhub_fleet::model::{NewUser, Role};
use relayhub_fleet::store::UserStore;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{PATIENCE, TestApp};

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A user of `license` (created as `relayhub user create` would).
pub(crate) async fn user(app: &TestApp, license: &str, email: &str, role: Role) -> i64 {
    let number = LicenseNumber::parse(license).unwrap();
    let pk = match app.admin().identity.license(&number).await.unwrap() {
        Some(l) => l.pk,
        None => {
            let binding = relayhub_core::identity::BindingPolicy::FirstUse;
            let new = NewLicense { number, name: String::new(), expires_at: None, max_devices: None, binding };
            identity::create_license(app.admin().identity.as_ref(), new).await.unwrap().0.pk
        }
    };
    let users = app.admin().get::<dyn UserStore>().unwrap();
    let password_hash = hash_password(PASSWORD.into()).await.unwrap();
    let new = NewUser { license: pk, email: email.into(), name: email.into(), role, password_hash };
    users.create_user(new).await.unwrap().id
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.http.post(app.url("/api/auth/login")).json(&json!({"email": email, "password": password})).send().await.unwrap()
}

/// An access token of a signed-in user.
pub(crate) async fn signed_in(app: &TestApp, email: &str) -> String {
    sign_in_at(&app.http, &app.url(""), email).await
}

pub(crate) fn as_user(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.http.request(method, app.url(path)).bearer_auth(token)
}

/// A signed-in user's GET, its JSON answer.
pub(crate) async fn user_json(app: &TestApp, path: &str, token: &str) -> Value {
    as_user(app, reqwest::Method::GET, path, token).send().await.unwrap().json().await.unwrap()
}

async fn code_of(response: reqwest::Response) -> (String, String, i64) {
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["code"].as_str().unwrap().into(),
        body["poll_secret"].as_str().unwrap().into(),
        body["robot_id"].as_i64().unwrap(),
    )
}

/// A robot paired by `token`'s user: its id and its own token.
pub(crate) async fn paired_robot(app: &TestApp, token: &str, hostname: &str) -> (i64, String) {
    pair_at(&app.http, &app.url(""), token, hostname).await
}

/// [`paired_robot`] against any server (`base`: `http://host:port`).
pub(crate) async fn pair_at(http: &reqwest::Client, base: &str, token: &str, hostname: &str) -> (i64, String) {
    let started = http.post(format!("{base}/api/pair")).json(&json!({"hostname": hostname})).send().await.unwrap();
    let (code, secret, id) = code_of(started).await;
    let confirmed = http.post(format!("{base}/api/pair/{code}/confirm")).bearer_auth(token).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    let status = http.get(format!("{base}/api/pair/{code}/status")).header("x-pair-secret", secret);
    let status: Value = status.send().await.unwrap().json().await.unwrap();
    (id, status["token"].as_str().expect("the token, once").to_owned())
}

/// A user's access token from any server (`base`: `http://host:port`).
pub(crate) async fn sign_in_at(http: &reqwest::Client, base: &str, email: &str) -> String {
    let login = json!({"email": email, "password": PASSWORD});
    let response = http.post(format!("{base}/api/auth/login")).json(&login).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// A signed-in admin of the app's license (with a robot it paired) and a
/// robot's token: for tools that drive every operation.
pub async fn admin_with_robot(app: &TestApp) -> (String, String) {
    user(app, &app.license, "admin@schema.example", Role::Admin).await;
    let token = signed_in(app, "admin@schema.example").await;
    paired_robot(app, &token, "schema-robot").await;
    // The robot whose token is handed out belongs to another license, so
    // the admin's fuzzed PATCH and DELETE cannot switch it off mid-run.
    user(app, "LIC-SCHEMA-ROBOT", "robots@schema.example", Role::User).await;
    let owner = signed_in(app, "robots@schema.example").await;
    let (_, robot) = paired_robot(app, &owner, "schema-robot-2").await;
    (token, robot)
}

fn fast_pairing(c: &mut relayhub::Config) {
    c.edit(|f: &mut FleetConfig| f.pair_interval = Duration::from_secs(1));
}

#[tokio::test]
async fn a_user_signs_in_and_a_reused_refresh_token_ends_the_session() {
    let app = TestApp::spawn().await;
    user(&app, "LIC-F", "ann@example.com", Role::User).await;
    // A wrong password and an unknown email look the same.
    let wrong = login(&app, "ann@example.com", "not the password").await;
    let unknown = login(&app, "nobody@example.com", "not the password").await;
    assert_eq!((wrong.status().as_u16(), unknown.status().as_u16()), (401, 401));
    let (wrong, unknown): (Value, Value) = (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");

    let pair: Value = login(&app, "Ann@Example.com ", PASSWORD).await.json().await.unwrap();
    assert_eq!((pair["token_type"].as_str(), pair["expires_in"].as_u64()), (Some("bearer"), Some(900)));
    let me: Value = as_user(&app, reqwest::Method::GET, "/api/users/me", pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["email"].as_str(), me["role"].as_str(), me["license"].as_str()),
        (Some("ann@example.com"), Some("user"), Some("LIC-F"))
    );

    let refresh = |token: &str| {
        let body = json!({"refresh_token": token});
        let request = app.http.post(app.url("/api/auth/refresh")).json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = pair["refresh_token"].as_str().unwrap();
    let next: Value = refresh(first).await.json().await.unwrap();
    let second = next["refresh_token"].as_str().unwrap();
    assert_ne!(first, second, "rotated on every use");
    // The first token again: someone else may hold it. The session ends,
    // the rotated token with it.
    let reused = refresh(first).await;
    assert_eq!(reused.status(), 401);
    assert_eq!(reused.json::<Value>().await.unwrap()["error"]["code"], "refresh_token_reused");
    assert_eq!(refresh(second).await.status(), 401);

    // Logout ends a session.
    let pair: Value = login(&app, "ann@example.com", PASSWORD).await.json().await.unwrap();
    let token = pair["refresh_token"].as_str().unwrap();
    let out = app.http.post(app.url("/api/auth/logout")).json(&json!({"refresh_token": token})).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(refresh(token).await.status(), 401);
}

#[tokio::test]
async fn an_unknown_email_takes_as_long_as_a_wrong_password() {
    // More attempts than the sign-in limit allows (tested on its own below).
    let app = TestApp::spawn_with(|c| c.edit(|f: &mut FleetConfig| f.attempts = 1000)).await;
    user(&app, "LIC-F", "tim@example.com", Role::User).await;
    // Interleaved, nine each, and the fastest of each compared: a busy
    // moment of the machine (other tests run beside this one) only ever
    // adds time, so the minimum is the cost of the work itself. A median
    // once came out 20 ms against 86 ms on a loaded 2-core machine.
    let (mut wrong, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..9 {
        for (email, fastest) in [("tim@example.com", &mut wrong), ("nobody@example.com", &mut unknown)] {
            let started = Instant::now();
            assert_eq!(login(&app, email, "wrong password!").await.status(), 401);
            *fastest = (*fastest).min(started.elapsed());
        }
    }
    // Without a hash verified for unknown emails the second would take a
    // fraction of a millisecond against tens for the first.
    assert!(unknown * 3 > wrong, "unknown email {unknown:?} against wrong password {wrong:?}");
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_refused_for_a_while() {
    let app = TestApp::spawn_with(|c| c.edit(|f: &mut FleetConfig| f.attempts = 3)).await;
    user(&app, "LIC-F", "eve@example.com", Role::User).await;
    for _ in 0..3 {
        assert_eq!(login(&app, "eve@example.com", "guess guess").await.status(), 401);
    }
    let refused = login(&app, "eve@example.com", PASSWORD).await;
    assert_eq!(refused.status(), 429, "even the right password waits");
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 900);
}

#[tokio::test]
async fn a_deactivated_user_is_out_at_once() {
    let app = TestApp::spawn().await;
    user(&app, "LIC-F", "boss@example.com", Role::Admin).await;
    let worker = user(&app, "LIC-F", "worker@example.com", Role::User).await;
    let boss = signed_in(&app, "boss@example.com").await;
    let pair: Value = login(&app, "worker@example.com", PASSWORD).await.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap();
    let users: Value = user_json(&app, "/api/users", &boss).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    assert_eq!(as_user(&app, reqwest::Method::GET, "/api/users", access).send().await.unwrap().status(), 403);
    let off = as_user(&app, reqwest::Method::PATCH, &format!("/api/users/{worker}"), &boss)
        .json(&json!({"is_active": false}));
    assert_eq!(off.send().await.unwrap().json::<Value>().await.unwrap()["is_active"], false);
    assert_eq!(as_user(&app, reqwest::Method::GET, "/api/users/me", access).send().await.unwrap().status(), 401);
    let refresh = app.http.post(app.url("/api/auth/refresh")).json(&json!({"refresh_token": pair["refresh_token"]}));
    assert_eq!(refresh.send().await.unwrap().status(), 401);
    assert_eq!(login(&app, "worker@example.com", PASSWORD).await.status(), 401);
}

#[tokio::test]
async fn robots_are_seen_by_their_owner_and_admins_and_nobody_else() {
    let app = TestApp::spawn_with(fast_pairing).await;
    user(&app, "LIC-F", "admin@a.example", Role::Admin).await;
    let one_id = user(&app, "LIC-F", "one@a.example", Role::User).await;
    user(&app, "LIC-F", "two@a.example", Role::User).await;
    user(&app, "LIC-G", "admin@b.example", Role::Admin).await;
    let (admin, one, two, other) = (
        signed_in(&app, "admin@a.example").await,
        signed_in(&app, "one@a.example").await,
        signed_in(&app, "two@a.example").await,
        signed_in(&app, "admin@b.example").await,
    );
    let (robot, robot_token) = paired_robot(&app, &one, "pi-one").await;
    let path = format!("/api/robots/{robot}");
    let status = |token: &str, method: reqwest::Method| {
        let request = as_user(&app, method, &path, token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&one, reqwest::Method::GET).await, 200);
    assert_eq!(status(&admin, reqwest::Method::GET).await, 200);
    assert_eq!(status(&two, reqwest::Method::GET).await, 404, "another user's robot does not exist for it");
    assert_eq!(status(&other, reqwest::Method::GET).await, 404, "nor for another license");
    assert_eq!(status(&other, reqwest::Method::DELETE).await, 404);
    let rename = as_user(&app, reqwest::Method::PATCH, &path, &other).json(&json!({"name": "mine"}));
    assert_eq!(rename.send().await.unwrap().status(), 404);
    // Nor are another license's users there for its admin.
    let demote = as_user(&app, reqwest::Method::PATCH, &format!("/api/users/{one_id}"), &other)
        .json(&json!({"is_active": false}));
    let demoted = demote.send().await.unwrap();
    assert_eq!(demoted.status(), 404);
    assert_eq!(demoted.json::<Value>().await.unwrap()["error"]["code"], "user_not_found");
    let users: Value = user_json(&app, "/api/users", &other).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "only LIC-G's own admin");
    let listed = |token: &str| {
        let request = as_user(&app, reqwest::Method::GET, "/api/robots", token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["robots"].as_array().unwrap().len() }
    };
    assert_eq!((listed(&one).await, listed(&two).await, listed(&admin).await, listed(&other).await), (1, 0, 1, 0));

    // The robot's own token works until its user switches it off.
    let own = || app.http.get(app.url("/api/robot")).header("authorization", format!("Token {robot_token}")).send();
    assert_eq!(own().await.unwrap().status(), 200);
    let rename =
        as_user(&app, reqwest::Method::PATCH, &path, &one).json(&json!({"name": "kitchen", "status": "inactive"}));
    let renamed: Value = rename.send().await.unwrap().json().await.unwrap();
    assert_eq!((renamed["name"].as_str(), renamed["status"].as_str()), (Some("kitchen"), Some("inactive")));
    assert_eq!(own().await.unwrap().status(), 401, "an inactive robot's token stops at once");
    let back = as_user(&app, reqwest::Method::PATCH, &path, &one).json(&json!({"status": "active"}));
    assert_eq!(back.send().await.unwrap().status(), 200);
    assert_eq!(own().await.unwrap().status(), 200);
    let wrong = as_user(&app, reqwest::Method::PATCH, &path, &one).json(&json!({"status": "pending"}));
    assert_eq!(wrong.send().await.unwrap().status(), 422);
    assert_eq!(status(&one, reqwest::Method::DELETE).await, 204);
    assert_eq!(own().await.unwrap().status(), 401, "a deleted robot's token stops at once");
}

#[tokio::test]
async fn pairing_is_by_code_once_in_time_and_the_token_goes_to_the_robot_only() {
    let app = TestApp::spawn_with(|c| {
        c.edit(|f: &mut FleetConfig| {
            f.pair_interval = Duration::from_secs(1);
            f.attempts = 3;
        })
    })
    .await;
    user(&app, "LIC-F", "pat@example.com", Role::User).await;
    let pat = signed_in(&app, "pat@example.com").await;
    let started =
        app.http.post(app.url("/api/pair")).json(&json!({"hostname": "rpi-7", "architecture": "armv7l"})).send();
    let (code, secret, robot) = code_of(started.await.unwrap()).await;
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    assert!(code.replace('-', "").bytes().all(|b| b"BCDFGHJKLMNPQRSTVWXZ".contains(&b)), "{code}");
    let poll = |secret: Option<&str>| {
        let mut request = app.http.get(app.url(&format!("/api/pair/{code}/status")));
        if let Some(secret) = secret {
            request = request.header("x-pair-secret", secret);
        }
        async move { request.send().await.unwrap() }
    };
    assert_eq!(poll(Some(&secret)).await.json::<Value>().await.unwrap()["status"], "pending");
    let fast = poll(Some(&secret)).await;
    assert_eq!(fast.status(), 429, "polling faster than the interval");
    assert_eq!(fast.json::<Value>().await.unwrap()["error"]["code"], "slow_down");

    // The user sees which robot it is, typed any way, before confirming.
    let typed = code.to_lowercase().replace('-', "");
    let preview: Value = user_json(&app, &format!("/api/pair/{typed}"), &pat).await;
    assert_eq!((preview["hostname"].as_str(), preview["architecture"].as_str()), (Some("rpi-7"), Some("armhf")));
    assert_eq!(preview["ip_address"], "127.0.0.1");
    let confirm = |code: String| {
        let request = as_user(&app, reqwest::Method::POST, &format!("/api/pair/{code}/confirm"), &pat);
        async move { request.send().await.unwrap() }
    };
    let confirmed: Value = confirm(typed.clone()).await.json().await.unwrap();
    assert_eq!((confirmed["robot_id"].as_i64(), confirmed["status"].as_str()), (Some(robot), Some("active")));
    assert_eq!(confirm(typed).await.status(), 409, "a code works once");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let without = poll(None).await;
    assert_eq!(without.status(), 404, "no secret: as if there were no such code");
    assert_eq!(without.json::<Value>().await.unwrap()["error"]["code"], "pair_code_not_found");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let with: Value = poll(Some(&secret)).await.json().await.unwrap();
    assert!(with["token"].as_str().unwrap().starts_with("rhr_"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(poll(Some(&secret)).await.json::<Value>().await.unwrap().get("token").is_none(), "the token once");

    // Wrong codes run out (the poll without a secret was this address's
    // first miss).
    for _ in 0..2 {
        assert_eq!(confirm("BBBB-BBBB".into()).await.status(), 404);
    }
    let refused = confirm("CCCC-CCCC".into()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(confirm("not-a-code".into()).await.status(), 429, "still waiting, whatever is typed");
}

#[tokio::test]
async fn a_code_expires_and_a_robot_may_choose_its_own() {
    let app = TestApp::spawn_with(|c| {
        c.edit(|f: &mut FleetConfig| {
            f.pair_ttl = Duration::from_millis(300);
            f.pair_interval = Duration::from_secs(1);
        })
    })
    .await;
    user(&app, "LIC-F", "kim@example.com", Role::User).await;
    let kim = signed_in(&app, "kim@example.com").await;
    let chosen = json!({"hostname": "jetson", "code": "xzxz-xzxz"});
    let (code, secret, _) = code_of(app.http.post(app.url("/api/pair")).json(&chosen).send().await.unwrap()).await;
    assert_eq!(code, "XZXZ-XZXZ");
    let taken = app.http.post(app.url("/api/pair")).json(&chosen).send().await.unwrap();
    assert_eq!(taken.status(), 409);
    assert_eq!(taken.json::<Value>().await.unwrap()["error"]["code"], "pair_code_used");
    let bad =
        app.http.post(app.url("/api/pair")).json(&json!({"hostname": "x", "code": "AEIOUAEI"})).send().await.unwrap();
    assert_eq!(bad.status(), 422);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let status: Value = app
        .http
        .get(app.url(&format!("/api/pair/{code}/status")))
        .header("x-pair-secret", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "expired");
    let late = as_user(&app, reqwest::Method::POST, &format!("/api/pair/{code}/confirm"), &kim).send().await.unwrap();
    assert_eq!(late.status(), 410);
    // An expired code may be taken again.
    assert_eq!(app.http.post(app.url("/api/pair")).json(&chosen).send().await.unwrap().status(), 201);
}

/// `install.sh` as this server serves it, saved in `dir`.
async fn installer(app: &TestApp, dir: &std::path::Path) -> std::path::PathBuf {
    let script = app.http.get(app.url("/install.sh")).send().await.unwrap();
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/x-shellscript"));
    let script = script.text().await.unwrap();
    assert!(script.contains(&format!("http://{}", app.addr)), "the script points at this server");
    let path = dir.join("install.sh");
    std::fs::write(&path, &script).unwrap();
    path
}

/// Runs the installer with `env`, confirming the code it prints as `user`
/// (when it prints one); its exit status, whether it asked for a code, and
/// what it printed (stdout, then stderr).
async fn run_installer(
    app: &TestApp,
    script: &std::path::Path,
    env: &[(&str, &str)],
    user: &str,
) -> (bool, bool, String) {
    let mut run = tokio::process::Command::new("sh")
        .arg(script)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let mut asked = false;
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(code) = line.trim().strip_prefix("Code: ") {
                asked = true;
                let confirm = format!("/api/pair/{code}/confirm");
                let confirmed = as_user(app, reqwest::Method::POST, &confirm, user).send().await.unwrap();
                assert_eq!(confirmed.status(), 200);
            }
        }
    })
    .await
    .expect("the installer ends");
    let done = run.wait_with_output().await.unwrap();
    printed.push_str(&String::from_utf8_lossy(&done.stderr));
    (done.status.success(), asked, printed)
}

fn written_token(conf: &std::path::Path) -> String {
    let written = std::fs::read_to_string(conf).unwrap();
    written.split("token = \"").nth(1).and_then(|t| t.split('"').next()).unwrap().to_owned()
}

#[tokio::test]
async fn install_sh_run_by_sh_pairs_the_robot_and_writes_telegrafs_configuration() {
    let app = TestApp::spawn_with(fast_pairing).await;
    user(&app, "LIC-F", "ops@example.com", Role::User).await;
    let ops = signed_in(&app, "ops@example.com").await;
    let dir = tempfile::tempdir().unwrap();
    let script = installer(&app, dir.path()).await;
    let conf = dir.path().join("telegraf.d/relayhub.conf");
    let (ok, asked, printed) = run_installer(&app, &script, &[("TELEGRAF_CONF", conf.to_str().unwrap())], &ops).await;
    assert!(ok && asked, "{printed}");
    assert!(printed.contains("systemctl restart telegraf"), "it says what to do next: {printed}");
    let written = std::fs::read_to_string(&conf).unwrap();
    let token = written_token(&conf);
    assert!(
        written.contains("[[outputs.influxdb_v2]]") && written.contains(&format!("urls = [\"http://{}\"]", app.addr))
    );
    for input in ["cpu", "mem", "disk", "net", "temp", "system", "syslog"] {
        assert!(written.contains(&format!("[[inputs.{input}]]")), "{input} is collected");
    }
    let works =
        app.http.get(app.url("/api/robot")).header("authorization", format!("Token {token}")).send().await.unwrap();
    assert_eq!(works.status(), 200, "the written token is the robot's");
}

#[tokio::test]
async fn install_sh_checks_before_it_pairs_and_never_loses_a_token_it_was_given() {
    let app = TestApp::spawn_with(fast_pairing).await;
    user(&app, "LIC-F", "ops@example.com", Role::User).await;
    let ops = signed_in(&app, "ops@example.com").await;
    let dir = tempfile::tempdir().unwrap();
    let script = installer(&app, dir.path()).await;

    // A directory that cannot be made (a file is in the way, even for
    // root): refused before any code is asked for, saying what to run.
    std::fs::write(dir.path().join("blocked"), "").unwrap();
    let blocked = dir.path().join("blocked/telegraf.d/relayhub.conf");
    let (ok, asked, printed) =
        run_installer(&app, &script, &[("TELEGRAF_CONF", blocked.to_str().unwrap())], &ops).await;
    assert!(!ok && !asked, "{printed}");
    assert!(printed.contains("cannot write to") && printed.contains("sudo sh"), "{printed}");
    // A server that does not answer: the same, before pairing.
    let conf = dir.path().join("telegraf.d/relayhub.conf");
    let env = [("TELEGRAF_CONF", conf.to_str().unwrap()), ("RELAYHUB_URL", "http://127.0.0.1:9")];
    let (ok, asked, printed) = run_installer(&app, &script, &env, &ops).await;
    assert!(!ok && !asked && printed.contains("does not answer"), "{printed}");

    // Paired, then the configuration cannot be written (a directory is
    // where the file goes): the token is kept, and the rerun pairs no more.
    std::fs::create_dir_all(&conf).unwrap();
    let env = [("TELEGRAF_CONF", conf.to_str().unwrap())];
    let (ok, asked, printed) = run_installer(&app, &script, &env, &ops).await;
    assert!(!ok && asked, "{printed}");
    assert!(printed.contains("safe in") && printed.contains("will not pair again"), "{printed}");
    let kept = std::fs::read_to_string(dir.path().join("telegraf.d/relayhub.token")).unwrap();
    std::fs::remove_dir(&conf).unwrap();
    let (ok, asked, printed) = run_installer(&app, &script, &env, &ops).await;
    assert!(ok && !asked, "the rerun uses the kept token: {printed}");
    assert_eq!(written_token(&conf), kept.trim());
    let robots: Value = user_json(&app, "/api/robots", &ops).await;
    assert_eq!(robots["robots"].as_array().map(Vec::len), Some(1), "one robot, paired once: {robots}");
}

#[tokio::test]
async fn relayhub_user_manages_users_with_the_password_from_stdin() {
    let app = TestApp::spawn().await;
    let relayhub = |args: &[&str], stdin: &str| app.cli(args, stdin);
    let (ok, out, err) = relayhub(
        &["user", "create", "--license", "LIC-A", "--email", "Cli@Example.com", "--role", "admin"],
        "a long passphrase\n",
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((created["email"].as_str(), created["role"].as_str()), (Some("cli@example.com"), Some("admin")));
    let (ok, _, err) = relayhub(&["user", "create", "--license", "LIC-A", "--email", "short@example.com"], "short\n");
    assert!(!ok && err.contains("8 characters"), "{err}");
    assert_eq!(login(&app, "cli@example.com", "a long passphrase").await.status(), 200);
    let (ok, _, err) = relayhub(&["user", "passwd", "cli@example.com"], "another passphrase\n");
    assert!(ok, "{err}");
    assert_eq!(login(&app, "cli@example.com", "a long passphrase").await.status(), 401);
    let (ok, out, _) = relayhub(&["user", "update", "cli@example.com", "--active", "false"], "");
    assert!(ok && out.contains("\"is_active\":false"), "{out}");
    assert_eq!(login(&app, "cli@example.com", "another passphrase").await.status(), 401);
    let (ok, out, _) = relayhub(&["user", "list", "--license", "LIC-A"], "");
    assert!(ok && serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len() == 1);
}

#[tokio::test]
async fn a_robot_switched_off_on_one_node_is_refused_on_another() {
    if !crate::cluster::on_postgres() {
        return;
    }
    let a = TestApp::spawn_with(fast_pairing).await;
    let b = a.join().await;
    user(&a, "LIC-F", "two@nodes.example", Role::User).await;
    let token = signed_in(&a, "two@nodes.example").await;
    let (robot, robot_token) = paired_robot(&a, &token, "pi-nodes").await;
    let own = || b.http.get(b.url("/api/robot")).header("authorization", format!("Token {robot_token}")).send();
    assert_eq!(own().await.unwrap().status(), 200);
    let off = as_user(&a, reqwest::Method::PATCH, &format!("/api/robots/{robot}"), &token)
        .json(&json!({"status": "inactive"}));
    assert_eq!(off.send().await.unwrap().status(), 200);
    assert_eq!(own().await.unwrap().status(), 401);
    // An access token from one node works on the other (one signing key).
    assert_eq!(as_user(&b, reqwest::Method::GET, "/api/users/me", &token).send().await.unwrap().status(), 200);
}
