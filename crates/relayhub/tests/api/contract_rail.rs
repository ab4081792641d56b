//! The store contract, continued, for the registry's and rail's traits: the
//! same cases against the backend this run uses (SQLite, or PostgreSQL with
//! `RELAYHUB_TEST_POSTGRES`), straight through the traits, no HTTP. Times
//! are fixed instants, not the clock, so expiry and "today" are decided
//! the same way on every run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use relayhub_core::bus::Delivery;
use relayhub_core::error::ErrorCode;
use relayhub_core::ids::LicensePk;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest};
use relayhub_core::time::Timestamp;
use relayhub_rail::codes;
use relayhub_rail::face::{FaceEvent, StoredFace};
use relayhub_rail::model::{
    ItemFields, ItemPatch, NewEngineer, NewPurchase, NewRobot, NewStore, NewTicket, PurchaseKey, PurchaseLine, Scanned,
    StoreType, Subject, Ticket, TicketScan,
};
use relayhub_rail::rules;
use relayhub_rail::store::{BaseStore, FaceStore, RailSessions, ShopStore};
use relayhub_registry::model::{DeviceFilter, DeviceStatus, DeviceUuid, InstanceId, RegisteredDevice, Registration};
use relayhub_registry::store::{DeviceRegistry, InstanceTokens};
use serde_json::json;
use uuid::Uuid;

use crate::contract::{Backend, refusal};

/// 2026-03-10T12:00:00Z: every time below is this instant or near it.
fn noon() -> Timestamp {
    Timestamp::from_millis(1_773_144_000_000)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const ANN_PHONE: &str = "6f1c1a52-2b1e-4e39-9a2f-3b0c2d7f5e10";
const BEN_PHONE: &str = "0b6e4d7a-91c3-4f0e-8d2a-5c7b9e1f3a24";
const CAT_PHONE: &str = "d2f8a3c1-6b4e-4a9d-b7e5-1c3f5a7b9d02";
const NOBODY: &str = "00000000-0000-4000-8000-000000000000";

fn uuid(text: &str) -> DeviceUuid {
    relayhub_registry::rules::device_uuid(text).expect("a UUID")
}

fn instance(text: &str) -> InstanceId {
    relayhub_registry::rules::instance_id(text).expect("an instance id")
}

fn registration(uuid: &str, instance: &str, at: Timestamp) -> Registration {
    Registration {
        device_uuid: self::uuid(uuid),
        instance_id: self::instance(instance),
        public_url: Some(format!("https://{instance}.example.com")),
        initial: DeviceStatus::Pending,
        at,
    }
}

#[tokio::test]
async fn registered_devices_keep_their_status_until_they_move_and_a_block_holds() {
    let b = Backend::open().await;
    let registry: Arc<dyn DeviceRegistry> = b.stores.get().unwrap();
    let (t0, t1, t2) = (noon(), noon().plus(secs(60)), noon().plus(secs(120)));
    let first = registry.register(registration(ANN_PHONE, "wh-1", t0)).await.unwrap();
    assert_eq!((first.status, first.registered_at, first.last_seen), (DeviceStatus::Pending, t0, t0));
    assert_eq!(registry.set_status(&uuid(ANN_PHONE), DeviceStatus::Active).await.unwrap().status, DeviceStatus::Active);
    // Registering again (an app restarting) keeps the operator's approval.
    let again = registry.register(registration(ANN_PHONE, "wh-1", t1)).await.unwrap();
    assert_eq!((again.status, again.registered_at, again.last_seen), (DeviceStatus::Active, t0, t1));
    // A device that moves to another instance, or another URL of it, waits
    // for approval again: the approval was for where its calls went.
    let moved = registry.register(registration(ANN_PHONE, "wh-2", t1)).await.unwrap();
    assert_eq!((moved.status, moved.instance_id.as_str()), (DeviceStatus::Pending, "wh-2"));
    registry.set_status(&uuid(ANN_PHONE), DeviceStatus::Active).await.unwrap();
    let elsewhere =
        Registration { public_url: Some("https://other.example.com".into()), ..registration(ANN_PHONE, "wh-2", t1) };
    assert_eq!(registry.register(elsewhere).await.unwrap().status, DeviceStatus::Pending);

    // A blocked device is refused and left as it was, wherever it goes.
    registry.set_status(&uuid(ANN_PHONE), DeviceStatus::Blocked).await.unwrap();
    let blocked = registry.device(&uuid(ANN_PHONE)).await.unwrap().expect("the device");
    assert_eq!(
        refusal(registry.register(registration(ANN_PHONE, "wh-1", t2)).await),
        (relayhub_registry::codes::DEVICE_BLOCKED, "this device is blocked by the operator".into())
    );
    assert_eq!(registry.device(&uuid(ANN_PHONE)).await.unwrap(), Some(blocked));

    // A late sighting never moves `last_seen` back; an unknown one is no error.
    registry.touch(&uuid(ANN_PHONE), t0).await.unwrap();
    assert_eq!(registry.device(&uuid(ANN_PHONE)).await.unwrap().unwrap().last_seen, t1);
    registry.touch(&uuid(ANN_PHONE), t2).await.unwrap();
    assert_eq!(registry.device(&uuid(ANN_PHONE)).await.unwrap().unwrap().last_seen, t2);
    registry.touch(&uuid(CAT_PHONE), t2).await.unwrap();
    assert_eq!(registry.device(&uuid(CAT_PHONE)).await.unwrap(), None);

    registry.register(registration(BEN_PHONE, "wh-1", t1)).await.unwrap();
    registry.register(registration(CAT_PHONE, "wh-1", t2)).await.unwrap();
    registry.set_status(&uuid(CAT_PHONE), DeviceStatus::Active).await.unwrap();
    let uuids = |found: Vec<RegisteredDevice>| found.into_iter().map(|d| d.device_uuid.to_string()).collect::<Vec<_>>();
    let by_instance = DeviceFilter { status: None, instance_id: Some(instance("wh-1")) };
    assert_eq!(uuids(registry.devices(by_instance, 10).await.unwrap()), [BEN_PHONE, CAT_PHONE]);
    let pending = DeviceFilter { status: Some(DeviceStatus::Pending), instance_id: None };
    assert_eq!(uuids(registry.devices(pending, 10).await.unwrap()), [BEN_PHONE]);
    let blocked_there = DeviceFilter { status: Some(DeviceStatus::Blocked), instance_id: Some(instance("wh-2")) };
    assert_eq!(uuids(registry.devices(blocked_there, 10).await.unwrap()), [ANN_PHONE]);
    assert_eq!(uuids(registry.devices(DeviceFilter::default(), 2).await.unwrap()), [ANN_PHONE, BEN_PHONE]);

    assert_eq!(
        refusal(registry.set_status(&uuid(NOBODY), DeviceStatus::Active).await),
        (ErrorCode::DEVICE_NOT_FOUND, format!("no registered device {NOBODY}"))
    );
    b.close().await;
}

#[tokio::test]
async fn an_instance_token_is_set_replaced_and_read_back() {
    let b = Backend::open().await;
    let tokens: Arc<dyn InstanceTokens> = b.stores.get().unwrap();
    assert_eq!(tokens.instance_token(&instance("wh-1")).await.unwrap(), None);
    tokens.set_instance_token(&instance("wh-1"), SecretHash([1; 32]), noon()).await.unwrap();
    assert_eq!(tokens.instance_token(&instance("wh-1")).await.unwrap(), Some(SecretHash([1; 32])));
    // A new token replaces the old one: the old one opens nothing.
    tokens.set_instance_token(&instance("wh-1"), SecretHash([2; 32]), noon().plus(secs(1))).await.unwrap();
    assert_eq!(tokens.instance_token(&instance("wh-1")).await.unwrap(), Some(SecretHash([2; 32])));
    assert_eq!(tokens.instance_token(&instance("wh-2")).await.unwrap(), None);
    b.close().await;
}

fn new_robot() -> NewRobot {
    NewRobot { robot_model_id: "m-1".into(), robot_model_name: "Porter".into(), public_key: "MCowBQYDK2VwAyEA".into() }
}

/// A ticket for train 7, dated `noon()`'s day, starting at `start`.
fn ticket(user: Uuid, code: &str, start: Timestamp) -> NewTicket {
    NewTicket {
        user_id: user,
        train_number: 7,
        wagon_number: 3,
        place_number: 14,
        date: noon(),
        station_id: "MSK".into(),
        destination_id: "LED".into(),
        start_date: start,
        code: code.into(),
    }
}

#[tokio::test]
async fn rail_rows_belong_to_one_license_and_a_ticket_is_accepted_once() {
    let b = Backend::open().await;
    let base: Arc<dyn BaseStore> = b.stores.get().unwrap();
    let (lic, other) = (b.license("R-1", None).await, b.license("R-2", None).await);
    let all = PageRequest::default();
    let robot = base.add_robot(lic.pk, new_robot()).await.unwrap();
    // Robots sign in before they are known to belong to a license: found by
    // id alone, with theirs.
    assert_eq!(base.robot(robot.id).await.unwrap(), Some((lic.pk, robot.clone())));
    assert_eq!(base.robots(lic.pk, all).await.unwrap().items, vec![robot.clone()]);
    assert_eq!(base.robots(other.pk, all).await.unwrap().total, 0);

    let ann = base.add_passenger(lic.pk, "Ann").await.unwrap();
    assert_eq!(base.passenger(lic.pk, ann.id).await.unwrap(), Some(ann.clone()));
    assert_eq!(base.passenger(other.pk, ann.id).await.unwrap(), None);
    // An identity provider's subject is one passenger per license, made on
    // first sight (a later name changes nothing).
    let kim = base.passenger_by_subject(lic.pk, "kc:1", "Kim").await.unwrap();
    assert_eq!(base.passenger_by_subject(lic.pk, "kc:1", "Renamed").await.unwrap(), kim);
    assert_ne!(base.passenger_by_subject(other.pk, "kc:1", "Kim").await.unwrap().id, kim.id);
    assert_eq!(base.passengers(lic.pk, all).await.unwrap().total, 2);

    assert_eq!(
        refusal(base.add_ticket(other.pk, ticket(ann.id, "t-x", noon())).await),
        (ErrorCode::USER_NOT_FOUND, format!("no passenger {}", ann.id))
    );
    base.add_ticket(lic.pk, ticket(ann.id, "t-2", noon().plus(secs(3600)))).await.unwrap();
    let first = base.add_ticket(lic.pk, ticket(ann.id, "t-1", noon())).await.unwrap();
    base.add_ticket(lic.pk, ticket(kim.id, "t-3", noon())).await.unwrap();
    let codes_of = |page: Page<Ticket>| page.items.into_iter().map(|t| (t.code, t.used)).collect::<Vec<_>>();
    let anns = || base.tickets(lic.pk, Some(ann.id), all);
    assert_eq!(codes_of(anns().await.unwrap()), [("t-1".to_owned(), false), ("t-2".to_owned(), false)], "by start");
    assert_eq!(base.tickets(lic.pk, None, all).await.unwrap().total, 3);
    assert_eq!(base.tickets(other.pk, None, all).await.unwrap().total, 0);

    let porter = base.add_robot(lic.pk, new_robot()).await.unwrap().id;
    let scan = |robot: Uuid, after: u64| TicketScan {
        robot,
        at: noon().plus(secs(after)),
        train_number: Some(7),
        recheck_millis: 60_000,
        zone: chrono_tz::UTC,
    };
    // Another train's or another day's ticket is refused with what it says.
    assert_eq!(
        refusal(base.use_ticket(lic.pk, "t-1", TicketScan { train_number: Some(8), ..scan(robot.id, 0) }).await),
        (codes::TICKET_WRONG_TRAIN, "the ticket is for train 7, not train 8".into())
    );
    assert_eq!(
        refusal(base.use_ticket(lic.pk, "t-1", scan(robot.id, 86_400)).await),
        (codes::TICKET_NOT_TODAY, "the ticket is for 2026-03-10, and today is 2026-03-11 (UTC)".into())
    );
    let accepted = base.use_ticket(lic.pk, "t-1", scan(robot.id, 0)).await.unwrap();
    assert_eq!(accepted, Scanned { ticket: Ticket { used: true, ..first }, repeat: false });
    // The accepting robot's retry within the recheck is answered again ...
    let repeat = base.use_ticket(lic.pk, "t-1", scan(robot.id, 30)).await.unwrap();
    assert_eq!(repeat, Scanned { ticket: accepted.ticket.clone(), repeat: true });
    // ... another robot, or the same one past the recheck, is refused.
    let used = (codes::TICKET_USED, "this ticket was already accepted".to_owned());
    assert_eq!(refusal(base.use_ticket(lic.pk, "t-1", scan(porter, 30)).await), used);
    assert_eq!(refusal(base.use_ticket(lic.pk, "t-1", scan(robot.id, 60)).await), used);
    assert_eq!(
        refusal(base.use_ticket(other.pk, "t-2", scan(robot.id, 0)).await),
        (codes::TICKET_NOT_FOUND, "no ticket with this code".into())
    );
    assert_eq!(codes_of(anns().await.unwrap()), [("t-1".to_owned(), true), ("t-2".to_owned(), false)]);
    b.close().await;
}

fn engineer(login: &str) -> NewEngineer {
    NewEngineer { login: login.into(), password_hash: "$argon2id$test".into(), privileges: 5 }
}

#[tokio::test]
async fn engineer_logins_and_cards_are_unique_within_a_license() {
    let b = Backend::open().await;
    let base: Arc<dyn BaseStore> = b.stores.get().unwrap();
    let (lic, other) = (b.license("R-1", None).await, b.license("R-2", None).await);
    let eve = base.add_engineer(lic.pk, engineer("eve")).await.unwrap();
    assert_eq!(
        refusal(base.add_engineer(lic.pk, engineer("eve")).await),
        (ErrorCode::ALREADY_EXISTS, "an engineer \"eve\" exists".into())
    );
    // Another license is another namespace of logins.
    let their_eve = base.add_engineer(other.pk, engineer("eve")).await.unwrap();
    assert_eq!(base.engineer_by_login(lic.pk, "eve").await.unwrap(), Some((eve.clone(), "$argon2id$test".into())));
    assert_eq!(base.engineers(lic.pk, PageRequest::default()).await.unwrap().items, vec![eve.clone()]);

    let card = SecretHash([5; 32]);
    assert_eq!(
        refusal(base.add_card(other.pk, eve.id, card).await),
        (codes::ENGINEER_NOT_FOUND, format!("no engineer {}", eve.id))
    );
    assert_eq!(base.add_card(lic.pk, eve.id, card).await.unwrap().engineer_id, eve.id);
    assert_eq!(
        refusal(base.add_card(lic.pk, eve.id, card).await),
        (ErrorCode::ALREADY_EXISTS, "this card is registered already".into())
    );
    assert_eq!(base.engineer_by_card(lic.pk, &card).await.unwrap(), Some(eve));
    assert_eq!(base.engineer_by_card(other.pk, &card).await.unwrap(), None);
    // The same key in another license is that license's card.
    base.add_card(other.pk, their_eve.id, card).await.unwrap();
    assert_eq!(base.engineer_by_card(other.pk, &card).await.unwrap(), Some(their_eve));
    b.close().await;
}

fn new_store(name: &str) -> NewStore {
    NewStore {
        name: name.into(),
        description: String::new(),
        logo_url: String::new(),
        store_type: StoreType::Restaurant,
    }
}

fn fields(name: &str, balance: i32, price_penny: i32) -> ItemFields {
    ItemFields {
        name: name.into(),
        description: String::new(),
        logo_url: String::new(),
        balance,
        price_penny,
        category: "food".into(),
    }
}

/// A cart as the capability hands it to the store: lines merged, in item
/// order.
fn cart(user: Uuid, lines: &[(Uuid, i32)], key: Option<&str>) -> NewPurchase {
    let lines: Vec<PurchaseLine> = lines.iter().map(|&(item_id, count)| PurchaseLine { item_id, count }).collect();
    let lines = rules::merge_lines(&lines).unwrap();
    let key = key.map(|key| PurchaseKey {
        caller: "operator".into(),
        key: key.into(),
        fingerprint: rules::purchase_fingerprint(user, &lines, false),
    });
    NewPurchase { user_id: user, lines, is_default_ready: false, robot_id: None, key }
}

async fn balances(shop: &dyn ShopStore, license: LicensePk, items: &[Uuid]) -> Vec<i32> {
    let mut found = Vec::new();
    for id in items {
        found.push(shop.item(license, *id).await.unwrap().expect("the item").balance);
    }
    found
}

#[tokio::test]
async fn purchases_take_all_or_nothing_and_a_deleted_store_keeps_its_tasks() {
    let b = Backend::open().await;
    let shop: Arc<dyn ShopStore> = b.stores.get().unwrap();
    let sessions: Arc<dyn RailSessions> = b.stores.get().unwrap();
    let (lic, other) = (b.license("R-1", None).await, b.license("R-2", None).await);
    let all = PageRequest::default();
    let bistro = shop.add_store(lic.pk, new_store("Bistro")).await.unwrap();
    let kiosk = shop.add_store(lic.pk, new_store("Kiosk")).await.unwrap();
    assert_eq!(shop.store(lic.pk, bistro.id).await.unwrap(), Some(bistro.clone()));
    assert_eq!(shop.store(other.pk, bistro.id).await.unwrap(), None);
    assert_eq!(
        refusal(shop.add_item(other.pk, bistro.id, fields("tea", 1, 1)).await),
        (codes::STORE_NOT_FOUND, format!("no store {}", bistro.id))
    );
    let tea = shop.add_item(lic.pk, bistro.id, fields("tea", 3, 150)).await.unwrap();
    let cake = shop.add_item(lic.pk, bistro.id, fields("cake", 1, 400)).await.unwrap();
    let gum = shop.add_item(lic.pk, kiosk.id, fields("gum", 5, 50)).await.unwrap();
    let user = Uuid::new_v4();

    let bought = shop.purchase(lic.pk, cart(user, &[(tea.id, 2), (cake.id, 1)], None), noon()).await.unwrap();
    assert!(!bought.replayed);
    assert_eq!((bought.purchase.store_id, bought.purchase.date), (bistro.id, noon()));
    assert_eq!(balances(shop.as_ref(), lic.pk, &[tea.id, cake.id]).await, [1, 0]);
    // One line past its balance refuses the whole cart: no tea either.
    assert_eq!(
        refusal(shop.purchase(lic.pk, cart(user, &[(tea.id, 1), (cake.id, 1)], None), noon()).await),
        (codes::INSUFFICIENT_BALANCE, format!("item {} has 0 left", cake.id))
    );
    assert_eq!(
        refusal(shop.purchase(lic.pk, cart(user, &[(tea.id, 1), (gum.id, 1)], None), noon()).await),
        (ErrorCode::INVALID_FIELD, "items: every item of a purchase must be from one store".into())
    );
    assert_eq!(
        refusal(shop.purchase(other.pk, cart(user, &[(tea.id, 1)], None), noon()).await),
        (codes::ITEM_NOT_FOUND, format!("no item {}", tea.id))
    );
    assert_eq!(balances(shop.as_ref(), lic.pk, &[tea.id, cake.id, gum.id]).await, [1, 0, 5]);

    // A retry with the caller's key answers the first purchase, even with
    // the stock gone since; the key on another cart is refused.
    let later = noon().plus(secs(60));
    let keyed = shop.purchase(lic.pk, cart(user, &[(tea.id, 1)], Some("k-1")), later).await.unwrap();
    let retried = shop.purchase(lic.pk, cart(user, &[(tea.id, 1)], Some("k-1")), later.plus(secs(1))).await.unwrap();
    assert!(retried.replayed && retried.purchase == keyed.purchase);
    assert_eq!(balances(shop.as_ref(), lic.pk, &[tea.id]).await, [0]);
    assert_eq!(
        refusal(shop.purchase(lic.pk, cart(user, &[(tea.id, 2)], Some("k-1")), later).await),
        (ErrorCode::IDEMPOTENCY_KEY_REUSED, "idempotency key \"k-1\" was used for a different purchase".into())
    );

    let open = shop.tasks(lic.pk, bistro.id, Some(false), all).await.unwrap().items;
    assert_eq!(open.iter().map(|t| t.id).collect::<Vec<_>>(), [bought.purchase.task_id, keyed.purchase.task_id]);
    assert_eq!((open[0].purchase_id, open[0].created_at), (bought.purchase.id, noon()));
    assert_eq!(open[0].additional_data, json!({ "items": bought.purchase.items }));
    assert_eq!(
        refusal(shop.task_ready(lic.pk, kiosk.id, open[0].id).await),
        (codes::TASK_NOT_FOUND, format!("no task {} in this store", open[0].id))
    );
    assert!(shop.task_ready(lic.pk, bistro.id, open[0].id).await.unwrap().is_ready);
    let ready = shop.tasks(lic.pk, bistro.id, Some(true), all).await.unwrap().items;
    assert_eq!(ready.iter().map(|t| t.id).collect::<Vec<_>>(), [open[0].id]);
    assert_eq!(shop.task(other.pk, open[0].id).await.unwrap(), None);

    // An update changes the fields it names; the stock stays as it is.
    let reprice = ItemPatch { price_penny: Some(175), ..ItemPatch::default() };
    let repriced = shop.update_item(lic.pk, Some(bistro.id), tea.id, reprice.clone()).await.unwrap();
    assert_eq!(repriced, relayhub_rail::model::Item { price_penny: 175, balance: 0, ..tea.clone() });
    assert_eq!(
        refusal(shop.update_item(lic.pk, Some(kiosk.id), tea.id, reprice).await),
        (codes::ITEM_NOT_FOUND, format!("no item {}", tea.id))
    );

    let token = SecretHash([3; 32]);
    shop.set_store_token(lic.pk, bistro.id, token).await.unwrap();
    assert_eq!(shop.store_by_token(&token).await.unwrap(), Some((lic.pk, bistro.id)));
    shop.set_store_key(lic.pk, bistro.id, "staff-key").await.unwrap();
    assert_eq!(shop.store_key(bistro.id).await.unwrap(), Some((lic.pk, "staff-key".into())));
    let staff = SecretHash([4; 32]);
    sessions.add_session(staff, lic.pk, Subject::Store(bistro.id), noon().plus(secs(3600))).await.unwrap();
    assert!(sessions.session(&staff, noon()).await.unwrap().is_some());
    assert_eq!(refusal(shop.delete_store(other.pk, bistro.id, noon()).await).0, codes::STORE_NOT_FOUND);
    // Deleting hides the store and its items and retires its token, key and
    // sessions; its purchases' tasks stay readable.
    shop.delete_store(lic.pk, bistro.id, later).await.unwrap();
    assert_eq!(shop.store(lic.pk, bistro.id).await.unwrap(), None);
    assert_eq!(shop.stores(lic.pk, all).await.unwrap().items, vec![kiosk]);
    assert_eq!(shop.items(lic.pk, Some(bistro.id), all).await.unwrap().total, 0);
    assert_eq!(shop.item(lic.pk, tea.id).await.unwrap(), None);
    assert_eq!(shop.store_by_token(&token).await.unwrap(), None);
    assert_eq!(shop.store_key(bistro.id).await.unwrap(), None);
    assert_eq!(sessions.session(&staff, noon()).await.unwrap(), None);
    assert_eq!(shop.tasks(lic.pk, bistro.id, None, all).await.unwrap().total, 2);
    assert!(shop.task(lic.pk, keyed.purchase.task_id).await.unwrap().is_some());
    assert_eq!(
        refusal(shop.delete_store(lic.pk, bistro.id, later).await),
        (codes::STORE_NOT_FOUND, format!("no store {}", bistro.id))
    );
    b.close().await;
}

#[tokio::test]
async fn a_nonce_is_taken_once_by_its_subject_and_sessions_end_at_expiry() {
    let b = Backend::open().await;
    let sessions: Arc<dyn RailSessions> = b.stores.get().unwrap();
    let lic = b.license("R-1", None).await;
    let (robot, store) = (Uuid::new_v4(), Uuid::new_v4());
    let (now, expiry) = (noon(), noon().plus(secs(60)));
    sessions.add_nonce("n-1", lic.pk, Subject::Robot(robot), expiry).await.unwrap();
    // Not by another subject, not even one with the same id.
    assert!(!sessions.take_nonce("n-1", Subject::Robot(store), now).await.unwrap());
    assert!(!sessions.take_nonce("n-1", Subject::Store(robot), now).await.unwrap());
    assert!(sessions.take_nonce("n-1", Subject::Robot(robot), now).await.unwrap());
    assert!(!sessions.take_nonce("n-1", Subject::Robot(robot), now).await.unwrap(), "a nonce is taken once");
    sessions.add_nonce("n-2", lic.pk, Subject::Robot(robot), expiry).await.unwrap();
    assert!(!sessions.take_nonce("n-2", Subject::Robot(robot), expiry).await.unwrap(), "expired at its expiry");
    sessions.add_nonce("n-3", lic.pk, Subject::Store(store), expiry.plus(secs(60))).await.unwrap();

    let (short, long) = (SecretHash([1; 32]), SecretHash([2; 32]));
    sessions.add_session(short, lic.pk, Subject::Store(store), expiry).await.unwrap();
    sessions.add_session(long, lic.pk, Subject::Robot(robot), expiry.plus(secs(60))).await.unwrap();
    assert_eq!(sessions.session(&short, now).await.unwrap(), Some((lic.pk, Subject::Store(store))));
    assert_eq!(sessions.session(&short, expiry).await.unwrap(), None);
    assert_eq!(sessions.session(&SecretHash([9; 32]), now).await.unwrap(), None);

    // What has expired goes (n-2 and the short session), the rest stays.
    assert_eq!(sessions.purge_expired(expiry).await.unwrap(), 2);
    assert_eq!(sessions.purge_expired(expiry).await.unwrap(), 0);
    assert_eq!(sessions.session(&long, expiry).await.unwrap(), Some((lic.pk, Subject::Robot(robot))));
    assert!(sessions.take_nonce("n-3", Subject::Store(store), expiry).await.unwrap());
    b.close().await;
}

#[tokio::test]
async fn faces_are_enrolled_up_to_the_limit_and_forgotten_only_by_their_license() {
    let b = Backend::open().await;
    let base: Arc<dyn BaseStore> = b.stores.get().unwrap();
    let faces: Arc<dyn FaceStore> = b.stores.get().unwrap();
    let (lic, other) = (b.license("R-1", None).await, b.license("R-2", None).await);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    b.bus.subscribe::<FaceEvent>(move |e| {
        if let Delivery::Event(event) = e {
            seen.lock().unwrap().push(event.clone());
        }
    });
    let ann = base.add_passenger(lic.pk, "Ann").await.unwrap().id;
    let ben = base.add_passenger(other.pk, "Ben").await.unwrap().id;
    let first = faces.enrol(lic.pk, ann, vec![1.0, 0.0], 2, noon()).await.unwrap();
    let second = faces.enrol(lic.pk, ann, vec![0.0, 1.0], 2, noon().plus(secs(1))).await.unwrap();
    assert_eq!((first.user_id, first.created_at), (ann, noon()));
    assert_eq!(
        refusal(faces.enrol(lic.pk, ann, vec![0.6, 0.8], 2, noon()).await),
        (codes::FACE_LIMIT, "the passenger has 2 faces enrolled; forget them first".into())
    );
    assert_eq!(
        refusal(faces.enrol(other.pk, ann, vec![0.6, 0.8], 2, noon()).await),
        (ErrorCode::USER_NOT_FOUND, format!("no passenger {ann}"))
    );
    let bens = faces.enrol(other.pk, ben, vec![0.6, 0.8], 2, noon()).await.unwrap();
    assert_eq!(faces.faces_of(lic.pk, ann).await.unwrap(), vec![first.clone(), second.clone()], "oldest first");
    assert_eq!(faces.faces_of(other.pk, ann).await.unwrap(), vec![]);
    let stored = StoredFace { license: lic.pk, id: first.id, user_id: ann, embedding: vec![1.0, 0.0] };
    assert_eq!(faces.face(first.id).await.unwrap(), Some(stored));

    // The index is rebuilt from every license's faces, in id order, page by page.
    let mut ids = vec![first.id, second.id, bens.id];
    ids.sort();
    let page = |after, limit| {
        let faces = faces.clone();
        async move { faces.faces_after(after, limit).await.unwrap().into_iter().map(|f| f.id).collect::<Vec<_>>() }
    };
    assert_eq!(page(None, 10).await, ids);
    assert_eq!(page(Some(ids[0]), 1).await, [ids[1]]);
    assert_eq!(page(Some(ids[2]), 10).await, Vec::<Uuid>::new());

    assert_eq!(faces.forget(other.pk, ann).await.unwrap(), 0, "not theirs to forget");
    assert_eq!(faces.faces_of(lic.pk, ann).await.unwrap().len(), 2);
    assert_eq!(faces.forget(lic.pk, ann).await.unwrap(), 2);
    assert_eq!(faces.forget(lic.pk, ann).await.unwrap(), 0);
    assert_eq!(faces.faces_of(lic.pk, ann).await.unwrap(), vec![]);
    assert_eq!(faces.face(first.id).await.unwrap(), None);
    assert_eq!(page(None, 10).await, [bens.id]);

    // Each enrolment, with its vector, and the one forgetting that deleted
    // something are announced once committed.
    let enrolled = |face: &relayhub_rail::face::Face, license: LicensePk, embedding: Vec<f32>| FaceEvent::Enrolled {
        license,
        id: face.id,
        user_id: face.user_id,
        embedding: Some(embedding),
    };
    assert_eq!(
        *events.lock().unwrap(),
        [
            enrolled(&first, lic.pk, vec![1.0, 0.0]),
            enrolled(&second, lic.pk, vec![0.0, 1.0]),
            enrolled(&bens, other.pk, vec![0.6, 0.8]),
            FaceEvent::Forgotten { license: lic.pk, user_id: ann },
        ]
    );
    b.close().await;
}
