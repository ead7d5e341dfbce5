//! Benchmark: the Greeting controller (examples/k8s-controller-service),
//! native vs wasm32-wasip2 under `loophost up`, against the Kubernetes API
//! emulator (tests/k8s-emulator, in this process).
//!
//! Each round starts a fresh emulator with the Greeting CRD and one
//! controller: (a) the native `greeter-controller` binary (built here
//! by the example's `build.sh --native`), configured as in
//! a pod through its environment; (b) the wasm controller as a service of
//! the example's own workload.toml (`Cluster::start`). Once the controller
//! has listed and reconciled one warm-up Greeting, 500 Greetings (1 copy
//! each) are created at once straight in the emulator's store, and the
//! clock runs until the whole cluster is as the controller's contract says
//! (`Cluster::problems`: every Greeting has its ConfigMap with the message
//! and a controller ownerReference, the finalizer, and a status with
//! `observedGeneration == generation`, `copies` and `Ready=True`). It polls
//! every 20 ms: a count of the Greetings whose status says reconciled, and
//! the full check once all do; the time is that of the count.
//!
//! Both run with the workload's log filter (`RUST_LOG=info`: the manifest
//! sets it, and `Options::controller_env` can add keys but not replace
//! one), their logs drained by this process. Also printed: the API requests per second the emulator
//! served, and the CPU time of the controller's process (the native binary,
//! or the whole `loophost up`) and of the emulator's threads over the same
//! window. Rounds alternate which one goes first.
//!
//! Run with `scripts/bench.sh k8s_controller` (`LOOPHOST_BENCH_ROUNDS`,
//! default 3).

use loophost_tests::bench::{Row, Samples, print_table, rounds};
use loophost_tests::k8s::{ApiServer, Cluster, NAMESPACE, Options, greetings, want};
use loophost_tests::{Loophost, free_port, guest, http_request, repo_root, target_dir};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const GREETINGS: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(600);
/// Linux reports process times in USER_HZ, which is 100 on every architecture.
const TICKS_PER_S: f64 = 100.0;

/// The native build of the controller, from the same source as the guest.
fn native_bin() -> std::path::PathBuf {
    guest("greeter-controller");
    let built = std::process::Command::new(repo_root().join("examples/k8s-controller-service/build.sh"))
        .arg("--native")
        .env("CARGO_TARGET_DIR", target_dir())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run examples/k8s-controller-service/build.sh --native");
    assert!(built.success(), "building the native controller failed");
    let bin = target_dir().join("release/greeter-controller");
    assert!(
        bin.exists(),
        "{} is missing: run examples/k8s-controller-service/build.sh",
        bin.display()
    );
    bin
}

/// What `Cluster::start` sets up, with the native controller in place of
/// `loophost up`.
fn native_cluster(bin: &Path, round: usize) -> Cluster {
    let ApiServer {
        emu,
        dir,
        sa_dir,
        kubeconfig,
    } = ApiServer::start(&format!("k8s-bench-native-{round}"), None);

    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", emu.addr().port().to_string()),
        ("GREETER_SERVICEACCOUNT_DIR", sa_dir.display().to_string()),
        ("GREETER_LISTEN", listen.clone()),
        // The workload manifest's filter, so both log the same lines.
        ("RUST_LOG", "info".to_string()),
    ];
    let mut host = Loophost::spawn_program(bin, std::iter::empty::<&str>(), &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_request(&listen, "GET", "/healthz", b""), Ok((200, _))) {
        assert!(
            host.is_running() && Instant::now() < deadline,
            "the native controller does not answer on {listen}:\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Cluster {
        emu,
        dir,
        sa_dir,
        kubeconfig,
        host,
        http: listen,
    }
}

fn wasm_cluster(round: usize) -> Cluster {
    Cluster::start(&format!("bench-wasm-{round}"), Options::default())
}

/// utime + stime of the threads in /proc/<pid>/task whose name starts with
/// `thread` (all threads: None), in seconds.
fn cpu_s(pid: u32, thread: Option<&str>) -> f64 {
    let stat_ticks = |path: &Path| -> Option<(String, u64)> {
        let text = std::fs::read_to_string(path).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split at the last ')'.
        let (head, rest) = text.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    };
    let ticks = match thread {
        None => stat_ticks(Path::new(&format!("/proc/{pid}/stat"))).map_or(0, |(_, t)| t),
        Some(prefix) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(|t| stat_ticks(&t.ok()?.path().join("stat")))
                    .filter(|(comm, _)| comm.starts_with(prefix))
                    .map(|(_, t)| t)
                    .sum()
            })
            .unwrap_or(0),
    };
    ticks as f64 / TICKS_PER_S
}

fn requests(cluster: &Cluster) -> u64 {
    cluster.emu.stats().requests.values().sum()
}

/// Greetings whose status says reconciled: the status is a reconcile's
/// last write, so this cheap count gates the full check.
fn ready(cluster: &Cluster) -> usize {
    cluster
        .emu
        .list(&greetings(), Some(NAMESPACE))
        .iter()
        .filter(|g| {
            let status = &g["status"];
            status["observedGeneration"] == g["metadata"]["generation"]
                && status["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

/// Waits until `want` holds, printing progress; returns the time since
/// `started` of the count that showed every Greeting reconciled (when the
/// full check then passes). Panics after [`TIMEOUT`].
fn converge(label: &str, cluster: &Cluster, want: &BTreeMap<String, (String, u32)>, started: Instant) -> Duration {
    let mut reported = Instant::now();
    loop {
        let ready = ready(cluster);
        let at = started.elapsed();
        if ready >= want.len() && cluster.problems(want).is_empty() {
            return at;
        }
        if at > TIMEOUT {
            let problems = cluster.problems(want);
            let log = cluster.host.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{label}: not converged after {TIMEOUT:?} ({} problems), first ones:\n{}\n--- last log lines ---\n{}",
                problems.len(),
                problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if reported.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {label}: {:.0} s, {ready}/{} Greetings ready",
                at.as_secs_f64(),
                want.len()
            );
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Figures {
    seconds: f64,
    requests_per_s: f64,
    requests: f64,
    controller_cpu_s: f64,
    emulator_cpu_s: f64,
}

/// One round on a started cluster: warm up, then 500 Greetings at once.
fn measure(label: &str, cluster: Cluster) -> Figures {
    let mut want_all = BTreeMap::new();
    want_all.insert("warmup".to_string(), ("hello warmup".to_string(), 1));
    cluster.create_greeting("warmup", "hello warmup", None);
    // The controller has listed, watches and reconciles.
    converge(label, &cluster, &want_all, Instant::now());

    let batch = want("g", GREETINGS, 1);
    want_all.extend(batch.clone());
    let me = std::process::id();
    let (requests_before, controller_before, emulator_before) = (
        requests(&cluster),
        cpu_s(cluster.host.pid(), None),
        cpu_s(me, Some("k8s-emulator")),
    );
    let started = Instant::now();
    for (name, (message, _)) in &batch {
        // copies unset: the default, 1.
        cluster.create_greeting(name, message, None);
    }
    let seconds = converge(label, &cluster, &want_all, started).as_secs_f64();
    let requests = (requests(&cluster) - requests_before) as f64;
    let figures = Figures {
        seconds,
        requests_per_s: requests / seconds,
        requests,
        controller_cpu_s: cpu_s(cluster.host.pid(), None) - controller_before,
        emulator_cpu_s: cpu_s(me, Some("k8s-emulator")) - emulator_before,
    };
    eprintln!(
        "  {label}: converged in {seconds:.2} s, {requests} requests, controller CPU {:.2} s, emulator CPU {:.2} s",
        figures.controller_cpu_s, figures.emulator_cpu_s
    );
    cluster.host.terminate();
    let dir = cluster.dir.clone();
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
    figures
}

#[derive(Default)]
struct Series {
    seconds: Samples,
    requests_per_s: Samples,
    requests: Samples,
    controller_cpu_s: Samples,
    emulator_cpu_s: Samples,
}

impl Series {
    fn push(&mut self, f: Figures) {
        self.seconds.push(f.seconds);
        self.requests_per_s.push(f.requests_per_s);
        self.requests.push(f.requests);
        self.controller_cpu_s.push(f.controller_cpu_s);
        self.emulator_cpu_s.push(f.emulator_cpu_s);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = native_bin();
    let (mut native, mut wasm) = (Series::default(), Series::default());
    let n = rounds(3);
    for round in 0..n {
        let wasm_first = round % 2 == 1;
        for which in [wasm_first, !wasm_first] {
            if which {
                eprintln!("round {}/{n}: wasm under loophost up", round + 1);
                wasm.push(measure("wasm", wasm_cluster(round)));
            } else {
                eprintln!("round {}/{n}: native", round + 1);
                native.push(measure("native", native_cluster(&bin, round)));
            }
        }
    }

    let row = |figure: &str, ours: &Samples, baseline: &Samples, digits: usize| Row {
        figure: figure.to_string(),
        ours: ours.clone(),
        baseline: baseline.clone(),
        target: String::new(),
        digits,
    };
    print_table(
        &format!("Greeting controller: {GREETINGS} Greetings created at once → converged ({n} rounds)"),
        "wasm (loophost up)",
        "native",
        &[
            row("time to convergence, s", &wasm.seconds, &native.seconds, 2),
            row(
                "API requests/s (emulator)",
                &wasm.requests_per_s,
                &native.requests_per_s,
                0,
            ),
            row("API requests", &wasm.requests, &native.requests, 0),
            row(
                "controller process CPU, s",
                &wasm.controller_cpu_s,
                &native.controller_cpu_s,
                2,
            ),
            row("emulator CPU, s", &wasm.emulator_cpu_s, &native.emulator_cpu_s, 2),
        ],
    );
    println!(
        "\nratio wasm / native, time to convergence: {:.2}",
        wasm.seconds.median() / native.seconds.median()
    );
}
