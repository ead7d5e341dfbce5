//! Tests that embed the host in-process to look inside the virtual network:
//! backpressure (measured buffer use) and isolation between networks.

use loophost::run::{ComponentSpec, Prepared};
use loophost_tests::guest;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasi_sockets_virt::{NetworkConfig, Policy, VirtualNetwork};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

fn prepared(engine: &wasmtime::Engine, name: &str, args: &[&str]) -> Arc<Prepared> {
    let spec = ComponentSpec {
        path: guest(name),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    Arc::new(Prepared::new(engine, spec).expect("prepare guest"))
}

/// Starts a guest in the background with captured stdout.
fn spawn(
    prepared: &Arc<Prepared>,
    network: &VirtualNetwork,
) -> (tokio::task::JoinHandle<anyhow::Result<i32>>, MemoryOutputPipe) {
    let out = MemoryOutputPipe::new(1 << 20);
    let (p, n, o) = (prepared.clone(), network.clone(), out.clone());
    let task = tokio::spawn(async move { p.run_with_stdout(&n, Arc::new(Policy::default()), &[], Some(o)).await });
    (task, out)
}

fn text(pipe: &MemoryOutputPipe) -> String {
    String::from_utf8_lossy(&pipe.contents()).into_owned()
}

async fn wait_listening(network: &VirtualNetwork, addr: &str) {
    let addr = addr.parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !network.is_listening(addr) {
        assert!(Instant::now() < deadline, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_stops_the_writer_and_memory_stays_bounded() {
    let engine = loophost::component::engine().expect("engine");
    let limit = 128 * 1024;
    let network = VirtualNetwork::with_config(NetworkConfig {
        connection_buffer: limit,
        ..NetworkConfig::default()
    });
    let sink = prepared(&engine, "echo-server", &["127.0.0.1:7100", "--mode", "sink"]);
    let flood = prepared(
        &engine,
        "tcp-client",
        &["flood", "127.0.0.1:7100", &(256 * 1024 * 1024).to_string()],
    );

    let (server, _server_out) = spawn(&sink, &network);
    wait_listening(&network, "127.0.0.1:7100").await;
    let (client, client_out) = spawn(&flood, &network);

    // Let the client write until it is stopped, then watch it stay stopped.
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        peak = peak.max(network.stats().buffered_bytes);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stalled_at = text(&client_out).lines().filter(|l| l.starts_with("wrote ")).count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = text(&client_out).lines().filter(|l| l.starts_with("wrote ")).count();

    assert!(
        !client.is_finished(),
        "the writer must be blocked, not done: {}",
        text(&client_out)
    );
    assert_eq!(stalled_at, later, "no progress while nobody reads");
    assert!(peak > 0, "data was buffered");
    assert!(peak <= limit, "buffered {peak} bytes, limit {limit}");
    assert_eq!(network.stats().buffered_bytes, limit, "the buffer is exactly full");
    println!("backpressure: peak buffered {peak} bytes with a {limit}-byte limit");

    client.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_networks_with_the_same_ports_never_meet() {
    let engine = loophost::component::engine().expect("engine");
    let (net_a, net_b) = (VirtualNetwork::new(), VirtualNetwork::new());
    let echo = prepared(&engine, "echo-server", &["127.0.0.1:7200"]);
    let http = prepared(&engine, "http-server", &["127.0.0.1:7200"]);
    let (server_a, out_a) = spawn(&echo, &net_a);
    let (server_b, out_b) = spawn(&http, &net_b);
    wait_listening(&net_a, "127.0.0.1:7200").await;
    wait_listening(&net_b, "127.0.0.1:7200").await;

    let roundtrip = prepared(&engine, "tcp-client", &["roundtrip", "127.0.0.1:7200", "3"]);
    let get = prepared(&engine, "ureq-client", &["http://127.0.0.1:7200/hello"]);
    let (client_a, client_a_out) = spawn(&roundtrip, &net_a);
    let (client_b, client_b_out) = spawn(&get, &net_b);
    let code_a = client_a.await.expect("join").expect("client a ran");
    let code_b = client_b.await.expect("join").expect("client b ran");

    assert_eq!(code_a, 0, "{}", text(&client_a_out));
    assert!(text(&client_a_out).contains("roundtrip ok 3"));
    assert_eq!(code_b, 0, "{}", text(&client_b_out));
    assert!(text(&client_b_out).contains("hello from http-server"));
    assert!(
        !text(&out_a).contains("request GET"),
        "echo server saw only its own client"
    );
    assert_eq!(
        text(&out_b).matches("request GET").count(),
        1,
        "http server saw only its own client"
    );
    server_a.abort();
    server_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_released_when_a_store_is_dropped() {
    let engine = loophost::component::engine().expect("engine");
    let network = VirtualNetwork::new();
    let server = prepared(&engine, "echo-server", &["127.0.0.1:7300"]);
    let (task, _) = spawn(&server, &network);
    wait_listening(&network, "127.0.0.1:7300").await;
    task.abort();
    let _ = task.await;
    assert_eq!(network.stats().bound_ports, 0, "the dropped store's port is free again");
    let (again, _) = spawn(&server, &network);
    wait_listening(&network, "127.0.0.1:7300").await;
    again.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_store_resets_its_connections() {
    let engine = loophost::component::engine().expect("engine");
    let network = VirtualNetwork::new();
    let server = prepared(&engine, "echo-server", &["127.0.0.1:7400"]);
    let client = prepared(&engine, "tcp-client", &["until-reset", "127.0.0.1:7400"]);
    let (server_task, _) = spawn(&server, &network);
    wait_listening(&network, "127.0.0.1:7400").await;
    let (client_task, client_out) = spawn(&client, &network);
    let deadline = Instant::now() + Duration::from_secs(30);
    while network.stats().open_connections == 0 {
        assert!(Instant::now() < deadline, "the client never connected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The server's task is cancelled (the host stopping it), not trapped.
    server_task.abort();
    let _ = server_task.await;
    tokio::time::timeout(Duration::from_secs(30), client_task)
        .await
        .expect("client ended")
        .expect("join")
        .expect("client ran");
    let out = text(&client_out);
    assert!(out.contains("ended "), "{out}");
    assert!(
        !out.contains("ended EOF"),
        "a cancelled peer is a reset, not a clean end: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_budget_bounds_what_all_connections_hold_together() {
    let engine = loophost::component::engine().expect("engine");
    let budget = 512 * 1024;
    let network = VirtualNetwork::with_config(NetworkConfig {
        connection_buffer: 256 * 1024,
        max_buffered_bytes: budget,
        ..NetworkConfig::default()
    });
    // A server that never reads, and eight clients flooding it: without the
    // budget they would park 8 x 256 KiB in the host.
    let sink = prepared(&engine, "echo-server", &["127.0.0.1:7500", "--mode", "sink"]);
    let (server, _) = spawn(&sink, &network);
    wait_listening(&network, "127.0.0.1:7500").await;
    let flood = prepared(
        &engine,
        "tcp-client",
        &["flood", "127.0.0.1:7500", &(64 << 20).to_string()],
    );
    let clients: Vec<_> = (0..8).map(|_| spawn(&flood, &network)).collect();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        peak = peak.max(network.stats().buffered_bytes);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A permit handed out before another writer used the rest may overshoot
    // by one write (64 KiB) per worker thread.
    assert!(peak <= budget + 2 * 64 * 1024, "peak {peak} bytes, budget {budget}");
    assert!(peak >= budget / 2, "the clients did fill the budget: peak {peak}");
    assert!(
        clients.iter().all(|(task, _)| !task.is_finished()),
        "every writer is waiting, none failed"
    );
    println!("network budget: peak buffered {peak} bytes with a {budget}-byte budget and 8 x 256 KiB connections");
    for (task, _) in clients {
        task.abort();
    }
    server.abort();
}

/// Runs a conformance host case with `env`; returns its task and stdout.
fn spawn_case(
    engine: &wasmtime::Engine,
    network: &VirtualNetwork,
    case: &str,
    env: &[(&str, String)],
) -> (tokio::task::JoinHandle<anyhow::Result<i32>>, MemoryOutputPipe) {
    let guest = prepared(engine, "conformance", &[case]);
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let out = MemoryOutputPipe::new(1 << 20);
    let (n, o) = (network.clone(), out.clone());
    let task = tokio::spawn(async move {
        guest
            .run_with_stdout(&n, Arc::new(Policy::default()), &env, Some(o))
            .await
    });
    (task, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_queues_are_bounded_by_bytes_and_counted_by_the_network() {
    let engine = loophost::component::engine().expect("engine");
    for (port, receive_buffer) in [(7601u16, None), (7602, Some(16 * 1024usize))] {
        let network = VirtualNetwork::new();
        let mut env = vec![("UDP_PORT", port.to_string()), ("SLEEP_MS", "20000".to_string())];
        if let Some(size) = receive_buffer {
            env.push(("UDP_RECEIVE_BUFFER", size.to_string()));
        }
        let (sink, sink_out) = spawn_case(&engine, &network, "host-udp-sink", &env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !text(&sink_out).contains("bound") {
            assert!(Instant::now() < deadline, "the sink never bound: {}", text(&sink_out));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 4 MiB of 1 KiB datagrams, then 100 000 empty ones, to a socket
        // that never reads.
        for (count, size) in [(4096, 1024), (100_000, 0)] {
            let flood_env = [
                ("UDP_PORT", port.to_string()),
                ("COUNT", count.to_string()),
                ("SIZE", size.to_string()),
            ];
            let (flood, out) = spawn_case(&engine, &network, "host-udp-flood", &flood_env);
            let code = flood.await.expect("join").expect("flood ran");
            assert_eq!(code, 0, "{}", text(&out));
        }
        let held = network.stats().buffered_bytes;
        let limit = receive_buffer.unwrap_or(208 * 1024);
        assert!(held > 0, "queued datagrams are counted in the network's buffered bytes");
        assert!(
            held <= limit,
            "the sink holds {held} bytes, its receive buffer is {limit}"
        );
        println!("udp: a socket that never reads holds {held} bytes (receive buffer {limit})");
        sink.abort();
        let _ = sink.await;
        assert_eq!(
            network.stats().buffered_bytes,
            0,
            "all released when the socket is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_get_an_instance_waits_without_counting_a_failure() {
    use loophost::supervisor::{ServiceState, ServiceSupervisor};
    // A pool with room for one instance, taken by another guest.
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(1)
        .total_core_instances(8)
        .total_memories(4)
        .total_tables(8);
    let mut config = wasmtime::Config::new();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = loophost::component::engine_with(config).expect("pooled engine");
    let network = VirtualNetwork::new();
    let hog = prepared(&engine, "echo-server", &["127.0.0.1:7700"]);
    let (hog_task, _) = spawn(&hog, &network);
    wait_listening(&network, "127.0.0.1:7700").await;

    let text = format!(
        "name = \"p\"\n[[service]]\nname = \"echo\"\nwasm = \"{}\"\nargs = [\"127.0.0.1:7701\"]\nports = [7701]\nbackoff_initial_ms = 50\nmax_restarts = 1\n",
        guest("echo-server").display()
    );
    let workload = loophost::manifest::parse("p.toml", std::path::Path::new("/"), &text).expect("manifest");
    let service = workload.services[0].clone();
    let prepared = Arc::new(
        Prepared::new(
            &engine,
            ComponentSpec {
                path: service.wasm.clone(),
                args: service.args.clone(),
                ..Default::default()
            },
        )
        .expect("prepare"),
    );
    let supervisor = ServiceSupervisor::new("default/p".into(), service);
    let owner = network.new_port_owner();
    let task = tokio::spawn(supervisor.clone().supervise(prepared, network.clone(), owner));
    // Several attempts find the pool full: none of them is a failure.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let waiting = supervisor.status();
    assert_eq!(waiting.restarts, 0, "{waiting:?}");
    assert_ne!(waiting.state, ServiceState::Failed, "{waiting:?}");
    // Once the other guest is gone, the service gets its instance.
    hog_task.abort();
    let _ = hog_task.await;
    wait_listening(&network, "127.0.0.1:7701").await;
    // The supervisor hears of the listener a moment after the network has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while supervisor.status().state != ServiceState::Ready && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = supervisor.status();
    assert_eq!((ready.state, ready.restarts), (ServiceState::Ready, 0), "{ready:?}");
    task.abort();
}
