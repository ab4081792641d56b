//! What a license uses, measured where it is kept: each capability that
//! keeps a license's data adds a [`UsageSource`] to the platform's
//! [`UsageBoard`] when it is built, and the operator API asks the board.
//! So the admin capability knows no other capability's tables, and a new
//! capability's usage shows up by adding its source.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

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

/// One capability's part of a license's usage.
#[async_trait]
pub trait UsageSource: Send + Sync + 'static {
    /// Adds what it keeps of `license` to `usage`; `now` is the instant the
    /// measure is taken at (for "the last day").
    async fn measure(&self, license: LicensePk, now: Timestamp, usage: &mut Usage) -> StoreResult<()>;
}

/// The sources of every capability built. Cheap to clone.
#[derive(Clone, Default)]
pub struct UsageBoard(Arc<RwLock<Vec<Arc<dyn UsageSource>>>>);

impl UsageBoard {
    /// Adds a capability's source (when it is built).
    pub fn add(&self, source: Arc<dyn UsageSource>) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).push(source);
    }

    /// The usage of `license` now, from every source.
    pub async fn measure(&self, license: LicensePk) -> StoreResult<Usage> {
        let sources: Vec<_> = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (mut usage, now) = (Usage::default(), Timestamp::now());
        for source in sources {
            source.measure(license, now, &mut usage).await?;
        }
        Ok(usage)
    }
}
