//! Chaos under load: two workloads with the same virtual ports; one's kv
//! service is made to trap every 100 ms through its published port while
//! four clients load its HTTP component and two load the other workload.
//!
//! Holds: the host stays up, no response is corrupted (a value read back is
//! the value written, or the data is gone with the trapped kv: 404/502), the
//! calm workload answers every request, the chaotic one recovers fully once
//! the kills stop, and the host's RSS stays flat.
//!
//! The suite runs it for 20 s; `scripts/chaos.sh` runs it longer on a
//! release build (`LOOPHOST_CHAOS_SECS`, `LOOPHOST_BIN`).

use loophost_tests::{http_request, kv_manifest, rss_kib, temp_dir, up, write_manifest};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A kv workload whose kv restarts at once after a trap, as often as needed.
fn manifest(dir: &std::path::Path, name: &str, route: &str, kv_extra: &str) -> std::path::PathBuf {
    let kv_extra = format!("backoff_initial_ms = 10\nbackoff_max_ms = 50\nmax_restarts = 1000000\n{kv_extra}");
    write_manifest(dir, &format!("{name}.toml"), &kv_manifest(name, route, &kv_extra, ""))
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    lost: AtomicU64,
    corrupt: AtomicU64,
    failed: AtomicU64,
}

/// PUT a unique value, GET it back; classify what came back.
fn round(addr: &str, route: &str, key: &str, value: &str, tally: &Tally) {
    let put = http_request(addr, "PUT", &format!("{route}/{key}"), value.as_bytes());
    let get = http_request(addr, "GET", &format!("{route}/{key}"), b"");
    match (put, get) {
        (Ok((200, _)), Ok((200, body))) if body == value => tally.ok.fetch_add(1, Ordering::Relaxed),
        (_, Ok((200, _))) => tally.corrupt.fetch_add(1, Ordering::Relaxed),
        // The kv that held the value trapped: the data is gone, or kv is
        // restarting. Expected under chaos, never a wrong value.
        (_, Ok((404 | 502, _))) | (Ok((502, _)), _) => tally.lost.fetch_add(1, Ordering::Relaxed),
        _ => tally.failed.fetch_add(1, Ordering::Relaxed),
    };
}

#[test]
fn chaos_under_load() {
    let secs: u64 = std::env::var("LOOPHOST_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = temp_dir("chaos");
    let chaotic = manifest(
        &dir,
        "chaotic",
        "/chaos",
        r#"publish = [{ listen = "127.0.0.1:0", port = 6379 }]"#,
    );
    let calm = manifest(&dir, "calm", "/calm", "");
    let (mut host, addr) = up(&[&chaotic, &calm], &[]);
    let published = host
        .seen_line("published 127.0.0.1:")
        .expect("the status table shows the published port")
        .split("published ")
        .nth(1)
        .and_then(|s| s.split(" -> ").next())
        .expect("published address")
        .to_string();
    let pid = host.pid();

    let stop_load = Arc::new(AtomicBool::new(false));
    let stop_kills = Arc::new(AtomicBool::new(false));
    let (chaos_tally, calm_tally) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let kills = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (route, tally, n) in [("/chaos", &chaos_tally, 4), ("/calm", &calm_tally, 2)] {
        for t in 0..n {
            let (addr, tally, stop) = (addr.clone(), tally.clone(), stop_load.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round(
                        &addr,
                        route,
                        &format!("t{t}-{i}"),
                        &format!("value-{t}-{i}-{}", i * 7919),
                        &tally,
                    );
                    i += 1;
                }
            }));
        }
    }
    let killer = {
        let (published, stop, kills) = (published.clone(), stop_kills.clone(), kills.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut kv) = std::net::TcpStream::connect(&published) {
                    let _ = kv.write_all(b"*2\r\n$5\r\nDEBUG\r\n$8\r\nSEGFAULT\r\n");
                    let _ = kv.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = kv.read(&mut [0u8; 64]);
                    kills.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // RSS after warm-up, then at the end of the chaos.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs) / 4);
    let rss_warm = rss_kib(pid);
    std::thread::sleep(Duration::from_secs(secs) * 3 / 4);
    let rss_end = rss_kib(pid);
    stop_kills.store(true, Ordering::Relaxed);
    killer.join().expect("killer");
    stop_load.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let chaos_secs = started.elapsed().as_secs_f64();

    // Recovery: once the kills stop, the chaotic workload is whole again.
    std::thread::sleep(Duration::from_millis(500));
    let after = Tally::default();
    for i in 0..100 {
        round(&addr, "/chaos", &format!("after-{i}"), &format!("v{i}"), &after);
    }
    let get = |t: &Tally| {
        (
            t.ok.load(Ordering::Relaxed),
            t.lost.load(Ordering::Relaxed),
            t.corrupt.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
        )
    };
    let (c_ok, c_lost, c_corrupt, c_failed) = get(&chaos_tally);
    let (k_ok, k_lost, k_corrupt, k_failed) = get(&calm_tally);
    let growth = rss_end as f64 / rss_warm.max(1) as f64 - 1.0;
    println!(
        "chaos {chaos_secs:.0} s: {} kv kills; chaotic workload {c_ok} ok, {c_lost} lost to kills, {c_corrupt} corrupt, \
         {c_failed} failed; calm workload {k_ok} ok, {} not ok; after the kills {}/100 ok; host RSS {rss_warm} -> {rss_end} KiB \
         ({:+.1}%)",
        kills.load(Ordering::Relaxed),
        k_lost + k_corrupt + k_failed,
        after.ok.load(Ordering::Relaxed),
        growth * 100.0
    );
    assert!(host.is_running(), "the host stayed up");
    assert!(
        kills.load(Ordering::Relaxed) >= secs * 5,
        "the kv was really killed over and over"
    );
    assert_eq!(c_corrupt + k_corrupt, 0, "no response carried a wrong value");
    assert_eq!(
        c_failed, 0,
        "chaotic requests either worked or lost their data to a kill"
    );
    assert_eq!(
        (k_lost, k_corrupt, k_failed),
        (0, 0, 0),
        "the calm workload answered every request"
    );
    assert!(k_ok > 0 && c_ok > 0);
    assert_eq!(
        after.ok.load(Ordering::Relaxed),
        100,
        "full recovery once the kills stop"
    );
    assert!(growth.abs() <= 0.10, "host RSS flat: {rss_warm} -> {rss_end} KiB");
}
