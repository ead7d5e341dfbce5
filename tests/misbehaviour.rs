//! Guest misbehaviour must not take down the host or stall other guests.

use loophost_tests::{Loophost, guest, http_request, temp_dir, up};
use std::time::{Duration, Instant};

fn p(name: &str) -> String {
    guest(name).display().to_string()
}

#[test]
fn a_guest_that_never_calls_the_host_cannot_stall_others_or_the_exit() {
    // Two spinning background guests on a 2-core machine: the client still
    // runs, and the host stops the spinners when the client is done.
    let spin = p("spin");
    let t = Instant::now();
    let host = Loophost::spawn([
        "run",
        "--with",
        &spin,
        "--with",
        &spin,
        "--ready-timeout",
        "0.2",
        &p("tcp-client"),
        "bind",
        "127.0.0.1:0",
        "--exit",
    ]);
    let (code, out) = host.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("bound 127.0.0.1:"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
}

#[test]
fn a_spinning_service_does_not_block_http_or_shutdown() {
    let dir = temp_dir("spin-service");
    let manifest = dir.join("s.toml");
    let text = format!(
        "name = \"s\"\n[[service]]\nname = \"spin\"\nwasm = \"{}\"\n[[service]]\nname = \"spin2\"\nwasm = \"{}\"\n[[service]]\nname = \"kv\"\nwasm = \"{}\"\nports = [6379]\n[[component]]\nname = \"api\"\nwasm = \"{}\"\nroute = \"/kv\"\n",
        p("spin"),
        p("spin"),
        p("kv"),
        p("kv_http")
    );
    std::fs::write(&manifest, text).expect("write manifest");
    let (host, addr) = up(&[&manifest], &[]);
    for i in 0..20 {
        let (status, body) = http_request(&addr, "PUT", &format!("/kv/k{i}"), b"v").expect("request");
        assert_eq!((status, body.as_str()), (200, "OK"));
    }
    let t = Instant::now();
    host.terminate();
    let (code, _) = host.wait(Duration::from_secs(30));
    assert_eq!(code, 0);
    assert!(t.elapsed() < Duration::from_secs(15), "shutdown took {:?}", t.elapsed());
}
