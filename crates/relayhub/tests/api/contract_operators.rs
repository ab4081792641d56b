//! The store contract for operators, their tokens and the audit log,
//! against the backend this run uses, straight through the traits.

use std::sync::Arc;

use relayhub_core::error::ErrorCode;
use relayhub_core::identity::NewCredential;
use relayhub_core::operators::{Actor, AuditFilter, AuditLog, NewAuditEntry, NewOperator, OperatorStore};
use relayhub_core::secret::SecretHash;
use relayhub_core::store::PageRequest;
use relayhub_core::time::Timestamp;
use serde_json::json;

use crate::contract::{Backend, refusal};

/// 2026-03-10T12:00:00Z, and seconds after it.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(1_773_144_000_000 + seconds * 1000)
}

fn operator(email: &str) -> NewOperator {
    NewOperator { email: email.into(), name: "Ops".into(), password_hash: "$argon2id$stand-in".into() }
}

fn credential(id: &str, byte: u8, seconds: i64) -> NewCredential {
    NewCredential { id: id.into(), hash: SecretHash([byte; 32]), name: "billing".into(), created_at: at(seconds) }
}

#[tokio::test]
async fn operators_are_unique_by_email_and_their_tokens_work_until_revoked() {
    let b = Backend::open().await;
    let store: Arc<dyn OperatorStore> = b.stores.get().unwrap();
    let ann = store.add_operator(operator("ann@example.com"), at(0)).await.unwrap();
    assert_eq!((ann.email.as_str(), ann.created_at), ("ann@example.com", at(0)));
    let taken = refusal(store.add_operator(operator("ann@example.com"), at(1)).await);
    assert_eq!(taken.0, ErrorCode::ALREADY_EXISTS);
    let ben = store.add_operator(operator("ben@example.com"), at(2)).await.unwrap();
    assert_eq!(store.operators().await.unwrap(), [ann.clone(), ben.clone()]);

    store.add_operator_token(ann.id, credential("opt_a", 1, 3)).await.unwrap();
    store.add_operator_token(ben.id, credential("opt_b", 2, 4)).await.unwrap();
    let nobody = refusal(store.add_operator_token(uuid::Uuid::new_v4(), credential("opt_c", 3, 5)).await);
    assert_eq!(nobody.0, ErrorCode::NOT_FOUND);
    assert_eq!(store.operator_by_token(&SecretHash([1; 32])).await.unwrap(), Some(ann.clone()));
    assert_eq!(store.operator_by_token(&SecretHash([3; 32])).await.unwrap(), None);

    store.revoke_operator_token("opt_a", at(6)).await.unwrap();
    store.revoke_operator_token("opt_a", at(7)).await.unwrap();
    assert_eq!(store.operator_by_token(&SecretHash([1; 32])).await.unwrap(), None, "revoked at once");
    let tokens = store.operator_tokens().await.unwrap();
    let listed: Vec<_> = tokens.iter().map(|t| (t.info.id.as_str(), t.operator, t.info.revoked_at)).collect();
    assert_eq!(listed, [("opt_a", ann.id, Some(at(6))), ("opt_b", ben.id, None)], "the first revocation holds");
    let unknown = refusal(store.revoke_operator_token("opt_nope", at(8)).await);
    assert_eq!(unknown.0, ErrorCode::CREDENTIAL_NOT_FOUND);
    b.close().await;
}

#[tokio::test]
async fn the_audit_log_lists_newest_first_filters_pages_and_forgets_old_acts() {
    let b = Backend::open().await;
    let store: Arc<dyn OperatorStore> = b.stores.get().unwrap();
    let log: Arc<dyn AuditLog> = b.stores.get().unwrap();
    let ann = store.add_operator(operator("ann@example.com"), at(0)).await.unwrap();
    let act = |seconds, actor: Actor, action, license: Option<&str>| NewAuditEntry {
        at: at(seconds),
        actor,
        action,
        license: license.map(str::to_owned),
        target: Some("tok_1".into()),
        address: Some("192.0.2.7".parse().unwrap()),
        detail: json!({"max_devices": null}),
    };
    log.record(act(10, Actor::Cli, "license.create", Some("LIC-1"))).await.unwrap();
    log.record(act(20, Actor::Operator(ann.clone()), "license.update", Some("LIC-1"))).await.unwrap();
    log.record(act(30, Actor::Operator(ann.clone()), "apikey.create", None)).await.unwrap();

    let all = log.entries(AuditFilter::default(), PageRequest { page: 1, size: 10 }).await.unwrap();
    assert_eq!(all.total, 3);
    let actions: Vec<_> = all.items.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert_eq!(
        actions,
        [("apikey.create", "ann@example.com"), ("license.update", "ann@example.com"), ("license.create", "cli")]
    );
    let first = &all.items[2];
    assert_eq!(
        (first.operator, first.address.as_deref(), first.target.as_deref()),
        (None, Some("192.0.2.7"), Some("tok_1"))
    );
    assert_eq!((first.at, &first.detail), (at(10), &json!({"max_devices": null})));

    let of = |license: Option<&str>, operator| AuditFilter { license: license.map(str::to_owned), operator };
    let on_license = log.entries(of(Some("LIC-1"), None), PageRequest { page: 1, size: 10 }).await.unwrap();
    assert_eq!(on_license.total, 2);
    let by_ann = log.entries(of(None, Some(ann.id)), PageRequest { page: 2, size: 1 }).await.unwrap();
    assert_eq!((by_ann.total, by_ann.items[0].action.as_str()), (2, "license.update"), "the second page of one");

    assert_eq!(log.purge_before(at(20)).await.unwrap(), 1, "only what is older than the cut");
    let left = log.entries(AuditFilter::default(), PageRequest { page: 1, size: 10 }).await.unwrap();
    assert_eq!(left.total, 2);
    b.close().await;
}
