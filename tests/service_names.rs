//! Services by name (`svc:7700`, `redis://kv:6379`, `http://web:PORT`), for
//! every kind of client: std sockets, the `redis` crate, HTTP over sockets
//! and over wasi:http. And the `wasmtime run` habits: `--env NAME`.

use loophost_tests::{Loophost, guest, http_request, percent_encode, temp_dir, up, up_with_env, write_manifest};
use std::time::Duration;

fn p(name: &str) -> String {
    guest(name).display().to_string()
}

/// Waits until `n` jobs have ended (finished or failed); returns the log.
fn wait_for_jobs(host: &Loophost, n: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = host.stderr();
        let ended = log.matches("job finished").count() + log.matches("job failed").count();
        if ended >= n {
            return log;
        }
        assert!(std::time::Instant::now() < deadline, "{n} jobs did not end:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The guest lines a job printed.
fn job_lines(log: &str, job: &str) -> Vec<String> {
    let tag = format!("component={job} ");
    log.lines()
        .filter(|l| l.contains(&tag) && l.contains("stream=\"stdout\""))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn std_clients_reach_services_by_short_and_qualified_names() {
    let dir = temp_dir("names-std");
    let manifest = write_manifest(
        &dir,
        "names.toml",
        &format!(
            r#"
name = "names"
namespace = "team"

[[service]]
name = "svc"
wasm = "{echo}"
args = ["127.0.0.1:7700"]
ports = [7700]

[[service]]
name = "web"
wasm = "{web}"
args = ["127.0.0.1:7800"]
ports = [7800]

[[component]]
name = "short"
wasm = "{client}"
args = ["roundtrip", "svc:7700", "5"]

[[component]]
name = "qualified"
wasm = "{client}"
args = ["roundtrip", "svc.names.loophost.internal:7700", "5"]

[[component]]
name = "namespaced"
wasm = "{client}"
args = ["roundtrip", "SVC.names.team.loophost.internal.:7700", "5"]

[[component]]
name = "http-by-name"
wasm = "{ureq}"
args = ["http://web:7800/hello"]
"#,
            echo = p("echo-server"),
            web = p("http-server"),
            client = p("tcp-client"),
            ureq = p("ureq-client"),
        ),
    );
    let (host, _addr) = up(&[&manifest], &[]);
    let log = wait_for_jobs(&host, 4);
    assert!(!log.contains("job failed"), "{log}");
    for job in ["short", "qualified", "namespaced"] {
        let lines = job_lines(&log, job);
        assert!(
            lines.iter().any(|l| l.contains("roundtrip ok 5")),
            "{job}: {lines:?}\n{log}"
        );
    }
    let lines = job_lines(&log, "http-by-name");
    assert!(
        lines.iter().any(|l| l.contains("status 200"))
            && lines.iter().any(|l| l.contains("body hello from http-server")),
        "{lines:?}\n{log}"
    );
}

#[test]
fn the_redis_crate_reaches_kv_by_url() {
    let dir = temp_dir("names-redis");
    let manifest = write_manifest(
        &dir,
        "shop.toml",
        &format!(
            r#"
name = "shop"

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]

[[component]]
name = "short"
wasm = "{api}"
route = "/short"
env = {{ KV_ADDR = "redis://kv:6379/" }}

[[component]]
name = "qualified"
wasm = "{api}"
route = "/qualified"
env = {{ KV_ADDR = "redis://kv.shop.loophost.internal:6379/" }}
"#,
            kv = p("kv"),
            api = p("kv_http"),
        ),
    );
    let (_host, addr) = up(&[&manifest], &[]);
    assert_eq!(
        http_request(&addr, "PUT", "/short/greeting", b"by-name").expect("put"),
        (200, "OK".to_string())
    );
    // Both names reach the same kv: what one wrote, the other reads.
    assert_eq!(
        http_request(&addr, "GET", "/qualified/greeting", b"").expect("get"),
        (200, "by-name".to_string())
    );
}

#[test]
fn names_of_another_workload_do_not_exist() {
    let dir = temp_dir("names-other");
    let a = write_manifest(
        &dir,
        "a.toml",
        &format!(
            r#"
name = "a"

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]
"#,
            kv = p("kv"),
        ),
    );
    // b has no kv; even with every lookup allowed, a's names stay a's.
    let b = write_manifest(
        &dir,
        "b.toml",
        &format!(
            r#"
name = "b"

[[component]]
name = "short"
wasm = "{client}"
args = ["roundtrip", "kv:6379", "1"]
sockets = {{ allow_lookup = ["*"] }}

[[component]]
name = "qualified"
wasm = "{client}"
args = ["roundtrip", "kv.a.loophost.internal:6379", "1"]
sockets = {{ allow_lookup = ["*"] }}
"#,
            client = p("tcp-client"),
        ),
    );
    let (host, _addr) = up(&[&a, &b], &[]);
    let log = wait_for_jobs(&host, 2);
    for job in ["short", "qualified"] {
        let lines = job_lines(&log, job);
        assert!(
            lines.iter().any(|l| l.contains("error ")) && !lines.iter().any(|l| l.contains("roundtrip ok")),
            "{job} must not reach a's kv: {lines:?}\n{log}"
        );
    }
    assert_eq!(log.matches("job failed").count(), 2, "{log}");
}

#[test]
fn wasi_http_uses_the_same_names() {
    let dir = temp_dir("names-http");
    let manifest = write_manifest(
        &dir,
        "f.toml",
        &format!(
            r#"
name = "f"

[[service]]
name = "web"
wasm = "{web}"
args = ["127.0.0.1:7900"]
ports = [7900]

[[component]]
name = "fetch"
wasm = "{fetch}"
route = "/fetch"
"#,
            web = p("http-server"),
            fetch = p("http_fetch"),
        ),
    );
    let (_host, addr) = up(&[&manifest], &[]);
    let fetch = |url: &str| {
        let encoded = percent_encode(url);
        http_request(&addr, "GET", &format!("/fetch?url={encoded}"), b"").expect("request")
    };
    let (status, body) = fetch("http://web.f.loophost.internal:7900/hello");
    assert!(
        status == 200 && body.contains("hello from http-server"),
        "{status} {body}"
    );
    let (status, body) = fetch("http://web.other.loophost.internal:7900/hello");
    assert!(!body.contains("hello from http-server"), "{status} {body}");
    assert!(
        body.to_ascii_lowercase().contains("dns"),
        "a DNS error: {status} {body}"
    );
}

#[test]
fn env_name_passes_the_hosts_value_on_in_run_and_in_manifests() {
    let env = [("LOOPHOST_TEST_FROM_HOST", "host-value".to_string())];
    let host = Loophost::spawn_env(
        [
            "run",
            "--env",
            "LOOPHOST_TEST_FROM_HOST",
            "--env",
            "LOOPHOST_TEST_NOT_SET",
            "--env",
            "EXPLICIT=x",
            &p("printenv"),
            "LOOPHOST_TEST_FROM_HOST",
            "LOOPHOST_TEST_NOT_SET",
            "EXPLICIT",
            "HOME",
        ],
        &env,
    );
    let (code, out) = host.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("LOOPHOST_TEST_FROM_HOST=host-value"), "{out}");
    assert!(out.contains("unset LOOPHOST_TEST_NOT_SET"), "{out}");
    assert!(out.contains("EXPLICIT=x"), "{out}");
    assert!(out.contains("unset HOME"), "nothing is inherited unless asked: {out}");

    let dir = temp_dir("env-from-host");
    let manifest = write_manifest(
        &dir,
        "e.toml",
        &format!(
            r#"
name = "e"

[[component]]
name = "show"
wasm = "{printenv}"
args = ["LOOPHOST_TEST_FROM_HOST", "OTHER"]
env = {{ OTHER = "y" }}
env_from_host = ["LOOPHOST_TEST_FROM_HOST"]
"#,
            printenv = p("printenv"),
        ),
    );
    let (host, _addr) = up_with_env(&[&manifest], &[], &env);
    let log = wait_for_jobs(&host, 1);
    let lines = job_lines(&log, "show");
    assert!(
        lines.iter().any(|l| l.contains("LOOPHOST_TEST_FROM_HOST=host-value")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("OTHER=y")), "{lines:?}");
}
