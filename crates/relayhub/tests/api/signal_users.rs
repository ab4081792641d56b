//! Who may signal, and for how long: a revoked app key or an expired
//! license closes signaling sockets as it closes devices; with
//! `signal.require_user` a socket is a signed-in fleet user, speaks only
//! for that user, calls only users of its license, and closes when the
//! user is deactivated or its access token runs out.

use std::time::Duration;

use relayhub_core::identity::{self, LicenseUpdate};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::time::Timestamp;
use relayhub_fleet::FleetConfig;
use relayhub_fleet::model::Role;
use relayhub_signal::SignalConfig;
use serde_json::{Value, json};

use crate::caller::Caller;
use crate::fleet::{as_user, signed_in, user};
use crate::helpers::TestApp;
use crate::signal::connect_call;

/// Signaling that requires signed-in users; a dropped user's call ends
/// soon after.
pub(crate) fn users_only(c: &mut relayhub::Config) {
    c.edit(|s: &mut SignalConfig| {
        s.require_user = true;
        s.reconnect_grace = Duration::from_millis(300);
    });
}

/// A user of `license`, signed in, with an `ADD_USER`ed socket at `addr`.
pub(crate) async fn member(app: &TestApp, addr: &str, license: &str, email: &str) -> (i64, String, Caller) {
    let id = user(app, license, email, Role::User).await;
    let access = signed_in(app, email).await;
    let mut caller = Caller::signed_in(addr, id, &access).await.expect("a signed-in socket");
    caller.send("ADD_USER", json!({"name": "whatever the client says", "device": "android"})).await;
    let hello = caller.expect("userConnect").await;
    assert_eq!((hello["userId"].as_str(), hello["name"].as_str()), (Some(id.to_string().as_str()), Some(email)));
    (id, access, caller)
}

fn close_code(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    u16::from(frame.expect("a close frame").code)
}

#[tokio::test]
async fn revoking_the_app_key_closes_its_signaling_sockets_and_ends_their_calls() {
    let app =
        TestApp::spawn_with(|c| c.edit(|s: &mut SignalConfig| s.reconnect_grace = Duration::from_millis(300))).await;
    let other = identity::create_api_key(app.admin().identity.as_ref(), "second app", &[]).await.unwrap();
    let mut alice = Caller::join(&app, "alice").await;
    let mut bob = Caller::join_at(&app.addr.to_string(), other.secret.expose(), "bob").await;
    connect_call(&mut alice, &mut bob).await;

    identity::revoke_api_key(app.admin().identity.as_ref(), &app.api_key_id).await.unwrap();
    assert_eq!(close_code(alice.closed().await), 4001, "api key revoked");
    // Bob's key still works; his call ends as when a peer is lost.
    let hangup = bob.expect("/hangup").await;
    assert_eq!((hangup["userId"].as_str(), hangup["reason"].as_str()), (Some("alice"), Some("peer_lost")));
    assert_eq!(Caller::open(&app, "alice", Some(&app.api_key)).await.err(), Some(401));
    assert!(bob.sync().await.is_empty(), "bob's socket stays open");
}

#[tokio::test]
async fn a_signed_in_socket_speaks_only_for_its_user() {
    let app = TestApp::spawn_with(users_only).await;
    let addr = app.addr.to_string();
    let (ann, ann_token, mut ann_socket) = member(&app, &addr, "LIC-U", "ann@example.com").await;
    let (bob, _, mut bob_socket) = member(&app, &addr, "LIC-U", "bob@example.com").await;

    // The app key alone, no credential, or a forged token: refused.
    assert_eq!(Caller::open(&app, "x", Some(&app.api_key)).await.err(), Some(401));
    assert_eq!(Caller::open(&app, "x", None).await.err(), Some(401));
    assert_eq!(Caller::signed_in(&addr, ann, "not.a.token").await.err(), Some(401));
    // The query parameter works for clients that cannot set headers.
    let url = format!("{addr}/ws/signal?access_token={ann_token}");
    let query = tokio_tungstenite::connect_async(format!("ws://{url}")).await;
    assert!(query.is_ok(), "?access_token= is accepted");

    // Ann's socket cannot become Bob, nor act as him.
    let mut mallory = Caller::signed_in(&addr, ann, &ann_token).await.unwrap();
    mallory.user = bob.to_string();
    for (route, data) in [
        ("ADD_USER", json!({"name": "bob"})),
        ("RECONNECT", json!({})),
        ("OFFER", json!({"candidateId": ann.to_string(), "sdp": "v=0"})),
    ] {
        mallory.send(route, data).await;
        let refused = mallory.expect("error").await;
        assert_eq!(refused["code"], "user_mismatch", "{route}: {refused}");
    }
    // None of it had an effect: nobody rang, and Bob's calls still reach Bob only.
    assert!(ann_socket.sync().await.is_empty(), "ann heard nothing");
    ann_socket.send("OFFER", json!({"candidateId": bob.to_string(), "sdp": "v=0 from ann"})).await;
    let call = bob_socket.expect("/call").await;
    assert_eq!(
        (call["userId"].as_str(), call["name"].as_str()),
        (Some(ann.to_string().as_str()), Some("ann@example.com"))
    );
    assert!(mallory.sync().await.is_empty(), "the impostor's socket does not ring");
}

#[tokio::test]
async fn calls_stay_within_a_license() {
    let app = TestApp::spawn_with(users_only).await;
    let addr = app.addr.to_string();
    let (ann, _, mut ann_socket) = member(&app, &addr, "LIC-U", "ann@example.com").await;
    let (bob, _, mut bob_socket) = member(&app, &addr, "LIC-U", "bob@example.com").await;
    let (zed, _, mut zed_socket) = member(&app, &addr, "LIC-OTHER", "zed@example.com").await;

    // Another license's user is not there, whichever way the call goes.
    zed_socket.send("OFFER", json!({"candidateId": ann.to_string(), "sdp": "v=0"})).await;
    assert_eq!(zed_socket.expect("error").await["code"], "peer_unavailable");
    ann_socket.send("OFFER", json!({"candidateId": zed.to_string(), "sdp": "v=0"})).await;
    assert_eq!(ann_socket.expect("error").await["code"], "peer_unavailable");
    assert!(ann_socket.sync().await.is_empty() && zed_socket.sync().await.is_empty(), "nobody rang");

    // Within the license, calls go through.
    assert_eq!(bob_socket.user, bob.to_string());
    connect_call(&mut ann_socket, &mut bob_socket).await;
}

#[tokio::test]
async fn a_deactivated_user_is_disconnected_and_its_call_ends() {
    let app = TestApp::spawn_with(users_only).await;
    let addr = app.addr.to_string();
    user(&app, "LIC-U", "boss@example.com", Role::Admin).await;
    let boss = signed_in(&app, "boss@example.com").await;
    let (_, _, mut ann) = member(&app, &addr, "LIC-U", "ann@example.com").await;
    let (bob, bob_token, mut bob_socket) = member(&app, &addr, "LIC-U", "bob@example.com").await;
    connect_call(&mut ann, &mut bob_socket).await;

    let off = as_user(&app, reqwest::Method::PATCH, &format!("/api/users/{bob}"), &boss)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    assert_eq!(close_code(bob_socket.closed().await), 4005, "user deactivated");
    let hangup = ann.expect("/hangup").await;
    assert_eq!(
        (hangup["userId"].as_str(), hangup["reason"].as_str()),
        (Some(bob.to_string().as_str()), Some("peer_lost"))
    );
    assert_eq!(Caller::signed_in(&addr, bob, &bob_token).await.err(), Some(401), "nor can it come back");
}

#[tokio::test]
async fn an_expired_license_or_access_token_closes_the_socket() {
    let app = TestApp::spawn_with(|c| {
        users_only(c);
        c.edit(|f: &mut FleetConfig| f.access_ttl = Duration::from_secs(1));
    })
    .await;
    let addr = app.addr.to_string();
    // The token runs out within a second: the socket closes with 4006.
    let id = user(&app, "LIC-SHORT", "short@example.com", Role::User).await;
    let access = signed_in(&app, "short@example.com").await;
    let mut short = Caller::signed_in(&addr, id, &access).await.expect("a signed-in socket");
    assert_eq!(close_code(short.closed().await), 4006, "access token expired");

    let app = TestApp::spawn_with(users_only).await;
    let (_, _, mut ann) = member(&app, &app.addr.to_string(), "LIC-U", "ann@example.com").await;
    let past = Timestamp::now().minus(Duration::from_secs(1));
    let expire = LicenseUpdate { expires_at: Some(Some(past)), ..LicenseUpdate::default() };
    app.admin().identity.update_license(&LicenseNumber::parse("LIC-U").unwrap(), expire).await.unwrap();
    assert_eq!(close_code(ann.closed().await), 4003, "license expired");
}

#[tokio::test]
async fn by_default_clients_choose_their_ids_and_names_as_in_seed_003() {
    // The default stays seed 003's: app key and client-chosen ids.
    let app = TestApp::spawn().await;
    let mut free = Caller::join(&app, "any name at all").await;
    free.send("ADD_USER", json!({"name": "renamed"})).await;
    let hello: Value = free.expect("userConnect").await;
    assert_eq!(hello["name"], "renamed", "the client's name, as seed 003 sends it");
}
