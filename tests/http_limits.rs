//! The HTTP trigger's limits, against real clients over real TCP: request
//! deadlines, concurrency and memory per component, slow and idle clients,
//! the connection cap, and one workload's flood next to another workload.

use loophost_tests::{http_request, kv_manifest, temp_dir, up, write_manifest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A kv workload named `name` whose api component has `api_extra` settings.
fn workload(dir: &std::path::Path, name: &str, route: &str, api_extra: &str) -> PathBuf {
    write_manifest(dir, &format!("{name}.toml"), &kv_manifest(name, route, "", api_extra))
}

#[test]
fn a_request_past_its_deadline_is_504_and_its_instance_is_stopped() {
    let dir = temp_dir("deadline");
    let (host, addr) = up(&[&workload(&dir, "d", "/kv", "timeout_ms = 500")], &[]);
    let started = Instant::now();
    let (status, body) = http_request(&addr, "GET", "/kv/_sleep/5000", b"").expect("request");
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at the deadline, not after the sleep"
    );
    host.expect_stderr("request deadline exceeded", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !host.stderr().contains("_sleep/5000 -> 200"),
        "the instance was stopped, not left to finish:\n{}",
        host.stderr()
    );
    assert_eq!(http_request(&addr, "PUT", "/kv/next", b"v").expect("put").0, 200);
}

#[test]
fn a_component_at_its_concurrency_limit_answers_503_and_another_workload_is_unaffected() {
    let dir = temp_dir("concurrency");
    let busy = workload(&dir, "busy", "/busy", "max_concurrency = 2");
    let calm = workload(&dir, "calm", "/calm", "");
    let (_host, addr) = up(&[&busy, &calm], &[]);
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http_request(&addr, "GET", "/busy/_sleep/1500", b"").map(|r| r.0))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The other workload's requests are served while the flood runs.
    let calm_ok = (0..10)
        .filter(|i| matches!(http_request(&addr, "PUT", &format!("/calm/k{i}"), b"v"), Ok((200, _))))
        .count();
    let codes: Vec<u16> = flood
        .into_iter()
        .map(|t| t.join().expect("thread").expect("request"))
        .collect();
    assert_eq!(calm_ok, 10, "the calm workload is fully served");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 503).count(), 10, "{codes:?}");
}

#[test]
fn an_instance_cannot_grow_past_its_memory_limit() {
    let dir = temp_dir("memory");
    let small = workload(&dir, "small", "/small", "memory_limit_mb = 4");
    let roomy = workload(&dir, "roomy", "/roomy", "");
    let (host, addr) = up(&[&small, &roomy], &[]);
    let big = vec![b'v'; 8 * 1024 * 1024];
    // The server may answer (and close) before the whole body is sent.
    let status = {
        let mut conn = TcpStream::connect(&addr).expect("connect");
        write!(
            conn,
            "PUT /small/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .expect("head");
        let _ = conn.write_all(&big);
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply
    };
    // kv-http reads with `try_reserve`, so it sees the failed memory.grow
    // as an allocation error (a guest that aborts instead traps: a 500).
    assert!(
        status.starts_with("HTTP/1.1 400") && status.contains("out of memory"),
        "the 4 MiB instance cannot hold an 8 MiB body: {status}"
    );
    host.expect_stderr("-> 400", Duration::from_secs(5));
    let (status, body) = http_request(&addr, "PUT", "/roomy/big", &big).expect("request");
    assert_eq!((status, body.as_str()), (200, "OK"), "the default limit fits 8 MiB");
    assert_eq!(http_request(&addr, "PUT", "/small/little", b"v").expect("put").0, 200);
}

#[test]
fn a_client_that_goes_away_stops_its_instance() {
    let dir = temp_dir("disconnect");
    let (host, addr) = up(&[&workload(&dir, "g", "/kv", "")], &[]);
    let mut conn = TcpStream::connect(&addr).expect("connect");
    write!(conn, "GET /kv/_sleep/2000 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    std::thread::sleep(Duration::from_millis(300));
    drop(conn);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !host.stderr().contains("_sleep/2000 -> 200"),
        "the instance was stopped when its client left:\n{}",
        host.stderr()
    );
    // Sanity: the same request with a client that waits does finish.
    assert_eq!(
        http_request(&addr, "GET", "/kv/_sleep/100", b"").expect("request"),
        (200, "slept 100".to_string())
    );
    host.expect_stderr("_sleep/100 -> 200", Duration::from_secs(5));
}

/// Reads until the server closes; returns how long that took.
fn time_until_closed(conn: &mut TcpStream, limit: Duration) -> Duration {
    conn.set_read_timeout(Some(limit)).expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn slow_and_idle_clients_are_closed_by_the_server() {
    let dir = temp_dir("slow-clients");
    let (_host, addr) = up(&[&workload(&dir, "s", "/kv", "")], &["--header-timeout", "1"]);
    // Headers that never finish.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    write!(slow, "GET /kv/x HTTP/1.1\r\nHost: x\r\n").expect("write");
    let closed = time_until_closed(&mut slow, Duration::from_secs(10));
    assert!(
        closed < Duration::from_secs(5),
        "a slow header was cut after {closed:?}"
    );

    // A keep-alive connection left idle after its request.
    let (_host, addr) = up(&[&workload(&dir, "i", "/kv", "")], &["--idle-timeout", "1"]);
    let mut idle = TcpStream::connect(&addr).expect("connect");
    write!(idle, "GET /kv/_sleep/10 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let closed = time_until_closed(&mut idle, Duration::from_secs(10));
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(5),
        "an idle connection closed after {closed:?}"
    );
}

#[test]
fn past_the_connection_cap_new_clients_wait_until_one_leaves() {
    let dir = temp_dir("conn-cap");
    let (_host, addr) = up(&[&workload(&dir, "c", "/kv", "")], &["--max-connections", "2"]);
    let a = TcpStream::connect(&addr).expect("connect a");
    let _b = TcpStream::connect(&addr).expect("connect b");
    std::thread::sleep(Duration::from_millis(300));
    let waiting = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = http_request(&addr, "PUT", "/kv/late", b"v");
            (result, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !waiting.is_finished(),
        "a third client is not served while two are open"
    );
    drop(a);
    let (result, waited) = waiting.join().expect("thread");
    assert_eq!(result.expect("request").0, 200);
    assert!(
        waited >= Duration::from_millis(1400),
        "served only after a slot freed: {waited:?}"
    );
}

#[test]
fn a_client_that_never_sends_a_byte_is_closed_when_idle() {
    let dir = temp_dir("silent-client");
    let (_host, addr) = up(
        &[&workload(&dir, "q", "/kv", "")],
        &["--idle-timeout", "1", "--header-timeout", "30"],
    );
    let mut silent = TcpStream::connect(&addr).expect("connect");
    let closed = time_until_closed(&mut silent, Duration::from_secs(20));
    assert!(
        closed < Duration::from_secs(5),
        "a silent connection closed after {closed:?}"
    );
}
