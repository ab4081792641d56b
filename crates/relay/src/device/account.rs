//! The settings side of a device's connection: the current settings on
//! connect, pushes when the back-office changes them, the device's own
//! writes, and linking to / restoring from a Google account.

use std::sync::Arc;

use relayhub_core::error::ApiError;
use relayhub_core::oidc::IdTokenVerifier;
use relayhub_core::store::StoreResult;

use super::frames;
use super::session::{Done, Gone, Session};
use crate::codes;
use crate::hub::SettingsNews;
use crate::model::DeviceRef;
use crate::settings::api::check;
use crate::settings::{Author, Document, Outcome, Proposal, Settings, SettingsStore, Target};
use relayhub_core::gateway::CloseReason;

/// What a settings or account operation came to.
pub(super) enum AccountDone {
    Written(StoreResult<Outcome>),
    Linked(String),
    Restored(String, Settings),
    Failed(ApiError),
}

/// `google:<sub>` of a verified ID token.
async fn account_of(verifier: Option<Arc<IdTokenVerifier>>, token: &str) -> Result<String, ApiError> {
    let verifier = verifier.ok_or_else(|| {
        ApiError::new(codes::NOT_CONFIGURED, "this server has no Google sign-in configured (google.client_id)")
    })?;
    let identity = verifier.verify(token).await?;
    Ok(format!("google:{}", identity.subject))
}

impl Session {
    /// After `hello`: the device's settings, unless it says it has them.
    pub(super) async fn initial_settings(&mut self, device_has: Option<i64>) -> Result<(), Gone> {
        let current = match self.relay.settings.device_settings(self.device.pk).await {
            Ok(current) => current,
            Err(err) => {
                // The device still gets them with the next change or connection.
                tracing::warn!(device = %self.device.device_id, %err, "could not read settings");
                return Ok(());
            }
        };
        self.settings_sent = current.version;
        if current.version > 0 && device_has != Some(current.version) {
            self.send(frames::settings(&current, false, None)).await?;
        }
        Ok(())
    }

    /// News from elsewhere: changed settings, or the device connecting on
    /// another node.
    pub(super) async fn on_signals(&mut self) -> Result<Option<CloseReason>, Gone> {
        let signals = self.mailbox.take_signals();
        if signals.recheck_presence {
            match self.relay.presence.is_current_connection(self.device.pk, self.conn_id()).await {
                Ok(false) => return Ok(Some(CloseReason::REPLACED)),
                Ok(true) => {}
                // Unknown: keep the connection; at worst the device has two
                // sockets for a while and gets some messages twice.
                Err(err) => tracing::warn!(device = %self.device.device_id, %err, "could not check presence"),
            }
        }
        let settings = match signals.settings {
            None => return Ok(None),
            Some(SettingsNews::Known(settings)) => settings,
            Some(SettingsNews::Changed) => match self.relay.settings.device_settings(self.device.pk).await {
                Ok(settings) => Arc::new(settings),
                Err(err) => {
                    tracing::warn!(device = %self.device.device_id, %err, "could not read changed settings");
                    return Ok(None);
                }
            },
        };
        // Changes the device caused itself (its writes, its restores) are
        // answered by the reply to that frame, not pushed back twice.
        if settings.version > self.settings_sent && settings.updated_by == Some(Author::BackOffice) {
            self.settings_sent = settings.version;
            self.send(frames::settings(&settings, false, None)).await?;
        }
        Ok(None)
    }

    pub(super) async fn write_settings(&mut self, version: i64, settings: Document) -> Result<(), Gone> {
        if let Err(err) = check(&settings, version, self.relay.config.settings_limit) {
            return self.send(frames::error(&err, None, &[])).await;
        }
        let store = self.relay.settings.clone();
        let target = Target::Device(self.device.pk);
        let proposal = Proposal { base_version: version, document: settings, author: Author::Device };
        self.ops.push_back(Box::pin(async move {
            Done::Account(AccountDone::Written(store.write_settings(target, proposal).await))
        }));
        Ok(())
    }

    pub(super) async fn link_account(&mut self, token: String) -> Result<(), Gone> {
        self.with_account(token, |store, device, account| async move {
            store.link_account(&device, &account).await?;
            Ok(AccountDone::Linked(account))
        });
        Ok(())
    }

    pub(super) async fn restore(&mut self, token: String) -> Result<(), Gone> {
        self.with_account(token, |store, device, account| async move {
            let settings = store.restore_account(&device, &account).await?.ok_or_else(|| {
                ApiError::new(
                    codes::ACCOUNT_NOT_LINKED,
                    format!("{account} has no settings linked in this license; send link_account first"),
                )
            })?;
            Ok(AccountDone::Restored(account, settings))
        });
        Ok(())
    }

    /// Verifies `token`, then runs `then` with the account it names, as an
    /// operation of this connection; a failure becomes an `error` frame.
    fn with_account<F, Fut>(&mut self, token: String, then: F)
    where
        F: FnOnce(Arc<dyn SettingsStore>, DeviceRef, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<AccountDone, ApiError>> + Send + 'static,
    {
        let (verifier, store, device) = (self.relay.google.clone(), self.relay.settings.clone(), self.device.clone());
        self.ops.push_back(Box::pin(async move {
            let done = async {
                let account = account_of(verifier, &token).await?;
                then(store, device, account).await
            };
            Done::Account(done.await.unwrap_or_else(AccountDone::Failed))
        }));
    }

    pub(super) async fn on_account_done(&mut self, done: AccountDone) -> Result<(), Gone> {
        match done {
            AccountDone::Written(Ok(Outcome::Applied { settings, merged })) => {
                self.settings_sent = self.settings_sent.max(settings.version);
                self.send(frames::settings(&settings, merged, None)).await
            }
            AccountDone::Written(Ok(Outcome::Conflict { current, paths, reason })) => {
                self.settings_sent = self.settings_sent.max(current.version);
                self.send(frames::settings_conflict(&current, &paths, &reason)).await
            }
            AccountDone::Written(Err(err)) => self.send(frames::error(&ApiError::from(err), None, &[])).await,
            AccountDone::Linked(account) => self.send(frames::linked(&account)).await,
            AccountDone::Restored(account, settings) => {
                self.settings_sent = self.settings_sent.max(settings.version);
                self.send(frames::settings(&settings, false, Some(&account))).await
            }
            AccountDone::Failed(err) => self.send(frames::error(&err, None, &[])).await,
        }
    }
}
