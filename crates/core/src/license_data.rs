//! A license's data where it is kept: each capability that keeps any adds
//! a [`LicenseData`] to the platform's [`LicenseBoard`] when it is built,
//! and the operator API asks the board what a license uses and, when the
//! license is deleted, to forget it. So the admin capability knows no
//! other capability's tables, and a new capability's data is measured and
//! deleted with the license by adding its source.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::identity::License;
use crate::ids::LicensePk;
use crate::store::StoreResult;
use crate::time::Timestamp;

/// A license's usage, as one page or script reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    /// Devices bound to it.
    pub devices_bound: u64,
    /// Of those, connected now (to a live node).
    pub devices_online: u64,
    /// Messages queued for its devices and not yet acknowledged.
    pub messages_queued: u64,
    /// Records its devices sent that its accounting system has not taken.
    pub inbox_waiting: u64,
    /// Telemetry points its robots wrote in the last 24 hours (counted by
    /// the stored chunks that end within them).
    pub telemetry_points_day: u64,
    /// Bytes its robots' telemetry takes in the database (compressed).
    pub telemetry_bytes: u64,
}

/// One capability's part of a license's data.
#[async_trait]
pub trait LicenseData: Send + Sync + 'static {
    /// Adds what it keeps of `license` to `usage`; `now` is the instant the
    /// measure is taken at (for "the last day").
    async fn measure(&self, license: LicensePk, now: Timestamp, usage: &mut Usage) -> StoreResult<()>;

    /// Deletes everything it keeps of `license`, in the store and in
    /// memory. Called once the license is suspended (so nothing new
    /// arrives), before the license itself goes; called again after an
    /// interruption, it deletes what is left.
    async fn forget(&self, license: &License) -> StoreResult<()>;
}

/// The license data of every capability built. Cheap to clone.
#[derive(Clone, Default)]
pub struct LicenseBoard(Arc<RwLock<Vec<Arc<dyn LicenseData>>>>);

impl LicenseBoard {
    /// Adds a capability's source (when it is built).
    pub fn add(&self, source: Arc<dyn LicenseData>) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).push(source);
    }

    fn sources(&self) -> Vec<Arc<dyn LicenseData>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The usage of `license` now, from every source.
    pub async fn measure(&self, license: LicensePk) -> StoreResult<Usage> {
        let (mut usage, now) = (Usage::default(), Timestamp::now());
        for source in self.sources() {
            source.measure(license, now, &mut usage).await?;
        }
        Ok(usage)
    }

    /// Every capability forgets `license`, in the order they were built.
    pub async fn forget(&self, license: &License) -> StoreResult<()> {
        for source in self.sources() {
            source.forget(license).await?;
        }
        Ok(())
    }
}
