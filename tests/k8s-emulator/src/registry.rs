//! Which resources exist: the built-in types and the ones CRDs add, and the
//! discovery documents (`/api`, `/apis`, `/apis/<g>/<v>`) that describe them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::status::{ApiError, FieldError};

pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// How names are validated, per type, as in the real registry strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most types.
    Subdomain,
    /// RFC 1123 label: namespaces.
    Label,
    /// Anything usable as a path segment: RBAC objects.
    PathSegment,
}

/// A CRD version's printer column (`additionalPrinterColumns`).
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained (it is not for ConfigMaps,
    /// Secrets, RBAC objects, ... in the real server).
    pub has_generation: bool,
    /// Built-in strategies allow PUT without `metadata.resourceVersion`;
    /// custom resources (and CRDs) do not.
    pub unconditional_update: bool,
    /// Strategic merge patch is only understood for built-in types.
    pub strategic_merge: bool,
    pub name_rule: NameRule,
    /// Set for types defined by a CRD: per version, its schema and columns.
    pub custom: Option<CustomInfo>,
}

#[derive(Debug, Clone, Default)]
pub struct CustomInfo {
    pub schemas: BTreeMap<String, Value>,
    pub columns: BTreeMap<String, Vec<PrinterColumn>>,
}

impl ResourceType {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn target(&self) -> crate::status::Target<'_> {
        crate::status::Target {
            group: &self.group,
            resource: &self.plural,
        }
    }

    /// `configmaps` / `greetings.demo.loophost.dev`, the key used by counters.
    pub fn qualified(&self) -> String {
        self.target().qualified()
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    plural: &str,
    singular: &str,
    kind: &str,
    short: &[&str],
    namespaced: bool,
    status: bool,
    generation: bool,
    name_rule: NameRule,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        versions: vec!["v1".into()],
        plural: plural.into(),
        singular: singular.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        namespaced,
        status_subresource: status,
        has_generation: generation,
        unconditional_update: true,
        strategic_merge: true,
        name_rule,
        custom: None,
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    /// Keyed by (group, plural).
    types: BTreeMap<(String, String), ResourceType>,
}

pub const CRD_GROUP: &str = "apiextensions.k8s.io";

impl Registry {
    pub fn with_builtins() -> Self {
        use NameRule::*;
        let mut deployments = builtin(
            "apps",
            "deployments",
            "deployment",
            "Deployment",
            &["deploy"],
            true,
            true,
            true,
            Subdomain,
        );
        deployments.categories = vec!["all".into()];
        let mut crds = builtin(
            CRD_GROUP,
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            &["crd", "crds"],
            false,
            true,
            true,
            Subdomain,
        );
        crds.unconditional_update = false;
        crds.categories = vec!["api-extensions".into()];
        // CRDs are served by apiextensions-apiserver, which (like every
        // non-core API there) takes merge and JSON patches only.
        crds.strategic_merge = false;
        let types = [
            builtin(
                "",
                "namespaces",
                "namespace",
                "Namespace",
                &["ns"],
                false,
                true,
                false,
                Label,
            ),
            builtin(
                "",
                "configmaps",
                "configmap",
                "ConfigMap",
                &["cm"],
                true,
                false,
                false,
                Subdomain,
            ),
            builtin("", "secrets", "secret", "Secret", &[], true, false, false, Subdomain),
            builtin(
                "",
                "serviceaccounts",
                "serviceaccount",
                "ServiceAccount",
                &["sa"],
                true,
                false,
                false,
                Subdomain,
            ),
            builtin("", "events", "event", "Event", &["ev"], true, false, false, Subdomain),
            deployments,
            // What kube-rs' event recorder and lease-based leader election use.
            builtin(
                "events.k8s.io",
                "events",
                "event",
                "Event",
                &[],
                true,
                false,
                false,
                Subdomain,
            ),
            builtin(
                "coordination.k8s.io",
                "leases",
                "lease",
                "Lease",
                &[],
                true,
                false,
                false,
                Subdomain,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "roles",
                "role",
                "Role",
                &[],
                true,
                false,
                false,
                PathSegment,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "rolebindings",
                "rolebinding",
                "RoleBinding",
                &[],
                true,
                false,
                false,
                PathSegment,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "clusterroles",
                "clusterrole",
                "ClusterRole",
                &[],
                false,
                false,
                false,
                PathSegment,
            ),
            builtin(
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                "clusterrolebinding",
                "ClusterRoleBinding",
                &[],
                false,
                false,
                false,
                PathSegment,
            ),
            crds,
        ];
        Registry {
            types: types
                .into_iter()
                .map(|t| ((t.group.clone(), t.plural.clone()), t))
                .collect(),
        }
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.versions.iter().any(|v| v == version))
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    pub fn register(&mut self, t: ResourceType) {
        self.types.insert((t.group.clone(), t.plural.clone()), t);
    }

    pub fn unregister(&mut self, group: &str, plural: &str) {
        self.types.remove(&(group.to_string(), plural.to_string()));
    }

    /// Groups in discovery order: core first, then built-ins, then CRD groups
    /// (the real server orders by priority; clients do not depend on it).
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut ordered: Vec<&ResourceType> = self.types.values().collect();
        ordered.sort_by_key(|t| (t.custom.is_some(), t.group.clone()));
        for t in ordered {
            if t.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    for v in &t.versions {
                        if !versions.contains(v) {
                            versions.push(v.clone());
                        }
                    }
                    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                }
                None => out.push((t.group.clone(), t.versions.clone())),
            }
        }
        out
    }

    pub fn api_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
        })
    }

    fn group_doc(name: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
            .collect();
        json!({ "name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null) })
    }

    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self.groups().iter().map(|(g, vs)| Self::group_doc(g, vs)).collect();
        json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
    }

    pub fn group(&self, name: &str) -> Option<Value> {
        let (g, vs) = self.groups().into_iter().find(|(g, _)| g == name)?;
        let mut doc = Self::group_doc(&g, &vs);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for t in self
            .types
            .values()
            .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        {
            let mut r = json!({
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": VERBS,
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            resources.push(r);
            if t.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", t.plural),
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }))
    }
}

/// Kubernetes' version ordering: GA before beta before alpha, higher numbers
/// first, anything not of the form `v<N>[(alpha|beta)<M>]` last.
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2), ("alpha", 1)] {
        if let Some(n) = tail.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok()) {
            return (rank, major, n);
        }
    }
    (0, 0, 0)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Validates a CustomResourceDefinition (the checks its clients rely on) and
/// fills the defaults the real server writes back (`singular`, `listKind`,
/// `conversion`).
pub fn normalize_crd(crd: &mut Value) -> Result<(), ApiError> {
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default().to_string();
    let mut errs = Vec::new();
    let group = str_at(crd, &["spec", "group"]).unwrap_or_default().to_string();
    let plural = str_at(crd, &["spec", "names", "plural"])
        .unwrap_or_default()
        .to_string();
    let kind = str_at(crd, &["spec", "names", "kind"]).unwrap_or_default().to_string();
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match str_at(crd, &["spec", "scope"]) {
        Some("Namespaced") | Some("Cluster") => {}
        Some(other) => errs.push(FieldError::unsupported(
            "spec.scope",
            json!(other),
            "supported values: \"Cluster\", \"Namespaced\"",
        )),
        None => errs.push(FieldError::required("spec.scope", "")),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                Value::Array(versions.clone()),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            if v.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("spec.versions[{i}].name"), ""));
            }
            if v.pointer("/schema/openAPIV3Schema").is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(CRD_GROUP, "CustomResourceDefinition", &name, errs));
    }
    let lower = kind.to_lowercase();
    if let Some(names) = crd.pointer_mut("/spec/names").and_then(Value::as_object_mut) {
        names.entry("singular").or_insert_with(|| json!(lower));
        names.entry("listKind").or_insert_with(|| json!(format!("{kind}List")));
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({ "strategy": "None" }));
    }
    Ok(())
}

/// The resource type a (normalized) CRD defines.
pub fn type_from_crd(crd: &Value) -> ResourceType {
    let s = |p: &[&str]| str_at(crd, p).unwrap_or_default().to_string();
    let list = |p: &str| -> Vec<String> {
        crd.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let mut custom = CustomInfo::default();
    let mut versions = Vec::new();
    let mut status = false;
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        status |= v.pointer("/subresources/status").is_some();
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            custom.schemas.insert(name.clone(), schema.clone());
        }
        let mut cols: Vec<PrinterColumn> = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                PrinterColumn {
                    name: f("name"),
                    type_: f("type"),
                    format: f("format"),
                    description: f("description"),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    json_path: f("jsonPath"),
                }
            })
            .collect();
        if cols.is_empty() {
            // What the real server shows for CRs without printer columns.
            cols.push(PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            });
        }
        custom.columns.insert(name.clone(), cols);
        versions.push(name);
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    let kind = s(&["spec", "names", "kind"]);
    ResourceType {
        group: s(&["spec", "group"]),
        versions,
        plural: s(&["spec", "names", "plural"]),
        singular: str_at(crd, &["spec", "names", "singular"])
            .map(String::from)
            .unwrap_or_else(|| kind.to_lowercase()),
        list_kind: str_at(crd, &["spec", "names", "listKind"])
            .map(String::from)
            .unwrap_or_else(|| format!("{kind}List")),
        kind,
        short_names: list("/spec/names/shortNames"),
        categories: list("/spec/names/categories"),
        namespaced: str_at(crd, &["spec", "scope"]) == Some("Namespaced"),
        status_subresource: status,
        has_generation: true,
        unconditional_update: false,
        strategic_merge: false,
        name_rule: NameRule::Subdomain,
        custom: Some(custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v2beta1", "v1", "foo", "v2", "v1beta2"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }
}
