//! `/openapi/v2`: a minimal document that makes kubectl's client-side logic
//! work. kubectl asks for it as protobuf (gnostic `openapi_v2.Document`) and
//! uses it for three things:
//! - validation (`--validate`, default on): types absent from `definitions`
//!   are skipped, so no definitions means "accept";
//! - strategic-merge patch metadata in `apply`: absent → kubectl falls back
//!   to its compiled-in Go structs;
//! - whether a type supports `dryRun` / `fieldValidation` (kubectl 1.20's
//!   `DryRunVerifier`, newer kubectl's `QueryParamVerifier`): it looks for a
//!   PATCH operation tagged with `x-kubernetes-group-version-kind` that lists
//!   the query parameter. So every resource gets exactly that operation.
//!
//! Field numbers follow gnostic's `openapiv2/OpenAPIv2.proto`.

use serde_json::{Value, json};

use crate::registry::Registry;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited field (strings and embedded messages).
fn field(buf: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(buf, (number << 3) | 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn msg(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = Vec::new();
    build(&mut b);
    b
}

struct PatchOp {
    path: String,
    group: String,
    version: String,
    kind: String,
}

const QUERY_PARAMS: [&str; 4] = ["dryRun", "fieldManager", "fieldValidation", "force"];

fn operations(reg: &Registry) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    for t in reg.all() {
        for v in &t.versions {
            let prefix = if t.group.is_empty() {
                format!("/api/{v}")
            } else {
                format!("/apis/{}/{v}", t.group)
            };
            let ns = if t.namespaced { "/namespaces/{namespace}" } else { "" };
            ops.push(PatchOp {
                path: format!("{prefix}{ns}/{}/{{name}}", t.plural),
                group: t.group.clone(),
                version: v.clone(),
                kind: t.kind.clone(),
            });
        }
    }
    ops
}

pub fn protobuf(reg: &Registry, server_version: &str) -> Vec<u8> {
    let paths = msg(|b| {
        for op in operations(reg) {
            let operation = msg(|o| {
                field(o, 5, format!("patch{}", op.kind).as_bytes());
                for name in QUERY_PARAMS {
                    let query = msg(|q| {
                        field(q, 2, b"query");
                        field(q, 4, name.as_bytes());
                        field(q, 6, b"string");
                    });
                    let non_body = msg(|n| field(n, 3, &query));
                    let parameter = msg(|p| field(p, 2, &non_body));
                    let item = msg(|i| field(i, 1, &parameter));
                    field(o, 8, &item);
                }
                let yaml = format!(
                    "group: {:?}\nkind: {:?}\nversion: {:?}\n",
                    op.group, op.kind, op.version
                );
                let any = msg(|a| field(a, 2, yaml.as_bytes()));
                let ext = msg(|e| {
                    field(e, 1, b"x-kubernetes-group-version-kind");
                    field(e, 2, &any);
                });
                field(o, 13, &ext);
                let action = msg(|a| field(a, 2, b"patch\n"));
                let ext = msg(|e| {
                    field(e, 1, b"x-kubernetes-action");
                    field(e, 2, &action);
                });
                field(o, 13, &ext);
            });
            let item = msg(|p| field(p, 8, &operation));
            let named = msg(|n| {
                field(n, 1, op.path.as_bytes());
                field(n, 2, &item);
            });
            field(b, 2, &named);
        }
    });
    msg(|d| {
        field(d, 1, b"2.0");
        let info = msg(|i| {
            field(i, 1, b"Kubernetes");
            field(i, 2, server_version.as_bytes());
        });
        field(d, 2, &info);
        field(d, 8, &paths);
    })
}

pub fn json(reg: &Registry, server_version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for op in operations(reg) {
        let params: Vec<Value> = QUERY_PARAMS
            .iter()
            .map(|n| json!({ "name": n, "in": "query", "type": "string", "uniqueItems": true }))
            .collect();
        paths.insert(
            op.path,
            json!({ "patch": {
                "operationId": format!("patch{}", op.kind),
                "parameters": params,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": { "group": op.group, "kind": op.kind, "version": op.version },
            }}),
        );
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": server_version },
        "paths": paths,
        "definitions": {},
    })
}
