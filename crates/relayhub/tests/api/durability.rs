//! What got a 202 survives: a graceful restart, and a SIGKILL in the middle
//! of a burst of producers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::helpers::{PATIENCE, PgDatabase, TestApp, database_args, drain, ids};
use crate::process::{ChildServer, cli};

#[tokio::test]
async fn pending_messages_and_receipts_survive_a_restart() {
    let app = TestApp::spawn().await;
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(app.send_ok("van-7", json!({"stop": i})).await);
    }
    let mut van = app.connect("van-7").await;
    van.messages(6).await;
    van.ack(&[&sent[0], &sent[1]]).await;
    van.sync().await;

    let app = app.restart().await;
    // The socket was closed by the shutdown.
    assert_eq!(u16::from(van.closed().await.expect("close frame").code), 1001);

    assert_eq!(app.receipt(&sent[0]).await["status"], "delivered");
    let mut van = app.connect("van-7").await;
    assert_eq!(van.hello["pending"], 4);
    let frames = van.messages(4).await;
    assert_eq!(ids(&frames), sent[2..].to_vec());
    // Sequence numbers continue where they were.
    let next: Value = app.send("van-7", json!("after")).await.json().await.unwrap();
    assert_eq!(next["seq"], 7);
}

#[tokio::test]
async fn graceful_shutdown_closes_sockets_and_finishes_requests() {
    let mut app = TestApp::spawn().await;
    let mut phone = app.connect("p").await;
    let poll = {
        let request = app.get("/api/v1/inbox?wait=30");
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    app.await_metric("relayhub_inbox_waiting", 1.0).await;
    app.stop().await;
    let close = phone.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "server shutting down");
    let answered = tokio::time::timeout(PATIENCE, poll).await.expect("the long poll ended").unwrap();
    assert_eq!(answered.status(), 200, "a waiting long poll is answered, not cut");
}

#[tokio::test]
async fn every_202_survives_sigkill_during_a_burst() {
    const DEVICES: usize = 8;
    const PRODUCERS: usize = 16;
    const KILL_AFTER: usize = 1500;

    let dir = tempfile::tempdir().unwrap();
    let pg = PgDatabase::create().await;
    let database = database_args(dir.path(), pg.as_ref());
    let token = cli(&database, &["license", "create", "--number", "LIC-K"])["token"].as_str().unwrap().to_owned();
    let key = cli(&database, &["apikey", "create"])["key"].as_str().unwrap().to_owned();

    let mut server = ChildServer::start(&database).await;
    let http = relayhub_core::http_client::client().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (http, token, addr, accepted) = (http.clone(), token.clone(), server.addr.clone(), accepted.clone());
        producers.push(tokio::spawn(async move {
            let mut acked: Vec<(String, String)> = Vec::new();
            // Bounded: stops at the first failure (the kill) or after 10k.
            for n in 0..10_000 {
                let device = format!("dev-{}", (p + n) % DEVICES);
                let url = format!("http://{addr}/api/v1/devices/{device}/messages");
                let body = json!({"producer": p, "n": n});
                let Ok(response) = http.post(url).bearer_auth(&token).json(&body).send().await else { break };
                if response.status() != 202 {
                    break;
                }
                let Ok(answer) = response.json::<Value>().await else { break };
                acked.push((device, answer["id"].as_str().unwrap().to_owned()));
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            acked
        }));
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while accepted.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "the burst was too slow");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.child.start_kill().expect("SIGKILL");
    server.child.wait().await.unwrap();

    let mut promised: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for producer in producers {
        for (device, id) in producer.await.unwrap() {
            promised.entry(device).or_default().insert(id);
        }
    }
    let total: usize = promised.values().map(HashSet::len).sum();
    assert!(total >= KILL_AFTER, "only {total} accepted");

    let server = ChildServer::start(&database).await;
    for (device, ids_promised) in &promised {
        let mut received = HashSet::new();
        for id in drain(&server.addr, &key, "LIC-K", device).await {
            assert!(received.insert(id), "{device}: duplicate delivery");
        }
        assert!(
            received.len() >= ids_promised.len(),
            "{device}: {} pending < {} promised",
            received.len(),
            ids_promised.len()
        );
        let lost: Vec<_> = ids_promised.difference(&received).collect();
        assert!(lost.is_empty(), "{device}: {} acknowledged messages lost: {lost:?}", lost.len());
    }
}
