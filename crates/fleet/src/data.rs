//! The fleet's part of a license's data: its users (with their sessions
//! and reset links), its robots and their telemetry.

use std::sync::Arc;
use std::time::Duration;

use relayhub_core::identity::License;
use relayhub_core::ids::LicensePk;
use relayhub_core::license_data::{LicenseData, Usage};
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;

use crate::store::UserStore;
use crate::telemetry::store::TelemetryStore;

/// Measures and forgets what the fleet keeps of a license.
pub struct FleetData {
    pub telemetry: Arc<dyn TelemetryStore>,
    pub users: Arc<dyn UserStore>,
}

#[async_trait::async_trait]
impl LicenseData for FleetData {
    /// Points of the last day and the bytes of its telemetry.
    async fn measure(&self, license: LicensePk, now: Timestamp, usage: &mut Usage) -> StoreResult<()> {
        let day_ago_ns = now.minus(Duration::from_secs(24 * 3600)).millis().saturating_mul(1_000_000);
        let (points, bytes) = self.telemetry.license_usage(license, day_ago_ns).await?;
        usage.telemetry_points_day += points;
        usage.telemetry_bytes += bytes;
        Ok(())
    }

    /// Telemetry first (it is found through the robots), then the rest.
    async fn forget(&self, license: &License) -> StoreResult<()> {
        self.telemetry.forget_license(license.pk).await?;
        self.users.forget_license(license.pk).await
    }
}
