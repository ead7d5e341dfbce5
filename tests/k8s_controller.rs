//! The Kubernetes controller example (examples/k8s-controller-service) as a
//! loophost service, reconciling against the API emulator over real TLS with
//! a service-account token, reached through the workload's egress policy;
//! and its deployment manifests, checked by Debian's kubectl against the
//! emulator.

use loophost_tests::k8s::{Cluster, MANAGED_BY, NAMESPACE, Options, configmaps, example_dir, greetings, want};
use loophost_tests::{guest, http_request, loophost_bin};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(90);

fn names(json: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("/greetings is JSON ({e}): {json}"));
    let mut names: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("/greetings is a JSON array: {json}"))
        .iter()
        .filter_map(|g| g["name"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

#[test]
fn greetings_converge_follow_changes_and_clean_up() {
    let cluster = Cluster::start("converge", Options::default());
    let mut want: BTreeMap<String, (String, u32)> = BTreeMap::new();
    cluster.create_greeting("alpha", "hello alpha", None);
    want.insert("alpha".into(), ("hello alpha".into(), 1)); // copies defaults to 1
    cluster.create_greeting("beta", "hello beta", Some(2));
    want.insert("beta".into(), ("hello beta".into(), 2));
    cluster.create_greeting("gamma", "hello gamma", Some(3));
    want.insert("gamma".into(), ("hello gamma".into(), 3));
    cluster.converge(&want, CONVERGE);
    assert_eq!(cluster.configmap_creates(), 6, "each ConfigMap created once");

    // The workload's HTTP component asks the controller over the virtual loopback.
    let (status, body) = http_request(&cluster.http, "GET", "/greetings", b"").expect("GET /greetings");
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["alpha", "beta", "gamma"], "{body}");
    // What a user sees.
    let table = cluster.kubectl(&["get", "greetings"]);
    assert!(table.contains("alpha") && table.contains("gamma"), "{table}");

    // Spec changes: message, copies up and down.
    cluster.update_greeting("alpha", "bonjour", 4);
    want.insert("alpha".into(), ("bonjour".into(), 4));
    cluster.update_greeting("gamma", "hello gamma", 1);
    want.insert("gamma".into(), ("hello gamma".into(), 1));
    cluster.converge(&want, CONVERGE);

    // Someone else deletes or edits a managed ConfigMap: restored.
    cluster
        .emu
        .delete(&configmaps(), Some(NAMESPACE), "beta-greeting-1")
        .expect("delete a managed ConfigMap");
    let mut edited = cluster
        .emu
        .get(&configmaps(), Some(NAMESPACE), "alpha-greeting-0")
        .expect("alpha-greeting-0");
    edited["data"]["message"] = "vandalised".into();
    cluster
        .emu
        .replace(&configmaps(), Some(NAMESPACE), "alpha-greeting-0", edited)
        .expect("edit a managed ConfigMap");
    cluster.converge(&want, CONVERGE);

    // Deleting a Greeting: its ConfigMaps go, then the finalizer, then the object.
    cluster.delete_greeting("beta");
    want.remove("beta");
    cluster.converge(&want, CONVERGE);
    assert!(cluster.emu.get(&greetings(), Some(NAMESPACE), "beta").is_none());
    let (_, body) = http_request(&cluster.http, "GET", "/greetings", b"").expect("GET /greetings");
    assert_eq!(names(&body), ["alpha", "gamma"], "{body}");
    // 6 at first, alpha's 3 new copies, beta-greeting-1 restored.
    assert_eq!(cluster.configmap_creates(), 6 + 3 + 1, "no duplicate creates");
    cluster.host.terminate();
}

#[test]
fn dropped_watches_and_a_compacted_log_miss_nothing() {
    let cluster = Cluster::start("watch-faults", Options::default());
    let mut want = want("w", 3, 1);
    for (name, (message, copies)) in &want {
        cluster.create_greeting(name, message, Some(*copies));
    }
    cluster.converge(&want, CONVERGE);

    // Every watch dropped each second for 10 s, while objects change.
    for round in 0..10u32 {
        cluster.emu.drop_watches();
        let name = format!("w-{}", round % 3);
        let message = format!("round {round}");
        cluster.update_greeting(&name, &message, 1);
        want.insert(name, (message, 1));
        std::thread::sleep(Duration::from_secs(1));
    }
    cluster.converge(&want, CONVERGE);

    // Changes the controller cannot see as events: made while the API
    // refuses it, then compacted away, so its watch from an old
    // resourceVersion gets 410 Gone and it must list again.
    cluster.emu.fail_requests(500, Duration::from_secs(3));
    cluster.emu.drop_watches();
    cluster.create_greeting("late", "arrived during the outage", Some(2));
    want.insert("late".into(), ("arrived during the outage".into(), 2));
    cluster.update_greeting("w-0", "changed during the outage", 3);
    want.insert("w-0".into(), ("changed during the outage".into(), 3));
    cluster.emu.compact();
    cluster.converge(&want, CONVERGE);
    let log = cluster.host.stderr();
    assert!(
        log.contains("(410"),
        "the controller's watch from a compacted resourceVersion got 410 and listed again:\n{log}"
    );

    // The API server restarts (same port, state kept).
    cluster
        .emu
        .restart(Duration::from_secs(1))
        .expect("restart the emulator");
    cluster.create_greeting("after-restart", "hello again", Some(1));
    want.insert("after-restart".into(), ("hello again".into(), 1));
    cluster.converge(&want, CONVERGE);

    let managed = cluster
        .emu
        .list(&configmaps(), Some(NAMESPACE))
        .into_iter()
        .filter(|cm| cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY)
        .count() as u64;
    // Every ConfigMap ever needed was created exactly once: w-* one each,
    // late 2, w-0 grew from 1 to 3, after-restart 1.
    assert_eq!(
        cluster.configmap_creates(),
        3 + 2 + 2 + 1,
        "no duplicates; {managed} in place"
    );
    cluster.host.terminate();
}

#[test]
fn api_errors_are_backed_off_then_converge() {
    let cluster = Cluster::start("api-errors", Options::default());
    let mut want = want("e", 2, 1);
    for (name, (message, copies)) in &want {
        cluster.create_greeting(name, message, Some(*copies));
    }
    cluster.converge(&want, CONVERGE);

    for status in [500u16, 429] {
        let before = cluster.emu.stats().injected_failures;
        cluster.emu.fail_requests(status, Duration::from_secs(5));
        cluster.emu.drop_watches();
        let name = format!("during-{status}");
        cluster.create_greeting(&name, "patience", Some(2));
        want.insert(name, ("patience".into(), 2));
        std::thread::sleep(Duration::from_secs(5));
        let refused = cluster.emu.stats().injected_failures - before;
        // Backing off: a handful of attempts per watch and reconcile, not a flood.
        assert!(refused <= 60, "{refused} requests in 5 s of {status}s: no backoff");
        cluster.converge(&want, CONVERGE);
    }
    cluster.host.terminate();
}

#[test]
fn a_controller_trapped_mid_reconcile_is_restarted_and_converges_without_duplicates() {
    // The controller's fault hook: abort (a wasm trap) after this many
    // successful writes to the API, in every incarnation.
    let cluster = Cluster::start(
        "trap",
        Options {
            controller_env: vec![("GREETER_FAULT_TRAP_AFTER_WRITES".into(), "4".into())],
            backoff_initial_ms: Some(100),
            ..Options::default()
        },
    );
    let want = want("t", 3, 2);
    for (name, (message, copies)) in &want {
        cluster.create_greeting(name, message, Some(*copies));
    }
    cluster.converge(&want, CONVERGE);
    let log = cluster.host.stderr();
    assert!(
        log.contains("service restarting"),
        "the controller trapped and was restarted:\n{log}"
    );
    assert_eq!(
        cluster.configmap_creates(),
        6,
        "each ConfigMap created once across incarnations"
    );
    cluster.host.terminate();
}

#[test]
fn a_rotated_token_keeps_working() {
    let cluster = Cluster::start("rotate", Options::default());
    let mut want = want("r", 1, 1);
    cluster.create_greeting("r-0", "hello 0", Some(1));
    cluster.converge(&want, CONVERGE);
    // The kubelet rotates the projected token; the old one stops working.
    let new_token = cluster.emu.rotate_token().expect("rotate the token");
    let on_disk = std::fs::read_to_string(cluster.sa_dir.join("token")).expect("token file");
    assert_eq!(on_disk, new_token);
    cluster.emu.drop_watches();
    cluster.create_greeting("r-1", "after rotation", Some(2));
    want.insert("r-1".into(), ("after rotation".into(), 2));
    cluster.converge(&want, CONVERGE);
    cluster.host.terminate();
}

#[test]
fn a_wrong_token_is_reported_backed_off_and_recovers() {
    let cluster = Cluster::start(
        "wrong-token",
        Options {
            token: Some("not-the-token".into()),
            ..Options::default()
        },
    );
    cluster.create_greeting("x", "hello", Some(1));
    std::thread::sleep(Duration::from_secs(8));
    let log = cluster.host.stderr();
    assert!(log.contains("401"), "a clear error naming the 401:\n{log}");
    let refused = cluster.emu.unauthorized_count();
    assert!(refused >= 1, "the controller tried");
    assert!(refused <= 24, "{refused} refused requests in 8 s: not backing off");
    assert!(
        !log.contains("service restarting"),
        "a bad token is retried with backoff inside the controller, not a crash loop:\n{log}"
    );
    // Fixed on disk (as a rotation would): it recovers.
    std::fs::write(cluster.sa_dir.join("token"), cluster.emu.token()).expect("write the right token");
    let mut want = BTreeMap::new();
    want.insert("x".to_string(), ("hello".to_string(), 1));
    cluster.converge(&want, CONVERGE);
    cluster.host.terminate();
}

/// A non-loopback address of this machine (no packet is sent to find it).
fn machine_address() -> String {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:9").map(|_| s));
    match probe.and_then(|s| s.local_addr()) {
        Ok(addr) if !addr.ip().is_unspecified() && !addr.ip().is_loopback() => addr.ip().to_string(),
        _ => "192.0.2.1".to_string(),
    }
}

#[test]
fn egress_that_is_not_allowed_is_denied_clearly() {
    let ip = machine_address();
    let cluster = Cluster::start(
        "no-egress",
        Options {
            no_egress: true,
            api_host: Some(ip.clone()),
            ..Options::default()
        },
    );
    let target = format!("{ip}:{}", cluster.emu.addr().port());
    cluster.host.expect_stderr(
        &format!("tcp connect to {target} denied: real network egress to this address is not allowed; to allow it, add \"{target}\" to sockets.allow_egress"),
        Duration::from_secs(60),
    );
    // kubectl (the CRD) did reach it; the controller never did.
    let stats = cluster.emu.stats();
    for verb in ["list", "watch", "get", "create", "update", "patch"] {
        for gvr in [greetings(), configmaps()] {
            assert_eq!(
                stats.requests_for(verb, &gvr),
                0,
                "the controller reached the API: {verb} {gvr:?}"
            );
        }
    }
    cluster.host.terminate();
}

#[test]
fn the_deployment_manifests_are_valid() {
    let cluster = Cluster::start("deploy", Options::default());
    let deploy = example_dir().join("deploy");
    // Namespaced objects need their namespace to exist, as on a real server.
    let out = cluster.kubectl(&["apply", "-f", &deploy.join("namespace.yaml").display().to_string()]);
    assert!(out.contains("namespace/greeter"), "{out}");
    let out = cluster.kubectl(&["apply", "--dry-run=server", "-f", &deploy.display().to_string()]);
    for kind in [
        "serviceaccount/greeter",
        "role.rbac.authorization.k8s.io/greeter",
        "rolebinding.rbac.authorization.k8s.io/greeter",
        "configmap/greeter-workload",
        "deployment.apps/greeter",
        "customresourcedefinition.apiextensions.k8s.io/greetings.demo.loophost.dev",
    ] {
        assert!(out.contains(kind), "{kind} in the dry run:\n{out}");
    }
    assert!(
        cluster
            .emu
            .get(
                &k8s_emulator::Gvr::new("apps", "v1", "deployments"),
                Some("greeter"),
                "greeter"
            )
            .is_none(),
        "a dry run stores nothing"
    );

    // The workload manifest inside the ConfigMap is one loophost accepts,
    // with the image's paths pointed at the built guests.
    let out = cluster.kubectl(&[
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        &deploy.join("workload-configmap.yaml").display().to_string(),
    ]);
    let configmap: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl -o json ({e}): {out}"));
    let workload = configmap["data"]["workload.toml"].as_str().expect("data.workload.toml");
    let guests = guest("greeter-controller")
        .parent()
        .expect("guest dir")
        .display()
        .to_string();
    let workload = workload.replace("/opt/loophost", &guests).replace(
        "host = \"/var/run/secrets/kubernetes.io/serviceaccount\"",
        &format!("host = {:?}", cluster.sa_dir.display().to_string()),
    );
    let path = cluster.dir.join("in-cluster.toml");
    std::fs::write(&path, workload).expect("write the in-cluster manifest");
    let check = std::process::Command::new(loophost_bin())
        .arg("check")
        .arg(&path)
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443")
        .output()
        .expect("run loophost check");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    cluster.host.terminate();
}

#[test]
fn reconciles_are_spans_holding_their_api_calls_and_connects() {
    use loophost_tests::otlp::OtlpReceiver;
    let receiver = OtlpReceiver::start_grpc();
    let cluster = Cluster::start(
        "spans",
        Options {
            host_env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
                ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
            ],
            ..Options::default()
        },
    );
    let want = want("s", 2, 2);
    for (name, (message, copies)) in &want {
        cluster.create_greeting(name, message, Some(*copies));
    }
    cluster.converge(&want, CONVERGE);
    let (status, body) = http_request(&cluster.http, "GET", "/greetings", b"").expect("GET /greetings");
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans = receiver.spans();
        let served = spans.iter().any(|s| {
            s.name == "virtual connection" && s.attributes.get("server.port").map(String::as_str) == Some("9090")
        });
        if served || std::time::Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The service's own span ends (and is exported) when it stops.
    cluster.host.terminate();
    let _ = cluster.host.wait(Duration::from_secs(30));
    let spans = {
        let mut all = receiver.spans();
        all.retain(|s| !spans.iter().any(|seen| seen.span_id == s.span_id));
        all.extend(spans);
        all
    };
    let by_id = |id: &str| spans.iter().find(|s| s.span_id == id);
    let ancestors = |span: &loophost_tests::otlp::Span| {
        let mut names = Vec::new();
        let mut parent = span.parent_span_id.clone();
        while let Some(p) = by_id(&parent) {
            names.push(p.name.clone());
            parent = p.parent_span_id.clone();
        }
        names
    };
    // One span per reconcile, with the object and the result.
    let reconciles: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "reconcile" && s.attributes.get("object").map(String::as_str) == Some("demo/s-0"))
        .collect();
    assert!(!reconciles.is_empty(), "reconcile spans for demo/s-0: {spans:#?}");
    assert!(
        reconciles
            .iter()
            .any(|s| s.attributes.get("result").map(String::as_str) == Some("ok"))
    );
    // Its API calls are its children...
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "api request" && reconciles.iter().any(|r| r.span_id == s.parent_span_id))
        .collect();
    assert!(
        calls
            .iter()
            .any(|c| c.attributes.get("http.request.method").map(String::as_str) == Some("POST")),
        "a create under the reconcile: {calls:#?}"
    );
    // ...and every connection to the API server (the host's `real connect`,
    // the guest's TLS handshake) hangs under the API call that needed it.
    let connects: Vec<_> = spans.iter().filter(|s| s.name == "real connect").collect();
    assert!(!connects.is_empty(), "real connects: {spans:#?}");
    for span in connects.iter().chain(
        spans
            .iter()
            .filter(|s| s.name == "tls handshake")
            .collect::<Vec<_>>()
            .iter(),
    ) {
        let chain = ancestors(span);
        assert_eq!(
            chain.first().map(String::as_str),
            Some("api request"),
            "{} under an api request: {chain:?}",
            span.name
        );
        assert!(
            chain.iter().any(|n| n == "service"),
            "inside the controller service's span: {chain:?}"
        );
    }
    // The component's request reaches the controller through the virtual
    // connection: the controller's side of it continues the request's trace.
    let request = spans
        .iter()
        .find(|s| s.kind == 2 && s.attributes.get("url.path").map(String::as_str) == Some("/greetings"))
        .unwrap_or_else(|| panic!("the /greetings request span: {spans:#?}"));
    let served = spans
        .iter()
        .find(|s| {
            s.name == "virtual connection"
                && s.trace_id == request.trace_id
                && s.attributes.get("server.port").map(String::as_str) == Some("9090")
        })
        .unwrap_or_else(|| panic!("the controller's connection span in the request's trace: {spans:#?}"));
    assert!(ancestors(served).iter().any(|n| n == "virtual connect"));
}
