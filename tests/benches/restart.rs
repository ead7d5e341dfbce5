//! Benchmark: how fast services come back, and what the compile cache buys.
//!
//! 1. Restart: the kv service is crashed (`DEBUG SEGFAULT`, a trap) through
//!    its published port, then one new connection sends `PING`; the time
//!    until `+PONG` is the outage a client sees (trap handling, the
//!    supervisor's backoff of 1 ms, a fresh instance, listening again). The
//!    connect waits for the new incarnation instead of being refused.
//! 2. Start: `loophost up` of the demo workload (kv + its HTTP front end)
//!    until it prints "listening on", with an empty compile cache (cold) and
//!    with the cache the cold run filled (warm). Rounds alternate.
//!
//! Run with `scripts/bench.sh restart`.

use loophost_tests::bench::{Samples, rounds};
use loophost_tests::{Loophost, free_port, guest, temp_dir, write_manifest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn manifest(dir: &std::path::Path, publish: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
name = "bench"

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]
restart = "always"
max_restarts = 1000000
backoff_initial_ms = 1
backoff_max_ms = 1
publish = [{{ listen = "127.0.0.1:{publish}", port = 6379 }}]

[[component]]
name = "api"
wasm = "{api}"
route = "/kv"
"#,
        kv = guest("kv").display(),
        api = guest("kv_http").display(),
    );
    write_manifest(dir, "bench.toml", &text)
}

fn ping(port: u16) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf)?;
    if &buf != b"+PONG\r\n" {
        return Err(std::io::Error::other(format!("unexpected reply {buf:?}")));
    }
    Ok(())
}

fn crash(port: u16) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(b"DEBUG SEGFAULT\r\n");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

/// Milliseconds from `loophost up` spawned to "listening on".
fn start(manifest: &std::path::Path, cache: &std::path::Path) -> f64 {
    let t = Instant::now();
    let mut host = Loophost::spawn([
        "--cache-dir".as_ref(),
        cache.as_os_str(),
        "up".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        manifest.as_os_str(),
    ]);
    host.expect_line("listening on http://", Duration::from_secs(120));
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    host.terminate();
    let _ = host.wait(Duration::from_secs(30));
    ms
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = temp_dir("bench-restart");
    let publish = free_port();
    let manifest = manifest(&dir, publish);

    // 1. Restart after a trap.
    let cache = dir.join("cache");
    let mut host = Loophost::spawn([
        "--cache-dir".as_ref(),
        cache.as_os_str(),
        "up".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        manifest.as_os_str(),
    ]);
    host.expect_line("listening on http://", Duration::from_secs(120));
    ping(publish).expect("kv answers before the first crash");
    let mut outage = Samples::default();
    for _ in 0..50 {
        crash(publish);
        let t = Instant::now();
        ping(publish).expect("kv answers after a crash");
        outage.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    host.terminate();
    let _ = host.wait(Duration::from_secs(30));

    // 2. Cold and warm starts, alternating.
    let (mut cold, mut warm) = (Samples::default(), Samples::default());
    for round in 0..rounds(5) {
        let fresh = dir.join(format!("cold-{round}"));
        cold.push(start(&manifest, &fresh));
        warm.push(start(&manifest, &fresh));
    }

    println!("\n### restart and start-up\n");
    println!("| figure | median (min–max), ms | target |");
    println!("| --- | --- | --- |");
    println!(
        "| kv trapped → answering again (50 crashes) | {} | ≤ 10 |",
        outage.show(2)
    );
    println!(
        "| `loophost up` to listening, cold (empty cache) | {} | |",
        cold.show(1)
    );
    println!(
        "| `loophost up` to listening, warm (cache hit) | {} | ≤ 100 |",
        warm.show(1)
    );
    println!("\nratio warm / cold: {:.3}", warm.median() / cold.median());
}
