//! Soak: many virtual connections opened and closed through one listener (a
//! real std guest echoing each), host memory flat and every resource back.
//!
//! The suite runs 100 000 connections; `scripts/soak.sh` runs 1 000 000
//! (`LOOPHOST_SOAK_CONNECTIONS`).

use loophost::run::{ComponentSpec, Prepared};
use loophost_tests::{guest, rss_kib};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasi_sockets_virt::{Policy, VirtualNetwork};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_opened_and_closed_leave_memory_flat() {
    let total: u64 = std::env::var("LOOPHOST_SOAK_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let engine = loophost::component::engine().expect("engine");
    let network = VirtualNetwork::new();
    let server = Arc::new(
        Prepared::new(
            &engine,
            ComponentSpec {
                path: guest("echo-server"),
                args: vec!["127.0.0.1:7900".into()],
                ..Default::default()
            },
        )
        .expect("prepare"),
    );
    let out = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 16);
    let (srv, net) = (server.clone(), network.clone());
    let task = tokio::spawn(async move {
        srv.run_with_stdout(&net, Arc::new(Policy::default()), &[], Some(out))
            .await
    });
    let addr = "127.0.0.1:7900".parse().expect("addr");
    network.wait_listening(&[addr]).await;

    let started = Instant::now();
    let mut warm = 0;
    let mut samples = Vec::new();
    for i in 0..total {
        let mut conn = network.connect(addr).await.expect("connect");
        conn.write_all(b"ping").await.expect("write");
        conn.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        conn.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"ping", "connection {i}");
        drop(conn);
        if i == total / 10 {
            warm = rss_kib(std::process::id());
        }
        if i % (total / 10).max(1) == 0 {
            samples.push(rss_kib(std::process::id()));
        }
    }
    let elapsed = started.elapsed();
    // Let the server finish closing the last connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while network.stats().open_connections > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = rss_kib(std::process::id());
    let stats = network.stats();
    println!(
        "soak: {total} connections in {:.1} s ({:.0}/s); RSS after 10%: {warm} KiB, at the end: {end} KiB ({:+.1}%); samples {samples:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        (end as f64 / warm.max(1) as f64 - 1.0) * 100.0
    );
    assert_eq!(stats.open_connections, 0, "{stats:?}");
    assert_eq!(stats.buffered_bytes, 0, "{stats:?}");
    assert_eq!(stats.bound_ports, 1, "only the listener's port is bound: {stats:?}");
    assert!(
        (end as f64) <= warm as f64 * 1.10,
        "host memory flat: {warm} KiB after 10%, {end} KiB at the end"
    );
    task.abort();
}
