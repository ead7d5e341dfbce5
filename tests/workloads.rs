//! `loophost up`: services, HTTP components, jobs — through real HTTP over
//! real TCP to the host's listener.

use loophost_tests::{free_port, guest, http_request, kv_manifest, temp_dir, up, write_manifest};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn p(name: &str) -> String {
    guest(name).display().to_string()
}

/// kv + its HTTP front end, with extra service settings.
fn kv_workload(name: &str, route: &str, kv_extra: &str) -> String {
    kv_manifest(name, route, kv_extra, "")
}

#[test]
fn a_thousand_requests_reach_the_kv_service() {
    let dir = temp_dir("kv1000");
    let manifest = write_manifest(&dir, "shop.toml", &kv_workload("shop", "/kv", ""));
    let (_host, addr) = up(&[&manifest], &[]);
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // 32 clients x (10 keys x 3 requests + 2 shared increments) = 1024 requests.
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (addr, failures) = (addr.clone(), failures.clone());
            std::thread::spawn(move || {
                let check = |ok: bool| {
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                };
                for i in 0..10 {
                    let key = format!("t{t}-k{i}");
                    check(matches!(http_request(&addr, "PUT", &format!("/kv/{key}"), b"7"), Ok((200, b)) if b == "OK"));
                    check(matches!(http_request(&addr, "GET", &format!("/kv/{key}"), b""), Ok((200, b)) if b == "7"));
                    check(matches!(http_request(&addr, "POST", &format!("/kv/{key}/incr"), b""), Ok((200, b)) if b == "8"));
                }
                for _ in 0..2 {
                    check(matches!(http_request(&addr, "POST", "/kv/shared/incr", b""), Ok((200, _))));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "every request answered correctly");
    assert_eq!(
        http_request(&addr, "GET", "/kv/shared", b"").expect("final get"),
        (200, "64".to_string()),
        "no lost increments"
    );
    println!("1024 requests with concurrency 32 in {elapsed:?}");
}

#[test]
fn a_trapping_service_restarts_with_a_fresh_store_and_backoff_grows() {
    let dir = temp_dir("restart");
    let manifest = write_manifest(
        &dir,
        "r.toml",
        &kv_workload(
            "r",
            "/kv",
            "restart = \"on-failure\"\nbackoff_initial_ms = 200\nbackoff_max_ms = 2000",
        ),
    );
    let (host, addr) = up(&[&manifest], &[]);
    assert_eq!(http_request(&addr, "PUT", "/kv/before", b"1").expect("put").0, 200);

    for round in 0..3 {
        let (status, body) = http_request(&addr, "POST", "/kv/_crash", b"").expect("crash request answered");
        assert_eq!(status, 502, "{body}");
        // During the outage a request gets an answer (no hang): an error or,
        // once the new incarnation listens, success.
        let t = Instant::now();
        let during = http_request(&addr, "GET", "/kv/before", b"").expect("answered during outage");
        assert!(t.elapsed() < Duration::from_secs(20), "no hang");
        assert!(matches!(during.0, 404 | 502), "{during:?}");
        host.expect_stderr(&format!("backoff_ms={}", 200 << round), Duration::from_secs(30));
    }
    // After recovery: works again, and the old data is gone (fresh store).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_request(&addr, "GET", "/kv/before", b"").expect("get after restart");
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "service never recovered: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http_request(&addr, "PUT", "/kv/after", b"2").expect("put").0, 200);
    assert_eq!(
        http_request(&addr, "GET", "/kv/after", b"").expect("get"),
        (200, "2".to_string())
    );
}

#[test]
fn never_policy_leaves_a_crashed_service_stopped() {
    let dir = temp_dir("never");
    let text = format!(
        "connect_wait_ms = 300\n{}",
        kv_workload("n", "/kv", "restart = \"never\"")
    );
    let manifest = write_manifest(&dir, "n.toml", &text);
    let (host, addr) = up(&[&manifest], &[]);
    assert_eq!(http_request(&addr, "POST", "/kv/_crash", b"").expect("crash").0, 502);
    host.expect_stderr("service stopped for good", Duration::from_secs(20));
    let t = Instant::now();
    let (status, _) = http_request(&addr, "GET", "/kv/x", b"").expect("answered");
    assert_eq!(status, 502, "kv is gone");
    assert!(t.elapsed() < Duration::from_secs(5), "bounded wait, then refused");
    assert!(!host.stderr().contains("service restarting"), "never restarted");
}

#[test]
fn a_connect_before_the_service_listens_waits_for_it() {
    let dir = temp_dir("ready");
    let manifest = write_manifest(
        &dir,
        "w.toml",
        &kv_workload("w", "/kv", "args = [\"--start-delay-ms\", \"500\"]"),
    );
    // Serve HTTP at once, before kv is ready.
    let (_host, addr) = up(&[&manifest], &["--ready-timeout", "0"]);
    let t = Instant::now();
    let (status, body) = http_request(&addr, "PUT", "/kv/early", b"yes").expect("request");
    assert_eq!(
        (status, body.as_str()),
        (200, "OK"),
        "the connect waited for the service"
    );
    println!("first request took {:?} (service starts after 500 ms)", t.elapsed());
}

#[test]
fn outgoing_http_to_loopback_reaches_the_service_not_the_machine() {
    let port = free_port();
    // A real listener on the machine's loopback at the same port: it must see nothing.
    let real = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind real listener");
    real.set_nonblocking(true).expect("nonblocking");
    let dir = temp_dir("fetch");
    let manifest = write_manifest(
        &dir,
        "f.toml",
        &format!(
            r#"
name = "f"

[[service]]
name = "web"
wasm = "{web}"
args = ["127.0.0.1:{port}"]
ports = [{port}]

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
    for url in [
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://web:{port}/hello"),
    ] {
        let encoded = loophost_tests::percent_encode(&url);
        let (status, body) = http_request(&addr, "GET", &format!("/fetch?url={encoded}"), b"").expect("request");
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            body.contains("status 200") && body.contains("hello from http-server"),
            "{url}: {body}"
        );
    }
    assert!(real.accept().is_err(), "the real listener saw no connection");
}

#[test]
fn a_published_port_speaks_resp_to_real_clients() {
    let port = free_port();
    let dir = temp_dir("publish");
    let manifest = write_manifest(
        &dir,
        "p.toml",
        &kv_workload(
            "p",
            "/kv",
            &format!("publish = [{{ listen = \"127.0.0.1:{port}\", port = 6379 }}]"),
        ),
    );
    let (_host, _addr) = up(&[&manifest], &[]);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to published port");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut roundtrip = |cmd: &str, want: &str| {
        conn.write_all(cmd.as_bytes()).expect("write");
        let mut buf = vec![0u8; want.len()];
        conn.read_exact(&mut buf).expect("read");
        assert_eq!(String::from_utf8_lossy(&buf), want, "reply to {cmd:?}");
    };
    roundtrip("*1\r\n$4\r\nPING\r\n", "+PONG\r\n");
    roundtrip("*3\r\n$3\r\nSET\r\n$1\r\na\r\n$5\r\nhello\r\n", "+OK\r\n");
    roundtrip("*2\r\n$3\r\nGET\r\n$1\r\na\r\n", "$5\r\nhello\r\n");
}

#[test]
fn two_workloads_with_the_same_port_stay_apart() {
    let dir = temp_dir("two");
    let a = write_manifest(&dir, "a.toml", &kv_workload("a", "/a", ""));
    let b = write_manifest(&dir, "b.toml", &kv_workload("b", "/b", ""));
    let (_host, addr) = up(&[&a, &b], &[]);
    assert_eq!(http_request(&addr, "PUT", "/a/x", b"from-a").expect("put a").0, 200);
    assert_eq!(http_request(&addr, "PUT", "/b/x", b"from-b").expect("put b").0, 200);
    assert_eq!(
        http_request(&addr, "GET", "/a/x", b"").expect("get a"),
        (200, "from-a".to_string())
    );
    assert_eq!(
        http_request(&addr, "GET", "/b/x", b"").expect("get b"),
        (200, "from-b".to_string())
    );
    let (status, keys) = http_request(&addr, "GET", "/a", b"").expect("keys a");
    assert_eq!((status, keys.trim()), (200, "x"), "workload a holds only its own key");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let dir = temp_dir("drain");
    let manifest = write_manifest(&dir, "d.toml", &kv_workload("d", "/kv", ""));
    let (host, addr) = up(&[&manifest], &["--drain-timeout", "10"]);
    let inflight: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http_request(&addr, "GET", "/kv/_sleep/1500", b""))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let t = Instant::now();
    host.terminate();
    for r in inflight {
        let (status, body) = r.join().expect("thread").expect("in-flight request completed");
        assert_eq!((status, body.as_str()), (200, "slept 1500"));
    }
    let (code, out) = host.wait(Duration::from_secs(15));
    assert_eq!(code, 0, "{out}");
    assert!(t.elapsed() < Duration::from_secs(10), "exited within the drain bound");
}

#[test]
fn a_job_runs_once_after_its_services_are_ready() {
    let dir = temp_dir("job");
    let manifest = write_manifest(
        &dir,
        "j.toml",
        &format!(
            r#"
name = "j"

[[service]]
name = "echo"
wasm = "{echo}"
args = ["127.0.0.1:7000"]
ports = [7000]

[[component]]
name = "check-echo"
wasm = "{client}"
args = ["roundtrip", "127.0.0.1:7000", "3"]
"#,
            echo = p("echo-server"),
            client = p("tcp-client"),
        ),
    );
    let (host, _addr) = up(&[&manifest], &[]);
    host.expect_stderr("job finished", Duration::from_secs(30));
    let log = host.stderr();
    assert!(
        log.contains("roundtrip ok 3") && log.contains("component=check-echo"),
        "{log}"
    );
    assert_eq!(log.matches("job finished").count(), 1, "runs once");
}
