//! Queueing, decided once for every backend: which messages of a call are
//! stored, with which `seq`, which devices the call binds, and — first
//! refusal wins — why a call is refused. Backends read a [`Snapshot`] of
//! what the call touches, ask [`plan`], and write what it says; a batch of
//! calls (group commit) is planned call by call on one snapshot, each as if
//! it ran alone.

use std::collections::HashMap;

use relayhub_core::devices::{self, Binding, Purpose};
use relayhub_core::error::ApiError;
use relayhub_core::identity::License;
use relayhub_core::ids::{DeviceId, DevicePk, LicensePk};
use uuid::Uuid;

use crate::codes;
use crate::model::{Enqueued, NewMessage};

/// A bound device's queue as a call finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// `None` for a device bound by an earlier call of the same batch and
    /// not inserted yet.
    pub pk: Option<DevicePk>,
    pub license: LicensePk,
    pub next_seq: i64,
    pub pending: i64,
}

/// A stored message with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub id: Uuid,
    pub seq: i64,
    pub fingerprint: Vec<u8>,
}

/// What the plan reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every device the calls name that is bound, to any license.
    pub heads: HashMap<DeviceId, Head>,
    /// Stored messages carrying the idempotency keys the calls use.
    pub keys: HashMap<(LicensePk, String), Keyed>,
    /// Devices bound per license, for licenses with a device limit whose
    /// calls bind devices (see [`Snapshot::needs_count`]).
    pub bound: HashMap<LicensePk, u64>,
}

impl Snapshot {
    /// Whether [`plan`] needs the license's device count for these messages.
    pub fn needs_count(&self, license: &License, messages: &[NewMessage]) -> bool {
        license.max_devices.is_some() && messages.iter().any(|m| !self.heads.contains_key(&m.device_id))
    }
}

/// One message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Its place in the call.
    pub index: usize,
    pub id: Uuid,
    pub seq: i64,
}

/// What a call stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The answer for each message, in the call's order.
    pub answers: Vec<Enqueued>,
    /// New messages, in the call's order (so per device in `seq` order).
    pub inserts: Vec<Insert>,
    /// Devices to bind to the call's license, in the order first named.
    pub binds: Vec<DeviceId>,
    /// The queue heads the call leaves, for each device it touched.
    pub heads: Vec<(DeviceId, Head)>,
}

fn queue_full(device: &DeviceId, pending: i64, limit: u32) -> ApiError {
    ApiError::new(codes::QUEUE_FULL, format!("device {device} has {pending} pending messages; the limit is {limit}"))
}

/// Decides a call, message by message in order: the device (bound here,
/// another license's: 404, unbound: bound now within `max_devices`), the
/// idempotency key (a repeat answers the first message, a different body
/// is refused), the queue bound. All or nothing: a refusal leaves the
/// snapshot as it was; an accepted call's effects are applied to it.
pub fn plan(
    snapshot: &mut Snapshot,
    license: &License,
    messages: &[NewMessage],
    queue_limit: u32,
) -> Result<Plan, ApiError> {
    // The devices the call touches, in the order first named, and where
    // each is in that list.
    let mut heads: Vec<(DeviceId, Head, i64)> = Vec::new();
    let mut slot: HashMap<&DeviceId, usize> = HashMap::new();
    let mut keys: HashMap<&str, Keyed> = HashMap::new();
    let mut binds = Vec::new();
    let mut answers = Vec::with_capacity(messages.len());
    let mut inserts = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let at = match slot.get(&message.device_id) {
            Some(&at) => at,
            None => {
                let known = snapshot.heads.get(&message.device_id).copied();
                let head =
                    match devices::resolve(&message.device_id, known.map(|h| h.license), license, Purpose::Queue)? {
                        Binding::Bound => {
                            known.unwrap_or(Head { pk: None, license: license.pk, next_seq: 1, pending: 0 })
                        }
                        Binding::Bind => {
                            let used = snapshot.bound.get(&license.pk).copied().unwrap_or(0) + binds.len() as u64;
                            devices::check_room(license, used, 1)?;
                            binds.push(message.device_id.clone());
                            Head { pk: None, license: license.pk, next_seq: 1, pending: 0 }
                        }
                    };
                heads.push((message.device_id.clone(), head, head.pending));
                slot.insert(&message.device_id, heads.len() - 1);
                heads.len() - 1
            }
        };
        if let Some(key) = message.idempotency_key.as_deref() {
            let fingerprint = message.fingerprint();
            let earlier = keys.get(key).or_else(|| snapshot.keys.get(&(license.pk, key.to_owned())));
            if let Some(earlier) = earlier {
                if earlier.fingerprint != fingerprint {
                    return Err(relayhub_core::http::idempotency_key_reused(key, "message"));
                }
                answers.push(Enqueued { id: earlier.id, seq: earlier.seq, replayed: true });
                continue;
            }
            let (_, head, _) = &heads[at];
            let id = Uuid::now_v7();
            keys.insert(key, Keyed { id, seq: head.next_seq, fingerprint: fingerprint.to_vec() });
        }
        let (device, head, before) = &mut heads[at];
        if head.pending + 1 > i64::from(queue_limit) {
            return Err(queue_full(device, *before, queue_limit));
        }
        let id = match message.idempotency_key.as_deref() {
            Some(key) => keys[key].id,
            None => Uuid::now_v7(),
        };
        let seq = head.next_seq;
        head.next_seq += 1;
        head.pending += 1;
        answers.push(Enqueued { id, seq, replayed: false });
        inserts.push(Insert { index, id, seq });
    }
    *snapshot.bound.entry(license.pk).or_default() += binds.len() as u64;
    for (key, keyed) in keys {
        snapshot.keys.insert((license.pk, key.to_owned()), keyed);
    }
    let heads: Vec<(DeviceId, Head)> = heads.into_iter().map(|(id, head, _)| (id, head)).collect();
    for (id, head) in &heads {
        snapshot.heads.insert(id.clone(), *head);
    }
    Ok(Plan { answers, inserts, binds, heads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use relayhub_core::error::ErrorCode;
    use relayhub_core::ids::LicenseNumber;
    use relayhub_core::time::Timestamp;
    use serde_json::value::RawValue;

    fn license(pk: i64, max: Option<u32>) -> License {
        License {
            pk: LicensePk(pk),
            number: LicenseNumber::parse("LIC").unwrap(),
            name: String::new(),
            expires_at: None,
            max_devices: max,
            binding: relayhub_core::identity::BindingPolicy::FirstUse,
            created_at: Timestamp::from_millis(0),
            suspended_at: None,
        }
    }

    fn msg(device: &str, data: &str, key: Option<&str>) -> NewMessage {
        NewMessage {
            device_id: DeviceId::parse(device).unwrap(),
            data: RawValue::from_string(data.into()).unwrap(),
            idempotency_key: key.map(str::to_owned),
            expires_at: None,
        }
    }

    fn head(license: i64, next_seq: i64, pending: i64) -> Head {
        Head { pk: Some(DevicePk(1)), license: LicensePk(license), next_seq, pending }
    }

    fn d(id: &str) -> DeviceId {
        DeviceId::parse(id).unwrap()
    }

    #[test]
    fn messages_get_consecutive_seqs_and_new_devices_are_bound() {
        let mut s = Snapshot::default();
        s.heads.insert(d("a"), head(1, 5, 2));
        let p = plan(&mut s, &license(1, None), &[msg("a", "1", None), msg("b", "2", None), msg("a", "3", None)], 10)
            .unwrap();
        assert_eq!(p.answers.iter().map(|a| a.seq).collect::<Vec<_>>(), [5, 1, 6]);
        assert_eq!(p.binds, [d("b")]);
        assert_eq!(s.heads[&d("a")].next_seq, 7);
        assert_eq!(s.heads[&d("a")].pending, 4);
    }

    #[test]
    fn a_refusal_names_the_first_problem_and_changes_nothing() {
        let mut s = Snapshot::default();
        s.heads.insert(d("a"), head(1, 5, 9));
        s.heads.insert(d("theirs"), head(2, 1, 0));
        let before = s.clone();
        let full = plan(&mut s, &license(1, None), &[msg("a", "1", None), msg("a", "2", None)], 10).unwrap_err();
        assert_eq!(full.code, codes::QUEUE_FULL);
        assert_eq!(full.message, "device a has 9 pending messages; the limit is 10");
        let theirs = plan(&mut s, &license(1, None), &[msg("theirs", "1", None)], 10).unwrap_err();
        assert_eq!(theirs.code, ErrorCode::DEVICE_NOT_FOUND);
        s.bound.insert(LicensePk(1), 1);
        let limit = plan(&mut s, &license(1, Some(1)), &[msg("new", "1", None)], 10).unwrap_err();
        assert_eq!(limit.code, ErrorCode::DEVICE_LIMIT);
        s.bound.clear();
        assert_eq!(s.heads, before.heads);
        assert!(s.keys.is_empty());
    }

    #[test]
    fn idempotency_keys_replay_within_a_call_and_across_calls() {
        let mut s = Snapshot::default();
        let l = license(1, None);
        let first = plan(&mut s, &l, &[msg("a", "1", Some("k")), msg("a", "1", Some("k"))], 10).unwrap();
        assert_eq!(first.inserts.len(), 1);
        assert!(first.answers[1].replayed && first.answers[1].id == first.answers[0].id);
        let again = plan(&mut s, &l, &[msg("a", "1", Some("k"))], 10).unwrap();
        assert!(again.inserts.is_empty() && again.answers[0].id == first.answers[0].id);
        let reused = plan(&mut s, &l, &[msg("a", "2", Some("k"))], 10).unwrap_err();
        assert_eq!(reused.code, ErrorCode::IDEMPOTENCY_KEY_REUSED);
        // The same key in another license is another key.
        assert_eq!(plan(&mut s, &license(2, None), &[msg("b", "2", Some("k"))], 10).unwrap().inserts.len(), 1);
    }
}
