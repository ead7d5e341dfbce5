//! Every fault knob, through the library and through the binary's admin
//! endpoint.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use k8s_emulator::{Emulator, EmulatorConfig, Gvr};
use serde_json::json;

#[test]
fn drop_watches_ends_streams() {
    let emu = Emulator::start_blocking(EmulatorConfig::default()).unwrap();
    let c = Client::for_emulator(&emu);
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while emu.open_watches() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(emu.drop_watches(), 1);
    assert_eq!(w.ended(Duration::from_secs(5)), Some("ended"));
    assert_eq!(emu.open_watches(), 0);
}

#[test]
fn fail_requests_answers_429_then_500_then_recovers() {
    let emu = Emulator::start_blocking(EmulatorConfig::default()).unwrap();
    let c = Client::for_emulator(&emu);
    emu.fail_requests(429, Duration::from_secs(60));
    let r = c.get(CONFIGMAPS);
    assert_eq!((r.status, r.body["reason"].as_str()), (429, Some("TooManyRequests")));
    assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    emu.fail_requests(500, Duration::from_millis(300));
    let r = c.get(CONFIGMAPS);
    assert_eq!((r.status, r.body["reason"].as_str()), (500, Some("InternalError")));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get(CONFIGMAPS).status, 200);
    emu.fail_requests(500, Duration::from_secs(60));
    emu.clear_faults();
    assert_eq!(c.get(CONFIGMAPS).status, 200);
    assert_eq!(emu.stats().injected_failures, 2);
}

#[test]
fn restart_keeps_state_and_port() {
    let emu = Emulator::start_blocking(EmulatorConfig::default()).unwrap();
    let c = Client::for_emulator(&emu);
    let created = c.post(CONFIGMAPS, &configmap("keep", json!({"a": "1"}))).body;
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={}", rv(&created)));
    let addr = emu.addr();
    let restarter = {
        let started = Instant::now();
        std::thread::scope(|s| {
            let h = s.spawn(|| emu.restart(Duration::from_millis(700)));
            std::thread::sleep(Duration::from_millis(300));
            assert!(TcpStream::connect(addr).is_err(), "connections are refused while down");
            h.join().unwrap().unwrap();
        });
        started.elapsed()
    };
    assert!(restarter >= Duration::from_millis(700));
    assert!(
        w.ended(Duration::from_secs(5)).is_some(),
        "open watches die with the restart"
    );
    assert_eq!(emu.addr(), addr);
    let got = c.get(&format!("{CONFIGMAPS}/keep"));
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    // The event log survives too: a watch resumes where it was.
    c.put(&format!("{CONFIGMAPS}/keep"), &configmap("keep", json!({"a": "2"})));
    let w = c.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={}", rv(&created)));
    assert_eq!(w.event()["type"], "MODIFIED");
}

#[test]
fn rotate_token_rejects_the_old_one_and_rewrites_files() {
    let dir = std::env::temp_dir().join(format!("k8s-emulator-sa-{}", std::process::id()));
    let emu = Emulator::start_blocking(EmulatorConfig::default()).unwrap();
    emu.write_service_account_dir(&dir, "team").unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("namespace")).unwrap(), "team");
    assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), emu.ca_pem());
    assert!(
        emu.get(&Gvr::new("", "v1", "namespaces"), None, "team").is_some(),
        "namespace created"
    );
    let old = Client::for_emulator(&emu);
    assert_eq!(old.get(CONFIGMAPS).status, 200);
    let new_token = emu.rotate_token().unwrap();
    assert_ne!(new_token, old.token);
    assert_eq!(std::fs::read_to_string(dir.join("token")).unwrap(), new_token);
    assert_eq!(old.get(CONFIGMAPS).status, 401);
    let fresh = Client::new(emu.addr(), emu.ca_pem(), &new_token);
    assert_eq!(fresh.get(CONFIGMAPS).status, 200);
    assert_eq!(emu.unauthorized_count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rotated_token_has_a_grace_period_when_configured() {
    let emu = Emulator::start_blocking(EmulatorConfig {
        token_grace: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    let old = Client::for_emulator(&emu);
    emu.rotate_token().unwrap();
    assert_eq!(old.get(CONFIGMAPS).status, 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(old.get(CONFIGMAPS).status, 401);
}

fn admin(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn binary_admin_endpoints() {
    let dir = std::env::temp_dir().join(format!("k8s-emulator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_k8s-emulator"))
        .args(["--admin", "127.0.0.1:0", "--token", "t0", "--namespace", "demo"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--serviceaccount-dir")
        .arg(dir.join("sa"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = lines.next().unwrap().unwrap();
    let admin_line = lines.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = api.strip_prefix("listening on https://").expect(&api).parse().unwrap();
    let admin_addr = admin_line
        .strip_prefix("admin on http://")
        .expect(&admin_line)
        .to_string();
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        kc.contains(&format!("server: https://{addr}")) && kc.contains("token: t0") && kc.contains("namespace: demo")
    );
    let ca = admin(&admin_addr, "GET", "/ca.crt").1;
    let c = Client::new(addr, &ca, "t0");
    assert_eq!(c.get("/api/v1/namespaces/demo").status, 200);

    let w = c.watch("/api/v1/namespaces/demo/configmaps?watch=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: serde_json::Value = serde_json::from_str(&admin(&admin_addr, "GET", "/stats").1).unwrap();
        if stats["openWatches"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "watch never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        admin(&admin_addr, "POST", "/faults/drop-watches"),
        (200, "dropped 1 watches\n".into())
    );
    assert_eq!(w.ended(Duration::from_secs(5)), Some("ended"));

    assert_eq!(admin(&admin_addr, "POST", "/faults/fail?status=429&seconds=30").0, 200);
    assert_eq!(c.get("/api/v1/namespaces").status, 429);
    assert_eq!(admin(&admin_addr, "POST", "/faults/clear").0, 200);
    assert_eq!(c.get("/api/v1/namespaces").status, 200);

    let created = c
        .post("/api/v1/namespaces/demo/configmaps", &configmap("x", json!({})))
        .body;
    assert!(
        admin(&admin_addr, "POST", "/faults/compact")
            .1
            .starts_with("compacted at")
    );
    let w = c.watch(&format!(
        "/api/v1/namespaces/demo/configmaps?watch=1&resourceVersion={}",
        rv(&created) - 1
    ));
    assert_eq!(w.event()["object"]["code"], 410);

    assert_eq!(admin(&admin_addr, "POST", "/faults/restart?down_ms=200").0, 200);
    assert_eq!(c.get("/api/v1/namespaces/demo/configmaps/x").status, 200);

    let (status, token) = admin(&admin_addr, "POST", "/faults/rotate-token");
    assert_eq!(status, 200);
    assert_eq!(c.get("/api/v1/namespaces").status, 401);
    assert_eq!(std::fs::read_to_string(dir.join("sa/token")).unwrap(), token);
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("token: {token}"))
    );
    let stats: serde_json::Value = serde_json::from_str(&admin(&admin_addr, "GET", "/stats").1).unwrap();
    assert_eq!(stats["unauthorized"], 1);
    assert_eq!(stats["createCalls"]["configmaps"], 1);

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
