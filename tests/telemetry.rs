//! OpenTelemetry export, received by a real OTLP receiver (gRPC and
//! http/protobuf) running inside the test.

use loophost_tests::otlp::{OtlpReceiver, Span};
use loophost_tests::{Loophost, guest, http_request_with, temp_dir, up_with_env};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn p(name: &str) -> String {
    guest(name).display().to_string()
}

fn otel_env(receiver: &OtlpReceiver, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ("OTEL_SERVICE_NAME", "loophost-under-test".to_string()),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200".to_string()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_string()),
    ]
}

/// component -> proxy service (127.0.0.1:7100) -> kv service (127.0.0.1:6379)
fn two_hop_workload(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("trace.toml");
    let text = format!(
        r#"
name = "traced"
namespace = "obs"

[[service]]
name = "proxy"
wasm = "{proxy}"
args = ["127.0.0.1:7100", "127.0.0.1:6379"]
ports = [7100]

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]

[[component]]
name = "api"
wasm = "{api}"
route = "/kv"
env = {{ KV_ADDR = "127.0.0.1:7100" }}
"#,
        proxy = p("tcp-proxy"),
        kv = p("kv"),
        api = p("kv_http"),
    );
    std::fs::write(&path, text).expect("write manifest");
    path
}

fn find<'a>(spans: &'a [Span], name: &str, pred: impl Fn(&Span) -> bool) -> Option<&'a Span> {
    spans.iter().find(|s| s.name == name && pred(s))
}

fn attr<'a>(span: &'a Span, key: &str) -> &'a str {
    span.attributes.get(key).map(String::as_str).unwrap_or("")
}

fn check_two_hop_trace(protocol: &str, receiver: OtlpReceiver) {
    let dir = temp_dir(&format!("trace-{}", protocol.replace('/', "-")));
    let manifest = two_hop_workload(&dir);
    let (host, addr) = up_with_env(&[&manifest], &[], &otel_env(&receiver, protocol));
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (status, body) =
        http_request_with(&addr, "PUT", "/kv/traced", &[("traceparent", &traceparent)], b"v").expect("request");
    assert_eq!((status, body.as_str()), (200, "OK"));

    let in_trace = |r: &OtlpReceiver| {
        r.spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .collect::<Vec<_>>()
    };
    let complete = receiver.wait_until(Duration::from_secs(20), |r| {
        let spans = in_trace(r);
        spans.iter().filter(|s| s.name == "virtual connection").count() >= 2
            && spans.iter().any(|s| s.name == "PUT /kv")
    });
    host.terminate();
    let (code, _) = host.wait(Duration::from_secs(20));
    let spans = in_trace(&receiver);
    let names: Vec<String> = receiver
        .spans()
        .iter()
        .map(|s| {
            format!(
                "{} {} ({} <- {})",
                &s.trace_id[..8.min(s.trace_id.len())],
                s.name,
                s.span_id,
                s.parent_span_id
            )
        })
        .collect();
    assert!(complete, "trace incomplete: {names:#?}");
    assert_eq!(code, 0);

    // HTTP server spans are named "{method} {route}" (semantic conventions).
    let request = find(&spans, "PUT /kv", |_| true).expect("http request span");
    assert_eq!(attr(request, "http.route"), "/kv");
    assert_eq!(
        request.parent_span_id, PARENT_ID,
        "the incoming traceparent is the request's parent"
    );
    assert_eq!(request.kind, 2, "SERVER");
    assert_eq!(attr(request, "http.request.method"), "PUT");
    assert_eq!(attr(request, "url.path"), "/kv/traced");
    assert_eq!(attr(request, "http.response.status_code"), "200");
    assert_eq!(attr(request, "workload.name"), "traced");
    assert_eq!(attr(request, "workload.namespace"), "obs");
    assert_eq!(attr(request, "component.name"), "api");
    assert_eq!(
        request.resource.get("service.name").map(String::as_str),
        Some("loophost-under-test")
    );
    assert_eq!(
        request.resource.get("deployment.environment").map(String::as_str),
        Some("test")
    );

    let invoke =
        find(&spans, "component invocation", |s| s.parent_span_id == request.span_id).expect("invocation span");
    let connect1 = find(&spans, "virtual connect", |s| attr(s, "server.port") == "7100").expect("connect to proxy");
    assert_eq!(
        connect1.parent_span_id, invoke.span_id,
        "the component's connect is under its invocation"
    );
    assert_eq!(connect1.kind, 3, "CLIENT");
    let conn1 =
        find(&spans, "virtual connection", |s| attr(s, "server.port") == "7100").expect("proxy connection span");
    assert_eq!(
        conn1.parent_span_id, connect1.span_id,
        "service-side connection span is the connect's child"
    );
    assert_eq!(conn1.kind, 2, "SERVER");
    assert_eq!(attr(conn1, "network.peer.port"), attr(connect1, "client.port"));
    assert!(
        attr(conn1, "loophost.bytes_in").parse::<u64>().unwrap_or(0) > 0,
        "{conn1:?}"
    );
    assert_eq!(attr(conn1, "loophost.close"), "closed");
    let connect2 =
        find(&spans, "virtual connect", |s| attr(s, "server.port") == "6379").expect("proxy's connect to kv");
    assert_eq!(
        connect2.parent_span_id, conn1.span_id,
        "the second hop nests under the first service's connection"
    );
    let conn2 = find(&spans, "virtual connection", |s| attr(s, "server.port") == "6379").expect("kv connection span");
    assert_eq!(conn2.parent_span_id, connect2.span_id);
    assert!(
        find(&spans, "virtual accept", |s| s.parent_span_id == conn1.span_id).is_some(),
        "accept span"
    );

    // The proxy's stdout line about this connection is a log record in the trace.
    let logs = receiver.logs();
    let proxied = logs
        .iter()
        .find(|l| l.body.starts_with("proxying"))
        .expect("guest stdout line exported");
    assert_eq!(proxied.trace_id, TRACE_ID, "{proxied:?}");
    assert_eq!(proxied.span_id, conn1.span_id, "attributed to the connection it served");
    assert_eq!(
        proxied.attributes.get("workload").map(String::as_str),
        Some("obs/traced"),
        "{proxied:?}"
    );
    // The HTTP component's own stdout line belongs to its invocation.
    let access = logs
        .iter()
        .find(|l| l.body.starts_with("kv-http") && l.body.contains("/kv/traced"))
        .expect("component log line");
    assert_eq!(access.trace_id, TRACE_ID, "{access:?}");
    assert_eq!(access.span_id, invoke.span_id, "attributed to the component invocation");
    assert_eq!(access.attributes.get("component").map(String::as_str), Some("api"));
}

#[test]
fn a_trace_follows_the_request_across_two_virtual_hops_grpc() {
    check_two_hop_trace("grpc", OtlpReceiver::start_grpc());
}

#[test]
fn a_trace_follows_the_request_across_two_virtual_hops_http_protobuf() {
    check_two_hop_trace("http/protobuf", OtlpReceiver::start_http());
}

fn metric_sum(
    receiver: &OtlpReceiver,
    name: &str,
    pred: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> f64 {
    // Cumulative sums: the last export carries the total.
    let mut last = 0.0;
    for m in receiver.metrics().iter().filter(|m| m.name == name) {
        let total: f64 = m.points.iter().filter(|p| pred(&p.attributes)).map(|p| p.value).sum();
        if total > 0.0 {
            last = total;
        }
    }
    last
}

#[test]
fn metrics_count_connections_and_bytes() {
    let receiver = OtlpReceiver::start_http();
    let bytes = 1_000_000;
    let args: Vec<String> = vec![
        "run".into(),
        "--with".into(),
        format!("'{}' 127.0.0.1:7001 --mode checksum", p("echo-server")),
        p("tcp-client"),
        "upload".into(),
        "127.0.0.1:7001".into(),
        bytes.to_string(),
    ];
    let host = Loophost::spawn_env(&args, &otel_env(&receiver, "http/protobuf"));
    let (code, out) = host.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    let port =
        |a: &std::collections::BTreeMap<String, String>| a.get("server.port").map(String::as_str) == Some("7001");
    let received = metric_sum(&receiver, "loophost.virtual.bytes", |a| {
        port(a) && a.get("network.io.direction").map(String::as_str) == Some("receive")
    });
    assert_eq!(
        received, bytes as f64,
        "bytes the service received == bytes the client sent"
    );
    let opened = metric_sum(&receiver, "loophost.virtual.connections.opened", port);
    assert_eq!(opened, 1.0);
    let sent_back = metric_sum(&receiver, "loophost.virtual.bytes", |a| {
        port(a) && a.get("network.io.direction").map(String::as_str) == Some("transmit")
    });
    assert!(sent_back > 0.0, "the checksum reply was counted");
}

#[test]
fn disabled_or_unconfigured_export_sends_nothing() {
    let receiver = OtlpReceiver::start_grpc();
    let client = p("tcp-client");
    // OTEL_SDK_DISABLED wins over a configured endpoint.
    let mut env = otel_env(&receiver, "grpc");
    env.push(("OTEL_SDK_DISABLED", "true".into()));
    let host = Loophost::spawn_env(["run", &client, "bind", "127.0.0.1:0", "--exit"], &env);
    assert_eq!(host.wait(Duration::from_secs(30)).0, 0);
    // No endpoint at all.
    let host = Loophost::spawn_env(
        ["run", &client, "bind", "127.0.0.1:0", "--exit"],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into())],
    );
    assert_eq!(host.wait(Duration::from_secs(30)).0, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.request_count(), 0, "nothing was exported");
}

#[test]
fn an_unreachable_collector_never_blocks_the_host() {
    let dir = temp_dir("unreachable");
    let manifest = two_hop_workload(&dir);
    let dead = format!("http://127.0.0.1:{}", loophost_tests::free_port());
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", dead),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
    ];
    let (host, addr) = up_with_env(&[&manifest], &[], &env);
    for i in 0..20 {
        let (status, _) = http_request_with(&addr, "PUT", &format!("/kv/k{i}"), &[], b"v").expect("request");
        assert_eq!(status, 200);
    }
    let t = Instant::now();
    host.terminate();
    let (code, _) = host.wait(Duration::from_secs(30));
    assert_eq!(code, 0);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "shutdown is bounded: {:?}",
        t.elapsed()
    );
}

#[test]
fn console_and_export_levels_are_independent() {
    // Binding a listener opens the debug-level "virtual listen" span.
    let args: Vec<String> = vec![
        "run".into(),
        p("tcp-client"),
        "bind".into(),
        "127.0.0.1:0".into(),
        "--exit".into(),
    ];

    let receiver = OtlpReceiver::start_grpc();
    let mut env = otel_env(&receiver, "grpc");
    env.push(("RUST_LOG", "error".into()));
    env.push(("LOOPHOST_EXPORT_LEVEL", "debug".into()));
    let (code, _, stderr) = Loophost::spawn_env(&args, &env).wait_with_stderr(Duration::from_secs(30));
    assert_eq!(code, 0);
    let exported = receiver.wait_until(Duration::from_secs(10), |r| {
        r.spans().iter().any(|s| s.name == "virtual listen")
    });
    assert!(
        exported,
        "the debug span is exported although the console shows only errors"
    );
    assert!(
        !stderr.contains("INFO") && !stderr.contains("DEBUG"),
        "console stays at error: {stderr}"
    );

    // The other way round: a debug console, the default (info) export level.
    let quiet = OtlpReceiver::start_grpc();
    let mut env = otel_env(&quiet, "grpc");
    env.push(("RUST_LOG", "debug".into()));
    let (code, _, _) = Loophost::spawn_env(&args, &env).wait_with_stderr(Duration::from_secs(30));
    assert_eq!(code, 0);
    let info_exported = quiet.wait_until(Duration::from_secs(10), |r| {
        r.spans().iter().any(|s| s.name == "component run")
    });
    assert!(info_exported, "info spans are exported");
    assert!(
        quiet.spans().iter().all(|s| s.name != "virtual listen"),
        "info export level filters debug spans"
    );
}

/// Runs two clients against `trace-relay` (with `flags`) and returns the
/// received spans.
fn relay_spans(flags: &str) -> Vec<Span> {
    let receiver = OtlpReceiver::start_grpc();
    let relay = format!("'{}' 127.0.0.1:7200 127.0.0.1:7300 {flags}", p("trace-relay"));
    let client = p("tcp-client");
    let args: Vec<String> = vec![
        "run".into(),
        "--with".into(),
        relay,
        "--with".into(),
        format!("'{}' 127.0.0.1:7300", p("echo-server")),
        "--with".into(),
        format!("'{client}' roundtrip 127.0.0.1:7200 1"),
        "--wait-for".into(),
        "127.0.0.1:7200".into(),
        "--wait-for".into(),
        "127.0.0.1:7300".into(),
        client.clone(),
        "roundtrip".into(),
        "127.0.0.1:7200".into(),
        "1".into(),
    ];
    let (code, out, err) =
        Loophost::spawn_env(&args, &otel_env(&receiver, "grpc")).wait_with_stderr(Duration::from_secs(60));
    assert_eq!(code, 0, "{out}\n{err}");
    receiver.spans()
}

#[test]
fn a_guest_can_name_the_connection_it_works_for() {
    let spans = relay_spans("--explicit");
    let upstream: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "virtual connect" && attr(s, "server.port") == "7300")
        .collect();
    assert_eq!(upstream.len(), 2, "{spans:#?}");
    let mut traces = Vec::new();
    for connect in upstream {
        let marker = spans
            .iter()
            .find(|s| s.span_id == connect.parent_span_id)
            .expect("parent of the upstream connect");
        assert_eq!(marker.name, "guest context");
        let conn = spans
            .iter()
            .find(|s| s.span_id == marker.parent_span_id)
            .expect("parent of the marker");
        assert_eq!(
            conn.name, "virtual connection",
            "the guest named its accepted connection"
        );
        assert_eq!(attr(conn, "server.port"), "7200");
        assert_eq!(connect.trace_id, conn.trace_id);
        traces.push(connect.trace_id.clone());
    }
    traces.dedup();
    assert_eq!(traces.len(), 2, "each upstream connect is in its own client's trace");
}

/// Each upstream connect of the relay hangs directly under the accepted
/// connection it was made for, each in its own client's trace.
fn assert_upstream_connects_under_their_client(spans: &[Span]) {
    let upstream: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "virtual connect" && attr(s, "server.port") == "7300")
        .collect();
    assert_eq!(upstream.len(), 2, "{spans:#?}");
    let mut parents = Vec::new();
    for connect in upstream {
        let conn = spans
            .iter()
            .find(|s| s.span_id == connect.parent_span_id)
            .expect("parent of the upstream connect");
        assert_eq!(conn.name, "virtual connection", "{spans:#?}");
        assert_eq!(attr(conn, "server.port"), "7200");
        assert_eq!(connect.trace_id, conn.trace_id);
        parents.push((conn.span_id.clone(), conn.trace_id.clone()));
    }
    assert_ne!(
        parents[0].0, parents[1].0,
        "one upstream connect per accepted connection"
    );
    assert_ne!(parents[0].1, parents[1].1, "each in its own client's trace");
}

#[test]
fn with_two_open_connections_the_one_the_guest_read_is_the_parent() {
    // Served in accept order; the first upstream connect happens while both
    // connections are open.
    assert_upstream_connects_under_their_client(&relay_spans(""));
    // Served in reverse order, both kept open to the end: "the first open"
    // or "the last accepted" would put both connects under one connection.
    assert_upstream_connects_under_their_client(&relay_spans("--hold"));
}

#[test]
fn run_exports_guest_output_as_log_records_and_still_prints_it() {
    let receiver = OtlpReceiver::start_grpc();
    let host = Loophost::spawn_env(
        [
            "run",
            "--with",
            &format!("'{}' 127.0.0.1:7000", p("echo-server")),
            &p("tcp-client"),
            "roundtrip",
            "127.0.0.1:7000",
            "3",
        ],
        &otel_env(&receiver, "grpc"),
    );
    let (code, stdout, stderr) = host.wait_with_stderr(Duration::from_secs(60));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The terminal gets the guest's bytes as written, once; the console log
    // (stderr) does not repeat them.
    assert_eq!(stdout.matches("roundtrip ok 3").count(), 1, "{stdout}");
    assert!(!stderr.contains("roundtrip ok"), "{stderr}");

    let exported = receiver.wait_until(Duration::from_secs(20), |r| {
        r.logs().iter().any(|l| l.body == "roundtrip ok 3")
            && r.spans().iter().filter(|s| s.name == "component run").count() >= 2
    });
    assert!(exported, "logs: {:#?}\nspans: {:#?}", receiver.logs(), receiver.spans());
    let spans = receiver.spans();
    let client_run = find(&spans, "component run", |s| {
        attr(s, "component.name") == "tcp-client.wasm"
    })
    .expect("the client's component run span");
    let server_run = find(&spans, "component run", |s| {
        attr(s, "component.name") == "echo-server.wasm"
    })
    .expect("the server's component run span");
    let logs = receiver.logs();
    let line = logs.iter().find(|l| l.body == "roundtrip ok 3").expect("client line");
    assert_eq!(
        (line.trace_id.as_str(), line.span_id.as_str()),
        (client_run.trace_id.as_str(), client_run.span_id.as_str()),
        "the client's line carries its component's trace context: {line:?}"
    );
    assert_eq!(
        line.attributes.get("stream").map(String::as_str),
        Some("stdout"),
        "{line:?}"
    );
    let listening = logs
        .iter()
        .find(|l| l.body.starts_with("listening "))
        .expect("server line");
    assert_eq!(listening.span_id, server_run.span_id, "{listening:?}");
}

#[test]
fn guest_chosen_ports_and_client_chosen_methods_do_not_become_metric_series() {
    let receiver = OtlpReceiver::start_grpc();
    let dir = temp_dir("cardinality");
    let manifest = dir.join("c.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
name = "c"

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]

[[component]]
name = "api"
wasm = "{api}"
route = "/kv"

[[component]]
name = "scan"
wasm = "{conformance}"
args = ["host-connect-ports"]
env = {{ FIRST_PORT = "20000", LAST_PORT = "20199" }}
"#,
            kv = p("kv"),
            api = p("kv_http"),
            conformance = p("conformance"),
        ),
    )
    .expect("manifest");
    let (host, addr) = up_with_env(&[&manifest], &[], &otel_env(&receiver, "grpc"));
    for i in 0..40 {
        let _ = http_request_with(&addr, &format!("BREW{i}"), "/kv/x", &[], b"");
    }
    let _ = http_request_with(&addr, "GET", "/kv/x", &[], b"");
    host.expect_stderr("job finished", Duration::from_secs(60));
    let seen = receiver.wait_until(Duration::from_secs(20), |r| {
        metric_sum(r, "loophost.virtual.connections.refused", |_| true) >= 200.0
            && metric_sum(r, "http.server.request.duration", |_| true) > 0.0
    });
    assert!(
        seen,
        "metrics: {:#?}",
        receiver.metrics().iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    let refused: Vec<_> = receiver
        .metrics()
        .into_iter()
        .filter(|m| m.name == "loophost.virtual.connections.refused")
        .flat_map(|m| m.points)
        .collect();
    assert!(
        refused.iter().all(|p| !p.attributes.contains_key("server.port")),
        "no series per scanned port: {refused:#?}"
    );
    let methods: std::collections::BTreeSet<String> = receiver
        .metrics()
        .into_iter()
        .filter(|m| m.name == "http.server.request.duration")
        .flat_map(|m| m.points)
        .filter_map(|p| p.attributes.get("http.request.method").cloned())
        .collect();
    assert!(methods.iter().all(|m| m == "GET" || m == "_OTHER"), "{methods:?}");
    host.terminate();
}

#[test]
fn guest_spans_parent_the_connects_made_inside_them() {
    let receiver = OtlpReceiver::start_grpc();
    let real = std::net::TcpListener::bind("127.0.0.1:0").expect("real listener");
    let real_addr = real.local_addr().expect("addr").to_string();
    let args: Vec<String> = vec![
        "run".into(),
        "--with".into(),
        format!("'{}' 127.0.0.1:7400", p("echo-server")),
        "--wait-for".into(),
        "127.0.0.1:7400".into(),
        "--allow-egress".into(),
        real_addr.clone(),
        p("span-worker"),
        "127.0.0.1:7400".into(),
        real_addr.clone(),
    ];
    let (code, out, err) =
        Loophost::spawn_env(&args, &otel_env(&receiver, "grpc")).wait_with_stderr(Duration::from_secs(60));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("done hello spans"), "{out}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = receiver.spans();
        let ready = ["reconcile", "tls handshake", "real connect", "virtual connection"]
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name));
        if ready || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let reconcile = find(&spans, "reconcile", |_| true).unwrap_or_else(|| panic!("no reconcile span: {spans:#?}"));
    assert_eq!(attr(reconcile, "object"), "demo/greeting");
    assert_eq!(attr(reconcile, "result"), "error");
    assert_eq!(reconcile.status_code, 2, "an error status: {reconcile:#?}");
    assert_eq!(reconcile.status_message, "the API refused the update");
    // The guest saw its own span's context.
    assert!(
        out.contains(&format!("traceparent 00-{}-{}-", reconcile.trace_id, reconcile.span_id)),
        "{out}"
    );
    // Its parent is the component's own span.
    let run = find(&spans, "component run", |s| s.span_id == reconcile.parent_span_id)
        .unwrap_or_else(|| panic!("reconcile's parent is the component run span: {spans:#?}"));
    assert_eq!(run.trace_id, reconcile.trace_id);

    let child_of_reconcile = |name: &str| {
        find(&spans, name, |s| s.parent_span_id == reconcile.span_id)
            .unwrap_or_else(|| panic!("a {name:?} span under reconcile: {spans:#?}"))
    };
    child_of_reconcile("tls handshake");
    let real_connect = child_of_reconcile("real connect");
    assert_eq!(
        attr(real_connect, "server.port"),
        real_addr.rsplit(':').next().unwrap_or_default()
    );
    let connect = child_of_reconcile("virtual connect");
    // And the service's work for that connection continues the same trace.
    let served = find(&spans, "virtual connection", |s| s.parent_span_id == connect.span_id)
        .unwrap_or_else(|| panic!("the echo server's connection span under the connect: {spans:#?}"));
    assert_eq!(served.trace_id, reconcile.trace_id);
}

#[test]
fn spans_still_open_when_up_stops_are_exported() {
    let receiver = OtlpReceiver::start_grpc();
    let dir = temp_dir("telemetry-open-at-stop");
    let manifest = loophost_tests::write_manifest(
        &dir,
        "held.toml",
        &format!(
            r#"
name = "held"

[[service]]
name = "worker"
wasm = "{worker}"
args = ["hold"]
"#,
            worker = p("span-worker"),
        ),
    );
    let (host, _) = up_with_env(&[&manifest], &[], &otel_env(&receiver, "grpc"));
    host.expect_stderr("holding", Duration::from_secs(30));
    host.terminate();
    let (code, err) = host.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    // The exporter flushed before the host exited: what it sent is here.
    let spans = receiver.spans();
    let held = find(&spans, "held open", |_| true)
        .unwrap_or_else(|| panic!("the span the service never ended is exported at shutdown: {spans:#?}"));
    assert_eq!(attr(held, "work"), "unfinished");
    let service = find(&spans, "service", |s| s.span_id == held.parent_span_id)
        .unwrap_or_else(|| panic!("its parent is the service's span: {spans:#?}"));
    assert_eq!(service.trace_id, held.trace_id);
}
