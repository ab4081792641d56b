//! What the rail capability needs from storage. Every call names its
//! license; a row of another license is "not found". The two races of
//! seed 004 (the last unit of an item, one ticket scanned by several
//! robots) are decided inside one statement or transaction of the
//! database, never by reading first and writing after.

use async_trait::async_trait;
use relayhub_core::ids::LicensePk;
use relayhub_core::secret::SecretHash;
use relayhub_core::store::{Page, PageRequest, StoreResult};
use relayhub_core::time::Timestamp;
use uuid::Uuid;

use crate::model::*;

/// Robots of the base service, by license.
#[async_trait]
pub trait RailRobots: Send + Sync + 'static {
    async fn add_robot(&self, license: LicensePk, robot: NewRobot) -> StoreResult<Robot>;
    /// A robot of any license, by id: robots sign in before they are
    /// known to belong to one.
    async fn robot(&self, id: Uuid) -> StoreResult<Option<(LicensePk, Robot)>>;
    async fn robots(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<Robot>>;
}

/// Passengers, and the identity provider's subjects they map to.
#[async_trait]
pub trait Passengers: Send + Sync + 'static {
    async fn add_passenger(&self, license: LicensePk, name: &str) -> StoreResult<Passenger>;
    async fn passenger(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Passenger>>;
    async fn passengers(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<Passenger>>;
    /// The passenger an identity provider's subject maps to
    /// (`keycloak_users`), created with `name` on first sight.
    async fn passenger_by_subject(&self, license: LicensePk, subject: &str, name: &str) -> StoreResult<Passenger>;
}

/// Tickets and the robots' scans of them.
#[async_trait]
pub trait Tickets: Send + Sync + 'static {
    /// `user_not_found` when the passenger is not in the license.
    async fn add_ticket(&self, license: LicensePk, ticket: NewTicket) -> StoreResult<Ticket>;
    /// Tickets by `start_date`, of one passenger or all.
    async fn tickets(&self, license: LicensePk, user: Option<Uuid>, page: PageRequest) -> StoreResult<Page<Ticket>>;
    /// Decides a robot's scan of the ticket with `code` by
    /// [`crate::rules::ticket_verdict`], reading and marking it in one
    /// transaction: of concurrent scans by different robots exactly one is
    /// accepted (the others get `ticket_used`), and the accepting robot's
    /// repeats are answered again; an unknown code is `ticket_not_found`.
    async fn use_ticket(&self, license: LicensePk, code: &str, scan: TicketScan) -> StoreResult<Scanned>;
}

/// Service engineers and the cards they sign in with.
#[async_trait]
pub trait Engineers: Send + Sync + 'static {
    /// `already_exists` when the login is taken in the license.
    async fn add_engineer(&self, license: LicensePk, engineer: NewEngineer) -> StoreResult<Engineer>;
    async fn engineers(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<Engineer>>;
    /// An engineer and its password hash, by login.
    async fn engineer_by_login(&self, license: LicensePk, login: &str) -> StoreResult<Option<(Engineer, String)>>;
    /// `engineer_not_found`; `already_exists` when the card is registered.
    async fn add_card(&self, license: LicensePk, engineer: Uuid, key: SecretHash) -> StoreResult<AuthCard>;
    async fn engineer_by_card(&self, license: LicensePk, key: &SecretHash) -> StoreResult<Option<Engineer>>;
}

/// Places near destinations, and the stores on trains.
#[async_trait]
pub trait Places: Send + Sync + 'static {
    async fn add_place(&self, license: LicensePk, kind: PlaceKind, place: NewPlace) -> StoreResult<Place>;
    /// Places by name, near one destination or all.
    async fn places(
        &self,
        license: LicensePk,
        kind: PlaceKind,
        destination: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Place>>;

    /// `store_not_found` when the store is not in the license (or deleted).
    async fn add_train_store(
        &self,
        license: LicensePk,
        store: Uuid,
        train_number: i32,
        train_date: Timestamp,
    ) -> StoreResult<TrainStore>;
    async fn train_stores(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<TrainStore>>;
    /// The stores (not deleted) on a train whose date is in `from..until`.
    async fn stores_on_train(
        &self,
        license: LicensePk,
        train_number: i32,
        from: Timestamp,
        until: Timestamp,
        page: PageRequest,
    ) -> StoreResult<Page<Store>>;
}

/// Seed 004's base service: robots, passengers, tickets, engineers, places.
/// What a handler that needs several of them takes.
pub trait BaseStore: RailRobots + Passengers + Tickets + Engineers + Places {}
impl<T: RailRobots + Passengers + Tickets + Engineers + Places> BaseStore for T {}

/// Stores of the store service (a store, not the storage).
#[async_trait]
pub trait Shops: Send + Sync + 'static {
    async fn add_store(&self, license: LicensePk, store: NewStore) -> StoreResult<Store>;
    /// Stores not deleted, oldest first.
    async fn stores(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<Store>>;
    /// A store not deleted.
    async fn store(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Store>>;
    /// Hides the store and its items and retires its credentials; its
    /// purchases and tasks stay. `store_not_found` when unknown.
    async fn delete_store(&self, license: LicensePk, id: Uuid, at: Timestamp) -> StoreResult<()>;
}

/// The secrets a store's staff sign in with.
#[async_trait]
pub trait ShopCredentials: Send + Sync + 'static {
    /// Sets (or replaces) the store staff's token.
    async fn set_store_token(&self, license: LicensePk, store: Uuid, token: SecretHash) -> StoreResult<()>;
    /// The store a staff token opens (not deleted).
    async fn store_by_token(&self, token: &SecretHash) -> StoreResult<Option<(LicensePk, Uuid)>>;
    /// Registers (or replaces) the store staff's public key (`active_stores`).
    async fn set_store_key(&self, license: LicensePk, store: Uuid, public_key: &str) -> StoreResult<()>;
    /// A store's public key, whatever its license.
    async fn store_key(&self, store: Uuid) -> StoreResult<Option<(LicensePk, String)>>;
}

/// Items of the stores.
#[async_trait]
pub trait Items: Send + Sync + 'static {
    /// Items not deleted, of one store or all, oldest first.
    async fn items(&self, license: LicensePk, store: Option<Uuid>, page: PageRequest) -> StoreResult<Page<Item>>;
    async fn item(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Item>>;
    /// `store_not_found` when the store is not in the license.
    async fn add_item(&self, license: LicensePk, store: Uuid, item: ItemFields) -> StoreResult<Item>;
    /// Changes the fields the patch names, in one statement (the others
    /// keep their stored values); `item_not_found` unless it exists in the
    /// license (and in `store`, when given).
    async fn update_item(
        &self,
        license: LicensePk,
        store: Option<Uuid>,
        id: Uuid,
        patch: ItemPatch,
    ) -> StoreResult<Item>;
    /// Hides an item; purchases of it stay. `item_not_found` as above.
    async fn delete_item(&self, license: LicensePk, store: Option<Uuid>, id: Uuid, at: Timestamp) -> StoreResult<()>;
}

/// Purchases and the tasks they make for a store.
#[async_trait]
pub trait Purchases: Send + Sync + 'static {
    /// Lowers every line's item balance and records the purchase and its
    /// task, in one transaction: `item_not_found`, 422 when the items are
    /// of several stores, `insufficient_balance` when any balance would go
    /// below zero (then nothing changed). With a key the caller used before
    /// it answers that purchase and changes nothing — decided inside the
    /// transaction, so concurrent retries make one purchase — or, when the
    /// fingerprint differs, `idempotency_key_reused`.
    async fn purchase(&self, license: LicensePk, purchase: NewPurchase, at: Timestamp) -> StoreResult<Purchased>;
    /// A store's tasks, oldest first, ready or not or both.
    async fn tasks(
        &self,
        license: LicensePk,
        store: Uuid,
        is_ready: Option<bool>,
        page: PageRequest,
    ) -> StoreResult<Page<Task>>;
    async fn task(&self, license: LicensePk, id: Uuid) -> StoreResult<Option<Task>>;
    /// Marks a store's task ready; `task_not_found` unless it is the store's.
    async fn task_ready(&self, license: LicensePk, store: Uuid, id: Uuid) -> StoreResult<Task>;
}

/// Seed 004's store service: stores, items, purchases and their tasks.
/// What a handler that needs several of them takes.
pub trait ShopStore: Shops + ShopCredentials + Items + Purchases {}
impl<T: Shops + ShopCredentials + Items + Purchases> ShopStore for T {}

/// Challenges and sessions of robots and store staff who sign in with keys.
#[async_trait]
pub trait RailSessions: Send + Sync + 'static {
    /// Records a challenge's nonce for `subject`.
    async fn add_nonce(&self, nonce: &str, license: LicensePk, subject: Subject, expires: Timestamp)
    -> StoreResult<()>;
    /// Consumes a nonce: `true` once, for its subject, before it expires;
    /// `false` after (of concurrent calls, one gets `true`).
    async fn take_nonce(&self, nonce: &str, subject: Subject, now: Timestamp) -> StoreResult<bool>;
    async fn add_session(
        &self,
        token: SecretHash,
        license: LicensePk,
        subject: Subject,
        expires: Timestamp,
    ) -> StoreResult<()>;
    /// The license and subject of a session that has not expired.
    async fn session(&self, token: &SecretHash, now: Timestamp) -> StoreResult<Option<(LicensePk, Subject)>>;
    /// Forgets expired nonces and sessions; answers how many.
    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64>;
}

/// A license's rail rows, deleted with the license.
#[async_trait]
pub trait RailData: Send + Sync + 'static {
    /// Deletes every row of [`LICENSE_TABLES`] of the license, in one
    /// commit (its faces must be gone first: they name its passengers).
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()>;
}

/// What a license delete takes of the rail's tables, children before their
/// parents; `{license}` is the license's pk as the backend binds it.
pub const LICENSE_TABLES: &[&str] = &[
    "DELETE FROM rail_purchase_items WHERE purchase_id IN (SELECT id FROM rail_purchases WHERE license_pk = {license})",
    "DELETE FROM rail_tasks WHERE license_pk = {license}",
    "DELETE FROM rail_purchases WHERE license_pk = {license}",
    "DELETE FROM rail_store_items WHERE license_pk = {license}",
    "DELETE FROM rail_active_stores WHERE license_pk = {license}",
    "DELETE FROM rail_train_stores WHERE license_pk = {license}",
    "DELETE FROM rail_stores WHERE license_pk = {license}",
    "DELETE FROM rail_auth_cards WHERE license_pk = {license}",
    "DELETE FROM rail_engineers WHERE license_pk = {license}",
    "DELETE FROM rail_tickets WHERE license_pk = {license}",
    "DELETE FROM rail_keycloak_users WHERE license_pk = {license}",
    "DELETE FROM rail_hotels WHERE license_pk = {license}",
    "DELETE FROM rail_attractions WHERE license_pk = {license}",
    "DELETE FROM rail_nonces WHERE license_pk = {license}",
    "DELETE FROM rail_sessions WHERE license_pk = {license}",
    "DELETE FROM rail_robots WHERE license_pk = {license}",
    "DELETE FROM rail_users WHERE license_pk = {license}",
];

/// Enrolled face embeddings (unit vectors), per license.
#[async_trait]
pub trait FaceStore: Send + Sync + 'static {
    /// Stores a face of a passenger and announces it
    /// ([`crate::face::FaceEvent::Enrolled`]): `user_not_found` when the
    /// passenger is not in the license, `face_limit` when they have
    /// `max_per_user` faces already.
    async fn enrol(
        &self,
        license: LicensePk,
        user: Uuid,
        embedding: Vec<f32>,
        max_per_user: u32,
        at: Timestamp,
    ) -> StoreResult<crate::face::Face>;
    /// A passenger's faces, oldest first (at most `max_per_user` exist).
    async fn faces_of(&self, license: LicensePk, user: Uuid) -> StoreResult<Vec<crate::face::Face>>;
    /// A face of any license, with its embedding.
    async fn face(&self, id: Uuid) -> StoreResult<Option<crate::face::StoredFace>>;
    /// Deletes every face of a passenger, overwriting the rows' bytes where
    /// the database can, and announces it; answers how many.
    async fn forget(&self, license: LicensePk, user: Uuid) -> StoreResult<u64>;
    /// Deletes every face of a license as [`FaceStore::forget`] does for
    /// one passenger (overwritten, announced per passenger).
    async fn forget_license(&self, license: LicensePk) -> StoreResult<u64>;
    /// Every face of every license, by id after `after`, at most `limit`:
    /// what the index is rebuilt from.
    async fn faces_after(&self, after: Option<Uuid>, limit: usize) -> StoreResult<Vec<crate::face::StoredFace>>;
}
