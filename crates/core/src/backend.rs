//! A storage backend as the platform sees it: its lifecycle, the core
//! stores every capability shares, and each capability's own store traits,
//! found by type.
//!
//! A backend crate opens its database and hands back one [`Stores`]: the
//! core stores, and whatever each of its capability modules provides with
//! [`Stores::provide`] (one line per capability in the backend). A
//! capability takes its traits with [`Stores::get`]; it never learns which
//! backend it runs on.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::capability::BuildError;
use crate::devices::{DeviceStore, PresenceStore};
use crate::identity::IdentityStore;
use crate::store::StoreResult;

/// A backend's lifecycle.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and `/metrics`.
    fn kind(&self) -> &'static str;
    /// This process starts serving: it forgets connections recorded as open
    /// that did not close cleanly (a crash), and, with several nodes, joins
    /// them (heartbeat, their events). Called once by `serve`.
    async fn start_serving(&self) -> StoreResult<()>;
    /// A cheap round trip: readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// Commits what is waiting and stops accepting writes.
    async fn close(&self);
}

/// One opened backend, seen through its store traits. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub backend: Arc<dyn Backend>,
    pub identity: Arc<dyn IdentityStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub presence: Arc<dyn PresenceStore>,
    capabilities: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Stores {
    pub fn new(
        backend: Arc<dyn Backend>,
        identity: Arc<dyn IdentityStore>,
        devices: Arc<dyn DeviceStore>,
        presence: Arc<dyn PresenceStore>,
    ) -> Self {
        Self { backend, identity, devices, presence, capabilities: HashMap::new() }
    }

    /// Offers a capability's store trait (`Arc<dyn QueueStore>`, …).
    pub fn provide<T: ?Sized + Send + Sync + 'static>(&mut self, store: Arc<T>) {
        self.capabilities.insert(TypeId::of::<Arc<T>>(), Arc::new(store));
    }

    /// A store trait a capability module of this backend provided.
    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> Result<Arc<T>, BuildError> {
        self.capabilities
            .get(&TypeId::of::<Arc<T>>())
            .and_then(|s| s.downcast_ref::<Arc<T>>())
            .cloned()
            .ok_or_else(|| BuildError::MissingStore { backend: self.backend.kind(), store: std::any::type_name::<T>() })
    }

    /// Commits what is pending and closes the backend.
    pub async fn close(&self) {
        self.backend.close().await;
    }
}
