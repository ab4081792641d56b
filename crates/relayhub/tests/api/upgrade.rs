//! A data directory made by an earlier release, opened by this one: the
//! fixture was made by relayhub at 8b6feb5 (one schema version for the
//! whole file, before each module had its own) — a license with a token,
//! an app key, a fleet admin, a message queued for a device and the
//! device's settings. Everything it held works as it did.

use std::io::Read;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::Device;
use crate::process::{ChildServer, cli};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data-8b6feb5");

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_of_an_earlier_release_opens_with_nothing_lost() {
    let made: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/fixture.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relayhub-data");
    std::fs::create_dir(&data).unwrap();
    let mut file = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(format!("{FIXTURE}/relayhub.db.gz")).unwrap())
        .read_to_end(&mut file)
        .unwrap();
    std::fs::write(data.join("relayhub.db"), file).unwrap();
    let database = vec!["--data".to_owned(), data.display().to_string()];

    let server = ChildServer::start(&database).await;
    let base = format!("http://{}", server.addr);
    let http = relayhub_core::http_client::client().unwrap();
    let token = made["token"].as_str().unwrap();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(token).send();

    let message = made["message"].as_str().unwrap();
    let receipt: Value = get(&format!("/api/v1/messages/{message}")).await.unwrap().json().await.unwrap();
    assert_eq!(
        (receipt["status"].as_str(), receipt["device_id"].as_str()),
        (Some("queued"), Some("phone-1")),
        "{receipt}"
    );
    let settings: Value = get("/api/v1/devices/phone-1/settings").await.unwrap().json().await.unwrap();
    assert_eq!((&settings["version"], &settings["settings"]), (&json!(1), &made["settings"]), "{settings}");

    // The device gets the settings and the message written before the
    // upgrade, as a device offline meanwhile does.
    let url = format!(
        "ws://{}/ws/device?api_key={}&device_id=phone-1&license={}",
        server.addr,
        made["api_key"].as_str().unwrap(),
        made["license"].as_str().unwrap()
    );
    let mut device =
        Device::open(url.into_client_request().unwrap()).await.expect("the old app key and license admit it");
    assert_eq!(device.hello["pending"], 1);
    let sent = device.expect("settings").await;
    assert_eq!((&sent["version"], &sent["settings"]), (&json!(1), &made["settings"]));
    let delivered = device.expect("message").await;
    assert_eq!((delivered["id"].as_str(), delivered["seq"].as_i64()), (Some(message), Some(1)));
    assert_eq!(delivered["data"], json!({"invoice": "INV-OLD", "amount": 7}));

    let login = http.post(format!("{base}/api/auth/login")).json(&made["user"]).send().await.unwrap();
    assert_eq!(login.status(), 200, "the fleet admin signs in with the old password");

    // What this release adds works on the upgraded file beside what was there.
    let new = cli(&database, &["license", "create", "--number", "LIC-NEW"]);
    let licenses = cli(&database, &["license", "list"]);
    let numbers: Vec<&str> = licenses.as_array().unwrap().iter().filter_map(|l| l["number"].as_str()).collect();
    assert_eq!(numbers, ["LIC-NEW", "LIC-OLD"], "{new}");
}
