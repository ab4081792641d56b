//! Every administrative act, written once: the admin API and the command
//! line call these, so a rule holds however the act is done, and each
//! write is recorded in the audit log with who did it and from where.

use std::sync::Arc;

use relayhub_core::error::ApiError;
use relayhub_core::identity::{self, IdentityStore, Issued, KeyScope, License, LicenseUpdate, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::license_data::LicenseBoard;
use relayhub_core::operators::{Auditor, NewOperator, Operator, OperatorStore};
use relayhub_core::secret::{Secret, SecretKind, public_id};
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use serde_json::{Value, json};

/// The stores an act needs, and who acts from where.
pub struct Acts {
    pub identity: Arc<dyn IdentityStore>,
    pub operators: Arc<dyn OperatorStore>,
    pub auditor: Auditor,
}

impl Acts {
    async fn record(&self, action: &'static str, license: Option<&LicenseNumber>, target: Option<&str>, detail: Value) {
        self.auditor.record(action, license, target, detail).await;
    }

    /// A license of this number, else 404 `license_not_found`.
    pub async fn license(&self, number: &LicenseNumber) -> Result<License, ApiError> {
        Ok(identity::existing_license(self.identity.as_ref(), number).await?)
    }

    /// Creates a license and its first bearer token (shown once).
    pub async fn create_license(&self, new: NewLicense) -> StoreResult<(License, Issued)> {
        let detail = json!({
            "name": new.name, "expires_at": new.expires_at, "max_devices": new.max_devices, "binding": new.binding,
        });
        let (license, token) = identity::create_license(self.identity.as_ref(), new).await?;
        self.record("license.create", Some(&license.number), Some(&token.id), detail).await;
        Ok((license, token))
    }

    /// Changes the fields `update` names, and only those.
    pub async fn update_license(&self, number: &LicenseNumber, update: LicenseUpdate) -> StoreResult<License> {
        let mut detail = serde_json::Map::new();
        if let Some(name) = &update.name {
            detail.insert("name".into(), json!(name));
        }
        if let Some(expires_at) = &update.expires_at {
            detail.insert("expires_at".into(), json!(expires_at));
        }
        if let Some(max_devices) = &update.max_devices {
            detail.insert("max_devices".into(), json!(max_devices));
        }
        if let Some(binding) = &update.binding {
            detail.insert("binding".into(), json!(binding));
        }
        if let Some(suspended) = update.suspended {
            detail.insert("suspended".into(), json!(suspended));
        }
        let license = self.identity.update_license(number, update).await?;
        self.record("license.update", Some(number), None, Value::Object(detail)).await;
        Ok(license)
    }

    /// Deletes a license with all its data, once `confirm` names it. It is
    /// suspended first, so its tokens, devices and users are refused on
    /// every node while its data goes; an interrupted delete leaves it
    /// suspended, and repeating the call finishes it.
    pub async fn delete_license(
        &self,
        number: &LicenseNumber,
        confirm: &str,
        data: &LicenseBoard,
    ) -> Result<(), ApiError> {
        let license = self.license(number).await?;
        crate::rules::confirms_delete(number, confirm)?;
        let suspend = LicenseUpdate { suspended: Some(true), ..LicenseUpdate::default() };
        let license = match license.suspended_at {
            Some(_) => license,
            None => self.identity.update_license(number, suspend).await?,
        };
        data.forget(&license).await?;
        self.identity.delete_license(license.pk).await?;
        self.record("license.delete", Some(number), None, json!({"name": license.name})).await;
        Ok(())
    }

    /// Adds a bearer token to a license (to rotate one).
    pub async fn issue_token(&self, number: &LicenseNumber) -> StoreResult<Issued> {
        let token = identity::issue_token(self.identity.as_ref(), number).await?;
        self.record("license_token.create", Some(number), Some(&token.id), json!({})).await;
        Ok(token)
    }

    /// Revokes one of a license's bearer tokens; it stops working at once.
    pub async fn revoke_token(&self, number: &LicenseNumber, id: &str) -> StoreResult<()> {
        identity::revoke_token(self.identity.as_ref(), number, id).await?;
        self.record("license_token.revoke", Some(number), Some(id), json!({})).await;
        Ok(())
    }

    /// Creates an app key, for every license or for `licenses` only.
    pub async fn create_api_key(&self, name: &str, licenses: &[LicenseNumber]) -> StoreResult<Issued> {
        let key = identity::create_api_key(self.identity.as_ref(), name, licenses).await?;
        let scope = if licenses.is_empty() { json!("all") } else { json!(licenses) };
        self.record("apikey.create", None, Some(&key.id), json!({"name": name, "licenses": scope})).await;
        Ok(key)
    }

    /// Revokes an app key: connected devices using it are disconnected.
    pub async fn revoke_api_key(&self, id: &str) -> StoreResult<()> {
        identity::revoke_api_key(self.identity.as_ref(), id).await?;
        self.record("apikey.revoke", None, Some(id), json!({})).await;
        Ok(())
    }

    /// Adds an operator; the password is hashed (Argon2, bounded like
    /// every other hash) before anything is stored.
    pub async fn create_operator(&self, email: &str, name: &str, password: String) -> Result<Operator, ApiError> {
        let email = relayhub_core::password::check_email(email)?;
        relayhub_core::password::check_password(&password)?;
        let password_hash = relayhub_core::password::hash(password).await?;
        let operator = self
            .operators
            .add_operator(NewOperator { email, name: name.to_owned(), password_hash }, Timestamp::now())
            .await?;
        let detail = json!({"email": operator.email, "name": operator.name});
        self.record("operator.create", None, Some(&operator.id.to_string()), detail).await;
        Ok(operator)
    }

    /// A new API token for `operator` (shown once).
    pub async fn issue_operator_token(&self, operator: &Operator, name: &str) -> StoreResult<Issued> {
        let kind = SecretKind::OPERATOR_TOKEN;
        let secret = Secret::generate(kind);
        let id = public_id(kind);
        let stored = identity::NewCredential {
            id: id.clone(),
            hash: secret.hash(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        self.operators.add_operator_token(operator.id, stored).await?;
        let detail = json!({"operator": operator.id, "name": name});
        self.record("operator_token.create", None, Some(&id), detail).await;
        Ok(Issued { id, secret })
    }

    /// Revokes an operator token; it stops working at once.
    pub async fn revoke_operator_token(&self, id: &str) -> StoreResult<()> {
        self.operators.revoke_operator_token(id, Timestamp::now()).await?;
        self.record("operator_token.revoke", None, Some(id), json!({})).await;
        Ok(())
    }
}

/// The licenses a key works with, by number: `None` for all of them.
pub async fn scope_numbers(identity: &dyn IdentityStore, scope: &KeyScope) -> StoreResult<Option<Vec<LicenseNumber>>> {
    let KeyScope::Licenses(pks) = scope else { return Ok(None) };
    let mut numbers = Vec::with_capacity(pks.len());
    for pk in pks {
        if let Some(license) = identity.license_by_pk(*pk).await? {
            numbers.push(license.number);
        }
    }
    Ok(Some(numbers))
}
