//! Call signaling across nodes sharing one PostgreSQL database: users
//! connected to different nodes call each other exactly as on one node,
//! and a user whose node dies reconnects through nginx to another node
//! and keeps its call.

use serde_json::json;

use crate::caller::Caller;
use crate::cluster::{Nginx, on_postgres};
use crate::field;
use crate::helpers::{ChildServer, TestApp};
use crate::signal::connect_call;

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
