//! Signaling on the embedded backend: one node, so the state lives in its
//! memory (sockets do not outlive the process, nor does their state).

use std::sync::Arc;

use relayhub_core::backend::Stores;
use relayhub_signal::store::{MemoryStore, SignalStore};

use crate::SqliteStore;

/// Offers the signal capability's store.
pub(crate) fn provide(store: &Arc<SqliteStore>, stores: &mut Stores) {
    stores.provide::<dyn SignalStore>(Arc::new(MemoryStore::new(store.bus.clone())));
}
