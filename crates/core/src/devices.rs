//! Devices and their presence: shared by every capability that talks to
//! field devices. A device belongs to at most one license; binding follows
//! one rule, written here once ([`resolve`], [`check_room`]) and called by
//! every backend, so a refusal reads the same on SQLite and PostgreSQL.

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::bus::Topic;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::ConnId;
use crate::identity::{BindingPolicy, License};
use crate::ids::{DeviceId, DevicePk, LicensePk};
use crate::secret::SecretHash;
use crate::store::{Page, PageRequest, StoreResult};
use crate::time::Timestamp;

/// Whether a bound device has ever connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Bound by the back-office (or by a message), never connected yet.
    Registered,
    /// Has connected at least once.
    Active,
}

/// A bound device, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub pk: DevicePk,
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    /// A socket of the device is open on a live node.
    pub online: bool,
    pub last_seen: Option<Timestamp>,
    /// When it was bound to its license.
    pub bound_at: Timestamp,
    /// It holds a device secret: its connections must present it.
    pub has_secret: bool,
}

/// A bound device, as a connection knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    pub pk: DevicePk,
    pub license: LicensePk,
    pub device_id: DeviceId,
}

/// Who names a device: a producer or the back-office must not learn that
/// another license's device exists (404, as for no device at all); the
/// device itself is told why it cannot connect (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Queue,
    Connect,
}

/// What binding a device to a license needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Already bound to this license.
    Bound,
    /// Bound to none: bind it (after [`check_room`]).
    Bind,
}

/// The rule for a device held by `owner` (a license, or none) that
/// `license` names for `purpose`.
pub fn resolve(
    device: &DeviceId,
    owner: Option<LicensePk>,
    license: &License,
    purpose: Purpose,
) -> Result<Binding, ApiError> {
    match owner {
        None if purpose == Purpose::Connect && license.binding == BindingPolicy::Preregistered => Err(ApiError::new(
            ErrorCode::DEVICE_NOT_REGISTERED,
            format!("license {} admits only devices its back office has bound; {device} is not one", license.number),
        )),
        None => Ok(Binding::Bind),
        Some(owner) if owner == license.pk => Ok(Binding::Bound),
        Some(_) if purpose == Purpose::Connect => Err(bound_elsewhere(device)),
        Some(_) => Err(not_found(device)),
    }
}

/// What a connection does about its device's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStep {
    /// The license is `open`: devices have no secret.
    NotUsed,
    /// It presented the device's secret.
    Proven,
    /// The device has none yet (bound just now, bound by the back office,
    /// or reset): store the connection's fresh one and send it in `hello`.
    Issue,
}

/// The rule for a device's secret: `stored` is the device's, `presented`
/// the connection's (both hashed).
pub fn device_secret(
    device: &DeviceId,
    policy: BindingPolicy,
    stored: Option<&SecretHash>,
    presented: Option<&SecretHash>,
) -> Result<SecretStep, ApiError> {
    if !policy.has_secrets() {
        return Ok(SecretStep::NotUsed);
    }
    match (stored, presented) {
        (None, _) => Ok(SecretStep::Issue),
        (Some(stored), Some(presented)) if stored.ct_eq(presented) => Ok(SecretStep::Proven),
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorCode::INVALID_DEVICE_SECRET,
            format!("the device secret of {device} is wrong; if the app lost it, the back office resets the device"),
        )),
        (Some(_), None) => Err(ApiError::new(
            ErrorCode::INVALID_DEVICE_SECRET,
            format!(
                "device {device} has a secret: send it as 'X-Device-Secret' or '?device_secret='; if the app lost \
                 it, the back office resets the device"
            ),
        )),
    }
}

/// What a device's connection asks of the store.
pub struct Attach<'a> {
    pub license: &'a License,
    pub device: &'a DeviceId,
    /// The secret the connection presents, hashed.
    pub presented: Option<SecretHash>,
    /// A fresh secret's hash, stored if the device gets one now
    /// ([`SecretStep::Issue`]).
    pub fresh: SecretHash,
    /// Asked before the device is bound now (the new-binding rate); its
    /// refusal refuses the connection, nothing bound.
    pub may_bind: &'a (dyn Fn() -> Result<(), ApiError> + Send + Sync),
}

/// A device attached to its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub device: DeviceRef,
    /// The connection's fresh secret is now the device's: send it.
    pub issued: bool,
}

/// Refuses binding `adding` more devices to a license that has `used` of
/// its `max_devices`.
pub fn check_room(license: &License, used: u64, adding: u64) -> Result<(), ApiError> {
    match license.max_devices {
        Some(max) if adding > 0 && used + adding > u64::from(max) => Err(ApiError::new(
            ErrorCode::DEVICE_LIMIT,
            format!("license {} already has its maximum of {max} devices", license.number),
        )),
        _ => Ok(()),
    }
}

/// 404 for a device that is not this license's.
pub fn not_found(device: &DeviceId) -> ApiError {
    ApiError::new(ErrorCode::DEVICE_NOT_FOUND, format!("no device {device} in this license"))
}

/// 403 for a device connecting to a license other than its own.
pub fn bound_elsewhere(device: &DeviceId) -> ApiError {
    ApiError::new(ErrorCode::DEVICE_BOUND_ELSEWHERE, format!("device {device} is bound to another license"))
}

/// What happened to a device, for the connections that hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Unbound from its license: its connection must close.
    Unbound { device: DevicePk },
    /// It opened a socket on another node: a connection here should check
    /// whether it is still the device's current one.
    ConnectedElsewhere { device: DevicePk },
}

impl Topic for DeviceEvent {
    const NAME: &'static str = "device";

    fn encode(&self) -> Option<String> {
        Some(match self {
            DeviceEvent::Unbound { device } => format!("u{}", device.0),
            DeviceEvent::ConnectedElsewhere { device } => format!("c{}", device.0),
        })
    }

    fn decode(wire: &str) -> Option<Self> {
        let device = DevicePk(wire.get(1..)?.parse().ok()?);
        match wire.as_bytes().first()? {
            b'u' => Some(DeviceEvent::Unbound { device }),
            b'c' => Some(DeviceEvent::ConnectedElsewhere { device }),
            _ => None,
        }
    }
}

/// Storage of devices and their binding to licenses.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Binds a device to `license` in advance (the back-office's rules:
    /// another license's device is `device_not_found`). Returns it and
    /// whether it was bound now.
    async fn bind(&self, license: &License, device: &DeviceId) -> StoreResult<(DeviceRecord, bool)>;
    /// A device asks to connect: bound now if it is new (`device_limit`
    /// past the license's maximum), `device_bound_elsewhere` if it is
    /// another license's; its secret checked or issued ([`device_secret`];
    /// of two connections issued at once, one wins and the other is
    /// refused).
    async fn attach(&self, request: Attach<'_>) -> StoreResult<Attached>;
    /// Forgets a device's secret: its next connection gets a new one.
    async fn reset_secret(&self, license: LicensePk, device: &DeviceId) -> StoreResult<DeviceRecord>;
    /// Unbinds a device; every capability's data of it goes too, and its
    /// connections are told ([`DeviceEvent::Unbound`]).
    async fn unbind(&self, license: LicensePk, device: &DeviceId) -> StoreResult<DevicePk>;
    async fn device(&self, license: LicensePk, device: &DeviceId) -> StoreResult<Option<DeviceRecord>>;
    /// A page of the license's devices, ordered by id.
    async fn devices(&self, license: LicensePk, page: PageRequest) -> StoreResult<Page<DeviceRecord>>;
    async fn device_count(&self, license: LicensePk) -> StoreResult<u64>;
    /// How many of a license's devices are connected now (to a live node).
    async fn online_count(&self, license: LicensePk) -> StoreResult<u64>;
}

/// Which connection of a device is its current one.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// The device's socket `conn` is open: online, active, last seen now;
    /// other nodes learn of it ([`DeviceEvent::ConnectedElsewhere`]).
    async fn set_online(&self, device: DevicePk, conn: ConnId) -> StoreResult<()>;
    /// The socket `conn` closed. Not awaited; a newer socket of the same
    /// device (another `conn`) stays online.
    fn set_offline(&self, device: DevicePk, conn: ConnId);
    /// Whether `conn` (on this node) is still the device's current
    /// connection, after it connected elsewhere.
    async fn is_current_connection(&self, device: DevicePk, conn: ConnId) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LicenseNumber;

    fn license(pk: i64, max: Option<u32>) -> License {
        License {
            pk: LicensePk(pk),
            number: LicenseNumber::parse("LIC").unwrap(),
            name: String::new(),
            expires_at: None,
            max_devices: max,
            binding: BindingPolicy::FirstUse,
            created_at: Timestamp::from_millis(0),
            suspended_at: None,
        }
    }

    #[test]
    fn a_preregistered_license_binds_only_from_the_back_office() {
        let d = DeviceId::parse("d1").unwrap();
        let l = License { binding: BindingPolicy::Preregistered, ..license(1, None) };
        assert_eq!(resolve(&d, None, &l, Purpose::Connect).unwrap_err().code, ErrorCode::DEVICE_NOT_REGISTERED);
        assert_eq!(resolve(&d, None, &l, Purpose::Queue), Ok(Binding::Bind));
        assert_eq!(resolve(&d, Some(LicensePk(1)), &l, Purpose::Connect), Ok(Binding::Bound));
    }

    #[test]
    fn a_secret_is_issued_once_then_required() {
        let d = DeviceId::parse("d1").unwrap();
        let (mine, other) = (crate::secret::Secret::new("a").hash(), crate::secret::Secret::new("b").hash());
        let first = BindingPolicy::FirstUse;
        assert_eq!(device_secret(&d, BindingPolicy::Open, Some(&mine), None), Ok(SecretStep::NotUsed));
        assert_eq!(device_secret(&d, first, None, None), Ok(SecretStep::Issue));
        assert_eq!(device_secret(&d, first, None, Some(&other)), Ok(SecretStep::Issue), "after a reset");
        assert_eq!(device_secret(&d, first, Some(&mine), Some(&mine)), Ok(SecretStep::Proven));
        let refused = |presented| device_secret(&d, first, Some(&mine), presented).unwrap_err().code;
        assert_eq!(refused(None), ErrorCode::INVALID_DEVICE_SECRET);
        assert_eq!(refused(Some(&other)), ErrorCode::INVALID_DEVICE_SECRET);
    }

    #[test]
    fn another_licenses_device_is_404_to_producers_and_403_to_the_device() {
        let d = DeviceId::parse("d1").unwrap();
        let l = license(1, None);
        assert_eq!(resolve(&d, None, &l, Purpose::Queue), Ok(Binding::Bind));
        assert_eq!(resolve(&d, Some(LicensePk(1)), &l, Purpose::Connect), Ok(Binding::Bound));
        assert_eq!(resolve(&d, Some(LicensePk(2)), &l, Purpose::Queue).unwrap_err().code, ErrorCode::DEVICE_NOT_FOUND);
        let code = resolve(&d, Some(LicensePk(2)), &l, Purpose::Connect).unwrap_err().code;
        assert_eq!(code, ErrorCode::DEVICE_BOUND_ELSEWHERE);
    }

    #[test]
    fn the_device_limit_counts_what_a_call_adds() {
        let l = license(1, Some(2));
        assert!(check_room(&l, 1, 1).is_ok());
        assert_eq!(check_room(&l, 1, 2).unwrap_err().code, ErrorCode::DEVICE_LIMIT);
        assert!(check_room(&l, 5, 0).is_ok(), "adding nothing is never refused");
        assert!(check_room(&license(1, None), 1_000_000, 1).is_ok());
    }

    #[test]
    fn events_cross_nodes() {
        for e in [DeviceEvent::Unbound { device: DevicePk(7) }, DeviceEvent::ConnectedElsewhere { device: DevicePk(9) }]
        {
            assert_eq!(DeviceEvent::decode(&e.encode().unwrap()), Some(e));
        }
        assert_eq!(DeviceEvent::decode("x1"), None);
    }
}
