//! Call signaling across nodes sharing one PostgreSQL database: users
//! connected to different nodes call each other exactly as on one node,
//! and a user whose node dies reconnects through nginx to another node
//! and keeps its call. Signed-in users stay within their license across
//! nodes, and a revoked key or a deactivated user closes sockets on every
//! node.

use relayhub_core::identity;
use relayhub_fleet::model::Role;
use serde_json::json;

use crate::caller::Caller;
use crate::cluster::{Nginx, on_postgres};
use crate::field;
use crate::fleet::{as_user, signed_in, user};
use crate::helpers::TestApp;
use crate::process::ChildServer;
use crate::signal::connect_call;
use crate::signal_users::{member, users_only};

#[tokio::test]
async fn users_on_different_nodes_call_each_other_as_on_one() {
    if !on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let mut alice = Caller::join(&a, "alice").await;
    let mut bob = Caller::join(&b, "bob").await;
    let mut carol = Caller::join(&b, "carol").await;

    // The offer's SDP is larger than a NOTIFY payload: it travels anyway.
    let sdp = format!("v=0 {}", "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n".repeat(400));
    alice.send("ADD_ICE", json!({"iceParams": [{"candidate": "a-1"}]})).await;
    alice.send("OFFER", json!({"candidateId": "bob", "sdp": sdp, "streamIds": {"audio": "a1"}})).await;
    assert_eq!(bob.expect("/call").await["sdp"], sdp);
    assert_eq!(bob.expect("/remoteStreamsId").await["streamIds"], json!({"audio": "a1"}));
    bob.send("ADD_ICE", json!({"iceParams": [{"candidate": "b-1"}]})).await;
    bob.send("ANSWER", json!({"answer": "v=0 answer", "streamIds": {"audio": "b1"}})).await;
    assert_eq!(alice.expect("/acceptCall").await["answer"], "v=0 answer");
    bob.expect("/remoteStreamsId").await;
    alice.expect("/remoteStreamsId").await;
    alice.expect("/connect").await;
    bob.expect("/connect").await;

    alice.send("SWAP_ICE", json!({})).await;
    assert_eq!(alice.expect("/swapIce").await["iceCandidates"], json!([{"candidate": "b-1"}]));
    assert_eq!(bob.expect("/swapIce").await["iceCandidates"], json!([{"candidate": "a-1"}]));

    // Busy is busy whichever node asks.
    carol.send("OFFER", json!({"candidateId": "bob", "sdp": "v=0"})).await;
    assert_eq!(carol.expect("error").await["code"], "peer_busy");
    carol.send("OFFER", json!({"candidateId": "alice", "sdp": "v=0"})).await;
    assert_eq!(carol.expect("error").await["code"], "peer_busy");

    // Renegotiation crosses too, and either side hangs up.
    bob.send("UPDATE_OFFER", json!({"sdp": "v=0 again"})).await;
    assert_eq!(alice.expect("/updateOffer").await["sdp"], "v=0 again");
    bob.send("HANGUP", json!({})).await;
    let hangup = alice.expect("/hangup").await;
    assert_eq!((hangup["userId"].as_str(), hangup["reason"].as_str()), (Some("bob"), Some("hangup")));

    // The next call is set up from the other node.
    carol.send("OFFER", json!({"candidateId": "alice", "sdp": "v=0 from carol"})).await;
    assert_eq!(alice.expect("/call").await["userId"], "carol");
    alice.expect("/remoteStreamsId").await;
    alice.send("DECLINE", json!({})).await;
    assert_eq!(carol.expect("/decline").await["userId"], "alice");
}

#[tokio::test]
async fn a_user_whose_node_dies_reconnects_through_nginx_and_keeps_the_call() {
    if !on_postgres() {
        return;
    }
    let b = TestApp::spawn().await;
    let url = b.config.database.clone().expect("a PostgreSQL database");
    let mut dying = ChildServer::start(&["--database".into(), url]).await;
    let Some(nginx) = Nginx::start(&[dying.addr.clone(), b.addr.to_string()]).await else {
        field::available("nginx", false);
        return;
    };
    let mut alice = Caller::join_at(&dying.addr, &b.api_key, "erin").await;
    let mut bob = Caller::join(&b, "frank").await;
    connect_call(&mut alice, &mut bob).await;
    alice.send("SWAP_ICE", json!({})).await;
    alice.expect("/swapIce").await;
    bob.expect("/swapIce").await;

    // Erin's node dies; her phone reconnects through nginx, which finds
    // the node that is left.
    dying.child.kill().await.expect("kill the node");
    alice.drop_connection();
    let mut alice = Caller::open_at(&nginx.addr, "erin", Some(&b.api_key)).await.expect("a socket through nginx");
    alice.send("RECONNECT", json!({"name": "erin"})).await;
    let restored = alice.expect("reconnectSuccess").await;
    assert_eq!((restored["status"].as_str(), restored["candidate"].as_str()), (Some("in_call"), Some("frank")));
    assert_eq!(bob.expect("/peerReconnected").await["userId"], "erin");

    // The call goes on: an ICE restart both ways.
    alice.send("UPDATE_OFFER", json!({"sdp": "ice restart"})).await;
    assert_eq!(bob.expect("/updateOffer").await["sdp"], "ice restart");
    bob.send("UPDATE_ANSWER", json!({"answer": "restarted"})).await;
    assert_eq!(alice.expect("/updateAnswer").await["answer"], "restarted");
    bob.send("HANGUP", json!({})).await;
    assert_eq!(alice.expect("/hangup").await["reason"], "hangup");
}

#[tokio::test]
async fn signed_in_users_call_across_nodes_within_their_license_and_are_signed_out_on_every_node() {
    if !on_postgres() {
        return;
    }
    let a = TestApp::spawn_with(users_only).await;
    let b = a.join().await;
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    user(&a, "LIC-U", "boss@example.com", Role::Admin).await;
    let boss = signed_in(&a, "boss@example.com").await;
    let (ann, _, mut ann_socket) = member(&a, &a_addr, "LIC-U", "ann@example.com").await;
    let (bob, _, mut bob_socket) = member(&a, &b_addr, "LIC-U", "bob@example.com").await;
    let (zed, _, mut zed_socket) = member(&a, &b_addr, "LIC-OTHER", "zed@example.com").await;

    // Another license's user is not there, from either node.
    ann_socket.send("OFFER", json!({"candidateId": zed.to_string(), "sdp": "v=0"})).await;
    assert_eq!(ann_socket.expect("error").await["code"], "peer_unavailable");
    zed_socket.send("OFFER", json!({"candidateId": ann.to_string(), "sdp": "v=0"})).await;
    assert_eq!(zed_socket.expect("error").await["code"], "peer_unavailable");
    // Nor can a socket on the other node speak for Ann.
    let mut impostor = Caller::signed_in(&b_addr, zed, &signed_in(&a, "zed@example.com").await).await.unwrap();
    impostor.user = ann.to_string();
    impostor.send("HANGUP", json!({})).await;
    assert_eq!(impostor.expect("error").await["code"], "user_mismatch");

    connect_call(&mut ann_socket, &mut bob_socket).await;
    // Bob is deactivated through node A; node B closes his socket.
    let off = as_user(&a, reqwest::Method::PATCH, &format!("/api/users/{bob}"), &boss)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    assert_eq!(u16::from(bob_socket.closed().await.expect("a close frame").code), 4005);
    let hangup = ann_socket.expect("/hangup").await;
    assert_eq!(
        (hangup["userId"].as_str(), hangup["reason"].as_str()),
        (Some(bob.to_string().as_str()), Some("peer_lost"))
    );
}

#[tokio::test]
async fn a_revoked_app_key_closes_signaling_sockets_on_every_node() {
    if !on_postgres() {
        return;
    }
    let a = TestApp::spawn().await;
    let b = a.join().await;
    let mut alice = Caller::join(&a, "alice").await;
    let mut bob = Caller::join(&b, "bob").await;
    connect_call(&mut alice, &mut bob).await;
    identity::revoke_api_key(a.admin().identity.as_ref(), &a.api_key_id).await.unwrap();
    assert_eq!(u16::from(alice.closed().await.expect("a close frame").code), 4001);
    assert_eq!(u16::from(bob.closed().await.expect("a close frame").code), 4001);
}
