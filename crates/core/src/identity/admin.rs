//! Administration of licenses and credentials, shared by the CLI, the demo
//! and the tests: the secret is generated here, handed back once, and only
//! its hash goes to the store.

use super::{IdentityStore, KeyScope, License, NewCredential, NewLicense};
use crate::error::ErrorCode;
use crate::ids::LicenseNumber;
use crate::secret::{Secret, SecretKind, public_id};
use crate::store::{StoreError, StoreResult};
use crate::time::Timestamp;

/// A credential just created: its public id and its secret, shown once.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: String,
    pub secret: Secret,
}

fn issue(kind: SecretKind, name: &str) -> (Issued, NewCredential) {
    let secret = Secret::generate(kind);
    let id = public_id(kind);
    let stored =
        NewCredential { id: id.clone(), hash: secret.hash(), name: name.to_owned(), created_at: Timestamp::now() };
    (Issued { id, secret }, stored)
}

/// A license of this number, else `license_not_found`.
pub async fn existing(store: &dyn IdentityStore, number: &LicenseNumber) -> StoreResult<License> {
    store
        .license(number)
        .await?
        .ok_or_else(|| StoreError::rejected(ErrorCode::LICENSE_NOT_FOUND, format!("no license {number}")))
}

/// Creates a license and its first bearer token.
pub async fn create_license(store: &dyn IdentityStore, new: NewLicense) -> StoreResult<(License, Issued)> {
    let (issued, stored) = issue(SecretKind::LICENSE_TOKEN, "");
    let license = store.create_license(new, stored).await?;
    Ok((license, issued))
}

/// Adds another bearer token to a license (e.g. to rotate the old one).
pub async fn issue_token(store: &dyn IdentityStore, number: &LicenseNumber) -> StoreResult<Issued> {
    let license = existing(store, number).await?;
    let (issued, stored) = issue(SecretKind::LICENSE_TOKEN, "");
    store.add_token(license.pk, stored).await?;
    Ok(issued)
}

/// Revokes one bearer token of a license; it stops working at once.
pub async fn revoke_token(store: &dyn IdentityStore, number: &LicenseNumber, id: &str) -> StoreResult<()> {
    let license = existing(store, number).await?;
    store.revoke_token(license.pk, id, Timestamp::now()).await
}

/// Creates an app API key: for every license when `licenses` is empty,
/// else for those only (`license_not_found` for an unknown one).
pub async fn create_api_key(store: &dyn IdentityStore, name: &str, licenses: &[LicenseNumber]) -> StoreResult<Issued> {
    let scope = if licenses.is_empty() {
        KeyScope::AllLicenses
    } else {
        let mut pks = Vec::with_capacity(licenses.len());
        for number in licenses {
            pks.push(existing(store, number).await?.pk);
        }
        KeyScope::Licenses(pks)
    };
    let (issued, stored) = issue(SecretKind::API_KEY, name);
    store.add_api_key(stored, &scope).await?;
    Ok(issued)
}

/// Revokes an app API key: new connections are refused and connected
/// devices using it are disconnected.
pub async fn revoke_api_key(store: &dyn IdentityStore, id: &str) -> StoreResult<()> {
    store.revoke_api_key(id, Timestamp::now()).await
}
