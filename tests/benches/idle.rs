//! Benchmark: host memory per idle virtual connection.
//!
//! One guest (`bench-loopback hold`) accepts and keeps every connection, the
//! other (`bench-loopback open N`) opens N and keeps them. The host's RSS is
//! read before and after; the difference over N is what one idle connection
//! costs, both guests' sockets and their linear memory included. The
//! baseline is the reference host on the kernel's loopback, where the
//! kernel's socket memory (the `Slab` of /proc/meminfo) is added to the RSS.
//! Its count is limited by the machine's descriptor limit (two per
//! connection).
//!
//! Run with `scripts/bench.sh idle`.

use loophost_tests::bench::reference_host_bin;
use loophost_tests::{Loophost, free_port, guest, rss_kib};
use std::time::Duration;

fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes per connection, and how long opening them took.
fn measure(host: Option<&std::path::Path>, n: u64) -> (f64, u64) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let bench = guest("bench-loopback");
    let args = vec![
        "run".to_string(),
        "--with".to_string(),
        format!("{} hold {addr}", bench.display()),
        bench.display().to_string(),
        "open".to_string(),
        addr.clone(),
        n.to_string(),
    ];
    let mut child = match host {
        None => {
            let mut with_caps = vec![
                "run".to_string(),
                "--max-connections".to_string(),
                (n + 16).to_string(),
                "--max-sockets".to_string(),
                (n + 16).to_string(),
            ];
            with_caps.extend(args.into_iter().skip(1));
            Loophost::spawn(&with_caps)
        }
        Some(bin) => Loophost::spawn_program(bin, &args, &[]),
    };
    child.expect_line("ready", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1000));
    let (rss_before, slab_before) = (rss_kib(child.pid()), slab_kib());
    let line = child.expect_line("connected", Duration::from_secs(600));
    std::thread::sleep(Duration::from_millis(1000));
    let (rss_after, slab_after) = (rss_kib(child.pid()), slab_kib());
    let millis = line.split_whitespace().nth(2).and_then(|m| m.parse().ok()).unwrap_or(0);
    let kernel = if host.is_some() {
        slab_after.saturating_sub(slab_before)
    } else {
        0
    };
    let per = ((rss_after.saturating_sub(rss_before) + kernel) * 1024) as f64 / n as f64;
    drop(child);
    (per, millis)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("\n### idle: host memory per idle connection (both ends)\n");
    println!("| host | connections | bytes per connection | open time | target |");
    println!("| --- | --- | --- | --- | --- |");
    let mut ours = Vec::new();
    for n in [10_000u64, 100_000] {
        let (per, millis) = measure(None, n);
        println!("| loophost (virtual) | {n} | {per:.0} | {millis} ms | ≤ 2048 |");
        ours.push(per);
    }
    // Two descriptors per kernel connection: stay below the fd limit.
    let n = 9_000;
    let (kernel, millis) = measure(Some(&reference_host_bin()), n);
    println!("| wasmtime-wasi (kernel loopback, RSS + kernel slab) | {n} | {kernel:.0} | {millis} ms | |");
    println!("\nratio loophost (10 000) / kernel: {:.3}", ours[0] / kernel);
}
