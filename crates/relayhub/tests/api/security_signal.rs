//! The security review's signaling finding, replayed with real sockets:
//! `ADD_USER` with a 900 KB photo, and one socket adding user after user,
//! each of which the node would keep through its reconnect grace.

use serde_json::json;

use crate::caller::Caller;
use crate::helpers::TestApp;

#[tokio::test]
async fn an_add_user_with_a_huge_photo_is_refused_and_nothing_is_kept() {
    let app = TestApp::spawn().await;
    let mut mallory = Caller::connect(&app, "mallory").await;
    let photo = format!("data:image/jpeg;base64,{}", "A".repeat(900_000));
    mallory.send("ADD_USER", json!({"name": "M", "photo": photo})).await;
    let refused = mallory.expect("error").await;
    assert_eq!(refused["code"], "invalid_field", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("8192"), "{refused}");
    // The user was not stored: an offer to it finds nobody.
    let mut ann = Caller::join(&app, "ann").await;
    ann.send("OFFER", json!({"candidateId": "mallory", "sdp": "v=0"})).await;
    assert_eq!(ann.expect("error").await["code"], "peer_unavailable");
    // A link, as seed 003's clients send, is kept as before.
    mallory.send("ADD_USER", json!({"name": "M", "photo": "https://cdn.example.com/m.png"})).await;
    assert_eq!(mallory.expect("userConnect").await["userId"], "mallory");
    mallory.send("OFFER", json!({"candidateId": "ann", "sdp": "v=0"})).await;
    let call = ann.expect("/call").await;
    assert_eq!(call["photo"], "https://cdn.example.com/m.png", "{call}");
}

#[tokio::test]
async fn one_socket_adds_at_most_its_share_of_users() {
    let app = TestApp::spawn_with(|c| c.edit(|s: &mut relayhub_signal::SignalConfig| s.max_users_per_socket = 3)).await;
    let mut socket = Caller::connect(&app, "u0").await;
    for i in 0..3 {
        socket.user = format!("u{i}");
        socket.send("ADD_USER", json!({"name": "n"})).await;
        socket.expect("userConnect").await;
    }
    // Saying again who it was is fine; a fourth new user is not.
    socket.user = "u1".into();
    socket.send("ADD_USER", json!({"name": "n"})).await;
    socket.expect("userConnect").await;
    socket.user = "u3".into();
    socket.send("ADD_USER", json!({"name": "n"})).await;
    assert_eq!(socket.expect("error").await["code"], "too_many_users");
    let mut ann = Caller::join(&app, "ann").await;
    ann.send("OFFER", json!({"candidateId": "u3", "sdp": "v=0"})).await;
    assert_eq!(ann.expect("error").await["code"], "peer_unavailable", "the refused user was not stored");
}
