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

/// The tables' columns and the indexes of a PostgreSQL database, as sets.
async fn pg_schema(url: &str) -> (Vec<String>, Vec<String>) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    let columns: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, column_default::text
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT IN ('_sqlx_migrations')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT IN ('_sqlx_migrations')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut columns: Vec<String> = columns.into_iter().map(|c| format!("{c:?}")).collect();
    let mut indexes: Vec<String> = indexes.into_iter().map(|(i,)| i).collect();
    columns.sort();
    indexes.sort();
    (columns, indexes)
}

/// A PostgreSQL database as the release before module versions left it
/// after its migration `reached`, with a license in it.
async fn legacy_pg(reached: i64) -> crate::helpers::PgDatabase {
    let pg = crate::helpers::PgDatabase::create().await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL,
         execution_time BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for (version, sql) in relayhub_postgres::legacy_sequence().into_iter().filter(|(v, _)| *v <= reached) {
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations VALUES ($1, 'legacy', now(), true, '\\x00', 0) ON CONFLICT DO NOTHING",
        )
        .bind(version)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO licenses (number, name, created_at) VALUES ('LIC-PG', 'before', now())")
        .execute(&mut conn)
        .await
        .unwrap();
    pg
}

#[tokio::test]
async fn a_postgres_database_of_an_earlier_release_is_upgraded_in_place() {
    if !crate::field::available(
        "PostgreSQL (RELAYHUB_TEST_POSTGRES)",
        std::env::var_os("RELAYHUB_TEST_POSTGRES").is_some(),
    ) {
        return;
    }
    let fresh = crate::helpers::PgDatabase::create().await.unwrap();
    let open = |url: &str| {
        let url = relayhub::config::DatabaseUrl::Postgres(url.to_owned());
        async move {
            let options = relayhub::stores::StoreOptions { pool_size: 2, partitions: 1 };
            relayhub::stores::open(
                &url,
                &relayhub_core::bus::Bus::new(),
                &relayhub_core::metrics::Metrics::new(),
                options,
            )
            .await
            .expect("the database opens and migrates")
        }
    };
    open(&fresh.url).await.close().await;
    let expected = pg_schema(&fresh.url).await;
    // 8: the release at 8b6feb5 (before device credentials, telemetry
    // series and rail retries); 11: the last one before module versions.
    for reached in [8, 11] {
        let old = legacy_pg(reached).await;
        let stores = open(&old.url).await;
        let number = relayhub_core::ids::LicenseNumber::parse("LIC-PG").unwrap();
        let license = stores.identity.license(&number).await.unwrap().expect("the license is kept");
        assert_eq!((license.name.as_str(), license.binding), ("before", relayhub_core::identity::BindingPolicy::Open));
        stores.close().await;
        assert_eq!(pg_schema(&old.url).await, expected, "upgraded from legacy migration {reached}");
        // Opening it again migrates nothing more.
        open(&old.url).await.close().await;
        assert_eq!(pg_schema(&old.url).await, expected);
    }
}
