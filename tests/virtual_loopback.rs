//! std/tokio/ureq guests talking over the virtual loopback, through the real
//! `loophost run` binary.

use loophost_tests::{Loophost, guest, run_pair};
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn std_client_and_server_round_trips() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:7000"],
        &[&client, "roundtrip", "127.0.0.1:7000", "100"],
        T,
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("roundtrip ok 100"), "{out}");
    assert!(
        out.contains("accepted 127.0.0.1:"),
        "server saw the client's address: {out}"
    );
}

#[test]
fn accepted_socket_reports_the_clients_ephemeral_port() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:7000", "--once"],
        &[&client, "connect", "127.0.0.1:7000"],
        T,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let connected = out
        .lines()
        .find(|l| l.starts_with("connected"))
        .expect("connected line");
    let local = connected
        .split_whitespace()
        .find_map(|w| w.strip_prefix("local="))
        .expect("local=");
    assert!(connected.contains("remote=127.0.0.1:7000"), "{connected}");
    let port: u16 = local
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("local port");
    assert!(port >= 49152, "ephemeral port from the dynamic range, got {port}");
    assert!(
        out.contains(&format!("accepted {local}")),
        "server's peer address == client's local address: {out}"
    );
}

#[test]
fn large_transfer_is_byte_exact_with_half_close() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let bytes = (64 * 1024 * 1024).to_string();
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:7001", "--mode", "checksum"],
        &[&client, "upload", "127.0.0.1:7001", &bytes],
        T,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("upload ok {bytes}")), "{out}");
}

#[test]
fn bidirectional_bulk_echo() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let bytes = (16 * 1024 * 1024).to_string();
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:7002"],
        &[&client, "echo-bulk", "127.0.0.1:7002", &bytes],
        T,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("echo-bulk ok {bytes}")), "{out}");
}

#[test]
fn half_close_then_eof() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:7003"],
        &[&client, "half-close", "127.0.0.1:7003"],
        T,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("half-close ok"), "{out}");
    assert!(out.contains("closed 5"), "server saw EOF after 5 bytes: {out}");
}

#[test]
fn server_trap_resets_the_client_and_spares_the_host() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:7004", "--mode", "trap-after:10000"],
        &[&client, "until-reset", "127.0.0.1:7004"],
        T,
    );
    assert_eq!(code, 0, "client exits normally; host survives: {out}\n{err}");
    // wasi-libc turns every stream error into EIO, so std reports the reset
    // as `Uncategorized`; what matters is that it is an error, not a clean EOF.
    let ended = out.lines().find(|l| l.starts_with("ended ")).expect("ended line");
    assert!(
        ended.starts_with("ended ConnectionReset") || ended.starts_with("ended Uncategorized"),
        "client sees a failure, not EOF: {out}\n{err}"
    );
    assert!(err.contains("trapped"), "the trap is reported: {err}");
}

#[test]
fn connection_refused_when_nothing_listens() {
    let client = s(&guest("tcp-client"));
    let host = Loophost::spawn(["run", &client, "connect", "127.0.0.1:7999"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error ConnectionRefused"), "{out}");
}

#[test]
fn address_in_use() {
    let client = s(&guest("tcp-client"));
    let host = Loophost::spawn(["run", &client, "bind-twice", "127.0.0.1:7005"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("second bind error AddrInUse"), "{out}");
}

#[test]
fn port_zero_gets_a_real_port() {
    let client = s(&guest("tcp-client"));
    let host = Loophost::spawn(["run", &client, "bind", "127.0.0.1:0", "--exit"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.starts_with("bound ")).expect("bound line");
    let port: u16 = line.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    assert_ne!(port, 0, "{line}");
}

#[test]
fn ipv6_loopback() {
    let (server, client) = (s(&guest("echo-server")), s(&guest("tcp-client")));
    let (code, out, err) = run_pair(&[&server, "[::1]:7006"], &[&client, "roundtrip", "[::1]:7006", "10"], T);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("roundtrip ok 10"), "{out}");
    assert!(out.contains("accepted [::1]:"), "{out}");
}

#[test]
fn a_thousand_concurrent_connections_to_a_tokio_server() {
    let (server, client) = (s(&guest("tokio-echo-server")), s(&guest("tokio-client")));
    let (code, out, err) = run_pair(&[&server, "127.0.0.1:7007"], &[&client, "127.0.0.1:7007", "1000"], T);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("tokio-client ok 1000"), "{out}");
}

#[test]
fn ureq_reaches_an_http_server_component() {
    let (server, client) = (s(&guest("http-server")), s(&guest("ureq-client")));
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:8080"],
        &[&client, "http://127.0.0.1:8080/hello"],
        T,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("status 200"), "{out}");
    assert!(out.contains("hello from http-server"), "{out}");
    assert!(out.contains("request GET /hello"), "{out}");
}

#[test]
fn localhost_resolves_to_the_virtual_loopback() {
    let (server, client) = (s(&guest("http-server")), s(&guest("ureq-client")));
    let (code, out, err) = run_pair(
        &[&server, "127.0.0.1:8081"],
        &[&client, "http://localhost:8081/hello"],
        T,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("status 200"), "{out}");
}

#[test]
fn wasi_sockets_conformance_guest_passes() {
    let conformance = s(&guest("conformance"));
    let host = Loophost::spawn(["run", &conformance, "all"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
}
