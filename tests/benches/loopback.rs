//! Benchmark: the virtual loopback against the kernel's.
//!
//! The same std guest pair (`bench-loopback`) runs under `loophost run`
//! (virtual loopback, in memory) and under `reference-host run` (upstream
//! wasmtime-wasi sockets on the real kernel loopback, as `wasmtime run -S
//! inherit-network`). Rounds alternate between the two hosts; the guest
//! measures with its own monotonic clock, so both hosts are timed the same
//! way. Prints medians, the spread (min–max) and the ratio of the medians.
//!
//! Run with `scripts/bench.sh loopback` (release builds).

use loophost_tests::bench::{Row, Samples, print_table, reference_host_bin, rounds, run_for_result};
use loophost_tests::{free_port, guest, loophost_bin};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// One scenario: the client's arguments after the address, the server to
/// run, and the figures to keep from the client's result line.
struct Scenario {
    name: &'static str,
    server: &'static str,
    client: Vec<String>,
}

fn scenarios() -> Vec<Scenario> {
    let s = |name, server, client: &[&str]| Scenario {
        name,
        server,
        client: client.iter().map(|a| a.to_string()).collect(),
    };
    vec![
        s("connect", "serve", &["connect", "ADDR", "2000"]),
        s("pingpong", "serve", &["pingpong", "ADDR", "20000"]),
        s("bulk64k", "serve", &["bulk", "ADDR", "1024", "65536"]),
        s("bulk1k", "serve", &["bulk", "ADDR", "128", "1024"]),
        s("many", "echo", &["many", "ADDR", "1000", "2000"]),
    ]
}

/// The host's command line for one scenario on `port`.
fn command(scenario: &Scenario, port: u16) -> Vec<String> {
    let addr = format!("127.0.0.1:{port}");
    let bench = guest("bench-loopback");
    let server = match scenario.server {
        "serve" => format!("{} serve {addr}", bench.display()),
        _ => format!("{} {addr}", guest("tokio-echo-server").display()),
    };
    let mut args = vec![
        "run".to_string(),
        "--with".to_string(),
        server,
        bench.display().to_string(),
    ];
    args.extend(
        scenario
            .client
            .iter()
            .map(|a| if a == "ADDR" { addr.clone() } else { a.clone() }),
    );
    args
}

/// Single-core memcpy bandwidth of 64 KiB copies (in cache), GB/s: the
/// ceiling for a transfer that copies each byte twice (guest → host → guest).
fn memcpy_gb_per_sec() -> f64 {
    let src = vec![0x5au8; 64 * 1024];
    let mut dst = vec![0u8; 64 * 1024];
    let copies = 200_000;
    let started = Instant::now();
    for i in 0..copies {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst)[i % 64] ^= 1;
    }
    (copies * src.len()) as f64 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let ours: PathBuf = loophost_bin();
    let reference = reference_host_bin();
    let rounds = rounds(5);
    let scenarios = scenarios();
    // figure -> (loophost, kernel)
    let mut figures: BTreeMap<String, (Samples, Samples)> = BTreeMap::new();
    for round in 0..rounds {
        for scenario in &scenarios {
            // Alternate which host goes first, so neither always runs on a
            // machine warmed (or heated) by the other.
            let hosts = if round % 2 == 0 {
                [(&ours, true), (&reference, false)]
            } else {
                [(&reference, false), (&ours, true)]
            };
            for (bin, is_ours) in hosts {
                let result = run_for_result(bin, &command(scenario, free_port()));
                for (key, value) in result {
                    let entry = figures.entry(format!("{} {key}", scenario.name)).or_default();
                    if is_ours {
                        entry.0.push(value)
                    } else {
                        entry.1.push(value)
                    }
                }
            }
        }
        eprintln!("loopback: round {}/{rounds} done", round + 1);
    }
    let memcpy = memcpy_gb_per_sec();
    let pick = |key: &str, figure: &str, target: &str, digits| {
        let (a, b) = figures.get(key).cloned().unwrap_or_default();
        Row {
            figure: figure.to_string(),
            ours: a,
            baseline: b,
            target: target.to_string(),
            digits,
        }
    };
    let rows = vec![
        pick("connect per_sec", "connect + first byte + close, per s", "≥ 10", 0),
        pick("pingpong p50_us", "64 B round trip p50, µs", "≤ 0.1", 2),
        pick("pingpong p99_us", "64 B round trip p99, µs", "≤ 0.25", 2),
        pick("pingpong p999_us", "64 B round trip p99.9, µs", "", 2),
        pick("bulk64k gb_per_sec", "bulk, 64 KiB writes, GB/s", "≥ 3", 2),
        pick("bulk1k gb_per_sec", "bulk, 1 KiB writes, GB/s", "", 2),
        pick("many per_sec", "1000 concurrent echo connections, round trips/s", "", 0),
    ];
    print_table(
        &format!("loopback: {rounds} alternating rounds, median (min–max)"),
        "loophost (virtual)",
        "wasmtime-wasi (kernel loopback)",
        &rows,
    );
    let bulk = figures
        .get("bulk64k gb_per_sec")
        .map(|f| f.0.median())
        .unwrap_or(f64::NAN);
    println!(
        "\nsingle-core memcpy of 64 KiB: {memcpy:.1} GB/s; loophost bulk 64 KiB = {:.2} of it (target ≥ 0.4)",
        bulk / memcpy
    );
}
