//! The stable strings only the registry and its proxy answer with: its error codes
//! (the shared ones are the core's `ErrorCode::…`) and the prefixes of its secrets.
//! The server's test holds every capability's codes to be unique and listed
//! in docs/protocol/errors.md, and every prefix to be unique.

use relayhub_core::secret::SecretKind;

relayhub_core::error_codes! {
    /// A registered device still waits for an operator's approval.
    DEVICE_PENDING => (FORBIDDEN, "device_pending"),
    /// A registered device was blocked by an operator.
    DEVICE_BLOCKED => (FORBIDDEN, "device_blocked"),
    /// A proxy target outside the public URL registered for the instance.
    TARGET_NOT_REGISTERED => (FORBIDDEN, "target_not_registered"),
    /// The device's instance has no public URL and no tunnel.
    INSTANCE_UNKNOWN => (NOT_FOUND, "instance_unknown"),
    /// The instance could not be reached (connection refused, reset, DNS).
    INSTANCE_UNREACHABLE => (BAD_GATEWAY, "instance_unreachable"),
    /// The instance did not answer within `registry.timeout`.
    INSTANCE_TIMEOUT => (GATEWAY_TIMEOUT, "instance_timeout"),
}

/// `rhi_…`: an instance's tunnel token (`/ws/instance`).
pub const INSTANCE_TOKEN: SecretKind = SecretKind::new("rhi_", "ins_");

/// Every kind of secret declared here.
pub const SECRET_KINDS: &[SecretKind] = &[INSTANCE_TOKEN];
