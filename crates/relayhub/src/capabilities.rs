//! The capabilities this server is made of. Start-up, `/readyz`,
//! `/metrics`, the configuration, the OpenAPI document, the command line
//! and shutdown all loop over this list: adding a capability is one line
//! here (and its crate, and its module in each backend).

use std::sync::Arc;

use relayhub_admin::Admin;
use relayhub_core::backend::Stores;
use relayhub_core::capability::{BuildError, Module, module};
use relayhub_core::identity::Accounts;
use relayhub_fleet::Fleet;
use relayhub_fleet::accounts::FleetAccounts;
use relayhub_rail::Rail;
use relayhub_registry::Registry;
use relayhub_relay::Relay;
use relayhub_signal::Signal;

/// Every capability, in the order they are built.
pub fn modules() -> Vec<Module> {
    vec![
        module::<Relay>(),
        module::<Signal>(),
        module::<Fleet>(),
        module::<Registry>(),
        module::<Rail>(),
        module::<Admin>(),
    ]
}

/// Who signs in: the fleet's users, whose access tokens other capabilities
/// (call signaling) accept through [`Accounts`] without depending on the
/// fleet.
pub fn accounts(stores: &Stores) -> Result<Arc<dyn Accounts>, BuildError> {
    Ok(Arc::new(FleetAccounts::new(stores)?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use relayhub_core::error::ErrorCode;
    use relayhub_core::secret::SecretKind;

    use super::*;

    /// Every error code the server can answer with, and who declares it.
    fn every_code() -> Vec<(&'static str, ErrorCode)> {
        let mut codes: Vec<_> = ErrorCode::SHARED.iter().map(|code| ("core", *code)).collect();
        for module in modules() {
            codes.extend(module.error_codes().iter().map(|code| (module.name(), *code)));
        }
        codes
    }

    #[test]
    fn error_codes_are_declared_once_in_snake_case_and_documented_for_clients() {
        let doc = include_str!("../../../docs/protocol/errors.md");
        let mut owners = HashMap::new();
        for (owner, code) in every_code() {
            let text = code.as_str();
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{owner}'s {text}");
            if let Some(other) = owners.insert(text, owner) {
                panic!("{text} is declared by {other} and by {owner}");
            }
            assert!(!code.doc().is_empty(), "{owner}'s {text} has no doc comment");
            let row = format!("| `{text}` | {} |", code.status().as_u16());
            assert!(doc.contains(&row), "docs/protocol/errors.md lacks {row} ({owner})");
        }
        assert!(owners.len() > ErrorCode::SHARED.len(), "the capabilities' own codes are counted");
        let table = doc.split("\n## Codes").nth(1).and_then(|rest| rest.split("\n## ").next()).unwrap();
        for row in table.lines().filter(|line| line.starts_with("| `")) {
            let code = row.split('`').nth(1).unwrap();
            assert!(owners.contains_key(code), "docs/protocol/errors.md lists {code}, which nothing declares");
        }
    }

    #[test]
    fn every_kind_of_secret_has_a_prefix_of_its_own() {
        let mut kinds: Vec<(&str, SecretKind)> = SecretKind::SHARED.iter().map(|kind| ("core", *kind)).collect();
        for module in modules() {
            kinds.extend(module.secret_kinds().iter().map(|kind| (module.name(), *kind)));
        }
        let mut seen = HashMap::new();
        for (owner, kind) in &kinds {
            for prefix in [kind.prefix(), kind.id_prefix()] {
                assert!(prefix.len() == 4 && prefix.ends_with('_'), "{owner}'s {prefix}");
                if let Some(other) = seen.insert(prefix, owner) {
                    panic!("{prefix} is used by {other} and by {owner}");
                }
            }
        }
        assert!(kinds.len() > SecretKind::SHARED.len(), "the capabilities' own kinds are counted");
    }
}
