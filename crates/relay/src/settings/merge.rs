//! Three-way merge of settings documents.
//!
//! A write says which version it was based on. If the document changed
//! since, the server still has that base version (it keeps recent ones), so
//! it can tell what *this* writer changed (base → proposed) from what others
//! changed (base → current). Changes to different keys — at any depth of
//! nested objects — are combined; the same change made on both sides is no
//! conflict; only the same key changed to different values on both sides is
//! a conflict, reported by its path.
//!
//! This is finer than per-key versions (a device shadow's rule): those can
//! only compare top-level keys and cannot tell an identical edit from a
//! conflicting one.

use serde_json::{Map, Value};

/// A settings document: a JSON object.
pub type Document = Map<String, Value>;

/// Merges `proposed` (based on `base`) into `current`; `Err` lists the
/// conflicting paths (`a.b.c`).
pub fn merge3(base: &Document, current: &Document, proposed: &Document) -> Result<Document, Vec<String>> {
    let mut conflicts = Vec::new();
    let merged = merge_maps(base, current, proposed, "", &mut conflicts);
    if conflicts.is_empty() { Ok(merged) } else { Err(conflicts) }
}

fn merge_maps(
    base: &Document,
    current: &Document,
    proposed: &Document,
    path: &str,
    conflicts: &mut Vec<String>,
) -> Document {
    let mut keys: Vec<&String> = current.keys().chain(proposed.keys()).chain(base.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Document::new();
    for key in keys {
        let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        if let Some(value) = merge_value(base.get(key), current.get(key), proposed.get(key), &at, conflicts) {
            out.insert(key.clone(), value);
        }
    }
    out
}

/// `None` in and out means "absent" (never set, or deleted).
fn merge_value(
    base: Option<&Value>,
    current: Option<&Value>,
    proposed: Option<&Value>,
    path: &str,
    conflicts: &mut Vec<String>,
) -> Option<Value> {
    if proposed == base {
        return current.cloned(); // this writer left it alone
    }
    if current == base || current == proposed {
        return proposed.cloned(); // only this writer changed it, or both alike
    }
    if let (Some(Value::Object(c)), Some(Value::Object(p))) = (current, proposed) {
        let empty = Document::new();
        let b = match base {
            Some(Value::Object(b)) => b,
            _ => &empty,
        };
        return Some(Value::Object(merge_maps(b, c, p, path, conflicts)));
    }
    conflicts.push(path.to_owned());
    current.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Document {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn disjoint_edits_merge() {
        let base = doc(json!({"volume": 3, "lang": "ru", "printer": {"ip": "10.0.0.5", "port": 9100}}));
        let device = doc(json!({"volume": 7, "lang": "ru", "printer": {"ip": "10.0.0.5", "port": 9100}}));
        let office = doc(json!({"volume": 3, "lang": "en", "printer": {"ip": "10.0.0.9", "port": 9100}, "shop": 12}));
        let merged = merge3(&base, &office, &device).unwrap();
        assert_eq!(
            Value::Object(merged),
            json!({"volume": 7, "lang": "en", "printer": {"ip": "10.0.0.9", "port": 9100}, "shop": 12})
        );
    }

    #[test]
    fn nested_disjoint_edits_merge_and_deletions_count_as_edits() {
        let base = doc(json!({"printer": {"ip": "a", "port": 1}, "old": true}));
        let current = doc(json!({"printer": {"ip": "b", "port": 1}, "old": true}));
        let proposed = doc(json!({"printer": {"ip": "a", "port": 2}}));
        let merged = merge3(&base, &current, &proposed).unwrap();
        assert_eq!(Value::Object(merged), json!({"printer": {"ip": "b", "port": 2}}));
    }

    #[test]
    fn the_same_key_changed_differently_is_a_conflict_named_by_path() {
        let base = doc(json!({"printer": {"ip": "a"}, "volume": 1}));
        let current = doc(json!({"printer": {"ip": "b"}, "volume": 1}));
        let proposed = doc(json!({"printer": {"ip": "c"}, "volume": 2}));
        assert_eq!(merge3(&base, &current, &proposed), Err(vec!["printer.ip".to_owned()]));
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_conflict() {
        let base = doc(json!({"volume": 1}));
        let both = doc(json!({"volume": 5}));
        assert_eq!(merge3(&base, &both, &both).unwrap(), both);
    }

    #[test]
    fn delete_against_edit_conflicts() {
        let base = doc(json!({"k": 1}));
        let current = doc(json!({"k": 2}));
        let proposed = doc(json!({}));
        assert_eq!(merge3(&base, &current, &proposed), Err(vec!["k".to_owned()]));
    }
}
