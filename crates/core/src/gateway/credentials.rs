//! What each socket was opened with — a license, an app API key, a user's
//! access token — so that every socket of the node, whichever capability
//! holds it (relay devices, signaling users), closes with the documented
//! code once one of them stops being valid. One check for all:
//! [`super::Gateway::check_credentials`], run every
//! `relay.credential_check_interval`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{CloseHandle, CloseReason, ConnId};
use crate::identity::{Accounts, IdentityStore, Invalidated};
use crate::ids::LicensePk;
use crate::store::StoreResult;
use crate::time::Timestamp;

/// The credentials a socket depends on; each `None` is one it has not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The license it works for: closed (4003) when the license expires.
    pub license: Option<LicensePk>,
    /// The id of the app API key it presented: closed (4001) on revocation.
    pub api_key: Option<String>,
    /// The signed-in user: closed (4005) once deactivated or deleted.
    pub user: Option<i64>,
    /// When the credential it was opened with runs out (an access token's
    /// expiry): closed (4006) then.
    pub expires_at: Option<Timestamp>,
}

/// What stopped being valid since the sockets opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    pub invalidated: Invalidated,
    /// Users deactivated or deleted.
    pub signed_out: Vec<i64>,
}

/// Why a socket with these credentials must close now, if it must. The
/// license is named first: an expired license explains everything else.
pub fn verdict(credentials: &Credentials, revoked: &Revoked, now: Timestamp) -> Option<CloseReason> {
    let Credentials { license, api_key, user, expires_at } = credentials;
    if license.is_some_and(|l| revoked.invalidated.licenses.contains(&l)) {
        Some(CloseReason::LICENSE_EXPIRED)
    } else if api_key.as_ref().is_some_and(|k| revoked.invalidated.api_keys.contains(k)) {
        Some(CloseReason::KEY_REVOKED)
    } else if user.is_some_and(|u| revoked.signed_out.contains(&u)) {
        Some(CloseReason::USER_SIGNED_OUT)
    } else if expires_at.is_some_and(|at| at <= now) {
        Some(CloseReason::ACCESS_EXPIRED)
    } else {
        None
    }
}

/// Every open socket of this node, with the credentials it depends on
/// (none, until [`super::Conn::depend_on`]): closed all at once on
/// shutdown, and by credential on each check.
#[derive(Default)]
pub(super) struct Sockets {
    sockets: Mutex<HashMap<ConnId, (Credentials, CloseHandle)>>,
}

impl Sockets {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, (Credentials, CloseHandle)>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, close: CloseHandle) {
        self.lock().insert(close.id(), (Credentials::default(), close));
    }

    pub(super) fn depend(&self, conn: ConnId, credentials: Credentials) {
        if let Some(socket) = self.lock().get_mut(&conn) {
            socket.0 = credentials;
        }
    }

    pub(super) fn remove(&self, conn: ConnId) {
        self.lock().remove(&conn);
    }

    /// Asks every socket to close with `reason`.
    pub(super) fn close_all(&self, reason: CloseReason) {
        for (_, close) in self.lock().values() {
            close.close(reason);
        }
    }

    /// Licenses, keys and users in use, each once.
    fn in_use(&self) -> (Vec<LicensePk>, Vec<String>, Vec<i64>) {
        let sockets = self.lock();
        let mut licenses: Vec<_> = sockets.values().filter_map(|(c, _)| c.license).collect();
        let mut keys: Vec<_> = sockets.values().filter_map(|(c, _)| c.api_key.clone()).collect();
        let mut users: Vec<_> = sockets.values().filter_map(|(c, _)| c.user).collect();
        licenses.sort_unstable();
        licenses.dedup();
        keys.sort_unstable();
        keys.dedup();
        users.sort_unstable();
        users.dedup();
        (licenses, keys, users)
    }

    /// Asks the stores what stopped being valid, and closes the sockets
    /// that depended on it. Returns how many were closed.
    pub(super) async fn check(
        &self,
        identity: &dyn IdentityStore,
        accounts: Option<&dyn Accounts>,
        now: Timestamp,
    ) -> StoreResult<usize> {
        if self.lock().is_empty() {
            return Ok(0);
        }
        let (licenses, keys, users) = self.in_use();
        let mut revoked = Revoked::default();
        if !licenses.is_empty() || !keys.is_empty() {
            revoked.invalidated = identity.invalidated(&licenses, &keys, now).await?;
        }
        if let Some(accounts) = accounts.filter(|_| !users.is_empty()) {
            revoked.signed_out = accounts.signed_out(&users).await?;
        }
        let sockets = self.lock();
        let mut closed = 0;
        for (credentials, close) in sockets.values() {
            if let Some(reason) = verdict(credentials, &revoked, now) {
                close.close(reason);
                closed += 1;
            }
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_closes_for_the_first_credential_that_went() {
        let now = Timestamp::from_millis(1_000_000);
        let socket = Credentials {
            license: Some(LicensePk(1)),
            api_key: Some("key_a".into()),
            user: Some(7),
            expires_at: Some(now.plus(std::time::Duration::from_secs(60))),
        };
        let nothing = Revoked::default();
        assert_eq!(verdict(&socket, &nothing, now), None);
        assert_eq!(verdict(&Credentials::default(), &nothing, now), None, "an open socket depends on nothing");

        let key = Revoked { invalidated: Invalidated { licenses: vec![], api_keys: vec!["key_a".into()] }, ..nothing };
        assert_eq!(verdict(&socket, &key, now), Some(CloseReason::KEY_REVOKED));
        let both =
            Revoked { invalidated: Invalidated { licenses: vec![LicensePk(1)], ..key.invalidated.clone() }, ..key };
        assert_eq!(verdict(&socket, &both, now), Some(CloseReason::LICENSE_EXPIRED));
        let user = Revoked { signed_out: vec![7], ..Revoked::default() };
        assert_eq!(verdict(&socket, &user, now), Some(CloseReason::USER_SIGNED_OUT));
        let later = now.plus(std::time::Duration::from_secs(60));
        assert_eq!(verdict(&socket, &Revoked::default(), later), Some(CloseReason::ACCESS_EXPIRED));
        let other = Revoked { signed_out: vec![8], ..Revoked::default() };
        assert_eq!(verdict(&socket, &other, now), None, "another user's deactivation");
    }
}
