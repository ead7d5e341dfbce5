//! The write verbs' semantics, independent of HTTP: create, update (main
//! resource or `/status`), delete with finalizers, and what each type's
//! strategy adds (defaults, validation, CRD registration, cascades).
//!
//! Callers hold the store lock for the whole call.

use serde_json::{Map, Value, json};

use crate::registry::{self, CRD_GROUP, NameRule, ResourceType};
use crate::schema;
use crate::status::{ApiError, FieldError};
use crate::store::{EventType, GroupResource, ObjKey, Store, rv_of};
use crate::time::now_rfc3339;

pub struct Ctx<'a> {
    pub rt: &'a ResourceType,
    pub version: &'a str,
    /// The namespace from the URL (namespaced types only).
    pub namespace: Option<&'a str>,
    pub dry_run: bool,
}

impl Ctx<'_> {
    pub fn gr(&self) -> GroupResource {
        gr(self.rt)
    }

    pub fn key(&self, name: &str) -> ObjKey {
        (
            if self.rt.namespaced {
                self.namespace.unwrap_or("").to_string()
            } else {
                String::new()
            },
            name.to_string(),
        )
    }
}

pub fn gr(rt: &ResourceType) -> GroupResource {
    (rt.group.clone(), rt.plural.clone())
}

/// The object as served in `version`: objects of all versions share storage
/// (CRD conversion strategy `None`), so only apiVersion differs.
pub fn output(rt: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version(version)));
        m.insert("kind".into(), json!(rt.kind));
    }
    o
}

pub enum Deleted {
    /// Finalizers remain: only `deletionTimestamp` was set.
    Pending(Value),
    Gone(Value),
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(o) = obj else {
        unreachable!("made an object above")
    };
    let m = o.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    let Value::Object(m) = m else {
        unreachable!("made an object above")
    };
    m
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Body checks shared by create and update: a JSON object whose apiVersion
/// and kind (when given) are the endpoint's; fills them in when absent.
fn check_body(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): expected a JSON object",
            ctx.rt.kind
        )));
    };
    let want_av = ctx.rt.api_version(ctx.version);
    if let Some(av) = map.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != want_av
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if let Some(kind) = map.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != ctx.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            ctx.rt.kind
        )));
    }
    map.insert("apiVersion".into(), json!(want_av));
    map.insert("kind".into(), json!(ctx.rt.kind));
    match map.get("metadata") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return Err(ApiError::bad_request("metadata: expected an object")),
    }
    for field in ["labels", "annotations"] {
        if let Some(v) = map.get("metadata").and_then(|m| m.get(field)) {
            let ok = v.is_null() || v.as_object().is_some_and(|o| o.values().all(Value::is_string));
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field} of type map[string]string"
                )));
            }
        }
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `[prefix/]name` as used by label keys, annotation keys and finalizers.
fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

fn validate_meta(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta_str(obj, "name");
    let name_ok = match rt.name_rule {
        NameRule::Subdomain => is_dns_subdomain(name),
        NameRule::Label => is_dns_label(name),
        NameRule::PathSegment => name != "." && name != ".." && !name.contains('/') && !name.contains('%'),
    };
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if !name_ok {
        let detail = match rt.name_rule {
            NameRule::Label => {
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            }
            NameRule::Subdomain => {
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            }
            NameRule::PathSegment => "may not contain '/' or '%' and may not be '.' or '..'",
        };
        errs.push(FieldError::invalid("metadata.name", json!(name), detail));
    }
    if let Some(labels) = meta(obj).and_then(|m| m.get("labels")).and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            let v = v.as_str().unwrap_or("");
            if !v.is_empty() && !is_label_name(v) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    json!(v),
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                ));
            }
        }
    }
    if let Some(ann) = meta(obj).and_then(|m| m.get("annotations")).and_then(Value::as_object) {
        for k in ann.keys().filter(|k| !is_qualified_name(k)) {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                json!(k),
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        let size: usize = ann.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
        if size > 256 * 1024 {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                json!(""),
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
    match meta(obj).and_then(|m| m.get("finalizers")) {
        None | Some(Value::Null) => {}
        Some(Value::Array(fs)) => {
            for (i, f) in fs.iter().enumerate() {
                if !f.as_str().is_some_and(is_qualified_name) {
                    errs.push(FieldError::invalid(
                        format!("metadata.finalizers[{i}]"),
                        f.clone(),
                        "name part must consist of alphanumeric characters, '-', '_' or '.'",
                    ));
                }
            }
        }
        Some(other) => errs.push(FieldError::invalid(
            "metadata.finalizers",
            other.clone(),
            "must be a list of strings",
        )),
    }
    for (i, r) in meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if r.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                errs.push(FieldError::invalid(
                    format!("metadata.ownerReferences[{i}].{f}"),
                    json!(""),
                    format!("{f} must not be empty"),
                ));
            }
        }
    }
    errs
}

fn invalid(rt: &ResourceType, obj: &Value, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(&rt.group, &rt.kind, meta_str(obj, "name"), errs)
}

fn base64_ok(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// What each type's registry strategy does on create and update: defaults,
/// normalisation and validation beyond metadata.
fn prepare(ctx: &Ctx<'_>, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let rt = ctx.rt;
    let mut errs = Vec::new();
    if let Some(custom) = &rt.custom {
        if let Some(schema) = custom.schemas.get(ctx.version) {
            schema::prune(schema, obj, true);
            schema::apply_defaults(schema, obj);
            schema::validate(schema, obj, "", &mut errs);
        }
        return if errs.is_empty() {
            Ok(())
        } else {
            Err(invalid(rt, obj, errs))
        };
    }
    let name = meta_str(obj, "name").to_string();
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            meta_mut(obj)
                .entry("labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|l| l.insert("kubernetes.io/metadata.name".into(), json!(name)));
            if obj.get("spec").is_none()
                && let Some(o) = obj.as_object_mut()
            {
                o.insert("spec".into(), json!({ "finalizers": ["kubernetes"] }));
            }
            if old.is_none()
                && let Some(o) = obj.as_object_mut()
            {
                o.insert("status".into(), json!({ "phase": "Active" }));
            }
        }
        ("", "configmaps") | ("", "secrets") => {
            if rt.plural == "secrets" {
                let string_data = obj.as_object_mut().and_then(|o| o.remove("stringData"));
                if let Some(Value::Object(sd)) = string_data {
                    use base64::Engine;
                    let data = obj
                        .as_object_mut()
                        .map(|o| o.entry("data").or_insert_with(|| json!({})));
                    if let Some(Value::Object(data)) = data {
                        for (k, v) in sd {
                            let s = v.as_str().unwrap_or_default();
                            data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                        }
                    }
                }
                if let Some(o) = obj.as_object_mut() {
                    o.entry("type").or_insert_with(|| json!("Opaque"));
                }
                if let Some(old) = old
                    && old.get("type") != obj.get("type")
                {
                    errs.push(FieldError::invalid(
                        "type",
                        obj.get("type").cloned().unwrap_or_default(),
                        "field is immutable",
                    ));
                }
            }
            for field in ["data", "binaryData"] {
                let Some(entries) = obj.get(field) else { continue };
                let Some(entries) = entries.as_object() else {
                    return Err(ApiError::bad_request(format!(
                        "json: cannot unmarshal into field {field} of type map[string]string"
                    )));
                };
                for (k, v) in entries {
                    let Some(s) = v.as_str() else {
                        return Err(ApiError::bad_request(format!(
                            "json: cannot unmarshal into field {field}[{k}] of type string"
                        )));
                    };
                    let binary = field == "binaryData" || rt.plural == "secrets";
                    if binary && !base64_ok(s) {
                        return Err(ApiError::bad_request(format!("illegal base64 data in {field}[{k}]")));
                    }
                    let key_ok = !k.is_empty()
                        && k.len() <= 253
                        && k.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                    if !key_ok {
                        errs.push(FieldError::invalid(
                            format!("{field}[{k}]"),
                            json!(k),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                        ));
                    }
                }
            }
            if let Some(old) = old
                && old.get("immutable") == Some(&Value::Bool(true))
                && (old.get("data") != obj.get("data") || old.get("binaryData") != obj.get("binaryData"))
            {
                errs.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        ("apps", "deployments") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("replicas").or_insert(json!(1));
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                spec.entry("strategy").or_insert_with(
                    || json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } }),
                );
            }
            let selector = obj.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
            let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
            match selector {
                None if obj.pointer("/spec/selector").is_none() => errs.push(FieldError::required("spec.selector", "")),
                Some(sel) if !sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) => {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        json!(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
                _ => {}
            }
            let containers = obj.pointer("/spec/template/spec/containers").and_then(Value::as_array);
            match containers {
                None => errs.push(FieldError::required("spec.template.spec.containers", "")),
                Some(cs) if cs.is_empty() => errs.push(FieldError::required("spec.template.spec.containers", "")),
                Some(cs) => {
                    for (i, c) in cs.iter().enumerate() {
                        for f in ["name", "image"] {
                            if c.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                                errs.push(FieldError::required(
                                    format!("spec.template.spec.containers[{i}].{f}"),
                                    "",
                                ));
                            }
                        }
                    }
                }
            }
            if let Some(old) = old
                && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
            {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    obj.pointer("/spec/selector").cloned().unwrap_or_default(),
                    "field is immutable",
                ));
            }
        }
        (CRD_GROUP, "customresourcedefinitions") => {
            registry::normalize_crd(obj)?;
            let t = registry::type_from_crd(obj);
            let storage: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect();
            let now = now_rfc3339();
            let cond = |t: &str, reason: &str, msg: &str| json!({ "type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg });
            let names = obj.pointer("/spec/names").cloned().unwrap_or_default();
            let stored = old
                .and_then(|o| o.pointer("/status/storedVersions"))
                .cloned()
                .unwrap_or(json!(storage));
            if let Some(o) = obj.as_object_mut() {
                o.insert(
                    "status".into(),
                    json!({
                        "conditions": [
                            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                        ],
                        "acceptedNames": names,
                        "storedVersions": stored,
                    }),
                );
            }
            if t.versions.is_empty() {
                errs.push(FieldError::invalid(
                    "spec.versions",
                    json!([]),
                    "must have at least one served version",
                ));
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid(rt, obj, errs))
    }
}

fn generate_name(prefix: &str) -> String {
    // The apiserver's alphabet: no vowels (no words) and no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let max = 63 - 5;
    let prefix: String = prefix.chars().take(max).collect();
    format!("{prefix}{suffix}")
}

fn namespace_usable(store: &Store, ns: &str) -> Result<(), ApiError> {
    let key = (String::new(), ns.to_string());
    match store.get(&(String::new(), "namespaces".into()), &key) {
        None => Err(ApiError::not_found(
            crate::status::Target {
                group: "",
                resource: "namespaces",
            },
            ns,
        )),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::new(
            403,
            "Forbidden",
            format!("unable to create new content in namespace {ns} because it is being terminated"),
        )),
        Some(_) => Ok(()),
    }
}

pub fn create(store: &mut Store, ctx: &Ctx<'_>, mut obj: Value) -> Result<Value, ApiError> {
    check_body(ctx, &mut obj)?;
    let rt = ctx.rt;
    {
        let m = meta_mut(&mut obj);
        if rt.namespaced {
            let url_ns = ctx.namespace.unwrap_or("");
            match m.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let name_empty = m.get("name").and_then(Value::as_str).unwrap_or("").is_empty();
        if name_empty && let Some(prefix) = m.get("generateName").and_then(Value::as_str).map(String::from) {
            m.insert("name".into(), json!(generate_name(&prefix)));
        }
        if let Some(rv) = m.get("resourceVersion").and_then(Value::as_str)
            && rv.parse::<u64>().is_ok_and(|n| n != 0)
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        for f in [
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
    if rt.namespaced {
        namespace_usable(store, ctx.namespace.unwrap_or(""))?;
    }
    let errs = validate_meta(rt, &obj);
    if !errs.is_empty() {
        return Err(invalid(rt, &obj, errs));
    }
    if rt.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    prepare(ctx, &mut obj, None)?;
    let name = meta_str(&obj, "name").to_string();
    let key = ctx.key(&name);
    if store.get(&ctx.gr(), &key).is_some() {
        return Err(ApiError::already_exists(rt.target(), &name));
    }
    let m = meta_mut(&mut obj);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if rt.has_generation {
        m.insert("generation".into(), json!(1));
    }
    if ctx.dry_run {
        return Ok(obj);
    }
    let stored = store.commit(&ctx.gr(), key, EventType::Added, obj);
    after_write(store, &stored, rt);
    Ok(stored)
}

/// Everything that `generation` tracks: the object minus metadata (and minus
/// status when status is a subresource).
fn spec_part(rt: &ResourceType, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        if rt.status_subresource {
            m.remove("status");
        }
    }
    o
}

pub fn update(
    store: &mut Store,
    ctx: &Ctx<'_>,
    name: &str,
    mut obj: Value,
    status_only: bool,
) -> Result<Value, ApiError> {
    check_body(ctx, &mut obj)?;
    let rt = ctx.rt;
    {
        let m = meta_mut(&mut obj);
        let body_name = m.get("name").and_then(Value::as_str).unwrap_or("");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if rt.namespaced {
            let url_ns = ctx.namespace.unwrap_or("");
            match m.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            m.remove("namespace");
        }
    }
    let key = ctx.key(name);
    let Some(old) = store.get(&ctx.gr(), &key).cloned() else {
        return Err(ApiError::not_found(rt.target(), name));
    };
    match meta_str(&obj, "resourceVersion") {
        "" if !rt.unconditional_update => {
            return Err(invalid(
                rt,
                &obj,
                vec![FieldError::invalid(
                    "metadata.resourceVersion",
                    json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        "" => {}
        rv if rv.parse::<u64>().ok() != rv_of(&old) => return Err(ApiError::conflict(rt.target(), name)),
        _ => {}
    }
    let mut new = if status_only {
        let mut n = old.clone();
        if let Some(m) = n.as_object_mut() {
            match obj.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
        n
    } else {
        let old_meta = meta(&old).cloned().unwrap_or_default();
        let m = meta_mut(&mut obj);
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        if rt.status_subresource
            && let Some(o) = obj.as_object_mut()
        {
            match old.get("status") {
                Some(s) => o.insert("status".into(), s.clone()),
                None => o.remove("status"),
            };
        }
        obj
    };
    let mut errs = validate_meta(rt, &new);
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        let before = finalizers(&old);
        let added: Vec<String> = finalizers(&new).into_iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                ),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(invalid(rt, &new, errs));
    }
    prepare(ctx, &mut new, Some(&old))?;
    if rt.has_generation && spec_part(rt, &new) != spec_part(rt, &old) {
        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    // Like etcd3's GuaranteedUpdate: an update that changes nothing is not
    // written, keeps the resourceVersion and sends no event.
    meta_mut(&mut new).insert(
        "resourceVersion".into(),
        old.pointer("/metadata/resourceVersion").cloned().unwrap_or_default(),
    );
    if new == old || ctx.dry_run {
        return Ok(new);
    }
    let gone = new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty();
    if gone {
        let stored = store.commit(&ctx.gr(), key, EventType::Deleted, new);
        after_delete(store, rt, &stored);
        return Ok(stored);
    }
    let stored = store.commit(&ctx.gr(), key, EventType::Modified, new);
    after_write(store, &stored, rt);
    Ok(stored)
}

#[derive(Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

pub fn delete(store: &mut Store, ctx: &Ctx<'_>, name: &str, pre: &Preconditions) -> Result<Deleted, ApiError> {
    let rt = ctx.rt;
    let key = ctx.key(name);
    let Some(old) = store.get(&ctx.gr(), &key).cloned() else {
        return Err(ApiError::not_found(rt.target(), name));
    };
    if let Some(uid) = &pre.uid
        && uid != meta_str(&old, "uid")
    {
        let what = format!(
            "UID in precondition: {uid}, UID in object meta: {}",
            meta_str(&old, "uid")
        );
        return Err(ApiError::precondition_failed(rt.target(), name, &what));
    }
    if let Some(rv) = &pre.resource_version
        && rv != meta_str(&old, "resourceVersion")
    {
        let what = format!(
            "ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta_str(&old, "resourceVersion")
        );
        return Err(ApiError::precondition_failed(rt.target(), name, &what));
    }
    if !finalizers(&old).is_empty() {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Deleted::Pending(old));
        }
        let mut marked = old.clone();
        let m = meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        if ctx.dry_run {
            return Ok(Deleted::Pending(marked));
        }
        return Ok(Deleted::Pending(store.commit(
            &ctx.gr(),
            key,
            EventType::Modified,
            marked,
        )));
    }
    if ctx.dry_run {
        return Ok(Deleted::Gone(old));
    }
    let stored = store.commit(&ctx.gr(), key, EventType::Deleted, old);
    after_delete(store, rt, &stored);
    Ok(Deleted::Gone(stored))
}

/// CRDs take effect when written, like the apiextensions controller
/// establishing them (immediately here).
fn after_write(store: &mut Store, obj: &Value, rt: &ResourceType) {
    if rt.group == CRD_GROUP && rt.plural == "customresourcedefinitions" {
        store.registry.register(registry::type_from_crd(obj));
    }
}

/// Cascades the real server runs in controllers, done synchronously here:
/// deleting a namespace deletes its content (finalizers of the content are
/// not waited for), deleting a CRD deletes its custom resources and the
/// resource type.
fn after_delete(store: &mut Store, rt: &ResourceType, obj: &Value) {
    let name = meta_str(obj, "name").to_string();
    if rt.group.is_empty() && rt.plural == "namespaces" {
        let grs: Vec<GroupResource> = store.registry.all().filter(|t| t.namespaced).map(gr).collect();
        for g in grs {
            let keys: Vec<(ObjKey, Value)> = store
                .list(&g, Some(&name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in keys {
                store.commit(&g, k, EventType::Deleted, v);
            }
        }
    } else if rt.group == CRD_GROUP && rt.plural == "customresourcedefinitions" {
        let t = registry::type_from_crd(obj);
        let g = gr(&t);
        let keys: Vec<(ObjKey, Value)> = store.list(&g, None).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in keys {
            store.commit(&g, k, EventType::Deleted, v);
        }
        store.registry.unregister(&t.group, &t.plural);
    }
}
