//! Hostile guests against the policy: each test reproduces a way past it
//! (or past the WIT's rules) with a real guest.

use loophost::state::HostState;
use loophost_tests::{Loophost, guest, http_request, kv_manifest, percent_encode, temp_dir, up, write_manifest};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wasi_sockets_virt::{AddressRule, NameLookup, Policy, ResolveFuture, Resolver, VirtualNetwork};

fn p(name: &str) -> String {
    guest(name).display().to_string()
}

/// A real HTTP server on the machine that answers `body` to every request
/// and counts the connections it accepted.
fn real_server(listener: TcpListener, body: &'static str) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    seen
}

/// Answers the first lookup with `first`, every later one with `later`:
/// a DNS rebinding attack in miniature.
struct RebindingResolver {
    calls: AtomicUsize,
    first: IpAddr,
    later: IpAddr,
}

impl Resolver for RebindingResolver {
    fn resolve(&self, _name: &str) -> ResolveFuture {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let ip = if n == 0 { self.first } else { self.later };
        Box::pin(async move { Ok(vec![ip]) })
    }
}

/// Serves one HTTP request with a fresh instance of `pre` on `network`.
async fn serve_one(
    engine: wasmtime::Engine,
    pre: wasmtime_wasi_http::p2::bindings::ProxyPre<HostState>,
    network: VirtualNetwork,
    policy: Arc<Policy>,
    listener: tokio::net::TcpListener,
) {
    let (tcp, _) = listener.accept().await.expect("accept");
    let service = hyper::service::service_fn(move |req| {
        let (engine, pre, network, policy) = (engine.clone(), pre.clone(), network.clone(), policy.clone());
        async move {
            let state = HostState::new(wasmtime_wasi::WasiCtx::builder().build(), &network, policy);
            let store = loophost::component::new_store(&engine, state);
            let response = match loophost::http::handle(&pre, store, req, Duration::from_secs(30), ()).await {
                Ok(response) => response,
                Err(err) => loophost::http::text(500, format!("{err:#}")),
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_http_by_name_connects_to_exactly_the_address_that_was_checked() {
    // The allowed destination: a real server on 127.0.0.1:PORT, with an
    // explicit egress rule. The rebinding answer, 127.0.0.2, is not allowed.
    let allowed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = allowed.local_addr().expect("addr").port();
    let allowed_hits = real_server(allowed, "from the checked address");
    let other_hits = TcpListener::bind(("127.0.0.2", port))
        .map(|l| real_server(l, "from the rebound address"))
        .ok();

    let engine = loophost::component::engine().expect("engine");
    let component = loophost::component::load(&engine, &guest("http_fetch")).expect("load");
    let pre = loophost::state::linker(&engine)
        .expect("linker")
        .instantiate_pre(&component)
        .expect("link");
    let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).expect("proxy world");
    let network = VirtualNetwork::new();
    let resolver = Arc::new(RebindingResolver {
        calls: AtomicUsize::new(0),
        first: IpAddr::V4(Ipv4Addr::LOCALHOST),
        later: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    });
    network.set_resolver(resolver.clone());
    let policy = Arc::new(Policy {
        egress: vec![AddressRule {
            net: "127.0.0.1/32".parse().expect("net"),
            ports: port..=port,
        }],
        name_lookup: NameLookup::Names(vec!["rebind.test".into()]),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(serve_one(engine, pre, network, policy, listener));

    let url = percent_encode(&format!("http://rebind.test:{port}/"));
    let (status, body) = tokio::task::spawn_blocking(move || http_request(&addr, "GET", &format!("/f?url={url}"), b""))
        .await
        .expect("join")
        .expect("request");
    let _ = server.await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from the checked address"), "{body}");
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1, "the name is resolved once");
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
    if let Some(other) = other_hits {
        assert_eq!(other.load(Ordering::SeqCst), 0, "nothing reached the rebound address");
    }
}

#[test]
fn outgoing_http_to_unspecified_or_mapped_addresses_never_reaches_the_real_loopback() {
    let real = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = real.local_addr().expect("addr").port();
    let hits = real_server(real, "the machine's own loopback");
    let dir = temp_dir("http-unspecified");
    let manifest = dir.join("u.toml");
    // Even with the whole internet allowed, these are not destinations.
    std::fs::write(
        &manifest,
        format!(
            r#"
name = "u"

[[component]]
name = "fetch"
wasm = "{fetch}"
route = "/fetch"
sockets = {{ allow_egress = ["0.0.0.0/0", "::/0"] }}
"#,
            fetch = p("http_fetch"),
        ),
    )
    .expect("manifest");
    let (_host, addr) = up(&[&manifest], &[]);
    for target in [
        format!("http://0.0.0.0:{port}/"),
        format!("http://[::]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::ffff:0.0.0.0]:{port}/"),
    ] {
        let (status, body) =
            http_request(&addr, "GET", &format!("/fetch?url={}", percent_encode(&target)), b"").expect("request");
        assert!(
            status == 502 && body.contains("HttpRequestDenied"),
            "{target}: {status} {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the real loopback saw nothing");
}

#[test]
fn a_declared_port_belongs_to_its_service_even_while_it_is_down() {
    let dir = temp_dir("reserved-port");
    let manifest = dir.join("r.toml");
    // "owner" declares 7400 but fails at start (bad arguments) and backs
    // off; the squatters must not get its port meanwhile.
    std::fs::write(
        &manifest,
        format!(
            r#"
name = "r"

[[service]]
name = "owner"
wasm = "{echo}"
args = ["not-an-address"]
ports = [7400]
backoff_initial_ms = 1000

[[service]]
name = "squatter"
wasm = "{client}"
args = ["bind", "127.0.0.1:7400"]
restart = "never"

[[component]]
name = "squat-job"
wasm = "{client}"
args = ["bind", "0.0.0.0:7400", "--exit"]
"#,
            echo = p("echo-server"),
            client = p("tcp-client"),
        ),
    )
    .expect("manifest");
    let (host, _addr) = up(&[&manifest], &["--ready-timeout", "1"]);
    host.expect_stderr("component=squat-job", Duration::from_secs(30));
    host.expect_stderr("component=squatter", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let log = host.stderr();
    for who in ["squatter", "squat-job"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("component={who} ")))
            .collect();
        assert!(
            lines.iter().any(|l| l.contains("error AddrInUse")) && !lines.iter().any(|l| l.contains("bound ")),
            "{who} must not bind the owner's port: {lines:?}\n{log}"
        );
    }
}

/// Runs conformance cases that need the host's cooperation.
fn conformance(case: &str, extra: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut args = vec!["run".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(p("conformance"));
    args.push(case.to_string());
    Loophost::spawn_env(&args, env).wait_with_stderr(Duration::from_secs(60))
}

#[test]
fn udp_send_beyond_what_check_send_permitted_traps() {
    for case in ["trap-udp-send-beyond-permit", "trap-udp-send-without-check"] {
        let (code, out, err) = conformance(case, &[], &[]);
        assert_ne!(code, 0, "{case}: {out}");
        assert!(!out.contains("FAIL"), "{case} returned instead of trapping: {out}");
        assert!(err.contains("trapped") && err.contains("unpermitted"), "{case}: {err}");
    }
}

#[test]
fn udp_never_reaches_a_real_peer_even_one_egress_allows() {
    // GHSA-hmmr-87qq-258j: the peer of a connected UDP socket must be
    // allowed both ways; virtual UDP has no real path at all. The peer is
    // real: the machine's own address (denied by default) or the real
    // loopback (reached only through an explicit rule).
    let peer = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind a real UDP peer");
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let port = peer.local_addr().expect("addr").port();
    let machine = format!("{}:{port}", machine_address());
    let real_loopback = format!("127.0.0.1:{port}");
    for (target, rule) in [
        (&machine, None),
        (&machine, Some(&machine)),
        (&real_loopback, Some(&real_loopback)),
    ] {
        let env = format!("REAL_PEER={target}");
        let mut extra = vec!["--env", env.as_str()];
        if let Some(rule) = rule {
            extra.extend(["--allow-egress", rule.as_str()]);
        }
        let (code, out, err) = conformance("host-udp-real-peer-denied", &extra, &[]);
        assert_eq!(code, 0, "{target} (rule {rule:?}): {out}\n{err}");
        assert!(out.contains("PASS host-udp-real-peer-denied"), "{target}: {out}");
        let mut buf = [0u8; 16];
        assert!(
            peer.recv_from(&mut buf).is_err(),
            "{target}: a datagram reached the real peer"
        );
    }
}

/// A non-loopback address of this machine (no packet is sent to find it).
fn machine_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:9").map(|_| s));
    match probe.and_then(|s| s.local_addr()) {
        Ok(addr) if !addr.ip().is_unspecified() && !addr.ip().is_loopback() => addr.ip(),
        _ => "192.0.2.1".parse().expect("literal"),
    }
}

#[test]
fn buffer_sizes_set_before_a_real_connect_are_applied() {
    let peer = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = peer.local_addr().expect("addr");
    let _hits = real_server(peer, "");
    let rule = addr.to_string();
    let env = format!("REAL_PEER={rule}");
    let (code, out, err) = conformance(
        "host-tcp-buffer-sizes-reach-real-socket",
        &["--allow-egress", &rule, "--env", &env],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("PASS host-tcp-buffer-sizes-reach-real-socket"), "{out}");
}

fn kv_workload(dir: &std::path::Path) -> std::path::PathBuf {
    write_manifest(dir, "kv.toml", &kv_manifest("kv", "/kv", "", ""))
}

#[test]
fn a_trapping_component_answers_500_without_its_trap_text() {
    let dir = temp_dir("no-echo");
    let (host, addr) = up(&[&kv_workload(&dir)], &[]);
    let (status, body) = http_request(&addr, "POST", "/kv/_panic", b"").expect("request");
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("hunter2") && !body.contains("trap"), "{body}");
    assert!(body.contains("api failed"), "{body}");
    host.expect_stderr("hunter2", Duration::from_secs(10));
    // And the component still serves the next request.
    assert_eq!(http_request(&addr, "PUT", "/kv/after", b"v").expect("put").0, 200);
}

#[test]
fn a_second_signal_during_the_drain_stops_at_once() {
    let dir = temp_dir("second-signal");
    let (host, addr) = up(&[&kv_workload(&dir)], &["--drain-timeout", "60"]);
    let slow = std::thread::spawn(move || http_request(&addr, "GET", "/kv/_sleep/30000", b""));
    std::thread::sleep(Duration::from_millis(500));
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &host.pid().to_string()])
            .status()
            .expect("kill");
    };
    signal("-INT");
    host.expect_stderr("draining", Duration::from_secs(10));
    let started = std::time::Instant::now();
    signal("-INT");
    let (code, _out, err) = host.wait_with_stderr(Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5), "stopped at once: {err}");
    assert_eq!(code, 1, "not a clean drain: {err}");
    assert!(err.contains("second signal"), "{err}");
    // The in-flight request was cut off, not answered.
    assert!(
        !matches!(slow.join().expect("thread"), Ok((200, _))),
        "the 30 s request cannot have completed"
    );
}

#[test]
fn a_store_holds_at_most_its_socket_limit() {
    let limit = wasi_sockets_virt::NetworkConfig::default().max_sockets_per_store;
    let env = format!("SOCKET_LIMIT={limit}");
    let (code, out, err) = conformance("host-socket-limit", &["--env", &env], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("PASS host-socket-limit"), "{out}");
}

#[test]
fn a_guest_flooding_its_output_is_rate_limited_and_long_lines_are_cut() {
    let dir = temp_dir("chatter");
    let chatter = p("chatter");
    let jobs = format!(
        "[[component]]\nname = \"newlines\"\nwasm = \"{chatter}\"\nargs = [\"300000\", \"0\"]\n\n\
         [[component]]\nname = \"long-line\"\nwasm = \"{chatter}\"\nargs = [\"1\", \"100000\"]\n"
    );
    let manifest = write_manifest(&dir, "c.toml", &kv_manifest("c", "/kv", "", &jobs));
    let started = std::time::Instant::now();
    let (host, addr) = up(&[&manifest], &[]);
    // While the flood runs, the other components are served.
    assert_eq!(http_request(&addr, "PUT", "/kv/k", b"v").expect("put").0, 200);
    host.expect_stderr("lines dropped", Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while host.stderr().matches("job finished").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "jobs did not finish:\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let log = host.stderr();
    let flood_lines = log.lines().filter(|l| l.contains("component=newlines stream")).count();
    // Burst 2000, then 500 a second.
    let bound = 2000.0 + 500.0 * (elapsed + 1.0);
    assert!(
        (flood_lines as f64) <= bound,
        "{flood_lines} of 300000 lines logged in {elapsed:.1} s"
    );
    let dropped: u64 = log
        .lines()
        .filter(|l| l.contains("lines dropped") && l.contains("component=newlines"))
        .filter_map(|l| {
            l.split("dropped=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(
        dropped + flood_lines as u64,
        300_001,
        "every line is logged or counted as dropped ({flood_lines} logged)"
    );
    let long = log
        .lines()
        .find(|l| l.contains("component=long-line stream") && l.contains("xxxx"))
        .expect("the long line, cut");
    assert!(
        long.contains("[line cut: 91808 more bytes]"),
        "{}",
        &long[long.len().saturating_sub(200)..]
    );
    assert!(long.len() < 9 * 1024, "{} bytes", long.len());
}

#[test]
fn a_failed_start_connect_keeps_the_socket_and_its_bind() {
    let peer = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = peer.local_addr().expect("addr");
    let _hits = real_server(peer, "");
    let rule = addr.to_string();
    // The host runs out of descriptors: its real socket cannot be created.
    let command = format!(
        "ulimit -n 48 && exec '{}' run --allow-egress {rule} --env REAL_PEER={rule} '{}' host-connect-error-keeps-bind",
        loophost_tests::loophost_bin().display(),
        p("conformance")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .expect("sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("PASS host-connect-error-keeps-bind"),
        "{stdout}\n{stderr}"
    );
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, f)| f)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

#[test]
fn a_published_port_out_of_descriptors_backs_off_instead_of_spinning() {
    let dir = temp_dir("published-emfile");
    let manifest = write_manifest(
        &dir,
        "e.toml",
        &kv_manifest("e", "/kv", r#"publish = [{ listen = "127.0.0.1:0", port = 6379 }]"#, ""),
    );
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -n 64 && exec '{}' up --listen 127.0.0.1:0 '{}'",
                loophost_tests::loophost_bin().display(),
                manifest.display()
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut published = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        if let Some(rest) = line.split("published ").nth(1) {
            published = rest.split(" -> ").next().map(str::to_string);
        }
        if line.starts_with("listening on") {
            break;
        }
    }
    let published = published.expect("published address");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&(line + "\n"));
        }
    });
    // More clients than the host has descriptors.
    let clients: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(&published).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(pid) - before;
    let seen = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(seen.contains("published port: accept failed"), "{seen}");
    assert!(
        spent < 0.5,
        "the host spun on accept errors: {spent:.2} s of CPU in 2 s"
    );
    // When the clients leave, the port works again.
    drop(clients);
    std::thread::sleep(Duration::from_millis(500));
    let mut kv = std::net::TcpStream::connect(&published).expect("connect");
    kv.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    kv.write_all(b"*1\r\n$4\r\nPING\r\n").expect("ping");
    let mut pong = [0u8; 7];
    kv.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"+PONG\r\n");
    let _ = child.kill();
    let _ = child.wait();
}

/// `run --max-connections` and `--max-sockets` set the network's caps: past
/// them a connect is refused or a socket cannot be created, as an OS would.
#[test]
fn the_connection_and_socket_caps_are_configurable() {
    let bench = p("bench-loopback");
    let run = |flags: &[&str], n: &str| {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend([
            "--with".to_string(),
            format!("{bench} hold 127.0.0.1:7300"),
            bench.clone(),
            "open".to_string(),
            "127.0.0.1:7300".to_string(),
            n.to_string(),
        ]);
        let mut host = Loophost::spawn(&args);
        let line = host.expect_line(" ", Duration::from_secs(60));
        assert_eq!(line, "listening 127.0.0.1:7300");
        host.expect_line("ready", Duration::from_secs(30));
        let outcome = host.expect_line_any(&["connected", "error"], Duration::from_secs(30));
        drop(host);
        outcome
    };
    // `open` first probes the server with one connection, which `hold`
    // keeps: N connections need a cap of N + 1.
    let fits = run(&["--max-connections", "4"], "3");
    assert!(
        fits.starts_with("connected 3 "),
        "3 + the probe fit under a cap of 4: {fits}"
    );
    let refused = run(&["--max-connections", "4"], "4");
    assert!(refused.starts_with("error ConnectionRefused"), "{refused}");
    // The client holds one socket per connection: 5 sockets, 6 wanted.
    let limited = run(&["--max-sockets", "5"], "6");
    assert!(limited.starts_with("error "), "{limited}");
    assert!(
        !limited.contains("ConnectionRefused"),
        "a socket limit, not a refusal: {limited}"
    );
}
