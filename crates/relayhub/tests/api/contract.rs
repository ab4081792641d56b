//! The store contract: the same cases against every store trait of the
//! backend this run uses (SQLite, or PostgreSQL with
//! `RELAYHUB_TEST_POSTGRES`), straight through the traits, no HTTP. Each
//! refusal is compared word for word, so a rule reads the same on both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use relayhub::stores::StoreOptions;
use relayhub_core::backend::Stores;
use relayhub_core::bus::{Bus, Delivery};
use relayhub_core::devices::DeviceEvent;
use relayhub_core::error::ErrorCode;
use relayhub_core::gateway::ConnId;
use relayhub_core::identity::{self, License, LicenseUpdate, NewLicense};
use relayhub_core::ids::{DeviceId, LicenseNumber};
use relayhub_core::metrics::Metrics;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{PageRequest, StoreError};
use relayhub_core::time::Timestamp;
use relayhub_fleet::model::{Architecture, NewPairing, NewUser, RobotPatch, RobotStatus, Role, UserPatch};
use relayhub_fleet::rules::Rotation;
use relayhub_fleet::store::{FleetEvent, RobotStore, SessionStore, UserStore};
use relayhub_fleet::telemetry::store::{ChunkForm, ForwardStore, NewChunk, StoredChunk, TelemetryStore};
use relayhub_relay::model::{NewMessage, NewRecord};
use relayhub_relay::settings::{Author, Outcome, Proposal, SettingsStore, Target};
use relayhub_relay::store::{InboxStore, QueueStore, RelayEvent};
use relayhub_signal::protocol::{Frame, parse};
use relayhub_signal::state::{Env, Step, Timings};
use relayhub_signal::store::{Frames, SignalStore};
use serde_json::json;
use serde_json::value::RawValue;

use crate::helpers::{PATIENCE, PgDatabase, init_logs};

/// A fresh backend of the kind this run tests, serving.
pub(crate) struct Backend {
    pub(crate) stores: Stores,
    pub(crate) bus: Bus,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl Backend {
    pub(crate) async fn open() -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let pg = PgDatabase::create().await;
        let url = match &pg {
            Some(pg) => relayhub::config::DatabaseUrl::Postgres(pg.url.clone()),
            None => relayhub::config::DatabaseUrl::Sqlite(dir.path().join("contract.db")),
        };
        let bus = Bus::new();
        let stores = relayhub::stores::open(&url, &bus, &Metrics::new(), StoreOptions { pool_size: 4, partitions: 1 })
            .await
            .expect("the backend opens");
        stores.backend.start_serving().await.expect("serving");
        Self { stores, bus, _dir: dir, _pg: pg }
    }

    pub(crate) async fn license(&self, number: &str, max_devices: Option<u32>) -> License {
        let new = NewLicense {
            number: LicenseNumber::parse(number).unwrap(),
            name: String::new(),
            expires_at: None,
            max_devices,
            binding: identity::BindingPolicy::FirstUse,
        };
        identity::create_license(self.stores.identity.as_ref(), new).await.unwrap().0
    }

    fn queue(&self) -> Arc<dyn QueueStore> {
        self.stores.get().unwrap()
    }

    fn inbox(&self) -> Arc<dyn InboxStore> {
        self.stores.get().unwrap()
    }

    fn settings(&self) -> Arc<dyn SettingsStore> {
        self.stores.get().unwrap()
    }

    pub(crate) async fn close(self) {
        self.stores.close().await;
    }
}

fn d(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap()
}

fn message(device: &str, data: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        device_id: d(device),
        data: RawValue::from_string(data.into()).unwrap(),
        idempotency_key: key.map(str::to_owned),
        expires_at: None,
    }
}

/// The refusal's code and message.
pub(crate) fn refusal<T: std::fmt::Debug>(result: Result<T, StoreError>) -> (ErrorCode, String) {
    match result {
        Err(StoreError::Rejected(api)) => (api.code, api.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A device's connection as `/ws/device` makes it, presenting no secret:
/// the device reference (its secret, if issued, is not needed here).
async fn attach(
    devices: &dyn relayhub_core::devices::DeviceStore,
    license: &License,
    device: &DeviceId,
) -> relayhub_core::store::StoreResult<relayhub_core::devices::DeviceRef> {
    let fresh = relayhub_core::secret::Secret::generate(relayhub_core::secret::SecretKind::DEVICE_SECRET).hash();
    let request = relayhub_core::devices::Attach { license, device, presented: None, fresh, may_bind: &|| Ok(()) };
    Ok(devices.attach(request).await?.device)
}

#[tokio::test]
async fn identity_licenses_tokens_and_keys() {
    let b = Backend::open().await;
    let ids = b.stores.identity.as_ref();
    let lic = b.license("C-1", None).await;
    let again = NewLicense {
        number: lic.number.clone(),
        name: String::new(),
        expires_at: None,
        max_devices: None,
        binding: identity::BindingPolicy::Open,
    };
    assert_eq!(refusal(identity::create_license(ids, again).await).0, ErrorCode::ALREADY_EXISTS);
    let token = identity::issue_token(ids, &lic.number).await.unwrap();
    let hash = relayhub_core::secret::Secret::new(token.secret.expose()).hash();
    assert_eq!(ids.license_by_token(&hash).await.unwrap().map(|l| l.pk), Some(lic.pk));
    identity::revoke_token(ids, &lic.number, &token.id).await.unwrap();
    assert!(ids.license_by_token(&hash).await.unwrap().is_none(), "a revoked token finds nothing");
    let key = identity::create_api_key(ids, "app", &[]).await.unwrap();
    let key_hash = relayhub_core::secret::Secret::new(key.secret.expose()).hash();
    assert!(ids.api_key_by_hash(&key_hash).await.unwrap().is_some());
    let past = Timestamp::now().minus(Duration::from_secs(60));
    ids.update_license(&lic.number, LicenseUpdate { expires_at: Some(Some(past)), ..Default::default() })
        .await
        .unwrap();
    identity::revoke_api_key(ids, &key.id).await.unwrap();
    let gone = ids.invalidated(&[lic.pk], std::slice::from_ref(&key.id), Timestamp::now()).await.unwrap();
    assert_eq!((gone.licenses, gone.api_keys), (vec![lic.pk], vec![key.id]));
    b.close().await;
}

#[tokio::test]
async fn devices_bind_by_one_rule() {
    let b = Backend::open().await;
    let devices = b.stores.devices.clone();
    let mine = b.license("C-MINE", Some(2)).await;
    let theirs = b.license("C-THEIRS", None).await;
    let (record, created) = devices.bind(&mine, &d("phone-1")).await.unwrap();
    assert!(created && record.device_id == d("phone-1") && !record.online);
    assert!(!devices.bind(&mine, &d("phone-1")).await.unwrap().1, "binding twice binds once");
    assert_eq!(
        refusal(devices.bind(&theirs, &d("phone-1")).await),
        (ErrorCode::DEVICE_NOT_FOUND, "no device phone-1 in this license".into())
    );
    assert_eq!(
        refusal(attach(devices.as_ref(), &theirs, &d("phone-1")).await),
        (ErrorCode::DEVICE_BOUND_ELSEWHERE, "device phone-1 is bound to another license".into())
    );
    attach(devices.as_ref(), &mine, &d("phone-2")).await.unwrap();
    assert_eq!(
        refusal(devices.bind(&mine, &d("phone-3")).await),
        (ErrorCode::DEVICE_LIMIT, "license C-MINE already has its maximum of 2 devices".into())
    );
    let page = devices.devices(mine.pk, PageRequest { page: 1, size: 1 }).await.unwrap();
    assert_eq!((page.total, page.items[0].device_id.as_str()), (2, "phone-1"));
    assert!(devices.device(theirs.pk, &d("phone-1")).await.unwrap().is_none(), "not theirs to see");

    let unbound = Arc::new(Mutex::new(Vec::new()));
    let seen = unbound.clone();
    b.bus.subscribe::<DeviceEvent>(move |e| {
        if let Delivery::Event(DeviceEvent::Unbound { device }) = e {
            seen.lock().unwrap().push(*device);
        }
    });
    let pk = devices.unbind(mine.pk, &d("phone-1")).await.unwrap();
    assert_eq!(*unbound.lock().unwrap(), [pk], "unbinding is announced after the commit");
    assert_eq!(refusal(devices.unbind(mine.pk, &d("phone-1")).await).0, ErrorCode::DEVICE_NOT_FOUND);
    assert_eq!(devices.device_count(mine.pk).await.unwrap(), 1);
    assert!(devices.bind(&mine, &d("phone-3")).await.unwrap().1, "room again");
    b.close().await;
}

#[tokio::test]
async fn presence_follows_the_current_connection() {
    let b = Backend::open().await;
    let lic = b.license("C-P", None).await;
    let device = attach(b.stores.devices.as_ref(), &lic, &d("p-1")).await.unwrap();
    let presence = b.stores.presence.clone();
    presence.set_online(device.pk, ConnId(41)).await.unwrap();
    let record = b.stores.devices.device(lic.pk, &d("p-1")).await.unwrap().unwrap();
    assert!(record.online && record.last_seen.is_some());
    assert!(presence.is_current_connection(device.pk, ConnId(41)).await.unwrap());
    presence.set_offline(device.pk, ConnId(99)); // another connection's close changes nothing
    presence.set_offline(device.pk, ConnId(41));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b.stores.devices.device(lic.pk, &d("p-1")).await.unwrap().unwrap().online {
        assert!(tokio::time::Instant::now() < deadline, "the device never went offline");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.close().await;
}

#[tokio::test]
async fn queues_keep_order_keys_and_bounds() {
    let b = Backend::open().await;
    let (queue, lic, other) = (b.queue(), b.license("C-Q", None).await, b.license("C-QO", None).await);
    let queued = Arc::new(Mutex::new(Vec::new()));
    let seen = queued.clone();
    b.bus.subscribe::<RelayEvent>(move |e| {
        if let Delivery::Event(RelayEvent::Queued { first_seq, messages, .. }) = e {
            seen.lock().unwrap().push((*first_seq, messages.len()));
        }
    });
    let sent = queue.enqueue(&lic, vec![message("q-1", "1", None), message("q-1", "2", Some("k"))], 3).await.unwrap();
    assert_eq!(sent.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(*queued.lock().unwrap(), [(1, 2)], "the commit is announced with its messages");
    let replay = queue.enqueue(&lic, vec![message("q-1", "2", Some("k"))], 3).await.unwrap();
    assert!(replay[0].replayed && replay[0].id == sent[1].id);
    assert_eq!(
        refusal(queue.enqueue(&lic, vec![message("q-1", "3", Some("k"))], 3).await),
        (ErrorCode::IDEMPOTENCY_KEY_REUSED, "idempotency key \"k\" was used for a different message".into())
    );
    assert_eq!(
        refusal(queue.enqueue(&lic, vec![message("q-1", "3", None), message("q-1", "4", None)], 3).await),
        (relayhub_relay::codes::QUEUE_FULL, "device q-1 has 2 pending messages; the limit is 3".into())
    );
    assert_eq!(
        refusal(queue.enqueue(&other, vec![message("q-1", "5", None)], 3).await),
        (ErrorCode::DEVICE_NOT_FOUND, "no device q-1 in this license".into())
    );
    // A refused call leaves nothing, not even a device it would have bound.
    assert_eq!(
        refusal(queue.enqueue(&other, vec![message("q-new", "1", None), message("q-1", "1", None)], 3).await).0,
        ErrorCode::DEVICE_NOT_FOUND
    );
    assert!(b.stores.devices.device(other.pk, &d("q-new")).await.unwrap().is_none());

    let pk = b.stores.devices.device(lic.pk, &d("q-1")).await.unwrap().unwrap().pk;
    assert_eq!(queue.pending_counts(&[pk]).await.unwrap()[&pk], 2);
    let fetched = queue.fetch(pk, 2, 10).await.unwrap();
    assert_eq!(fetched.iter().map(|m| m.seq).collect::<Vec<_>>(), [2]);
    let page = queue.pending(lic.pk, &d("q-1"), PageRequest::default()).await.unwrap();
    assert_eq!((page.total, page.items[0].data.get()), (2, "1"));
    let stranger = uuid::Uuid::now_v7();
    let acked = queue.ack(pk, vec![sent[0].id, stranger]).await.unwrap();
    assert_eq!((acked.delivered, acked.unknown), (1, vec![stranger]));
    let receipt = queue.receipt(lic.pk, sent[0].id).await.unwrap().unwrap();
    assert_eq!(receipt.status, relayhub_relay::model::MessageStatus::Delivered);
    assert!(queue.receipt(other.pk, sent[0].id).await.unwrap().is_none(), "not theirs to see");
    assert_eq!(queue.total_pending().await.unwrap(), 1);
    b.close().await;
}

#[tokio::test]
async fn the_inbox_keeps_records_until_acknowledged_and_knows_retries() {
    let b = Backend::open().await;
    let (inbox, lic, other) = (b.inbox(), b.license("C-I", None).await, b.license("C-IO", None).await);
    let device = attach(b.stores.devices.as_ref(), &lic, &d("i-1")).await.unwrap();
    let record = |r: &str| NewRecord { reference: r.into(), data: RawValue::from_string("{\"x\":1}".into()).unwrap() };
    let first = inbox.publish(&device, vec![record("a"), record("b")]).await.unwrap();
    let again = inbox.publish(&device, vec![record("a")]).await.unwrap();
    assert!(again[0].duplicate && again[0].id == first[0].id);
    let listed = inbox.inbox(lic.pk, 10).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.reference.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(inbox.inbox(other.pk, 10).await.unwrap().is_empty());
    assert!(inbox.inbox_ack(other.pk, vec![first[0].id]).await.unwrap().is_empty(), "not theirs to ack");
    assert_eq!(inbox.inbox_ack(lic.pk, vec![first[0].id, first[0].id]).await.unwrap(), vec![first[0].id]);
    assert_eq!(inbox.inbox(lic.pk, 10).await.unwrap().len(), 1);
    b.close().await;
}

#[tokio::test]
async fn settings_merge_refuse_and_restore_by_one_rule() {
    let b = Backend::open().await;
    let (settings, lic) = (b.settings(), b.license("C-S", None).await);
    let doc = |v: serde_json::Value| v.as_object().unwrap().clone();
    let write = |version, v: serde_json::Value, author| Proposal { base_version: version, document: doc(v), author };
    let target = || Target::BackOffice { license: lic.clone(), device: d("s-1") };

    // A refused write to a device nobody bound binds nothing.
    let refused = settings.write_settings(target(), write(5, json!({"a": 1}), Author::BackOffice)).await.unwrap();
    assert!(matches!(refused, Outcome::Conflict { .. }));
    assert!(b.stores.devices.device(lic.pk, &d("s-1")).await.unwrap().is_none());

    let Outcome::Applied { settings: v1, .. } =
        settings.write_settings(target(), write(0, json!({"a": 1, "b": 1}), Author::BackOffice)).await.unwrap()
    else {
        panic!("a first write applies")
    };
    assert_eq!(v1.version, 1);
    let device = attach(b.stores.devices.as_ref(), &lic, &d("s-1")).await.unwrap();
    settings
        .write_settings(Target::Device(device.pk), write(1, json!({"a": 2, "b": 1}), Author::Device))
        .await
        .unwrap();
    let merged =
        settings.write_settings(target(), write(1, json!({"a": 1, "b": 3}), Author::BackOffice)).await.unwrap();
    assert!(
        matches!(&merged, Outcome::Applied { merged: true, settings } if settings.settings == doc(json!({"a": 2, "b": 3})))
    );
    let conflict =
        settings.write_settings(target(), write(1, json!({"a": 9, "b": 1}), Author::BackOffice)).await.unwrap();
    let Outcome::Conflict { paths, reason, current } = conflict else { panic!("overlapping changes conflict") };
    assert_eq!(
        (paths, reason, current.version),
        (vec!["a".to_owned()], "changed since version 1 by someone else: a".to_owned(), 3)
    );

    settings.link_account(&device, "google:1").await.unwrap();
    let new_phone = attach(b.stores.devices.as_ref(), &lic, &d("s-2")).await.unwrap();
    let restored = settings.restore_account(&new_phone, "google:1").await.unwrap().unwrap();
    assert_eq!(restored.settings, doc(json!({"a": 2, "b": 3})));
    assert!(settings.restore_account(&new_phone, "google:2").await.unwrap().is_none());
    b.close().await;
}

#[tokio::test]
async fn signaling_steps_are_atomic_and_their_frames_announced() {
    let b = Backend::open().await;
    let signal: Arc<dyn SignalStore> = b.stores.get().unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let seen = frames.clone();
    b.bus.subscribe::<Frames>(move |e| {
        if let Delivery::Event(Frames(list)) = e {
            seen.lock().unwrap().extend(list.iter().map(|(c, t)| (c.0, t.clone())));
        }
    });
    let env = Env {
        now: Timestamp::now().millis(),
        timings: Timings { ringing: Duration::from_secs(60), grace: Duration::from_millis(1) },
        ice_servers: Arc::new(|_| None),
    };
    let frame = |text: &str| match parse(text).unwrap() {
        Frame::Json(f) => f,
        Frame::Ping => unreachable!(),
    };
    let step = |s: Step| {
        let (signal, env) = (signal.clone(), env.clone());
        async move { signal.step(s, env).await.unwrap() }
    };
    for (conn, user) in [(1, "ann"), (2, "ben")] {
        step(Step::Attach(ConnId(conn))).await.unwrap();
        step(Step::Frame(ConnId(conn), frame(&format!(r#"{{"route":"ADD_USER","userId":"{user}"}}"#)))).await.unwrap();
    }
    step(Step::Frame(ConnId(1), frame(r#"{"route":"OFFER","userId":"ann","data":{"candidateId":"ben","sdp":"v=0"}}"#)))
        .await
        .unwrap();
    let refused = step(Step::Frame(
        ConnId(2),
        frame(r#"{"route":"OFFER","userId":"ben","data":{"candidateId":"ann","sdp":"v"}}"#),
    ))
    .await;
    assert_eq!(refused.unwrap_err().code, relayhub_signal::codes::GLARE);
    let census = signal.census().await.unwrap();
    assert_eq!((census.users, census.ringing), (2, 1));
    let to_ben: Vec<String> = frames.lock().unwrap().iter().filter(|(c, _)| *c == 2).map(|(_, t)| t.clone()).collect();
    assert!(to_ben.iter().any(|t| t.contains("\"/call\"")), "{to_ben:?}");

    // Ann's last socket closes; past the grace her call ends for Ben.
    step(Step::Detach(ConnId(1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = Env { now: Timestamp::now().millis(), ..env.clone() };
    signal.step(Step::Expire { gone: Vec::new() }, later).await.unwrap().unwrap();
    assert!(frames.lock().unwrap().iter().any(|(c, t)| *c == 2 && t.contains("/hangup")));
    assert_eq!(signal.census().await.unwrap().ringing, 0);
    b.close().await;
}

fn fleet_user(license: &License, email: &str) -> NewUser {
    NewUser {
        license: license.pk,
        email: email.into(),
        name: String::new(),
        role: Role::User,
        password_hash: "$argon2id$test".into(),
    }
}

#[tokio::test]
async fn fleet_sessions_rotate_once_and_a_reused_token_ends_the_chain() {
    let b = Backend::open().await;
    let (lic_a, lic_b) = (b.license("LIC-A", None).await, b.license("LIC-B", None).await);
    let users: Arc<dyn UserStore> = b.stores.get().unwrap();
    let sessions: Arc<dyn SessionStore> = b.stores.get().unwrap();
    let ann = users.create_user(fleet_user(&lic_a, "ann@example.com")).await.unwrap();
    // Emails are unique on the whole server, not per license.
    let taken = refusal(users.create_user(fleet_user(&lic_b, "ann@example.com")).await);
    assert_eq!(taken.0, ErrorCode::ALREADY_EXISTS);
    assert_eq!(users.user_by_email("ann@example.com").await.unwrap().map(|u| u.id), Some(ann.id));
    let off = UserPatch { is_active: Some(false), ..UserPatch::default() };
    assert_eq!(refusal(users.update_user(lic_b.pk, ann.id, off.clone()).await).0, ErrorCode::USER_NOT_FOUND);
    assert!(users.users(lic_b.pk).await.unwrap().is_empty());

    let token = |n: u8| SecretHash([n; 32]);
    let now = Timestamp::now();
    let until = Timestamp::from_millis(now.millis() + 3_600_000);
    sessions.start_session(ann.id, token(1), until).await.unwrap();
    let first = sessions.rotate(token(1), token(2), now, until).await.unwrap();
    assert!(matches!(first, Some(Rotation::Rotate { user_id, .. }) if user_id == ann.id), "{first:?}");
    let again = sessions.rotate(token(1), token(3), now, until).await.unwrap();
    assert!(matches!(again, Some(Rotation::Reused { .. })), "{again:?}");
    let heir = sessions.rotate(token(2), token(4), now, until).await.unwrap();
    assert_eq!(heir, Some(Rotation::Refused), "the reuse ended the heir of the spent token too");
    assert_eq!(sessions.rotate(token(9), token(5), now, until).await.unwrap(), None);
    let expired = sessions.rotate(token(1), token(6), until, until).await.unwrap();
    assert_ne!(expired.as_ref().map(|r| matches!(r, Rotation::Rotate { .. })), Some(true));

    sessions.start_session(ann.id, token(10), until).await.unwrap();
    sessions.start_session(ann.id, token(20), until).await.unwrap();
    assert!(sessions.end_session(token(20)).await.unwrap());
    assert!(!sessions.end_session(token(21)).await.unwrap());
    assert_eq!(sessions.rotate(token(20), token(22), now, until).await.unwrap(), Some(Rotation::Refused));
    // Switching a user off ends its sessions.
    assert!(!users.update_user(lic_a.pk, ann.id, off).await.unwrap().is_active);
    assert_eq!(sessions.rotate(token(10), token(11), now, until).await.unwrap(), Some(Rotation::Refused));

    let key = sessions.signing_key().await.unwrap();
    assert!(key.len() >= 32);
    assert_eq!(sessions.signing_key().await.unwrap(), key, "one key, made once");
    b.close().await;
}

#[tokio::test]
async fn fleet_pairing_confirms_once_and_a_token_finds_only_its_robot() {
    let b = Backend::open().await;
    let (lic_a, lic_b) = (b.license("LIC-A", None).await, b.license("LIC-B", None).await);
    let users: Arc<dyn UserStore> = b.stores.get().unwrap();
    let robots: Arc<dyn RobotStore> = b.stores.get().unwrap();
    let changed = Arc::new(Mutex::new(Vec::new()));
    let seen = changed.clone();
    b.bus.subscribe::<FleetEvent>(move |e| {
        if let Delivery::Event(FleetEvent::RobotChanged { robot }) = e {
            seen.lock().unwrap().push(*robot);
        }
    });
    let ann = users.create_user(fleet_user(&lic_a, "ann@example.com")).await.unwrap();
    let bob = users.create_user(fleet_user(&lic_b, "bob@example.com")).await.unwrap();
    let now = Timestamp::now();
    let pairing = |code: &str, life_ms: i64| NewPairing {
        hostname: "pi-kitchen".into(),
        ip_address: Some("192.0.2.7".into()),
        observed_ip_address: Some("198.51.100.4".into()),
        architecture: Some(Architecture::Arm64),
        code: code.into(),
        secret: SecretHash([7; 32]),
        expires_at: Timestamp::from_millis(now.millis() + life_ms),
    };
    let robot = robots.start_pairing(pairing("BCDFGHJK", 60_000)).await.unwrap();
    assert_eq!((robot.status, robot.license, robot.owner_id), (RobotStatus::Pending, None, None));
    assert_eq!(
        refusal(robots.start_pairing(pairing("BCDFGHJK", 60_000)).await).0,
        relayhub_fleet::codes::PAIR_CODE_USED
    );
    let found = robots.pairing("BCDFGHJK").await.unwrap().expect("the pairing");
    assert_eq!((found.robot.id, found.secret, found.confirmed_at), (robot.id, SecretHash([7; 32]), None));
    assert_eq!(found.observed_ip_address.as_deref(), Some("198.51.100.4"));

    let mine = robots.confirm_pairing("BCDFGHJK", &ann, now).await.unwrap();
    assert_eq!((mine.status, mine.license, mine.owner_id), (RobotStatus::Active, Some(lic_a.pk), Some(ann.id)));
    assert_eq!(refusal(robots.confirm_pairing("BCDFGHJK", &bob, now).await).0, relayhub_fleet::codes::PAIR_CODE_USED);
    assert!(robots.deliver_token("BCDFGHJK", SecretHash([8; 32])).await.unwrap());
    assert!(!robots.deliver_token("BCDFGHJK", SecretHash([9; 32])).await.unwrap(), "the token is given once");
    assert_eq!(robots.robot_by_token(SecretHash([8; 32])).await.unwrap().map(|r| r.id), Some(robot.id));
    assert_eq!(robots.robot_by_token(SecretHash([9; 32])).await.unwrap(), None);

    // Another license's robot is not there, for reading or writing.
    assert_eq!(robots.robot(lic_b.pk, robot.id).await.unwrap(), None);
    let rename = RobotPatch { name: Some("mine".into()), status: None };
    assert_eq!(refusal(robots.update_robot(lic_b.pk, robot.id, rename.clone()).await).0, ErrorCode::ROBOT_NOT_FOUND);
    assert_eq!(refusal(robots.delete_robot(lic_b.pk, robot.id).await).0, ErrorCode::ROBOT_NOT_FOUND);
    assert_eq!(robots.robots(lic_a.pk, Some(bob.id)).await.unwrap(), vec![]);
    assert_eq!(robots.robots(lic_a.pk, None).await.unwrap().len(), 1);
    let off = RobotPatch { name: None, status: Some(RobotStatus::Inactive) };
    assert_eq!(robots.update_robot(lic_a.pk, robot.id, off).await.unwrap().status, RobotStatus::Inactive);
    assert!(changed.lock().unwrap().contains(&robot.id), "nodes learn of the change");

    // An unconfirmed code past its life: refused, then swept with its robot;
    // a confirmed robot keeps everything but its code.
    let stale = robots.start_pairing(pairing("CDFGHJKL", -1)).await.unwrap();
    assert_eq!(
        refusal(robots.confirm_pairing("CDFGHJKL", &ann, now).await).0,
        relayhub_fleet::codes::PAIR_CODE_EXPIRED
    );
    let later = Timestamp::from_millis(now.millis() + 120_000);
    assert!(robots.sweep_pairings(later, Duration::ZERO).await.unwrap() >= 2);
    assert!(robots.pairing("CDFGHJKL").await.unwrap().is_none() && robots.pairing("BCDFGHJK").await.unwrap().is_none());
    assert_eq!(robots.robots(lic_a.pk, None).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![robot.id]);
    assert_ne!(stale.id, robot.id);

    robots.delete_robot(lic_a.pk, robot.id).await.unwrap();
    assert_eq!(robots.robot_by_token(SecretHash([8; 32])).await.unwrap(), None);
    b.close().await;
}

fn chunk(level: u8, min_time: i64, max_time: i64, body: &[u8]) -> NewChunk {
    NewChunk { form: ChunkForm::Points, level, min_time, max_time, points: 2, body: body.to_vec() }
}

#[tokio::test]
async fn telemetry_chunks_are_found_by_robot_and_time_and_replaced_whole() {
    let b = Backend::open().await;
    let lic = b.license("LIC-A", None).await;
    let users: Arc<dyn UserStore> = b.stores.get().unwrap();
    let robots: Arc<dyn RobotStore> = b.stores.get().unwrap();
    let telemetry: Arc<dyn TelemetryStore> = b.stores.get().unwrap();
    let owner = users.create_user(fleet_user(&lic, "t@example.com")).await.unwrap();
    let now = Timestamp::now();
    let new = NewPairing {
        hostname: "pi".into(),
        ip_address: None,
        observed_ip_address: None,
        architecture: None,
        code: "TTTTTTTT".into(),
        secret: SecretHash([1; 32]),
        expires_at: Timestamp::from_millis(now.millis() + 60_000),
    };
    let robot = robots.start_pairing(new).await.unwrap().id;
    robots.confirm_pairing("TTTTTTTT", &owner, now).await.unwrap();

    telemetry.append(robot, chunk(0, 100, 200, b"first"), Some(b"m v=1 100\n".to_vec()), now).await.unwrap();
    telemetry.append(robot, chunk(0, 300, 400, b"second"), None, now).await.unwrap();
    telemetry.append(robot + 1, chunk(0, 100, 400, b"another robot"), None, now).await.unwrap();
    let seen = robots.robot(lic.pk, robot).await.unwrap().unwrap().last_seen_at;
    assert_eq!(seen, Some(now), "a write is the robot's sign of life");
    let bodies = |found: Vec<StoredChunk>| found.into_iter().map(|c| c.chunk.body).collect::<Vec<_>>();
    assert_eq!(
        bodies(telemetry.chunks(robot, ChunkForm::Points, 150, 350).await.unwrap()),
        [b"first".to_vec(), b"second".to_vec()]
    );
    assert_eq!(bodies(telemetry.chunks(robot, ChunkForm::Points, 201, 299).await.unwrap()), Vec::<Vec<u8>>::new());
    assert_eq!(bodies(telemetry.chunks(robot, ChunkForm::Rollup, 0, 1000).await.unwrap()), Vec::<Vec<u8>>::new());

    let later = Timestamp::from_millis(now.millis() + 1);
    assert_eq!(telemetry.compactable(ChunkForm::Points, 0, 2, later, 10).await.unwrap(), vec![robot]);
    assert_eq!(telemetry.compactable(ChunkForm::Points, 0, 3, later, 10).await.unwrap(), Vec::<i64>::new());
    assert_eq!(
        telemetry.compactable(ChunkForm::Points, 0, 1, now, 10).await.unwrap(),
        Vec::<i64>::new(),
        "not before now"
    );
    let fresh = telemetry.chunks_at(robot, ChunkForm::Points, 0, later, 10).await.unwrap();
    let ids: Vec<i64> = fresh.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2);
    let merged = chunk(1, 100, 400, b"merged");
    assert!(telemetry.replace(robot, ids.clone(), vec![merged.clone()], later).await.unwrap());
    assert!(
        !telemetry.replace(robot, ids, vec![merged], later).await.unwrap(),
        "a second merge of the same chunks loses"
    );
    assert_eq!(bodies(telemetry.chunks(robot, ChunkForm::Points, 0, 1000).await.unwrap()), [b"merged".to_vec()]);

    assert_eq!(telemetry.expire(ChunkForm::Points, 401).await.unwrap(), 2);
    assert_eq!(bodies(telemetry.chunks(robot, ChunkForm::Points, 0, 1000).await.unwrap()), Vec::<Vec<u8>>::new());

    // The forwarding backlog: claimed once, given back, trimmed oldest first.
    let backlog: Arc<dyn ForwardStore> = b.stores.get().unwrap();
    for i in 0..3 {
        telemetry
            .append(robot, chunk(0, 500, 500, b"x"), Some(format!("m v={i} 500\n").into_bytes()), now)
            .await
            .unwrap();
    }
    assert_eq!(backlog.backlog().await.unwrap(), (4, 40));
    let until = Timestamp::from_millis(now.millis() + 30_000);
    let claimed = backlog.claim(25, now, until).await.unwrap();
    assert_eq!(
        claimed.iter().map(|(_, body)| body.clone()).collect::<Vec<_>>(),
        [b"m v=1 100\n".to_vec(), b"m v=0 500\n".to_vec()]
    );
    assert_eq!(backlog.claim(1000, now, until).await.unwrap().len(), 2, "claimed batches are not claimed twice");
    backlog.release(vec![claimed[1].0]).await.unwrap();
    backlog.forwarded(vec![claimed[0].0]).await.unwrap();
    assert_eq!(backlog.claim(1000, now, until).await.unwrap(), vec![claimed[1].clone()]);
    assert_eq!(backlog.trim(15).await.unwrap(), 2, "the oldest go first");
    assert_eq!(backlog.backlog().await.unwrap(), (1, 10));
    b.close().await;
}
