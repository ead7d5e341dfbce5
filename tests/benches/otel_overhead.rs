//! Benchmark: the cost of OpenTelemetry export on the request path.
//!
//! Runs the kv workload (HTTP -> kv-http component -> virtual connect -> kv
//! service) with export off and with export on (OTLP http/protobuf to an in-process
//! receiver that only counts requests, sampling 100%), alternating rounds, and prints requests/s and
//! the ratio of the medians. Target: export-on throughput >= 95% of export-off.
//!
//! Run with `scripts/bench.sh` (it builds a release `loophost` first).

use loophost_tests::otlp::OtlpReceiver;
use loophost_tests::{guest, http_request, temp_dir, up_with_env};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 16;
const REQUESTS: usize = 4000;
const ROUNDS: usize = 5;

fn workload() -> std::path::PathBuf {
    let dir = temp_dir("bench-otel");
    let path = dir.join("bench.toml");
    let text = format!(
        "name = \"bench\"\n[[service]]\nname = \"kv\"\nwasm = \"{}\"\nports = [6379]\n[[component]]\nname = \"api\"\nwasm = \"{}\"\nroute = \"/kv\"\n",
        guest("kv").display(),
        guest("kv_http").display()
    );
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// Requests per second for one round.
fn round(manifest: &std::path::Path, env: &[(&str, String)]) -> f64 {
    let (host, addr) = up_with_env(&[manifest], &[], env);
    for i in 0..200 {
        let _ = http_request(&addr, "PUT", &format!("/kv/warm{i}"), b"x");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (addr, next, failures) = (addr.clone(), next.clone(), failures.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= REQUESTS {
                        break;
                    }
                    let ok = matches!(
                        http_request(&addr, "PUT", &format!("/kv/k{}", i % 100), b"value"),
                        Ok((200, _))
                    );
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let rate = REQUESTS as f64 / started.elapsed().as_secs_f64();
    host.terminate();
    let _ = host.wait(Duration::from_secs(30));
    assert_eq!(failures.load(Ordering::Relaxed), 0, "all requests succeeded");
    rate
}

fn main() {
    let manifest = workload();
    // The collector only counts requests: decoding them here would compete
    // for the same cores as the host being measured.
    let receiver = OtlpReceiver::start_discarding_http();
    let on_env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let off_env = vec![("RUST_LOG", "warn".to_string())];
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(round(&manifest, &off_env));
        on.push(round(&manifest, &on_env));
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off_median, on_median) = (median(&off), median(&on));
    let ratio = on_median / off_median;
    // The spread of identical rounds: differences below it are noise.
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        (hi - lo) / hi * 100.0
    };
    println!(
        "requests: {REQUESTS} per round, concurrency {CONCURRENCY}, {ROUNDS} alternating rounds each, medians shown"
    );
    println!(
        "export off: {off_median:.0} req/s   (rounds: {off:.0?}, spread {:.1}%)",
        spread(&off)
    );
    println!(
        "export on : {on_median:.0} req/s   (rounds: {on:.0?}, spread {:.1}%)",
        spread(&on)
    );
    println!(
        "ratio on/off: {ratio:.3}  overhead: {:.1}%  (target <= 5%)",
        (1.0 - ratio) * 100.0
    );
    println!("export requests received: {}", receiver.request_count());
}
