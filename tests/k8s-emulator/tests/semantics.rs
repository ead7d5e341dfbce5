//! API semantics over real HTTPS: resourceVersion and generation rules,
//! conflicts, validation, pagination, watch replay/410/bookmarks,
//! finalizers, patches, CRD registration and defaulting.

mod common;

use std::time::Duration;

use common::*;
use k8s_emulator::{BlockingEmulator, Emulator, EmulatorConfig, Gvr};
use serde_json::{Value, json};

fn start() -> (BlockingEmulator, Client) {
    let emu = Emulator::start_blocking(EmulatorConfig {
        bookmark_interval: Duration::from_millis(200),
        ..EmulatorConfig::default()
    })
    .expect("start emulator");
    let client = Client::for_emulator(&emu);
    (emu, client)
}

fn with_crd() -> (BlockingEmulator, Client) {
    let (emu, c) = start();
    let r = c.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &greeting_crd(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    (emu, c)
}

fn greeting(name: &str, message: &str) -> Value {
    json!({ "apiVersion": "demo.loophost.dev/v1", "kind": "Greeting", "metadata": { "name": name }, "spec": { "message": message } })
}

#[test]
fn unauthenticated_requests_get_a_401_status() {
    let (emu, mut c) = start();
    c.token = "wrong".into();
    let r = c.get("/api/v1/namespaces");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    assert_eq!(emu.unauthorized_count(), 1);
}

#[test]
fn discovery_lists_builtins_and_crd_resources() {
    let (_emu, c) = with_crd();
    let groups = c.get("/apis").body;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "demo.loophost.dev",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    let list = c.get("/apis/demo.loophost.dev/v1").body;
    assert_eq!(list["groupVersion"], "demo.loophost.dev/v1");
    let res = list["resources"].as_array().unwrap();
    assert_eq!(res[0]["name"], "greetings");
    assert_eq!(res[0]["kind"], "Greeting");
    assert_eq!(res[0]["namespaced"], true);
    assert_eq!(res[0]["shortNames"], json!(["gr"]));
    assert_eq!(res[1]["name"], "greetings/status");
    let core = c.get("/api/v1").body;
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "configmaps" && r["verbs"].as_array().unwrap().len() == 8)
    );
    assert_eq!(c.get("/version").body["gitVersion"], "v1.30.0");
}

#[test]
fn resource_version_generation_and_status_rules() {
    let (emu, c) = with_crd();
    let created = c.post(GREETINGS, &greeting("a", "hi")).body;
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["copies"], 1, "schema default applied");
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string());
    let rv1 = rv(&created);
    assert_eq!(rv1, emu.resource_version());

    // Metadata-only change: new resourceVersion, same generation.
    let mut obj = created.clone();
    obj["metadata"]["labels"] = json!({"x": "y"});
    let updated = c.put(&format!("{GREETINGS}/a"), &obj).body;
    assert!(rv(&updated) > rv1);
    assert_eq!(updated["metadata"]["generation"], 1);

    // Status through the main resource is ignored, no generation bump.
    let mut obj = updated.clone();
    obj["status"] = json!({"ready": true});
    let same = c.put(&format!("{GREETINGS}/a"), &obj).body;
    assert!(same.get("status").is_none());
    assert_eq!(rv(&same), rv(&updated), "a no-op update is not written");

    // Status subresource: status changes, spec changes ignored, generation kept.
    let mut obj = same.clone();
    obj["status"] = json!({"ready": true, "observedGeneration": 1});
    obj["spec"]["message"] = json!("ignored");
    let st = c.put(&format!("{GREETINGS}/a/status"), &obj).body;
    assert_eq!(st["status"]["ready"], true);
    assert_eq!(st["spec"]["message"], "hi");
    assert_eq!(st["metadata"]["generation"], 1);

    // Spec change bumps generation.
    let mut obj = st.clone();
    obj["spec"]["message"] = json!("hello");
    let bumped = c.put(&format!("{GREETINGS}/a"), &obj).body;
    assert_eq!(bumped["metadata"]["generation"], 2);
    assert_eq!(bumped["status"]["ready"], true, "status kept by main-resource update");

    // Stale resourceVersion → 409 Conflict.
    let r = c.put(&format!("{GREETINGS}/a"), &obj);
    assert_eq!(r.status, 409);
    assert_eq!(r.body["reason"], "Conflict");
    assert_eq!(r.body["details"]["group"], "demo.loophost.dev");

    // Custom resources need a resourceVersion on update.
    let mut no_rv = bumped.clone();
    no_rv["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    let r = c.put(&format!("{GREETINGS}/a"), &no_rv);
    assert_eq!(r.status, 422, "{}", r.body);

    // ConfigMaps have no generation and allow unconditional updates.
    let cm = c.post(CONFIGMAPS, &configmap("c", json!({"k": "v"}))).body;
    assert!(cm["metadata"].get("generation").is_none());
    let r = c.put(&format!("{CONFIGMAPS}/c"), &configmap("c", json!({"k": "w"})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        emu.get(&Gvr::new("", "v1", "configmaps"), Some("default"), "c")
            .unwrap()["data"]["k"],
        "w"
    );
}

#[test]
fn errors_are_status_objects() {
    let (emu, c) = with_crd();
    c.post(CONFIGMAPS, &configmap("dup", json!({})));
    let r = c.post(CONFIGMAPS, &configmap("dup", json!({})));
    assert_eq!((r.status, r.body["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(r.body["message"], "configmaps \"dup\" already exists");
    let r = c.get(&format!("{CONFIGMAPS}/nope"));
    assert_eq!((r.status, r.body["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(r.body["details"], json!({"name": "nope", "kind": "configmaps"}));
    let r = c.post(CONFIGMAPS, &configmap("Bad_Name", json!({})));
    assert_eq!((r.status, r.body["reason"].as_str()), (422, Some("Invalid")));
    let r = c.post(
        GREETINGS,
        &json!({"apiVersion": "demo.loophost.dev/v1", "kind": "Greeting",
        "metadata": {"name": "g"}, "spec": {"copies": "three"}}),
    );
    assert_eq!(r.status, 422);
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Greeting.demo.loophost.dev \"g\" is invalid: ["),
        "{msg}"
    );
    assert!(msg.contains("spec.message: Required value"), "{msg}");
    let r = c.request("POST", CONFIGMAPS, "application/json", None);
    assert_eq!(r.status, 400);
    let r = c.post("/api/v1/namespaces/missing/configmaps", &configmap("x", json!({})));
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (404, Some("namespaces \"missing\" not found"))
    );
    // generateName
    let r = c.post(CONFIGMAPS, &json!({"metadata": {"generateName": "gen-"}}));
    assert_eq!(r.status, 201);
    assert!(r.body["metadata"]["name"].as_str().unwrap().starts_with("gen-"));
    let gvr = Gvr::new("", "v1", "configmaps");
    assert_eq!(emu.create_calls(&gvr), 6);
    assert_eq!(emu.creates_succeeded(&gvr), 2);
}

#[test]
fn list_selectors_and_pagination() {
    let (_emu, c) = start();
    for i in 0..7 {
        let mut cm = configmap(&format!("cm{i}"), json!({}));
        cm["metadata"]["labels"] = json!({"tier": if i % 2 == 0 { "even" } else { "odd" }});
        assert_eq!(c.post(CONFIGMAPS, &cm).status, 201);
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&c.get(&format!("{CONFIGMAPS}?labelSelector=tier%3Dodd")).body),
        ["cm1", "cm3", "cm5"]
    );
    assert_eq!(
        names(
            &c.get(&format!("{CONFIGMAPS}?labelSelector=tier+in+(odd)%2C!missing"))
                .body
        ),
        ["cm1", "cm3", "cm5"]
    );
    assert_eq!(
        names(&c.get(&format!("{CONFIGMAPS}?fieldSelector=metadata.name%3Dcm4")).body),
        ["cm4"]
    );

    let first = c.get(&format!("{CONFIGMAPS}?limit=3")).body;
    assert_eq!(names(&first), ["cm0", "cm1", "cm2"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 4);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // A change after the first page does not show in later pages: pages
    // come from the snapshot at the list's resourceVersion.
    c.post(CONFIGMAPS, &configmap("cm3a", json!({})));
    c.delete(&format!("{CONFIGMAPS}/cm5"));
    let second = c.get(&format!("{CONFIGMAPS}?limit=3&continue={token}")).body;
    assert_eq!(names(&second), ["cm3", "cm4", "cm5"]);
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let token = second["metadata"]["continue"].as_str().unwrap().to_string();
    let third = c.get(&format!("{CONFIGMAPS}?limit=3&continue={token}")).body;
    assert_eq!(names(&third), ["cm6"]);
    assert!(third["metadata"].get("continue").is_none());
}

#[test]
fn continue_token_expires_after_compaction() {
    let (emu, c) = start();
    for i in 0..3 {
        c.post(CONFIGMAPS, &configmap(&format!("cm{i}"), json!({})));
    }
    let first = c.get(&format!("{CONFIGMAPS}?limit=1")).body;
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    c.post(CONFIGMAPS, &configmap("later", json!({})));
    emu.compact();
    let r = c.get(&format!("{CONFIGMAPS}?limit=1&continue={token}"));
    assert_eq!((r.status, r.body["reason"].as_str()), (410, Some("Expired")));
}

#[test]
fn watch_replays_from_resource_version_and_streams() {
    let (_emu, c) = start();
    let a = c.post(CONFIGMAPS, &configmap("a", json!({"v": "1"}))).body;
    let from = rv(&a);
    c.post(CONFIGMAPS, &configmap("b", json!({})));
    c.put(&format!("{CONFIGMAPS}/a"), &configmap("a", json!({"v": "2"})));
    c.delete(&format!("{CONFIGMAPS}/b"));
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={from}"));
    assert_eq!(w.status, 200);
    let seen: Vec<(String, String)> = (0..3)
        .map(|_| {
            let e = w.event();
            (
                e["type"].as_str().unwrap().into(),
                e["object"]["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ADDED".into(), "b".into()),
            ("MODIFIED".into(), "a".into()),
            ("DELETED".into(), "b".into())
        ]
    );
    c.post(CONFIGMAPS, &configmap("c", json!({})));
    let e = w.event();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("c"))
    );
    assert_eq!(e["object"]["kind"], "ConfigMap");

    // No resourceVersion: the current objects as ADDED first.
    let w2 = c.watch(&format!("{CONFIGMAPS}?watch=true&timeoutSeconds=1"));
    let names: Vec<Value> = (0..2)
        .map(|_| w2.event()["object"]["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("c")]);
    assert_eq!(
        w2.ended(Duration::from_secs(5)),
        Some("ended"),
        "timeoutSeconds ends the watch"
    );
}

#[test]
fn watch_with_selector_translates_events() {
    let (_emu, c) = start();
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1&labelSelector=app%3Dx"));
    let mut cm = configmap("s", json!({}));
    c.post(CONFIGMAPS, &cm);
    cm["metadata"]["labels"] = json!({"app": "x"});
    c.put(&format!("{CONFIGMAPS}/s"), &cm);
    cm["metadata"]["labels"] = json!({"app": "y"});
    c.put(&format!("{CONFIGMAPS}/s"), &cm);
    assert_eq!(w.event()["type"], "ADDED");
    assert_eq!(w.event()["type"], "DELETED");
}

#[test]
fn watch_from_compacted_resource_version_gets_410_event() {
    let (emu, c) = start();
    let a = c.post(CONFIGMAPS, &configmap("a", json!({}))).body;
    c.post(CONFIGMAPS, &configmap("b", json!({})));
    let at = emu.compact();
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={}", rv(&a)));
    assert_eq!(w.status, 200, "the real server reports expiry inside the stream");
    let e = w.event();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert_eq!(w.ended(Duration::from_secs(5)), Some("ended"));
    // From the compaction point itself is fine.
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={at}&timeoutSeconds=1"));
    assert_eq!(w.ended(Duration::from_secs(5)), Some("ended"));
    // An exact list at a compacted resourceVersion is a 410 HTTP status.
    let r = c.get(&format!(
        "{CONFIGMAPS}?resourceVersion={}&resourceVersionMatch=Exact",
        rv(&a)
    ));
    assert_eq!(r.status, 410);
}

#[test]
fn bookmarks_carry_the_latest_resource_version() {
    let (_emu, c) = start();
    let w = c.watch(&format!(
        "{CONFIGMAPS}?watch=1&allowWatchBookmarks=true&resourceVersion=1"
    ));
    let created = c.post(CONFIGMAPS, &configmap("a", json!({}))).body;
    loop {
        let e = w.event();
        if e["type"] == "BOOKMARK" {
            assert_eq!(e["object"]["kind"], "ConfigMap");
            if e["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"] {
                break;
            }
        } else {
            assert_eq!(e["type"], "ADDED");
        }
    }
    // Streaming list: initial ADDED then the initial-events-end bookmark.
    let w = c.watch(&format!(
        "{CONFIGMAPS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
    ));
    assert_eq!(w.event()["type"], "ADDED");
    let b = w.event();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[test]
fn finalizers_delay_deletion_until_removed() {
    let (emu, c) = with_crd();
    let mut g = greeting("f", "bye");
    g["metadata"]["finalizers"] = json!(["demo.loophost.dev/cleanup"]);
    let created = c.post(GREETINGS, &g).body;
    let w = c.watch(&format!("{GREETINGS}?watch=1&resourceVersion={}", rv(&created)));
    let r = c.delete(&format!("{GREETINGS}/f"));
    assert_eq!(r.status, 200);
    assert!(r.body["metadata"]["deletionTimestamp"].is_string(), "{}", r.body);
    let e = w.event();
    assert_eq!(e["type"], "MODIFIED");
    assert!(e["object"]["metadata"]["deletionTimestamp"].is_string());
    let gvr = Gvr::new("demo.loophost.dev", "v1", "greetings");
    assert!(emu.get(&gvr, Some("default"), "f").is_some());
    // Adding a finalizer while deleting is forbidden.
    let r = c.patch(
        &format!("{GREETINGS}/f"),
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": ["demo.loophost.dev/cleanup", "other/x"]}}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = c.patch(
        &format!("{GREETINGS}/f"),
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let e = w.event();
    assert_eq!(e["type"], "DELETED");
    assert!(emu.get(&gvr, Some("default"), "f").is_none());
    // Without finalizers: gone at once, a Success Status.
    c.post(GREETINGS, &greeting("g", "x"));
    let r = c.delete(&format!("{GREETINGS}/g"));
    assert_eq!(r.body["status"], "Success");
    assert_eq!(w.event()["type"], "ADDED");
    assert_eq!(w.event()["type"], "DELETED");
}

#[test]
fn patch_types() {
    let (_emu, c) = with_crd();
    c.post(GREETINGS, &greeting("p", "a"));
    let path = format!("{GREETINGS}/p");
    let r = c.patch(&path, "application/merge-patch+json", &json!({"spec": {"copies": 3}}));
    assert_eq!((r.status, r.body["spec"]["copies"].as_i64()), (200, Some(3)));
    assert_eq!(r.body["metadata"]["generation"], 2);
    let r = c.patch(
        &path,
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/spec/copies", "value": 9}]),
    );
    assert_eq!((r.status, r.body["reason"].as_str()), (422, Some("Invalid")));
    let r = c.patch(
        &path,
        "application/json-patch+json",
        &json!([{"op": "test", "path": "/spec/copies", "value": 3}, {"op": "replace", "path": "/spec/message", "value": "b"}]),
    );
    assert_eq!(r.body["spec"]["message"], "b");
    let r = c.patch(
        &path,
        "application/strategic-merge-patch+json",
        &json!({"spec": {"copies": 1}}),
    );
    assert_eq!(r.status, 415, "no strategic merge patch for custom resources");
    let r = c.patch(
        &format!("{path}/status"),
        "application/merge-patch+json",
        &json!({"status": {"ready": true}}),
    );
    assert_eq!(
        (
            r.body["status"]["ready"].as_bool(),
            r.body["metadata"]["generation"].as_i64()
        ),
        (Some(true), Some(3))
    );
    // Stale resourceVersion inside a patch is a precondition.
    let r = c.patch(
        &path,
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": "2"}, "spec": {"copies": 5}}),
    );
    assert_eq!(r.status, 409);
    // Server-side apply creates, then merges; fieldManager is required.
    let applied =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "2"}});
    let r = c.patch(&format!("{CONFIGMAPS}/ssa"), "application/apply-patch+yaml", &applied);
    assert_eq!(r.status, 400);
    let ssa = format!("{CONFIGMAPS}/ssa?fieldManager=test&force=true");
    assert_eq!(c.patch(&ssa, "application/apply-patch+yaml", &applied).status, 201);
    c.patch(
        &format!("{CONFIGMAPS}/ssa"),
        "application/merge-patch+json",
        &json!({"data": {"other": "x"}}),
    );
    let applied2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "3"}});
    let r = c.patch(&ssa, "application/apply-patch+yaml", &applied2);
    assert_eq!(r.body["data"], json!({"a": "3", "other": "x"}));
    // Strategic merge on a Deployment merges containers by name.
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}});
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    assert_eq!(c.post(deps, &dep).status, 201);
    let r = c.patch(
        &format!("{deps}/d"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}),
    );
    assert_eq!(
        r.body["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}])
    );
    assert_eq!(r.body["metadata"]["generation"], 2);
}

#[test]
fn dry_run_validates_without_persisting() {
    let (emu, c) = with_crd();
    let rv_before = emu.resource_version();
    let r = c.post(&format!("{CONFIGMAPS}?dryRun=All"), &configmap("dry", json!({})));
    assert_eq!(r.status, 201);
    let r = c.post(&format!("{CONFIGMAPS}?dryRun=All"), &configmap("Bad!", json!({})));
    assert_eq!(r.status, 422);
    assert_eq!(c.get(&format!("{CONFIGMAPS}/dry")).status, 404);
    c.post(CONFIGMAPS, &configmap("real", json!({"a": "1"})));
    let r = c.patch(
        &format!("{CONFIGMAPS}/real?dryRun=All"),
        "application/merge-patch+json",
        &json!({"data": {"a": "2"}}),
    );
    assert_eq!(r.body["data"]["a"], "2");
    let r = c.request(
        "DELETE",
        &format!("{CONFIGMAPS}/real"),
        "application/json",
        Some(&json!({"dryRun": ["All"]})),
    );
    assert_eq!(r.status, 200);
    let stored = c.get(&format!("{CONFIGMAPS}/real")).body;
    assert_eq!(stored["data"]["a"], "1");
    assert_eq!(emu.resource_version(), rv_before + 1);
}

#[test]
fn crd_deletion_unregisters_and_removes_resources() {
    let (emu, c) = with_crd();
    c.post(GREETINGS, &greeting("x", "y"));
    let table = c.request("GET", GREETINGS, "application/json", None);
    assert_eq!(table.status, 200);
    let r = c.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/greetings.demo.loophost.dev");
    assert_eq!(r.status, 200);
    assert_eq!(c.get(GREETINGS).status, 404);
    assert_eq!(c.get("/apis/demo.loophost.dev/v1").status, 404);
    assert!(
        emu.list(&Gvr::new("demo.loophost.dev", "v1", "greetings"), None)
            .is_empty()
    );
}

#[test]
fn tables_for_kubectl() {
    let (_emu, c) = with_crd();
    c.post(GREETINGS, &greeting("t", "hi"));
    // What kubectl get sends.
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let r = c.request_with_accept(GREETINGS, accept);
    assert_eq!(r["kind"], "Table");
    let cols: Vec<&str> = r["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Message", "Copies", "Age"]);
    assert_eq!(r["rows"][0]["cells"][0], "t");
    assert_eq!(r["rows"][0]["cells"][2], 1);
    assert_eq!(r["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let r = c.request_with_accept(
        CONFIGMAPS,
        "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    );
    assert_eq!(r["kind"], "PartialObjectMetadataList");
}
