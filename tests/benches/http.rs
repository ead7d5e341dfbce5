//! Benchmark: the HTTP path, driven by `wrk` (Debian's package; the bench
//! script installs it).
//!
//! (a) A hello-world `wasi:http` component under `loophost up` against the
//!     same component under `reference-host serve` (upstream
//!     wasmtime-wasi-http with `ProxyPre` and the pooling allocator, as
//!     `wasmtime serve`), alternating rounds, throughput and latency.
//! (b) The demo's path, HTTP → `kv-http` → virtual connect → `kv` service →
//!     reply, at about 1 000 and 5 000 requests/s (wrk paced by a Lua
//!     `delay`; the achieved rate is printed) and at saturation.
//! (c) Per-request instantiation of the hello component, in this process:
//!     loophost's store (virtual sockets, wasi:http, limits) against
//!     upstream's, both from a `ProxyPre` on a pooling engine.
//!
//! Run with `scripts/bench.sh http`.

use loophost_tests::bench::{Row, Samples, print_table, reference_host_bin, rounds};
use loophost_tests::{Loophost, free_port, guest, http_request, temp_dir, up, write_manifest};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What wrk reported.
#[derive(Debug, Default)]
struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(url: &str, threads: u32, connections: u32, secs: u32, script: Option<&Path>) -> WrkResult {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd.arg(url).output().expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text)
}

fn parse_wrk(text: &str) -> WrkResult {
    let mut r = WrkResult::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => r.requests_per_sec = v.parse().unwrap_or(0.0),
            ["50%", v] => r.p50_ms = millis(v),
            ["99%", v] => r.p99_ms = millis(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => r.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    r
}

/// wrk prints latencies as `812.00us`, `1.23ms` or `1.01s`.
fn millis(v: &str) -> f64 {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * scale
}

/// The hello component under the `wasmtime serve`-style reference server,
/// and its address.
fn reference_hello() -> (Loophost, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut reference = Loophost::spawn_program(
        &reference_host_bin(),
        [
            "serve".to_string(),
            addr.clone(),
            guest("http_hello").display().to_string(),
        ],
        &[],
    );
    reference.expect_line("listening on", Duration::from_secs(60));
    (reference, addr)
}

fn hello_world(dir: &Path) -> Vec<Row> {
    let manifest = write_manifest(
        dir,
        "hello.toml",
        &format!(
            "name = \"hello\"\n[[component]]\nname = \"hello\"\nwasm = \"{}\"\nroute = \"/\"\nmax_concurrency = 1000\n",
            guest("http_hello").display()
        ),
    );
    let (ours_host, ours_addr) = up(&[&manifest], &[]);
    let (_reference, reference_addr) = reference_hello();
    for addr in [&ours_addr, &reference_addr] {
        let (status, body) = http_request(addr, "GET", "/", b"").expect("hello answers");
        assert_eq!((status, body.as_str()), (200, "hello\n"), "{addr}");
    }
    let (mut rate, mut p50, mut p99) = Default::default();
    let (mut ref_rate, mut ref_p50, mut ref_p99): (Samples, Samples, Samples) = Default::default();
    for round in 0..rounds(5) {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for ours in order {
            let addr = if ours { &ours_addr } else { &reference_addr };
            let r = wrk(&format!("http://{addr}/"), 1, 16, 5, None);
            assert_eq!(r.errors, 0, "{addr}: errors under load");
            let (a, b, c) = if ours {
                (&mut rate, &mut p50, &mut p99)
            } else {
                (&mut ref_rate, &mut ref_p50, &mut ref_p99)
            };
            a.push(r.requests_per_sec);
            b.push(r.p50_ms);
            c.push(r.p99_ms);
        }
    }
    ours_host.terminate();
    let row = |figure: &str, ours: Samples, baseline: Samples, target: &str, digits| Row {
        figure: figure.to_string(),
        ours,
        baseline,
        target: target.to_string(),
        digits,
    };
    vec![
        row(
            "hello world, requests/s (wrk, 16 connections)",
            rate,
            ref_rate,
            "≥ 0.9",
            0,
        ),
        row("hello world, p50 ms", p50, ref_p50, "", 3),
        row("hello world, p99 ms", p99, ref_p99, "", 3),
    ]
}

fn service_path(dir: &Path) {
    let manifest = write_manifest(
        dir,
        "kv.toml",
        &loophost_tests::kv_manifest("shop", "/kv", "", "max_concurrency = 1000"),
    );
    let (host, addr) = up(&[&manifest], &[]);
    let (status, _) = http_request(&addr, "PUT", "/kv/greeting", b"hello").expect("PUT");
    assert_eq!(status, 200);
    let url = format!("http://{addr}/kv/greeting");
    println!("\n### HTTP → kv-http → virtual connect → kv → reply (GET /kv/greeting)\n");
    println!("| load | achieved requests/s | p50 ms | p99 ms | target |");
    println!("| --- | --- | --- | --- | --- |");
    // Ten connections, each pausing between requests: ~10 000 / pause_ms requests/s.
    for (label, pause_ms, target) in [("~1 000 req/s", 10, "p99 < 1 ms"), ("~5 000 req/s", 2, "")] {
        let script = dir.join(format!("pace-{pause_ms}.lua"));
        std::fs::write(&script, format!("function delay()\n  return {pause_ms}\nend\n")).expect("write script");
        let r = wrk(&url, 1, 10, 10, Some(&script));
        assert_eq!(r.errors, 0, "errors at {label}");
        println!(
            "| {label} | {:.0} | {:.3} | {:.3} | {target} |",
            r.requests_per_sec, r.p50_ms, r.p99_ms
        );
    }
    // The floor at the same pacing: hello world (no service, no virtual
    // connection) under the reference server. On a VM whose idle vCPU is
    // slow to wake, a request arriving after a pause costs far more than
    // back-to-back ones, whatever the host.
    let (reference, reference_addr) = reference_hello();
    let r = wrk(
        &format!("http://{reference_addr}/"),
        1,
        10,
        10,
        Some(&dir.join("pace-10.lua")),
    );
    assert_eq!(r.errors, 0, "reference errors at ~1 000 req/s");
    println!(
        "| floor: hello world, `wasmtime serve`-style reference, ~1 000 req/s | {:.0} | {:.3} | {:.3} | |",
        r.requests_per_sec, r.p50_ms, r.p99_ms
    );
    reference.terminate();
    let r = wrk(&url, 1, 16, 10, None);
    assert_eq!(r.errors, 0, "errors at saturation");
    println!(
        "| saturation (16 connections) | {:.0} | {:.3} | {:.3} | |",
        r.requests_per_sec, r.p50_ms, r.p99_ms
    );
    host.terminate();
    let _ = host.wait(Duration::from_secs(30));
}

/// Per-request instantiation times (µs) for loophost's store and upstream's.
fn instantiation() -> (Samples, Samples) {
    const N: usize = 5000;
    let path = guest("http_hello");
    let ours = loophost_tests::instantiate::times(loophost_tests::instantiate::Store::Loophost, &path, N, true);
    let theirs = loophost_tests::instantiate::times(loophost_tests::instantiate::Store::Upstream, &path, N, true);
    (Samples(ours), Samples(theirs))
}

fn percentile(s: &Samples, q: f64) -> f64 {
    let mut v = s.0.clone();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = temp_dir("bench-http");
    let rows = hello_world(&dir);
    print_table(
        "(a) hello world: loophost up against a wasmtime serve-style host, median (min–max) of rounds",
        "loophost up",
        "reference (wasmtime serve style)",
        &rows,
    );
    service_path(&dir);
    let (ours, theirs) = instantiation();
    println!("\n### (c) instantiation per request (5 000 in a row), µs\n");
    println!("| store | p50 | p99 | target |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| loophost (virtual sockets, wasi:http, limits) | {:.1} | {:.1} | p50 ≤ 50 |",
        percentile(&ours, 0.5),
        percentile(&ours, 0.99)
    );
    println!(
        "| upstream (wasmtime serve style) | {:.1} | {:.1} | |",
        percentile(&theirs, 0.5),
        percentile(&theirs, 0.99)
    );
    println!(
        "\nratio of the p50s loophost / upstream: {:.3}",
        percentile(&ours, 0.5) / percentile(&theirs, 0.5)
    );
}
