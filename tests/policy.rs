//! The routing policy against a real listener on the host's real loopback.

use loophost_tests::{Loophost, guest};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A non-loopback address of this machine (no packet is sent to find it).
fn machine_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:9").map(|_| s));
    match probe.and_then(|s| s.local_addr()) {
        Ok(addr) if !addr.ip().is_unspecified() && !addr.ip().is_loopback() => addr.ip(),
        _ => "192.0.2.1".parse().expect("literal"),
    }
}

#[test]
fn real_address_is_denied_by_default() {
    // A real listener on all interfaces (so also on the real loopback).
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind real listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let client = guest("tcp-client").display().to_string();
    let target = format!("{}:{port}", machine_address());
    let host = Loophost::spawn(["run", &client, "connect", &target]);
    let (code, out, log) = host.wait_with_stderr(T);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error PermissionDenied"),
        "access-denied for {target}: {out}"
    );
    // The operator learns what was refused and the rule that allows it.
    let line = format!(
        "tcp connect to {target} denied: real network egress to this address is not allowed; to allow it, run with --allow-egress {target}"
    );
    assert!(log.contains(&line), "{line:?} in the log:\n{log}");
    assert!(
        listener.accept().is_err(),
        "the real listener must not see a connection"
    );
}

#[test]
fn real_loopback_listener_is_not_reached_by_default() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind real listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let client = guest("tcp-client").display().to_string();
    let host = Loophost::spawn(["run", &client, "connect", &format!("127.0.0.1:{port}")]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error ConnectionRefused"),
        "virtual loopback has no listener: {out}"
    );
    assert!(
        listener.accept().is_err(),
        "the real listener must not see a connection"
    );
}

#[test]
fn allowed_real_loopback_port_really_connects() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind real listener");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        loop {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).expect("write");
        }
    });
    let client = guest("tcp-client").display().to_string();
    let addr = format!("127.0.0.1:{port}");
    let host = Loophost::spawn(["run", "--allow-egress", &addr, &client, "roundtrip", &addr, "5"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("roundtrip ok 5"), "{out}");
    server.join().expect("real server thread");
}

#[test]
fn a_denied_connect_under_up_names_the_manifest_and_the_rule() {
    let dir = loophost_tests::temp_dir("policy-up-denial");
    let client = guest("tcp-client").display().to_string();
    // TEST-NET-1: never routed, and denied before any packet could be sent.
    let target = "192.0.2.7:6443";
    let manifest = loophost_tests::write_manifest(
        &dir,
        "denied.toml",
        &format!(
            "name = \"denied\"\n[[component]]\nname = \"client\"\nwasm = \"{client}\"\nargs = [\"connect\", \"{target}\"]\n"
        ),
    );
    let (host, _addr) = loophost_tests::up(&[&manifest], &[]);
    let line = format!(
        "tcp connect to {target} denied: real network egress to this address is not allowed; to allow it, add \"{target}\" to sockets.allow_egress of the service or component in {}",
        manifest.display()
    );
    host.expect_stderr(&line, T);
    host.terminate();
}
