//! Content negotiation for reads and the server-side printing kubectl asks
//! for: `meta.k8s.io` `Table` (kubectl get) and `PartialObjectMetadata`
//! (metadata-only clients such as kube-rs' `metadata_watcher`).

use serde_json::{Value, json};

use crate::registry::{PrinterColumn, ResourceType};
use crate::status::ApiError;
use crate::time::{human_age, now_secs, parse_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Object,
    /// `meta.k8s.io/<version>` Table.
    Table(&'static str),
    Metadata,
}

/// Picks the first media type in the `Accept` header this server can
/// produce, as the apiserver does (it ignores q-values too).
pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Object);
    };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        let (mut as_, mut g, mut v) = ("", "", "");
        for p in parts {
            match p.split_once('=') {
                Some(("as", x)) => as_ = x,
                Some(("g", x)) => g = x,
                Some(("v", x)) => v = x,
                _ => {}
            }
        }
        if !matches!(base, "application/json" | "*/*" | "application/*") {
            continue;
        }
        match (as_, g, v) {
            ("", _, _) => return Ok(Output::Object),
            ("Table", "meta.k8s.io", "v1") => return Ok(Output::Table("v1")),
            ("Table", "meta.k8s.io", "v1beta1") => return Ok(Output::Table("v1beta1")),
            ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io", "v1" | "v1beta1") => {
                return Ok(Output::Metadata);
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable())
}

pub fn include_object(q: Option<&str>) -> Result<IncludeObject, ApiError> {
    match q {
        None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
        Some("None") => Ok(IncludeObject::None),
        Some("Object") => Ok(IncludeObject::Object),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported includeObject value {other:?}"
        ))),
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn partial_metadata_list(items: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}

struct Column {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    cell: fn(&Value) -> Value,
}

fn age(obj: &Value) -> Value {
    match obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    {
        Some(t) => json!(human_age(now_secs() - t)),
        None => json!("<unknown>"),
    }
}

fn count(obj: &Value, ptrs: &[&str]) -> Value {
    let n: usize = ptrs
        .iter()
        .filter_map(|p| obj.pointer(p))
        .map(|v| {
            v.as_object()
                .map(|o| o.len())
                .or(v.as_array().map(Vec::len))
                .unwrap_or(0)
        })
        .sum();
    json!(n)
}

fn int_at(obj: &Value, p: &str) -> i64 {
    obj.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// The columns the real server prints for the built-in types (priority-0
/// ones; `-o wide` extras are omitted).
fn builtin_columns(rt: &ResourceType) -> Vec<Column> {
    let name = Column {
        name: "Name",
        type_: "string",
        format: "name",
        cell: |o| o.pointer("/metadata/name").cloned().unwrap_or_default(),
    };
    let age_col = Column {
        name: "Age",
        type_: "string",
        format: "",
        cell: age,
    };
    let created = Column {
        name: "Created At",
        type_: "date",
        format: "",
        cell: |o| o.pointer("/metadata/creationTimestamp").cloned().unwrap_or_default(),
    };
    let mut cols = vec![name];
    match rt.plural.as_str() {
        "namespaces" => {
            cols.push(Column {
                name: "Status",
                type_: "string",
                format: "",
                cell: |o| o.pointer("/status/phase").cloned().unwrap_or_default(),
            });
            cols.push(age_col);
        }
        "configmaps" => {
            cols.push(Column {
                name: "Data",
                type_: "integer",
                format: "",
                cell: |o| count(o, &["/data", "/binaryData"]),
            });
            cols.push(age_col);
        }
        "secrets" => {
            cols.push(Column {
                name: "Type",
                type_: "string",
                format: "",
                cell: |o| o.get("type").cloned().unwrap_or_default(),
            });
            cols.push(Column {
                name: "Data",
                type_: "integer",
                format: "",
                cell: |o| count(o, &["/data"]),
            });
            cols.push(age_col);
        }
        "serviceaccounts" => {
            cols.push(Column {
                name: "Secrets",
                type_: "integer",
                format: "",
                cell: |o| count(o, &["/secrets"]),
            });
            cols.push(age_col);
        }
        "events" => {
            cols.push(Column {
                name: "Type",
                type_: "string",
                format: "",
                cell: |o| o.get("type").cloned().unwrap_or_default(),
            });
            cols.push(Column {
                name: "Reason",
                type_: "string",
                format: "",
                cell: |o| o.get("reason").cloned().unwrap_or_default(),
            });
            cols.push(Column {
                name: "Message",
                type_: "string",
                format: "",
                cell: |o| o.get("message").cloned().unwrap_or_default(),
            });
            cols.push(age_col);
        }
        "deployments" => {
            cols.push(Column {
                name: "Ready",
                type_: "string",
                format: "",
                cell: |o| {
                    json!(format!(
                        "{}/{}",
                        int_at(o, "/status/readyReplicas"),
                        int_at(o, "/spec/replicas")
                    ))
                },
            });
            cols.push(Column {
                name: "Up-to-date",
                type_: "integer",
                format: "",
                cell: |o| json!(int_at(o, "/status/updatedReplicas")),
            });
            cols.push(Column {
                name: "Available",
                type_: "integer",
                format: "",
                cell: |o| json!(int_at(o, "/status/availableReplicas")),
            });
            cols.push(age_col);
        }
        "rolebindings" | "clusterrolebindings" => {
            cols.push(Column {
                name: "Role",
                type_: "string",
                format: "",
                cell: |o| {
                    let kind = o.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
                    let name = o.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
                    json!(format!("{kind}/{name}"))
                },
            });
            cols.push(age_col);
        }
        "roles" | "clusterroles" | "customresourcedefinitions" => cols.push(created),
        _ => cols.push(age_col),
    }
    cols
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0].b`,
/// `.a['x.y']`, and filters `.a[?(@.k=="v")].b` (first match, as the
/// server's table convertor prints the first result).
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[?(@.") {
            let end = r.find(")]")?;
            let (field, want) = r[..end].split_once("==")?;
            let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
            let field = field.trim();
            cur = cur.as_array()?.iter().find(|item| {
                item.get(field).is_some_and(|v| match v {
                    Value::String(s) => s == want,
                    other => {
                        let text = other.to_string();
                        text == want
                    }
                })
            })?;
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
            let end = r.find(['\'', '"'])?;
            cur = cur.get(&r[..end])?;
            rest = r[end + 1..].strip_prefix(']')?;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            cur = cur.get(r[..end].parse::<usize>().ok()?)?;
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else {
            return None;
        }
    }
    Some(cur)
}

fn custom_cell(col: &PrinterColumn, obj: &Value) -> Value {
    let Some(v) = json_path(obj, &col.json_path) else {
        return Value::Null;
    };
    match (col.type_.as_str(), v) {
        ("date", Value::String(s)) => match parse_rfc3339(s) {
            Some(t) => json!(human_age(now_secs() - t)),
            None => Value::Null,
        },
        (_, Value::Object(_) | Value::Array(_)) => json!(v.to_string()),
        _ => v.clone(),
    }
}

fn column_definition(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({ "name": name, "type": type_, "format": format, "description": description, "priority": priority })
}

pub fn table(
    rt: &ResourceType,
    version: &str,
    table_version: &str,
    objs: &[Value],
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let custom_cols = rt.custom.as_ref().and_then(|c| c.columns.get(version));
    let (defs, rows): (Vec<Value>, Vec<Vec<Value>>) = match custom_cols {
        Some(cols) => {
            let mut defs = vec![column_definition(
                "Name",
                "string",
                "name",
                "Name must be unique within a namespace.",
                0,
            )];
            defs.extend(
                cols.iter()
                    .map(|c| column_definition(&c.name, &c.type_, &c.format, &c.description, c.priority)),
            );
            let rows = objs
                .iter()
                .map(|o| {
                    let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or_default()];
                    cells.extend(cols.iter().map(|c| custom_cell(c, o)));
                    cells
                })
                .collect();
            (defs, rows)
        }
        None => {
            let cols = builtin_columns(rt);
            let defs = cols
                .iter()
                .map(|c| column_definition(c.name, c.type_, c.format, "", 0))
                .collect();
            let rows = objs
                .iter()
                .map(|o| cols.iter().map(|c| (c.cell)(o)).collect())
                .collect();
            (defs, rows)
        }
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .zip(objs)
        .map(|(cells, o)| {
            let mut row = json!({ "cells": cells });
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{table_version}"),
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_and_paths() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).ok(), Some(Output::Table("v1")));
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf, application/json")).ok(),
            Some(Output::Object)
        );
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf")).is_err());
        let o = json!({"spec": {"copies": 3, "m": {"a.b": "x"}}, "l": [{"n": 1}]});
        assert_eq!(json_path(&o, ".spec.copies"), Some(&json!(3)));
        assert_eq!(json_path(&o, ".spec.m['a.b']"), Some(&json!("x")));
        assert_eq!(json_path(&o, ".l[0].n"), Some(&json!(1)));
        let c =
            json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            json_path(&c, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
    }
}
