//! One reconcile of one Greeting: compare what the API server has (as the
//! watch caches see it) with what the Greeting asks for, and write only
//! the difference. Every write is safe to repeat and cannot clobber a
//! concurrent change: creates use deterministic names (409 AlreadyExists
//! means "compare"), updates carry the resourceVersion they were computed
//! from, deletes carry the uid, finalizer patches `test` the list they edit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::backoff;
use crate::greeting::{
    API_VERSION, CONDITION_READY, Condition, FINALIZER, Greeting, GreetingStatus, KIND, MANAGED_BY, MANAGED_BY_LABEL,
    MAX_COPIES, OWNER_LABEL, configmap_index, configmap_name, managed_selector,
};
use crate::watcher::Store;

pub struct Ctx {
    pub greetings: Api<Greeting>,
    pub configmaps: Api<ConfigMap>,
    pub greeting_store: Store<Greeting>,
    pub configmap_store: Store<ConfigMap>,
}

/// What a reconcile achieved, for `/greetings`.
pub struct Done {
    /// ConfigMaps in place; `None` when the Greeting is gone.
    pub copies: Option<i64>,
}

/// Why a reconcile did not finish.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub kind: FailureKind,
    /// The server asked us to wait this long before retrying.
    pub retry_after: Option<Duration>,
    /// ConfigMaps in place despite the failure, if known.
    pub copies: Option<i64>,
}

#[derive(Debug, PartialEq)]
pub enum FailureKind {
    /// Worth retrying as is: the connection, 5xx, 429, a conflict with a
    /// concurrent writer (our cache was behind), a token being rotated.
    Transient,
    /// The API server refused a request (4xx): shown in the status.
    Refused { reason: String },
}

impl Failure {
    fn api(action: String, error: &kube::Error) -> Failure {
        let code = backoff::api_code(error);
        let kind = match code {
            None | Some(401 | 408 | 409 | 410 | 429) | Some(500..) => FailureKind::Transient,
            Some(_) => FailureKind::Refused {
                reason: refusal_reason(error),
            },
        };
        if code == Some(401) || code == Some(403) {
            backoff::log_api_error(&action, error);
        }
        Failure {
            message: format!("{action}: {}", backoff::short(error)),
            kind,
            retry_after: backoff::server_retry_after(error),
            copies: None,
        }
    }

    fn refused(reason: &str, message: String) -> Failure {
        Failure {
            message,
            kind: FailureKind::Refused {
                reason: reason.to_string(),
            },
            retry_after: None,
            copies: None,
        }
    }
}

/// A CamelCase condition reason for a refused request.
fn refusal_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.reason.is_empty() && status.reason.chars().all(char::is_alphanumeric) => {
            status.reason.clone()
        }
        kube::Error::Api(status) => match status.code {
            400 => "BadRequest",
            403 => "Forbidden",
            404 => "NotFound",
            422 => "Invalid",
            _ => "RequestRefused",
        }
        .to_string(),
        _ => "RequestFailed".to_string(),
    }
}

fn is_code(result: &kube::Error, code: u16) -> bool {
    backoff::api_code(result) == Some(code)
}

pub async fn reconcile(ctx: &Ctx, name: &str) -> Result<Done, Failure> {
    let Some(greeting) = ctx.greeting_store.get(name) else {
        collect_orphans(ctx, name).await?;
        return Ok(Done { copies: None });
    };
    if greeting.metadata.deletion_timestamp.is_some() {
        finalize(ctx, &greeting).await?;
        return Ok(Done { copies: None });
    }
    let Some(greeting) = ensure_finalizer(ctx, greeting).await? else {
        return Ok(Done { copies: None });
    };

    let copies = greeting.spec.copies;
    // The CRD's schema bounds copies, but an API server without
    // validation (or an older CRD) may let anything through.
    let (in_place, failure) = if (0..=MAX_COPIES).contains(&copies) {
        apply_configmaps(ctx, &greeting).await
    } else {
        let message = format!("spec.copies is {copies}; it must be between 0 and {MAX_COPIES}");
        (0, Some(Failure::refused("InvalidSpec", message)))
    };
    write_status(ctx, &greeting, in_place, failure.as_ref()).await?;
    match failure {
        None => Ok(Done { copies: Some(in_place) }),
        Some(mut failure) => {
            failure.copies = Some(in_place);
            Err(failure)
        }
    }
}

/// A Greeting that no longer exists (removed without our finalizer, e.g.
/// by force) leaves ConfigMaps nothing else will delete.
async fn collect_orphans(ctx: &Ctx, name: &str) -> Result<(), Failure> {
    // Before the first list completes, absence proves nothing.
    if !ctx.greeting_store.synced() {
        return Ok(());
    }
    for configmap in ctx.configmap_store.list() {
        let meta = &configmap.metadata;
        let labelled = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .map(String::as_str)
            == Some(name);
        let ours =
            meta.name.as_deref().and_then(|n| configmap_index(name, n)).is_some() || owner_uid(meta, name).is_some();
        if labelled && ours && meta.deletion_timestamp.is_none() {
            delete_configmap(ctx, &configmap).await?;
        }
    }
    Ok(())
}

/// The uid of the Greeting `greeting` that owns this object, if any.
fn owner_uid<'a>(meta: &'a ObjectMeta, greeting: &str) -> Option<&'a str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.kind == KIND && r.api_version == API_VERSION && r.name == greeting)
        .map(|r| r.uid.as_str())
}

async fn delete_configmap(ctx: &Ctx, configmap: &ConfigMap) -> Result<(), Failure> {
    let Some(name) = configmap.metadata.name.as_deref() else {
        return Ok(());
    };
    // The uid precondition keeps us from deleting a same-named ConfigMap
    // created since we looked.
    let params = DeleteParams {
        preconditions: configmap.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match ctx.configmaps.delete(name, &params).await {
        Ok(_) => {
            tracing::info!(configmap = name, "deleted ConfigMap");
            Ok(())
        }
        Err(e) if is_code(&e, 404) => Ok(()),
        Err(e) => Err(Failure::api(format!("delete ConfigMap {name}"), &e)),
    }
}

/// Deletion: remove the managed ConfigMaps ourselves (no garbage collector
/// is assumed), then let the Greeting go.
async fn finalize(ctx: &Ctx, greeting: &Greeting) -> Result<(), Failure> {
    let finalizers = greeting.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let name = greeting.metadata.name.as_deref().unwrap_or_default();
    let uid = greeting.metadata.uid.as_deref().unwrap_or_default();
    // A live list, not the cache: leaving one behind is not recoverable
    // once the finalizer is gone.
    let selector = format!("{},{OWNER_LABEL}={name}", managed_selector());
    let live = ctx
        .configmaps
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Failure::api(format!("list ConfigMaps of {name}"), &e))?;
    for configmap in &live.items {
        let meta = &configmap.metadata;
        let ours =
            owner_uid(meta, name) == Some(uid) || meta.name.as_deref().and_then(|n| configmap_index(name, n)).is_some();
        if ours && meta.deletion_timestamp.is_none() {
            delete_configmap(ctx, configmap).await?;
        }
    }
    let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch = json!([
        { "op": "test", "path": "/metadata/finalizers", "value": finalizers },
        { "op": "replace", "path": "/metadata/finalizers", "value": remaining },
    ]);
    if patch_greeting(ctx, name, patch, "remove the finalizer")
        .await?
        .is_some()
    {
        tracing::info!(greeting = name, "cleaned up; finalizer removed");
    }
    Ok(())
}

/// `None`: the Greeting is gone.
async fn ensure_finalizer(ctx: &Ctx, greeting: Arc<Greeting>) -> Result<Option<Arc<Greeting>>, Failure> {
    let name = greeting.metadata.name.as_deref().unwrap_or_default();
    let patch = match &greeting.metadata.finalizers {
        Some(list) if list.iter().any(|f| f == FINALIZER) => return Ok(Some(greeting)),
        Some(list) => json!([
            { "op": "test", "path": "/metadata/finalizers", "value": list },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
        ]),
        // No list to test: pin the whole object instead.
        None => json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": greeting.metadata.resource_version },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ]),
    };
    Ok(patch_greeting(ctx, name, patch, "add the finalizer")
        .await?
        .map(Arc::new))
}

/// `None`: the Greeting is gone (our cache was behind its deletion).
async fn patch_greeting(
    ctx: &Ctx,
    name: &str,
    patch: serde_json::Value,
    action: &str,
) -> Result<Option<Greeting>, Failure> {
    let patch: json_patch::Patch = serde_json::from_value(patch)
        .map_err(|e| Failure::refused("InternalError", format!("{action}: building the patch: {e}")))?;
    match ctx
        .greetings
        .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(updated) => Ok(Some(updated)),
        Err(e) if is_code(&e, 404) => Ok(None),
        // A failed `test`: someone changed the object since our cache saw
        // it. The watch brings the new version; try again then.
        Err(e) if is_code(&e, 422) || is_code(&e, 409) => Err(Failure {
            message: format!("{action}: the Greeting changed concurrently ({})", backoff::short(&e)),
            kind: FailureKind::Transient,
            retry_after: None,
            copies: None,
        }),
        Err(e) => Err(Failure::api(format!("{action} on {name}"), &e)),
    }
}

/// Creates, repairs and deletes ConfigMaps; returns how many of the wanted
/// ones are in place and the first failure.
async fn apply_configmaps(ctx: &Ctx, greeting: &Greeting) -> (i64, Option<Failure>) {
    let name = greeting.metadata.name.as_deref().unwrap_or_default();
    let Some(owner) = owner_reference(greeting) else {
        return (
            0,
            Some(Failure::refused("InvalidObject", "the Greeting has no uid".to_string())),
        );
    };
    let mut in_place = 0;
    let mut first_failure = None;
    for index in 0..greeting.spec.copies {
        match ensure_configmap(ctx, greeting, &owner, &configmap_name(name, index)).await {
            Ok(()) => in_place += 1,
            Err(failure) => {
                first_failure.get_or_insert(failure);
            }
        }
    }
    for configmap in ctx.configmap_store.list() {
        let meta = &configmap.metadata;
        let Some(cm_name) = meta.name.as_deref() else { continue };
        let labelled = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .map(String::as_str)
            == Some(name);
        let index = configmap_index(name, cm_name);
        let ours = index.is_some() || owner_uid(meta, name) == Some(owner.uid.as_str());
        let wanted = index.is_some_and(|i| i < greeting.spec.copies);
        if labelled
            && ours
            && !wanted
            && meta.deletion_timestamp.is_none()
            && let Err(failure) = delete_configmap(ctx, &configmap).await
        {
            first_failure.get_or_insert(failure);
        }
    }
    (in_place, first_failure)
}

fn owner_reference(greeting: &Greeting) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        name: greeting.metadata.name.clone()?,
        uid: greeting.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn desired_data(greeting: &Greeting) -> BTreeMap<String, String> {
    BTreeMap::from([("message".to_string(), greeting.spec.message.clone())])
}

fn desired_labels(greeting: &Greeting) -> [(&'static str, String); 2] {
    [
        (MANAGED_BY_LABEL, MANAGED_BY.to_string()),
        (OWNER_LABEL, greeting.metadata.name.clone().unwrap_or_default()),
    ]
}

/// True when `configmap` is what `greeting` wants (labels and owners that
/// others added are theirs to keep).
fn up_to_date(configmap: &ConfigMap, greeting: &Greeting, owner: &OwnerReference) -> bool {
    let labels = configmap.metadata.labels.as_ref();
    configmap.data.as_ref() == Some(&desired_data(greeting))
        && configmap.binary_data.as_ref().is_none_or(BTreeMap::is_empty)
        && desired_labels(greeting)
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(*k)) == Some(v))
        && configmap.metadata.owner_references.iter().flatten().any(|r| r == owner)
}

/// `configmap` changed into what `greeting` wants, keeping what others set.
fn repaired(configmap: &ConfigMap, greeting: &Greeting, owner: &OwnerReference) -> Result<ConfigMap, Failure> {
    let mut configmap = configmap.clone();
    let name = configmap.metadata.name.clone().unwrap_or_default();
    let references = configmap.metadata.owner_references.get_or_insert_with(Vec::new);
    // Another controller's ConfigMap with our name is not ours to take.
    if let Some(other) = references.iter().find(|r| {
        r.controller == Some(true) && !(r.kind == KIND && r.api_version == API_VERSION && r.name == owner.name)
    }) {
        return Err(Failure::refused(
            "AlreadyOwned",
            format!("ConfigMap {name} is controlled by {} {}", other.kind, other.name),
        ));
    }
    // Drop references to an earlier Greeting of the same name.
    references.retain(|r| !(r.kind == KIND && r.api_version == API_VERSION && r.name == owner.name));
    references.push(owner.clone());
    let labels = configmap.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (key, value) in desired_labels(greeting) {
        labels.insert(key.to_string(), value);
    }
    configmap.data = Some(desired_data(greeting));
    configmap.binary_data = None;
    Ok(configmap)
}

fn fresh_configmap(greeting: &Greeting, owner: &OwnerReference, name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                desired_labels(greeting)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(desired_data(greeting)),
        ..ConfigMap::default()
    }
}

async fn ensure_configmap(ctx: &Ctx, greeting: &Greeting, owner: &OwnerReference, name: &str) -> Result<(), Failure> {
    let mut current = ctx.configmap_store.get(name).map(|c| (*c).clone());
    // Two rounds: a cache that is behind costs one conflict, then we work
    // from the live object.
    for _ in 0..2 {
        let Some(existing) = current.take() else {
            match ctx
                .configmaps
                .create(&PostParams::default(), &fresh_configmap(greeting, owner, name))
                .await
            {
                Ok(_) => {
                    tracing::info!(configmap = name, "created ConfigMap");
                    return Ok(());
                }
                Err(e) if is_code(&e, 409) => {
                    current = live_configmap(ctx, name).await?;
                    continue;
                }
                Err(e) => return Err(Failure::api(format!("create ConfigMap {name}"), &e)),
            }
        };
        if existing.metadata.deletion_timestamp.is_some() {
            return Err(Failure {
                message: format!("ConfigMap {name} is being deleted; recreating it once it is gone"),
                kind: FailureKind::Transient,
                retry_after: None,
                copies: None,
            });
        }
        if up_to_date(&existing, greeting, owner) {
            return Ok(());
        }
        let wanted = repaired(&existing, greeting, owner)?;
        // `wanted` carries the resourceVersion we compared against.
        match ctx.configmaps.replace(name, &PostParams::default(), &wanted).await {
            Ok(_) => {
                tracing::info!(configmap = name, "restored ConfigMap");
                return Ok(());
            }
            Err(e) if is_code(&e, 409) || is_code(&e, 404) => {
                current = live_configmap(ctx, name).await?;
            }
            Err(e) => return Err(Failure::api(format!("update ConfigMap {name}"), &e)),
        }
    }
    Err(Failure {
        message: format!("ConfigMap {name} keeps changing under us; retrying"),
        kind: FailureKind::Transient,
        retry_after: None,
        copies: None,
    })
}

async fn live_configmap(ctx: &Ctx, name: &str) -> Result<Option<ConfigMap>, Failure> {
    ctx.configmaps
        .get_opt(name)
        .await
        .map_err(|e| Failure::api(format!("get ConfigMap {name}"), &e))
}

/// The status this reconcile leads to, keeping the Ready condition's
/// transition time when its status did not change.
fn desired_status(greeting: &Greeting, in_place: i64, failure: Option<&Failure>, now: &str) -> Option<GreetingStatus> {
    let generation = greeting.metadata.generation;
    let current = greeting.status.clone().unwrap_or_default();
    let previous = current.conditions.iter().find(|c| c.type_ == CONDITION_READY);
    let (status, reason, message) = match failure {
        None => (
            "True",
            "Reconciled".to_string(),
            format!("{in_place} of {} ConfigMaps in place", greeting.spec.copies),
        ),
        Some(Failure {
            kind: FailureKind::Refused { reason },
            message,
            ..
        }) => ("False", reason.clone(), message.clone()),
        // Transient trouble (a conflict, a connection): the next attempt
        // will most likely fix it; flapping the condition would only
        // produce more watch events.
        Some(_) => return None,
    };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.to_string(),
    };
    let ready = Condition {
        type_: CONDITION_READY.to_string(),
        status: status.to_string(),
        reason,
        message,
        last_transition_time,
        observed_generation: generation,
    };
    let mut conditions: Vec<Condition> = current
        .conditions
        .iter()
        .filter(|c| c.type_ != CONDITION_READY)
        .cloned()
        .collect();
    conditions.push(ready);
    Some(GreetingStatus {
        observed_generation: generation,
        copies: in_place,
        conditions,
    })
}

async fn write_status(ctx: &Ctx, greeting: &Greeting, in_place: i64, failure: Option<&Failure>) -> Result<(), Failure> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let Some(status) = desired_status(greeting, in_place, failure, &now.to_string()) else {
        return Ok(());
    };
    // Status writes are watch events too: an unchanged status is not written.
    if greeting.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = greeting.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({ "status": status });
    match ctx
        .greetings
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, 404) => Ok(()),
        Err(e) => Err(Failure::api(format!("write the status of {name}"), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greeting::GreetingSpec;

    fn greeting(copies: i64) -> Greeting {
        let mut g = Greeting::new(
            "hello",
            GreetingSpec {
                message: "hi".into(),
                copies,
            },
        );
        g.metadata.uid = Some("uid-1".into());
        g.metadata.generation = Some(2);
        g
    }

    #[test]
    fn fresh_configmaps_are_up_to_date() -> Result<(), String> {
        let g = greeting(2);
        let owner = owner_reference(&g).ok_or("no owner")?;
        let cm = fresh_configmap(&g, &owner, "hello-greeting-0");
        assert!(up_to_date(&cm, &g, &owner));
        let mut edited = cm.clone();
        edited.data = Some(BTreeMap::from([("message".into(), "bye".into())]));
        assert!(!up_to_date(&edited, &g, &owner));
        let fixed = repaired(&edited, &g, &owner).map_err(|f| f.message)?;
        assert!(up_to_date(&fixed, &g, &owner));
        let mut extra = cm.clone();
        extra
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("x".into(), "y".into());
        assert!(!up_to_date(&extra, &g, &owner));
        Ok(())
    }

    #[test]
    fn repair_keeps_foreign_labels_and_replaces_a_stale_owner() -> Result<(), String> {
        let g = greeting(1);
        let owner = owner_reference(&g).ok_or("no owner")?;
        let mut cm = fresh_configmap(&g, &owner, "hello-greeting-0");
        cm.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("team".into(), "a".into());
        cm.metadata.labels.get_or_insert_with(BTreeMap::new).remove(OWNER_LABEL);
        let stale = OwnerReference {
            uid: "uid-0".into(),
            ..owner.clone()
        };
        cm.metadata.owner_references = Some(vec![stale]);
        let fixed = repaired(&cm, &g, &owner).map_err(|f| f.message)?;
        assert!(up_to_date(&fixed, &g, &owner));
        assert_eq!(
            fixed
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("team"))
                .map(String::as_str),
            Some("a")
        );
        assert_eq!(fixed.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        Ok(())
    }

    #[test]
    fn another_controllers_configmap_is_refused() -> Result<(), String> {
        let g = greeting(1);
        let owner = owner_reference(&g).ok_or("no owner")?;
        let mut cm = fresh_configmap(&g, &owner, "hello-greeting-0");
        cm.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert!(repaired(&cm, &g, &owner).is_err());
        Ok(())
    }

    #[test]
    fn status_is_stable_across_reconciles() {
        let mut g = greeting(3);
        let first = desired_status(&g, 3, None, "2026-01-01T00:00:00Z");
        assert_eq!(first.as_ref().map(|s| s.copies), Some(3));
        g.status = first.clone();
        let second = desired_status(&g, 3, None, "2026-01-01T00:05:00Z");
        assert_eq!(first, second, "same outcome, same status: no write");
        let refused = Failure::refused("Forbidden", "create ConfigMap hello-greeting-2: 403".into());
        let third = desired_status(&g, 2, Some(&refused), "2026-01-01T00:06:00Z");
        let ready = third
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY));
        assert_eq!(
            ready.map(|c| (c.status.as_str(), c.reason.as_str())),
            Some(("False", "Forbidden"))
        );
        assert_eq!(
            ready.map(|c| c.last_transition_time.as_str()),
            Some("2026-01-01T00:06:00Z")
        );
        let transient = Failure {
            message: "conflict".into(),
            kind: FailureKind::Transient,
            retry_after: None,
            copies: None,
        };
        assert_eq!(desired_status(&g, 2, Some(&transient), "now"), None);
    }
}
