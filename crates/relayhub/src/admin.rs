//! `relayhub license …` and `relayhub apikey …`: administration straight on
//! the database the server uses, whether or not a server is running.

use relayhub_admin::acts::{Acts, scope_numbers};
use relayhub_core::backend::Stores;
use relayhub_core::bus::Bus;
use relayhub_core::error::ApiError;
use relayhub_core::identity::{self, CredentialInfo, LicenseUpdate, LicenseView, NewLicense};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::metrics::Metrics;
use relayhub_core::operators::{AuditLog, Auditor, OperatorStore};
use relayhub_core::time::Timestamp;
use serde_json::json;

use crate::cli::{ApikeyCommand, Expiry, LicenseCommand, Limit, TokenCommand};
use crate::config::DatabaseUrl;
use crate::stores::StoreOptions;

/// What a command prints: JSON with `--json`, else text for people.
pub use relayhub_core::capability::CommandOutput as Output;

fn expiry(e: Expiry) -> Option<Timestamp> {
    match e {
        Expiry::On(day) => Some(Timestamp::end_of_day(day)),
        Expiry::Never => None,
    }
}

fn limit(l: Limit) -> Option<u32> {
    match l {
        Limit::At(n) => Some(n),
        Limit::Unlimited => None,
    }
}

fn describe(view: &LicenseView) -> String {
    let expires = view.expires.as_deref().map(|d| format!("expires after {d}")).unwrap_or("never expires".into());
    let devices = match (view.devices, view.max_devices) {
        (Some(used), Some(max)) => format!("{used}/{max} devices"),
        (Some(used), None) => format!("{used} devices, no limit"),
        (None, Some(max)) => format!("up to {max} devices"),
        (None, None) => "no device limit".into(),
    };
    let name = if view.name.is_empty() { String::new() } else { format!(" ({})", view.name) };
    let suspended = view.suspended_at.map(|at| format!(", SUSPENDED since {at}")).unwrap_or_default();
    format!("{}{name}: {expires}, {devices}, binding {}{suspended}", view.number, view.binding.as_str())
}

fn describe_scope(scope: &Option<Vec<LicenseNumber>>) -> String {
    match scope {
        None => "all licenses".into(),
        Some(numbers) if numbers.is_empty() => "no license (its licenses were deleted)".into(),
        Some(numbers) => {
            format!("licenses {}", numbers.iter().map(LicenseNumber::as_str).collect::<Vec<_>>().join(", "))
        }
    }
}

fn describe_credentials(items: &[CredentialInfo]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|c| {
            let state = c.revoked_at.map(|t| format!("revoked {t}")).unwrap_or("active".into());
            let name = if c.name.is_empty() { String::new() } else { format!(" {}", c.name) };
            format!("{}{name}  created {}  {state}", c.id, c.created_at)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn open(url: &DatabaseUrl, partitions: usize) -> anyhow::Result<Stores> {
    crate::stores::open(url, &Bus::new(), &Metrics::new(), StoreOptions::admin(partitions)).await
}

/// Runs a `license` command.
pub async fn license(
    url: &DatabaseUrl,
    partitions: usize,
    command: LicenseCommand,
) -> anyhow::Result<Result<Output, ApiError>> {
    let stores = open(url, partitions).await?;
    let result = run_license(&stores, command).await;
    stores.close().await;
    Ok(result)
}

/// Runs an `apikey` command.
pub async fn apikey(
    url: &DatabaseUrl,
    partitions: usize,
    command: ApikeyCommand,
) -> anyhow::Result<Result<Output, ApiError>> {
    let stores = open(url, partitions).await?;
    let result = run_apikey(&stores, command).await;
    stores.close().await;
    Ok(result)
}

/// The acts of the command line (recorded in the audit log as `cli`).
fn acts(stores: &Stores) -> Result<Acts, ApiError> {
    let missing =
        |e: relayhub_core::capability::BuildError| ApiError::new(relayhub_core::ErrorCode::INTERNAL, e.to_string());
    Ok(Acts {
        identity: stores.identity.clone(),
        operators: stores.get::<dyn OperatorStore>().map_err(missing)?,
        auditor: Auditor::cli(stores.get::<dyn AuditLog>().map_err(missing)?),
    })
}

async fn run_license(stores: &Stores, command: LicenseCommand) -> Result<Output, ApiError> {
    let ids = stores.identity.as_ref();
    match command {
        LicenseCommand::Create { number, name, expires, max_devices, binding } => {
            let new = NewLicense {
                number: LicenseNumber::parse(&number)?,
                name,
                expires_at: expires.and_then(expiry),
                max_devices: max_devices.and_then(limit),
                binding,
            };
            let (license, token) = acts(stores)?.create_license(new).await?;
            let json = json!({"license": license.number, "token": token.secret.expose(), "token_id": token.id});
            let text = format!(
                "Created license {}.\nBearer token (shown only once, store it now):\n{}",
                describe(&license.view(None)),
                token.secret.expose()
            );
            Ok(Output::new(json, text))
        }
        LicenseCommand::List => {
            let licenses = ids.licenses().await?;
            let mut views = Vec::with_capacity(licenses.len());
            for license in &licenses {
                views.push(license.view(Some(stores.devices.device_count(license.pk).await?)));
            }
            let text = if views.is_empty() {
                "No licenses yet: relayhub license create --number LIC".to_owned()
            } else {
                views.iter().map(describe).collect::<Vec<_>>().join("\n")
            };
            Ok(Output::new(&views, text))
        }
        LicenseCommand::Show { number } => {
            let license = find(stores, &number).await?;
            let view = license.view(Some(stores.devices.device_count(license.pk).await?));
            let tokens = ids.tokens(license.pk).await?;
            let text = format!("{}\ntokens:\n{}", describe(&view), describe_credentials(&tokens));
            let mut json = serde_json::to_value(&view).unwrap_or_default();
            json["tokens"] = serde_json::to_value(&tokens).unwrap_or_default();
            Ok(Output::new(json, text))
        }
        LicenseCommand::Update { number, name, expires, max_devices, binding, suspended } => {
            let number = LicenseNumber::parse(&number)?;
            let update = LicenseUpdate {
                name,
                expires_at: expires.map(expiry),
                max_devices: max_devices.map(limit),
                binding,
                suspended,
            };
            let license = acts(stores)?.update_license(&number, update).await?;
            let view = license.view(Some(stores.devices.device_count(license.pk).await?));
            let text = format!("Updated {}", describe(&view));
            Ok(Output::new(&view, text))
        }
        LicenseCommand::Token(TokenCommand::Create { license }) => {
            let number = LicenseNumber::parse(&license)?;
            let token = acts(stores)?.issue_token(&number).await?;
            let json = json!({"license": number, "token": token.secret.expose(), "token_id": token.id});
            let text = format!(
                "New token {} for {number} (shown only once, store it now):\n{}",
                token.id,
                token.secret.expose()
            );
            Ok(Output::new(json, text))
        }
        LicenseCommand::Token(TokenCommand::Revoke { license, token_id }) => {
            let number = LicenseNumber::parse(&license)?;
            acts(stores)?.revoke_token(&number, &token_id).await?;
            let json = json!({"license": number, "token_id": token_id, "revoked": true});
            Ok(Output::new(json, format!("Revoked token {token_id} of {number}.")))
        }
        LicenseCommand::Token(TokenCommand::List { license }) => {
            let license = find(stores, &license).await?;
            let tokens = ids.tokens(license.pk).await?;
            let text = describe_credentials(&tokens);
            Ok(Output::new(&tokens, text))
        }
    }
}

async fn find(stores: &Stores, number: &str) -> Result<identity::License, ApiError> {
    let number = LicenseNumber::parse(number)?;
    stores
        .identity
        .license(&number)
        .await?
        .ok_or_else(|| ApiError::new(relayhub_core::ErrorCode::LICENSE_NOT_FOUND, format!("no license {number}")))
}

/// A key's licenses in JSON: `"all"`, or the list of numbers.
fn scope_json(scope: &Option<Vec<LicenseNumber>>) -> serde_json::Value {
    match scope {
        None => json!("all"),
        Some(numbers) => json!(numbers),
    }
}

async fn run_apikey(stores: &Stores, command: ApikeyCommand) -> Result<Output, ApiError> {
    let ids = stores.identity.as_ref();
    match command {
        ApikeyCommand::Create { name, licenses } => {
            let numbers = licenses.iter().map(|n| LicenseNumber::parse(n)).collect::<Result<Vec<_>, _>>()?;
            let key = acts(stores)?.create_api_key(&name, &numbers).await?;
            let scope = (!numbers.is_empty()).then_some(numbers);
            let json = json!({"id": key.id, "key": key.secret.expose(), "licenses": scope_json(&scope)});
            let text = format!(
                "Created API key {} for {} (shown only once, store it now):\n{}",
                key.id,
                describe_scope(&scope),
                key.secret.expose()
            );
            Ok(Output::new(json, text))
        }
        ApikeyCommand::List => {
            let keys = ids.api_keys().await?;
            let (mut json, mut lines) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
            for key in &keys {
                let scope = scope_numbers(ids, &key.scope).await?;
                let mut item = serde_json::to_value(&key.info).unwrap_or_default();
                item["licenses"] = scope_json(&scope);
                json.push(item);
                lines.push(format!(
                    "{}  for {}",
                    describe_credentials(std::slice::from_ref(&key.info)),
                    describe_scope(&scope)
                ));
            }
            let text = if lines.is_empty() { "none".to_owned() } else { lines.join("\n") };
            Ok(Output::new(json, text))
        }
        ApikeyCommand::Revoke { id } => {
            acts(stores)?.revoke_api_key(&id).await?;
            Ok(Output::new(json!({"id": id, "revoked": true}), format!("Revoked API key {id}.")))
        }
    }
}
