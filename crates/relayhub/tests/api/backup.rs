//! `relayhub backup`: a copy taken while producers keep writing holds every
//! message accepted before it began, nothing that was never accepted, and
//! a server serves it as it is.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::helpers::{PATIENCE, drain};
use crate::process::{ChildServer, cli};

const LICENSE: &str = "LIC-B";

/// `relayhub backup DIR` with `--json` and `extra` options; its exit
/// status, stdout and stderr.
async fn backup(into: &Path, extra: &[String]) -> (bool, Value, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_relayhub"));
    command.arg("backup").arg(into).arg("--json").args(extra);
    let out = tokio::time::timeout(PATIENCE, command.output()).await.expect("the backup ends in time").unwrap();
    let stdout = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn a_backup_under_load_holds_what_was_accepted_and_serves_as_it_is() {
    const DEVICES: usize = 4;
    const PRODUCERS: usize = 4;
    const BEFORE_BACKUP: usize = 300;

    let dir = tempfile::tempdir().unwrap();
    let database = vec!["--data".to_owned(), dir.path().join("live").display().to_string()];
    let token = cli(&database, &["license", "create", "--number", LICENSE])["token"].as_str().unwrap().to_owned();
    let key = cli(&database, &["apikey", "create"])["key"].as_str().unwrap().to_owned();
    let server = ChildServer::start(&database).await;

    let http = relayhub_core::http_client::client().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (http, token, addr) = (http.clone(), token.clone(), server.addr.clone());
        let (accepted, count, stop) = (accepted.clone(), count.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            // Bounded: stops when told, or after 5,000 messages.
            for n in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let device = format!("till-{}", (p + n) % DEVICES);
                let url = format!("http://{addr}/api/v1/devices/{device}/messages");
                let response = http.post(url).bearer_auth(&token).json(&json!({"p": p, "n": n})).send().await.unwrap();
                assert_eq!(response.status(), 202);
                let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                accepted.lock().unwrap().push((device, id));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while count.load(Ordering::Relaxed) < BEFORE_BACKUP {
        assert!(tokio::time::Instant::now() < deadline, "the producers were too slow");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before: HashSet<String> = accepted.lock().unwrap().iter().map(|(_, id)| id.clone()).collect();

    let into = dir.path().join("copy");
    let (ok, report, stderr) = backup(&into, &database).await;
    assert!(ok, "the backup failed: {stderr}");
    let taken_during = count.load(Ordering::Relaxed) - before.len();
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.await.unwrap();
    }
    assert_eq!(Path::new(report["file"].as_str().unwrap()), into.join("relayhub.db"));
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(report["schema_version"].as_i64().unwrap() > 0);

    let mut ever: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (device, id) in accepted.lock().unwrap().iter() {
        ever.entry(device.clone()).or_default().insert(id.clone());
    }
    // The copy is a data directory: a second server serves it while the
    // first goes on.
    let copy = ChildServer::start(&["--data".to_owned(), into.display().to_string()]).await;
    let mut in_copy = HashSet::new();
    for (device, sent) in &ever {
        for id in drain(&copy.addr, &key, LICENSE, device).await {
            assert!(sent.contains(&id), "{device}: the copy holds {id}, which was never accepted for it");
            assert!(in_copy.insert(id), "{device}: delivered twice");
        }
    }
    let lost: Vec<_> = before.difference(&in_copy).collect();
    assert!(lost.is_empty(), "{} messages accepted before the backup are not in it", lost.len());
    eprintln!(
        "{} accepted before the backup, {taken_during} while it ran, {} in the copy",
        before.len(),
        in_copy.len()
    );
}

#[tokio::test]
async fn a_backup_never_writes_over_anything_or_invents_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let live = vec!["--data".to_owned(), dir.path().join("live").display().to_string()];

    // Nothing served from that directory yet: nothing to copy, and no
    // empty database or backup directory left behind.
    let into = dir.path().join("copy");
    let (ok, _, stderr) = backup(&into, &live).await;
    assert!(!ok);
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!into.exists() && !dir.path().join("live/relayhub.db").exists());

    cli(&live, &["license", "create", "--number", LICENSE]);
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), "keep").unwrap();
    let (ok, _, stderr) = backup(&occupied, &live).await;
    assert!(!ok);
    assert!(stderr.contains("is not empty"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&occupied).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["notes.txt"]);

    // PostgreSQL has its own tools; the refusal says which, before
    // connecting anywhere.
    let pg = vec!["--database".to_owned(), "postgres://nobody@127.0.0.1:9/none".to_owned()];
    let (ok, _, stderr) = backup(&into, &pg).await;
    assert!(!ok);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!into.exists());
}
