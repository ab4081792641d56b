//! The capabilities this server is made of. Start-up, `/readyz`,
//! `/metrics`, the configuration, the OpenAPI document, the command line
//! and shutdown all loop over this list: adding a capability is one line
//! here (and its crate, and its module in each backend).

use std::sync::Arc;

use relayhub_core::backend::Stores;
use relayhub_core::capability::{Module, module};
use relayhub_core::identity::Accounts;
use relayhub_fleet::Fleet;
use relayhub_fleet::accounts::FleetAccounts;
use relayhub_rail::Rail;
use relayhub_registry::Registry;
use relayhub_relay::Relay;
use relayhub_signal::Signal;

/// Every capability, in the order they are built.
pub fn modules() -> Vec<Box<dyn Module>> {
    vec![module::<Relay>(), module::<Signal>(), module::<Fleet>(), module::<Registry>(), module::<Rail>()]
}

/// Who signs in: the fleet's users, whose access tokens other capabilities
/// (call signaling) accept through [`Accounts`] without depending on the
/// fleet.
pub fn accounts(stores: &Stores) -> Result<Arc<dyn Accounts>, String> {
    Ok(Arc::new(FleetAccounts::new(stores)?))
}
