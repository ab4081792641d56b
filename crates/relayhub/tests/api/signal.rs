//! Call signaling (seed 003) with scripted clients over real WebSockets: the
//! diagrams (call, accept, ICE swap, decline, reconnect, heartbeat), and
//! what the seed leaves open (glare, busy, several devices, early ICE,
//! ringing timeout, hang-up, bad frames, credentials).

use relayhub_signal::SignalConfig;
use std::time::Duration;

use serde_json::{Value, json};

use crate::caller::Caller;
use crate::helpers::TestApp;

/// A call from `a` to `b`, answered and connected; returns their frames'
/// data up to `/connect`.
pub async fn connect_call(a: &mut Caller, b: &mut Caller) {
    a.send("OFFER", json!({"candidateId": b.user, "sdp": "v=0 offer", "streamIds": {"audio": "a1"}})).await;
    b.expect("/call").await;
    b.expect("/remoteStreamsId").await;
    b.send("ANSWER", json!({"answer": "v=0 answer", "streamIds": {"audio": "b1"}})).await;
    a.expect("/acceptCall").await;
    b.expect("/remoteStreamsId").await;
    a.expect("/remoteStreamsId").await;
    a.expect("/connect").await;
    b.expect("/connect").await;
}

/// The user's status as the server keeps it, seen through a `RECONNECT`
/// from a second socket. If the user is in a call, its peer is told of the
/// reconnect (`/peerReconnected`): pass the peer to consume that.
async fn status_of(app: &TestApp, user: &str, peer: Option<&mut Caller>) -> Value {
    let mut probe = Caller::connect(app, user).await;
    probe.send("RECONNECT", json!({})).await;
    let data = probe.expect("reconnectSuccess").await;
    if let Some(peer) = peer {
        assert_eq!(peer.expect("/peerReconnected").await["userId"], user);
    }
    probe.drop_connection();
    data
}

#[tokio::test]
async fn a_call_is_offered_accepted_connected_and_ice_is_swapped() {
    let app = TestApp::spawn().await;
    let mut a = Caller::join(&app, "alice").await;
    let mut b = Caller::join(&app, "bob").await;

    // Alice's first candidates arrive before Bob even has the offer: held.
    a.send("ADD_ICE", json!({"iceParams": [{"candidate": "a-1"}, {"candidate": "a-2"}]})).await;
    a.send("OFFER", json!({"candidateId": "bob", "sdp": "v=0 offer", "streamIds": {"audio": "a1"}, "video": true}))
        .await;
    let call = b.expect("/call").await;
    assert_eq!((call["sdp"].as_str(), call["userId"].as_str()), (Some("v=0 offer"), Some("alice")));
    assert_eq!((call["name"].as_str(), call["photo"].as_str()), (Some("alice name"), Some("p.png")));
    assert_eq!(call["video"], true, "unknown OFFER fields are passed through");
    assert_eq!(b.expect("/remoteStreamsId").await["streamIds"], json!({"audio": "a1"}));
    assert_eq!(status_of(&app, "alice", None).await["status"], "calling");

    b.send("ADD_ICE", json!({"iceParams": [{"candidate": "b-1"}]})).await;
    b.send("ANSWER", json!({"answer": "v=0 answer", "streamIds": {"audio": "b1"}})).await;
    let accepted = a.expect("/acceptCall").await;
    assert_eq!((accepted["answer"].as_str(), accepted["device"].as_str()), (Some("v=0 answer"), Some("android")));
    assert_eq!(b.expect("/remoteStreamsId").await["streamIds"], json!({"audio": "a1"}));
    assert_eq!(a.expect("/remoteStreamsId").await["streamIds"], json!({"audio": "b1"}));
    a.expect("/connect").await;
    b.expect("/connect").await;
    assert_eq!(status_of(&app, "bob", Some(&mut a)).await["status"], "ringing");

    a.send("SWAP_ICE", json!({})).await;
    let to_a = a.expect("/swapIce").await;
    let to_b = b.expect("/swapIce").await;
    assert_eq!(to_a["iceCandidates"], json!([{"candidate": "b-1"}]));
    assert_eq!(to_b["iceCandidates"], json!([{"candidate": "a-1"}, {"candidate": "a-2"}]), "held, in order");
    assert_eq!(status_of(&app, "alice", Some(&mut b)).await["status"], "in_call");
    assert_eq!(status_of(&app, "bob", Some(&mut a)).await["status"], "in_call");

    // After the swap, candidates trickle straight to the peer.
    a.send("ADD_ICE", json!({"iceParams": [{"candidate": "a-3"}]})).await;
    assert_eq!(b.expect("/swapIce").await["iceCandidates"], json!([{"candidate": "a-3"}]));
    // Renegotiation and media changes reach the peer.
    b.send("UPDATE_OFFER", json!({"sdp": "v=0 again"})).await;
    assert_eq!(a.expect("/updateOffer").await["sdp"], "v=0 again");
    a.send("UPDATE_ANSWER", json!({"answer": "v=0 ok"})).await;
    assert_eq!(b.expect("/updateAnswer").await["answer"], "v=0 ok");
    a.send("MEDIA_UPDATE", json!({"muted": true, "camera": "off"})).await;
    let media = b.expect("/mediaUpdate").await;
    assert_eq!((media["muted"].as_bool(), media["camera"].as_str()), (Some(true), Some("off")));
    b.send("SET_REMOTE_STREAM_ID", json!({"streamIds": {"video": "b2"}})).await;
    assert_eq!(a.expect("/remoteStreamsId").await["streamIds"], json!({"video": "b2"}));

    // Either side hangs up; the other is told.
    b.send("HANGUP", json!({})).await;
    assert_eq!(a.expect("/hangup").await["reason"], "hangup");
    assert_eq!(status_of(&app, "alice", None).await["status"], "ended");
}

#[tokio::test]
async fn a_declined_call_ends_with_decline_for_the_caller() {
    let app = TestApp::spawn().await;
    let mut a = Caller::join(&app, "carol").await;
    let mut b = Caller::join(&app, "dave").await;
    a.send("OFFER", json!({"candidates": "dave", "sdp": "v=0"})).await;
    b.expect("/call").await;
    b.expect("/remoteStreamsId").await;
    b.send("DECLINE", json!({})).await;
    assert_eq!(a.expect("/decline").await["name"], "dave name");
    assert_eq!(status_of(&app, "carol", None).await["status"], "ended");
    assert_eq!(status_of(&app, "dave", None).await["status"], "idle");
    b.send("ANSWER", json!({"answer": "too late"})).await;
    assert_eq!(b.expect("error").await["code"], "no_call");
}

#[tokio::test]
async fn reconnect_restores_the_call_and_the_grace_period_ends_it() {
    let app =
        TestApp::spawn_with(|c| c.edit(|s: &mut SignalConfig| s.reconnect_grace = Duration::from_millis(400))).await;
    let mut a = Caller::join(&app, "erin").await;
    let mut b = Caller::join(&app, "frank").await;
    connect_call(&mut a, &mut b).await;
    a.send("SWAP_ICE", json!({})).await;
    a.expect("/swapIce").await;
    b.expect("/swapIce").await;

    // Erin's network drops; she comes back within the grace period.
    a.drop_connection();
    let mut a = Caller::connect(&app, "erin").await;
    a.send("RECONNECT", json!({"name": "erin name"})).await;
    let restored = a.expect("reconnectSuccess").await;
    assert_eq!((restored["status"].as_str(), restored["candidate"].as_str()), (Some("in_call"), Some("frank")));
    assert_eq!(restored["remoteStreamIds"], json!({"audio": "b1"}));
    assert_eq!(b.expect("/peerReconnected").await["userId"], "erin");
    a.send("UPDATE_OFFER", json!({"sdp": "ice restart"})).await;
    assert_eq!(b.expect("/updateOffer").await["sdp"], "ice restart");

    // Frank's drops for longer than the grace period: the call ends.
    b.drop_connection();
    let hangup = a.expect("/hangup").await;
    assert_eq!((hangup["userId"].as_str(), hangup["reason"].as_str()), (Some("frank"), Some("peer_lost")));
    let mut late = Caller::connect(&app, "frank").await;
    late.send("RECONNECT", json!({})).await;
    late.expect("reconnectError").await;
}

#[tokio::test]
async fn a_socket_without_ping_is_closed_and_ping_keeps_it_open() {
    let app = TestApp::spawn_with(|c| {
        c.edit(|s: &mut SignalConfig| {
            s.heartbeat_interval = Duration::from_millis(100);
            // Far above the pings' spacing, so that a busy CI machine
            // delaying one answer does not close the chatty socket.
            s.heartbeat_timeout = Duration::from_millis(1500);
        })
    })
    .await;
    let mut quiet = Caller::join(&app, "quiet").await;
    let mut chatty = Caller::join(&app, "chatty").await;
    let started = std::time::Instant::now();
    // Chatty pings every 150 ms for twice the timeout; quiet says nothing.
    while started.elapsed() < Duration::from_millis(3000) {
        assert!(chatty.sync().await.is_empty(), "PING is answered with PONG");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let close = quiet.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(chatty.sync().await.is_empty(), "still open");
}

#[tokio::test]
async fn two_users_calling_each_other_at_once_end_in_one_call() {
    let app = TestApp::spawn().await;
    let mut a = Caller::join(&app, "gina").await;
    let mut b = Caller::join(&app, "hank").await;
    a.send("OFFER", json!({"candidateId": "hank", "sdp": "from gina"})).await;
    b.send("OFFER", json!({"candidateId": "gina", "sdp": "from hank"})).await;
    // Whichever offer the server took first stands; the other is refused.
    let (from_a, from_b) = (a.sync().await, b.sync().await);
    let refused = |frames: &[Value]| frames.iter().any(|f| f["route"] == "error" && f["data"]["code"] == "glare");
    let called = |frames: &[Value]| frames.iter().any(|f| f["route"] == "/call");
    let (winner, loser, loser_frames) = match (refused(&from_a), refused(&from_b)) {
        (false, true) => (&mut a, &mut b, from_b),
        (true, false) => (&mut b, &mut a, from_a),
        other => panic!("exactly one offer must be refused: {other:?} {from_a:?} {from_b:?}"),
    };
    assert!(called(&loser_frames), "the refused side got the other's call: {loser_frames:?}");
    loser.send("ANSWER", json!({"answer": "yes"})).await;
    winner.expect("/acceptCall").await;
    let connected = |frames: &[Value]| frames.iter().filter(|f| f["route"] == "/connect").count();
    assert_eq!(connected(&winner.sync().await) + connected(&loser.sync().await), 2, "one call, both connected");
}

#[tokio::test]
async fn offers_to_offline_or_busy_users_are_refused() {
    let app = TestApp::spawn().await;
    let mut a = Caller::join(&app, "ivy").await;
    let mut b = Caller::join(&app, "jack").await;
    let mut c = Caller::join(&app, "kim").await;
    a.send("OFFER", json!({"candidateId": "nobody", "sdp": "v=0"})).await;
    assert_eq!(a.expect("error").await["code"], "peer_unavailable");
    connect_call(&mut a, &mut b).await;
    c.send("OFFER", json!({"candidateId": "jack", "sdp": "v=0"})).await;
    assert_eq!(c.expect("error").await["code"], "peer_busy");
    a.send("OFFER", json!({"candidateId": "kim", "sdp": "v=0"})).await;
    assert_eq!(a.expect("error").await["code"], "already_in_call");
}

#[tokio::test]
async fn all_devices_of_a_user_ring_and_the_first_answer_wins() {
    let app = TestApp::spawn().await;
    let mut a = Caller::join(&app, "lena").await;
    let mut phone = Caller::join(&app, "mike").await;
    let mut tablet = Caller::join(&app, "mike").await;
    a.send("OFFER", json!({"candidateId": "mike", "sdp": "v=0"})).await;
    for device in [&mut phone, &mut tablet] {
        device.expect("/call").await;
        device.expect("/remoteStreamsId").await;
    }
    tablet.send("ANSWER", json!({"answer": "from the tablet"})).await;
    assert_eq!(a.expect("/acceptCall").await["answer"], "from the tablet");
    assert_eq!(phone.expect("/hangup").await["reason"], "answered_elsewhere");
    // From now on the call is the tablet's alone.
    a.send("ADD_ICE", json!({"iceParams": [{"candidate": "x"}]})).await;
    a.send("SWAP_ICE", json!({})).await;
    tablet.expect("/remoteStreamsId").await;
    tablet.expect("/connect").await;
    assert_eq!(tablet.expect("/swapIce").await["iceCandidates"], json!([{"candidate": "x"}]));
    // Whatever the swap sent the phone was queued before the tablet got it.
    assert!(phone.sync().await.is_empty(), "the phone is out of the call");
}

#[tokio::test]
async fn an_unanswered_offer_ends_for_both_sides_after_the_ringing_timeout() {
    let app =
        TestApp::spawn_with(|c| c.edit(|s: &mut SignalConfig| s.ringing_timeout = Duration::from_millis(300))).await;
    let mut a = Caller::join(&app, "nina").await;
    let mut b = Caller::join(&app, "omar").await;
    a.send("OFFER", json!({"candidateId": "omar", "sdp": "v=0"})).await;
    b.expect("/call").await;
    b.expect("/remoteStreamsId").await;
    assert_eq!(a.expect("/hangup").await["reason"], "no_answer");
    assert_eq!(b.expect("/hangup").await["reason"], "no_answer");
    b.send("ANSWER", json!({"answer": "too late"})).await;
    assert_eq!(b.expect("error").await["code"], "no_call");
    // Both are free again.
    b.send("OFFER", json!({"candidateId": "nina", "sdp": "v=0"})).await;
    a.expect("/call").await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays() {
    let app = TestApp::spawn().await;
    let mut x = Caller::connect(&app, "pat").await;
    x.send("OFFER", json!({"candidateId": "q", "sdp": "v=0"})).await;
    assert_eq!(x.expect("error").await["code"], "not_registered");
    x.send("ADD_USER", json!({"name": "Pat"})).await;
    x.expect("userConnect").await;
    for (text, code) in [
        ("not json".to_owned(), "malformed_json"),
        (json!({"route": "DANCE", "userId": "pat"}).to_string(), "unknown_frame"),
        (json!({"route": "OFFER", "data": {}}).to_string(), "missing_field"),
        (json!({"route": "OFFER", "userId": "pat", "data": {"candidateId": "q"}}).to_string(), "missing_field"),
        (json!({"route": "OFFER", "userId": "someone-else", "data": {}}).to_string(), "wrong_user"),
        (json!({"route": "ADD_ICE", "userId": "pat", "data": {"iceParams": "x"}}).to_string(), "invalid_field"),
        (json!({"route": "SWAP_ICE", "userId": "pat"}).to_string(), "no_call"),
    ] {
        x.send_text(&text).await;
        let error = x.expect("error").await;
        assert_eq!(error["code"], code, "{text}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(x.sync().await.is_empty(), "the socket is still up");
}

#[tokio::test]
async fn sockets_need_an_api_key_unless_signaling_is_open() {
    let app = TestApp::spawn().await;
    assert_eq!(Caller::open(&app, "u", None).await.err(), Some(401));
    assert_eq!(Caller::open(&app, "u", Some("rhk_wrong")).await.err(), Some(401));
    let open = TestApp::spawn_with(|c| c.edit(|s: &mut SignalConfig| s.open = true)).await;
    let mut anyone = Caller::open(&open, "u", None).await.expect("open mode accepts anyone");
    anyone.send("ADD_USER", json!({})).await;
    anyone.expect("userConnect").await;
}

/// A webhook endpoint on 127.0.0.1 that records what is posted to it.
async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/bot-token/sendMessage",
        axum::routing::post(move |uri: axum::http::Uri, body: axum::Json<Value>| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((uri.query().unwrap_or("").to_owned(), body.0));
                axum::Json(json!({"ok": true}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/bot-token/sendMessage?chat_id=42"), seen)
}

#[tokio::test]
async fn errors_reach_the_alert_webhook_within_its_rate_limit() {
    let (url, seen) = webhook().await;
    let app = TestApp::spawn_with(|c| {
        c.alerts.webhook = Some(url);
        c.alerts.per_minute = 3;
        c.alerts.name = "test-node".into();
    })
    .await;
    let mut x = Caller::join(&app, "rita").await;
    for _ in 0..10 {
        x.send_text("{broken").await;
        assert_eq!(x.expect("error").await["code"], "malformed_json");
    }
    // All ten accounted for: three sent, the rest held back.
    let sent = "relayhub_alerts_total{outcome=\"sent\"}";
    let suppressed = "relayhub_alerts_total{outcome=\"suppressed\"}";
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while app.metric(sent).await.unwrap_or(0.0) + app.metric(suppressed).await.unwrap_or(0.0) < 10.0 {
        assert!(tokio::time::Instant::now() < deadline, "alerts never accounted for");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.metric(sent).await, Some(3.0));
    let posts = seen.lock().unwrap().clone();
    assert_eq!(posts.len(), 3);
    let (query, body) = &posts[0];
    assert_eq!(query, "chat_id=42", "a Telegram bot URL keeps its chat");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("[test-node] signal: malformed_json"), "{text}");
    assert!(x.sync().await.is_empty(), "the socket stayed up through it all");
}

#[tokio::test]
async fn metrics_count_users_calls_and_set_up_time() {
    let app = TestApp::spawn().await;
    let mut a = Caller::join(&app, "sam").await;
    let mut b = Caller::join(&app, "tess").await;
    connect_call(&mut a, &mut b).await;
    a.send("SWAP_ICE", json!({})).await;
    a.expect("/swapIce").await;
    b.expect("/swapIce").await;
    assert_eq!(app.metric("relayhub_signal_users").await, Some(2.0));
    assert_eq!(app.metric("relayhub_signal_calls{state=\"in_call\"}").await, Some(1.0));
    assert_eq!(app.metric("relayhub_signal_calls{state=\"ringing\"}").await, Some(0.0));
    assert_eq!(app.metric("relayhub_signal_call_setup_seconds_count").await, Some(1.0));
    assert_eq!(app.metric("relayhub_ws_connections{kind=\"signal\"}").await, Some(2.0));
}
