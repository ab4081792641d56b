//! What the operator does through the admin routes, as methods the API's
//! handlers and the console's forms both call: one set of rules (bounds,
//! messages) and one store call for each.

use relayhub_core::ids::LicensePk;
use relayhub_core::secret::Secret;
use uuid::Uuid;

use super::admin::{CardRequest, EngineerRequest, TicketRequest, UserRequest};
use super::store::{ItemRequest, StoreRequest, StoreToken, whole};
use super::{RailError, RailResult, text};
use crate::Rail;
use crate::codes;
use crate::model::*;
use crate::rules;

/// Stores and items (`/store_api`).
impl Rail {
    /// Opens a store (`POST /store_api/admin/store`).
    pub async fn open_store(&self, license: LicensePk, r: StoreRequest) -> RailResult<Store> {
        text("name", &r.name, 1, 100)?;
        text("description", &r.description, 0, 255)?;
        text("logo_url", &r.logo_url, 0, 255)?;
        let new = NewStore { name: r.name, description: r.description, logo_url: r.logo_url, store_type: r.store_type };
        Ok(self.shops.add_store(license, new).await?)
    }

    /// Issues a store staff's token, replacing the previous one: the
    /// answer is the only time it is seen (it is kept hashed).
    pub async fn issue_store_token(&self, license: LicensePk, store: Uuid) -> RailResult<StoreToken> {
        let token = Secret::generate(codes::STORE_TOKEN);
        self.shops.set_store_token(license, store, token.hash()).await?;
        Ok(StoreToken { token: token.expose().to_owned() })
    }

    /// Adds an item to a store of the license (`store_not_found` otherwise).
    pub async fn add_item_to(&self, license: LicensePk, store: Uuid, r: ItemRequest) -> RailResult<Item> {
        Ok(self.shops.add_item(license, store, r.fields()?).await?)
    }

    /// Sets an item's stock, its other fields kept: `item_not_found`
    /// unless the item is in the license (and in `store`, when given).
    pub async fn set_item_balance(
        &self,
        license: LicensePk,
        store: Option<Uuid>,
        id: Uuid,
        balance: i64,
    ) -> RailResult<Item> {
        let patch = ItemPatch { balance: Some(whole("balance", balance)?), ..ItemPatch::default() };
        Ok(self.shops.update_item(license, store, id, patch).await?)
    }
}

/// Passengers, tickets, engineers and cards (`/base_api/admin`).
impl Rail {
    /// Adds a passenger (`POST /base_api/admin/user`).
    pub async fn add_passenger(&self, license: LicensePk, r: UserRequest) -> RailResult<Passenger> {
        text("name", &r.name, 1, 60)?;
        Ok(self.base.add_passenger(license, &r.name).await?)
    }

    /// Issues a ticket with a generated code (`POST /base_api/admin/ticket`):
    /// `user_not_found` unless the passenger is the license's.
    pub async fn issue_ticket(&self, license: LicensePk, r: TicketRequest) -> RailResult<Ticket> {
        for (name, value) in
            [("train_number", r.train_number), ("wagon_number", r.wagon_number), ("place_number", r.place_number)]
        {
            if value < 0 {
                return Err(RailError::field(name, "at least 0"));
            }
        }
        text("station_id", &r.station_id, 1, 60)?;
        text("destination_id", &r.destination_id, 1, 60)?;
        let ticket = NewTicket {
            user_id: r.user_id,
            train_number: r.train_number,
            wagon_number: r.wagon_number,
            place_number: r.place_number,
            date: r.date,
            station_id: r.station_id,
            destination_id: r.destination_id,
            start_date: r.start_date,
            code: rules::random_code(),
        };
        Ok(self.base.add_ticket(license, ticket).await?)
    }

    /// Creates an engineer, the password kept as Argon2id
    /// (`POST /base_api/admin/engineer`): `already_exists` for a taken login.
    pub async fn add_engineer(&self, license: LicensePk, r: EngineerRequest) -> RailResult<Engineer> {
        text("login", &r.login, 1, 60)?;
        text("password", &r.password, 8, 200)?;
        let privileges =
            rules::check_privileges(r.privileges).map_err(|e| RailError::field("privileges", e.message))?;
        let password_hash = relayhub_core::password::hash(r.password).await?;
        Ok(self.base.add_engineer(license, NewEngineer { login: r.login, password_hash, privileges }).await?)
    }

    /// Gives an engineer an access card, its key kept hashed
    /// (`POST /base_api/admin/engineer/{id}/card`): `engineer_not_found`
    /// unless the engineer is the license's.
    pub async fn add_card(&self, license: LicensePk, engineer: Uuid, r: CardRequest) -> RailResult<AuthCard> {
        text("key", &r.key, 1, 256)?;
        Ok(self.base.add_card(license, engineer, Secret::new(r.key).hash()).await?)
    }
}
