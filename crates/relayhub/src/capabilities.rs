//! The capabilities this server is made of. Start-up, `/readyz`,
//! `/metrics`, the configuration, the OpenAPI document, the command line
//! and shutdown all loop over this list: adding a capability is one line
//! here (and its crate, and its module in each backend).

use relayhub_core::capability::{Module, module};
use relayhub_fleet::Fleet;
use relayhub_registry::Registry;
use relayhub_relay::Relay;
use relayhub_signal::Signal;

/// Every capability, in the order they are built.
pub fn modules() -> Vec<Box<dyn Module>> {
    vec![module::<Relay>(), module::<Signal>(), module::<Fleet>(), module::<Registry>()]
}
