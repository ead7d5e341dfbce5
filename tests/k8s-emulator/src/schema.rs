//! What the real server does to a custom resource with its CRD's structural
//! schema, in the same order: prune unknown fields, apply defaults, validate.
//!
//! Covered: `type` (incl. `nullable`, `x-kubernetes-int-or-string`),
//! `properties`, `additionalProperties`, `items`, `required`, `enum`,
//! `minimum`/`maximum` (+ exclusive), `minLength`/`maxLength`,
//! `minItems`/`maxItems`, `default` at any depth (applied where the parent
//! object exists), `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-embedded-resource`. Not covered: `pattern`, `format`,
//! `oneOf`/`anyOf`/`allOf`/`not`, CEL `x-kubernetes-validations`,
//! list-type/map-type uniqueness, defaults inside metadata.

use serde_json::{Map, Value, json};

use crate::status::FieldError;

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Drops fields the schema does not declare. At the root (and in embedded
/// resources) apiVersion, kind and metadata always stay.
pub fn prune(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keep_meta = root || schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if keep_meta && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(match additional {
                    Some(s @ Value::Object(_)) => Some(s),
                    _ => None,
                });
                match child_schema {
                    Some(cs) => {
                        if let Some(child) = map.get_mut(&k) {
                            prune(cs, child, false);
                        }
                    }
                    None if preserves(schema) || additional == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !map.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(k) {
                        apply_defaults(ps, child);
                    }
                }
            }
            if let Some(add @ Value::Object(_)) = schema.get("additionalProperties") {
                for child in map.values_mut() {
                    apply_defaults(add, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

pub fn validate(schema: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
    if value.is_null() && nullable {
        return;
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !matches!(type_name(value), "integer" | "string") {
            errs.push(FieldError::invalid(
                path,
                json!(type_name(value)),
                format!("{path} in body must be of type integer,string: {:?}", type_name(value)),
            ));
        }
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let integral_float = value.as_f64().is_some_and(|f| f.fract() == 0.0);
        let ok = got == want || (want == "number" && got == "integer") || (want == "integer" && integral_float);
        if !ok {
            errs.push(FieldError::invalid(
                path,
                json!(got),
                format!("{path} in body must be of type {want}: {got:?}"),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errs.push(FieldError::unsupported(
            path,
            value.clone(),
            format!("supported values: {}", list.join(", ")),
        ));
    }
    if let Some(n) = value.as_f64() {
        let excl = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && (n < min || (excl("exclusiveMinimum") && n == min))
        {
            let rel = if excl("exclusiveMinimum") {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                value.clone(),
                format!("{path} in body should be {rel} {min}"),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && (n > max || (excl("exclusiveMaximum") && n == max))
        {
            let rel = if excl("exclusiveMaximum") {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                value.clone(),
                format!("{path} in body should be {rel} {max}"),
            ));
        }
    }
    let bound = |k: &str| schema.get(k).and_then(Value::as_u64);
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if bound("maxLength").is_some_and(|m| len > m) {
                errs.push(FieldError::invalid(
                    path,
                    value.clone(),
                    format!("may not be longer than {}", bound("maxLength").unwrap_or_default()),
                ));
            }
            if bound("minLength").is_some_and(|m| len < m) {
                errs.push(FieldError::invalid(
                    path,
                    value.clone(),
                    format!(
                        "{path} in body should be at least {} chars long",
                        bound("minLength").unwrap_or_default()
                    ),
                ));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if bound("maxItems").is_some_and(|m| n > m) {
                errs.push(FieldError::invalid(
                    path,
                    json!(n),
                    format!("must have at most {} items", bound("maxItems").unwrap_or_default()),
                ));
            }
            if bound("minItems").is_some_and(|m| n < m) {
                errs.push(FieldError::invalid(
                    path,
                    json!(n),
                    format!(
                        "{path} in body should have at least {} items",
                        bound("minItems").unwrap_or_default()
                    ),
                ));
            }
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(is, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => validate_object(schema, map, path, errs),
        _ => {}
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(k) = req.as_str()
            && !map.contains_key(k)
        {
            errs.push(FieldError::required(join(path, k), ""));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (k, v) in map {
        if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
            continue;
        }
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            validate(ps, v, &join(path, k), errs);
        } else if let Some(add @ Value::Object(_)) = schema.get("additionalProperties") {
            validate(add, v, &join(path, k), errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_default_validate() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "message": {"type": "string"},
                        "copies": {"type": "integer", "default": 1, "minimum": 0},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                },
                "status": {"type": "object", "properties": {"seen": {"type": "integer"}}}
            }
        });
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"message": "hi", "junk": 1, "labels": {"a": "b"}, "free": {"x": {"y": 1}}},
            "extra": true
        });
        prune(&schema, &mut obj, true);
        apply_defaults(&schema, &mut obj);
        assert_eq!(
            obj["spec"],
            json!({"message": "hi", "copies": 1, "labels": {"a": "b"}, "free": {"x": {"y": 1}}})
        );
        assert!(obj.get("extra").is_none());
        let mut errs = Vec::new();
        validate(&schema, &obj, "", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let bad = json!({"spec": {"copies": "three"}});
        validate(&schema, &bad, "", &mut errs);
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            [
                "spec.message: Required value",
                "spec.copies: Invalid value: \"string\": spec.copies in body must be of type integer: \"string\""
            ]
        );
    }
}
