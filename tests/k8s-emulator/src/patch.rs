//! The four PATCH content types. JSON patch and merge patch are exact (the
//! `json-patch` crate); strategic merge patch and server-side apply are
//! approximations, described at each function.

use serde_json::{Map, Value};

use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub const ACCEPTED: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub fn parse_body(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding {what}: {e}")))
}

/// RFC 6902. A failed `test` (or any failed operation) is 422, as the real
/// server answers.
pub fn json_patch(doc: &mut Value, patch: Value) -> Result<(), ApiError> {
    let p: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    json_patch::patch(doc, &p).map_err(|e| {
        let mut err = ApiError::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        );
        err.details = Some(serde_json::json!({ "causes": [{ "message": e.to_string() }] }));
        err
    })
}

/// RFC 7386.
pub fn merge_patch(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("merge patch must be a JSON object"));
    }
    json_patch::merge(doc, patch);
    Ok(())
}

/// Merge keys of the lists a strategic merge patch merges element-wise in
/// the built-in types this emulator serves (from the Go struct tags
/// `patchMergeKey`); every other list is replaced, as in a merge patch.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars with patch strategy `merge` (a union).
fn merges_scalars(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge patch, approximated: maps merge as in a merge patch;
/// lists named in [`merge_key`] merge element-wise by that key (honouring
/// `$patch: delete|replace` and `$setElementOrder/<field>`), `finalizers`
/// merges as a set (honouring `$deleteFromPrimitiveList/finalizers`),
/// `$retainKeys` and `$patch: replace|delete` on maps are honoured; other
/// lists are replaced. Not modelled: per-type strategies beyond these.
pub fn strategic_merge(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Some(p) = patch.as_object() else {
        return Err(ApiError::bad_request("strategic merge patch must be a JSON object"));
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    merge_map(doc, p);
    Ok(())
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_map(doc: &mut Value, patch: &Map<String, Value>) {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *doc = strip_directives(&Value::Object(patch.clone()));
            return;
        }
        Some("delete") => {
            *doc = Value::Null;
            return;
        }
        _ => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(target) = doc else {
        unreachable!("made an object above")
    };
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (target.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(pm) => {
                let slot = target.entry(k.clone()).or_insert(Value::Null);
                merge_map(slot, pm);
                if slot.is_null() {
                    target.remove(k);
                }
            }
            Value::Array(items) => match (target.get_mut(k), merge_key(k)) {
                (Some(Value::Array(existing)), Some(key)) if items.iter().all(Value::is_object) => {
                    merge_list(existing, items, key);
                }
                (Some(Value::Array(existing)), None) if merges_scalars(k) => {
                    for item in items {
                        if !existing.contains(item) {
                            existing.push(item.clone());
                        }
                    }
                }
                _ => {
                    let replaced: Vec<Value> = items
                        .iter()
                        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                        .map(strip_directives)
                        .collect();
                    target.insert(k.clone(), Value::Array(replaced));
                }
            },
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
    for (k, order) in patch {
        let Some(field) = k.strip_prefix("$setElementOrder/") else {
            continue;
        };
        let (Some(Value::Array(list)), Some(order)) = (target.get_mut(field), order.as_array()) else {
            continue;
        };
        let key = merge_key(field);
        let id = |v: &Value| match key {
            Some(key) => v.get(key).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        };
        let mut rest = std::mem::take(list);
        for want in order {
            if let Some(pos) = rest.iter().position(|x| id(x) == id(want)) {
                list.push(rest.remove(pos));
            }
        }
        list.extend(rest);
    }
}

fn merge_list(existing: &mut Vec<Value>, patch: &[Value], key: &str) {
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return;
    }
    for item in patch {
        let id = item.get(key);
        let pos = existing.iter().position(|e| e.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let Some(pm) = item.as_object() {
                    merge_map(&mut existing[i], pm);
                }
            }
            (None, false) => existing.push(strip_directives(item)),
        }
    }
}

/// Server-side apply, approximated: the applied configuration is merged into
/// the live object like a strategic merge patch (so unmentioned fields stay),
/// and fields this field manager applied last time but no longer applies are
/// removed (the visible effect of field ownership). Not modelled: conflicts
/// between managers (so `force` changes nothing), `metadata.managedFields`,
/// granular list ownership. The body must be JSON (which is YAML); kubectl
/// and kube-rs send JSON.
pub fn apply(live: &mut Value, applied: &Value, previous: Option<&Value>) -> Result<(), ApiError> {
    if let Some(prev) = previous {
        remove_dropped(live, prev, applied);
    }
    strategic_merge(live, applied)
}

/// Removes from `live` the leaf fields present in `prev` but not in `now`.
fn remove_dropped(live: &mut Value, prev: &Value, now: &Value) {
    let (Some(live), Some(prev)) = (live.as_object_mut(), prev.as_object()) else {
        return;
    };
    for (k, pv) in prev {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        match now.get(k) {
            None => {
                if k != "metadata" {
                    live.remove(k);
                }
            }
            Some(nv) if pv.is_object() && nv.is_object() => {
                if let Some(lv) = live.get_mut(k) {
                    remove_dropped(lv, pv, nv);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_lists_merge_by_key() {
        let mut doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}
        ]}}}, "metadata": {"finalizers": ["x"]}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b", "image": "b:2"}, {"name": "a", "$patch": "delete"}]
        }}}, "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]}});
        strategic_merge(&mut doc, &patch).expect("patch");
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "b:2"}])
        );
        assert_eq!(doc["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn apply_drops_fields_no_longer_applied() {
        let mut live = json!({"spec": {"a": 1, "b": 2, "c": 3}});
        apply(
            &mut live,
            &json!({"spec": {"a": 5}}),
            Some(&json!({"spec": {"a": 1, "b": 2}})),
        )
        .expect("apply");
        assert_eq!(live, json!({"spec": {"a": 5, "c": 3}}));
    }
}
