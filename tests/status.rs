//! `loophost up --status` and `loophost status`: what runs, for people.

use loophost_tests::{Loophost, guest, http_request, temp_dir, up};
use std::time::Duration;

fn manifest(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("shop.toml");
    let text = format!(
        r#"
name = "shop"
namespace = "demo"

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]
backoff_initial_ms = 50

[[component]]
name = "api"
wasm = "{api}"
route = "/kv"
"#,
        kv = guest("kv").display(),
        api = guest("kv_http").display(),
    );
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// `loophost status <args>`: exit code, stdout and stderr.
fn status_cmd(args: &[&str]) -> (i32, String, String) {
    let host = Loophost::spawn([&["status"][..], args].concat());
    host.wait_with_stderr(Duration::from_secs(30))
}

fn status(args: &[&str]) -> (i32, String) {
    let (code, out, err) = status_cmd(args);
    (code, format!("{out}{err}"))
}

fn json(addr: &str) -> serde_json::Value {
    let (code, out, err) = status_cmd(&["--addr", addr, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn kv(status: &serde_json::Value) -> serde_json::Value {
    status["workloads"][0]["services"][0].clone()
}

#[test]
fn status_shows_state_restarts_uptime_and_traffic() {
    let dir = temp_dir("status");
    let (_host, addr) = up(&[&manifest(&dir)], &["--status"]);
    for i in 0..5 {
        let (code, _) = http_request(&addr, "PUT", &format!("/kv/k{i}"), b"value").expect("put");
        assert_eq!(code, 200);
    }
    let first = json(&addr);
    assert_eq!(first["workloads"][0]["id"], "demo/shop");
    let kv1 = kv(&first);
    assert_eq!(kv1["name"], "kv");
    assert_eq!(kv1["state"], "ready");
    assert_eq!(kv1["restarts"], 0);
    assert!(kv1["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0), "{kv1}");
    assert!(kv1["connections_total"].as_u64().is_some_and(|n| n >= 5), "{kv1}");
    assert!(kv1["bytes_received"].as_u64().is_some_and(|n| n >= 5 * 5), "{kv1}");
    assert!(kv1["bytes_sent"].as_u64().is_some_and(|n| n > 0), "{kv1}");
    assert_eq!(first["workloads"][0]["components"][0]["route"], "/kv");

    // A crash shows as a restart with its cause, and uptime starts again.
    let _ = http_request(&addr, "POST", "/kv/_crash", b"");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = kv(&json(&addr));
        if now["restarts"] == 1 && now["state"] == "ready" {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "no restart seen: {now}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        after["last_exit"].as_str().is_some_and(|e| e.contains("trapped")),
        "{after}"
    );

    let (code, table) = status(&["--addr", &addr]);
    assert_eq!(code, 0, "{table}");
    let line = table
        .lines()
        .find(|l| l.contains(" kv "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("demo/shop") && line.contains("ready") && line.contains("trapped"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.contains(" api ") && l.contains("route /kv")),
        "{table}"
    );
}

#[test]
fn status_is_off_unless_asked_for() {
    let dir = temp_dir("status-off");
    let (_host, addr) = up(&[&manifest(&dir)], &[]);
    let (code, out, err) = status_cmd(&["--addr", &addr]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("start loophost up with --status"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, body) = http_request(&addr, "GET", "/.loophost/status", b"").expect("get");
    assert_eq!(code, 404, "{body}");
}
