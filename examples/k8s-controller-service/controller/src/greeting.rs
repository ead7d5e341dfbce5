//! The `Greeting` custom resource and the names and labels the controller
//! gives what it manages. `crd.yaml` next to the crate is the same schema,
//! written out for `kubectl apply` (`--print-crd` prints the derived one).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "demo.loophost.dev/v1";
pub const KIND: &str = "Greeting";
pub const FINALIZER: &str = "demo.loophost.dev/cleanup";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "loophost-greeter";
pub const OWNER_LABEL: &str = "demo.loophost.dev/greeting";
pub const MAX_COPIES: i64 = 20;
pub const CONDITION_READY: &str = "Ready";

/// Keep `copies` ConfigMaps named `<name>-greeting-<i>`, each with `data.message`.
// Several printcolumn(...) repeat the same keys by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "demo.loophost.dev",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus",
    shortname = "gr",
    printcolumn(name = "Message", type_ = "string", json_path = ".spec.message"),
    printcolumn(name = "Copies", type_ = "integer", json_path = ".spec.copies"),
    printcolumn(name = "In place", type_ = "integer", json_path = ".status.copies"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct GreetingSpec {
    pub message: String,
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 20))]
    pub copies: i64,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GreetingStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub copies: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// Hand-written because k8s-openapi's Condition has no JSON schema without
// its `schemars` feature (which pulls schemars into every type it has).
/// A standard condition (the shape of metav1.Condition).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The name of the `index`th ConfigMap of Greeting `greeting`.
pub fn configmap_name(greeting: &str, index: i64) -> String {
    format!("{greeting}-greeting-{index}")
}

/// The index encoded in a managed ConfigMap's name, if it is one of
/// `greeting`'s deterministic names.
pub fn configmap_index(greeting: &str, configmap: &str) -> Option<i64> {
    let index = configmap.strip_prefix(greeting)?.strip_prefix("-greeting-")?;
    // "01" is not a name we would give: only canonical decimal counts.
    if index.is_empty() || (index.len() > 1 && index.starts_with('0')) {
        return None;
    }
    index.parse().ok().filter(|i| *i >= 0)
}

/// The label selector of every ConfigMap this controller manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(configmap_name("hello", 3), "hello-greeting-3");
        assert_eq!(configmap_index("hello", "hello-greeting-3"), Some(3));
        assert_eq!(configmap_index("hello", "hello-greeting-03"), None);
        assert_eq!(configmap_index("hello", "hello-greeting-"), None);
        assert_eq!(configmap_index("hello", "hello-greeting--1"), None);
        assert_eq!(configmap_index("hell", "hello-greeting-1"), None);
        // A Greeting named "a-greeting-1" does not own "a-greeting-1-greeting-0"'s parent's names.
        assert_eq!(configmap_index("a", "a-greeting-1-greeting-0"), None);
    }

    #[test]
    fn copies_default_to_one() -> Result<(), serde_json::Error> {
        let spec: GreetingSpec = serde_json::from_str(r#"{"message":"hi"}"#)?;
        assert_eq!(spec.copies, 1);
        Ok(())
    }
}
