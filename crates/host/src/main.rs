//! The `loophost` command line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use loophost::run::{ComponentSpec, RunOptions, one_line};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "loophost",
    version,
    about = "Run WebAssembly components that meet over an in-memory localhost"
)]
struct Cli {
    /// Console log filter (overrides RUST_LOG), e.g. `info` or `wasi_sockets_virt=trace`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// What is exported to OpenTelemetry, independent of the console
    /// (overrides LOOPHOST_EXPORT_LEVEL; default `info`).
    #[arg(long, global = true)]
    export_level: Option<String>,
    /// Keep compiled components here between starts (default
    /// ~/.cache/loophost/components).
    #[arg(long, global = true, env = "LOOPHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every component at start; use and write no compile cache
    /// (LOOPHOST_NO_CACHE=1 does the same; 0, false, no, off or empty do not).
    #[arg(long, global = true, env = "LOOPHOST_NO_CACHE",
          action = clap::ArgAction::SetTrue, value_parser = clap::builder::FalseyValueParser::new())]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a wasi:cli/run component with its own private virtual network.
    Run(RunArgs),
    /// Run workloads from manifests until SIGINT/SIGTERM.
    Up(UpArgs),
    /// Validate manifests (and compile their components) without running anything.
    Check(CheckArgs),
    /// Show what a `loophost up --status` is running: services, restarts, uptime, traffic.
    Status(StatusArgs),
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The HTTP listener of that `loophost up` (its --listen).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    addr: SocketAddr,
    /// Print the JSON the endpoint returns instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Address of the HTTP listener that serves the HTTP components.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// How long services get to become ready before HTTP is served anyway, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    ready_timeout: f64,
    /// How long in-flight requests get to finish after SIGINT/SIGTERM, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    drain_timeout: f64,
    /// A client must send a request's headers within this, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    header_timeout: f64,
    /// A keep-alive connection with no request in flight is closed after this, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    idle_timeout: f64,
    /// HTTP connections open at once; more wait in the kernel's backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// Serve what runs (services' state, restarts, uptime, traffic) as JSON at
    /// GET /.loophost/status on the HTTP listener, for `loophost status`.
    /// Off by default: anyone who can reach the listener could read it.
    #[arg(long)]
    status: bool,
    /// Workload manifests (TOML); each workload gets its own virtual network.
    #[arg(required = true, value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Workload manifests (TOML).
    #[arg(required = true, value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Start this component in the background first, on the same virtual
    /// network: "PATH [ARGS...]" (shell-quoted). Repeatable.
    #[arg(long = "with", value_name = "COMPONENT [ARGS]")]
    with: Vec<String>,
    /// Let components reach this real address: IP, IP:PORT, IP:LOW-HIGH,
    /// CIDR or CIDR:PORT. Naming a loopback address sends that traffic to
    /// the machine's real loopback. Repeatable.
    #[arg(long = "allow-egress", value_name = "RULE")]
    allow_egress: Vec<String>,
    /// Let components resolve this name with the host's resolver
    /// (".suffix" for a domain, "*" for any). Repeatable.
    #[arg(long = "allow-lookup", value_name = "NAME")]
    allow_lookup: Vec<String>,
    /// Set an environment variable for the components: KEY=VALUE, or NAME
    /// to pass on the host's value of NAME. Repeatable.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Let the components see a host directory: HOST[::GUEST] (GUEST
    /// defaults to HOST), as `wasmtime run --dir`. Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Start the main component only once this virtual address listens; until
    /// then, connects to it wait instead of being refused. Repeatable.
    #[arg(long = "wait-for", value_name = "ADDR")]
    wait_for: Vec<SocketAddr>,
    /// Virtual connections open at once on the private network (more are refused).
    #[arg(long, default_value_t = wasi_sockets_virt::NetworkConfig::default().max_connections, value_name = "N")]
    max_connections: usize,
    /// Sockets one component may hold at once (more: new-socket-limit).
    #[arg(long, default_value_t = wasi_sockets_virt::NetworkConfig::default().max_sockets_per_store, value_name = "N")]
    max_sockets: usize,
    /// How long to wait for background components to listen, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    ready_timeout: f64,
    /// The component to run.
    component: PathBuf,
    /// Arguments passed to the component.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` is one private network of a few components: on one thread, a
    // guest's write wakes its peer on the same thread, with no cross-thread
    // wakeup (a 64-byte round trip: 5.2 µs against 7.7 µs on the
    // multi-threaded runtime). `up` serves many requests at once on every core.
    let runtime = match cli.command {
        Command::Run(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loophost: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // `up` is a long-running host: its guests' output is logged at info.
    let default_level = if matches!(cli.command, Command::Up(_)) {
        "info"
    } else {
        "warn"
    };
    let telemetry = {
        let _enter = runtime.enter();
        let guest_lines_on_console = !matches!(cli.command, Command::Run(_));
        loophost::telemetry::init(
            cli.log_level.as_deref(),
            default_level,
            cli.export_level.as_deref(),
            guest_lines_on_console,
        )
    };
    let result = real_main(cli, &runtime);
    // The exporters' tasks live on this runtime: drive it while they flush
    // (a current-thread runtime runs its tasks only inside `block_on`).
    runtime.block_on(async move {
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    });
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("loophost: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli, runtime: &tokio::runtime::Runtime) -> Result<i32> {
    if !cli.no_cache {
        let dir = cli
            .cache_dir
            .filter(|d| !d.as_os_str().is_empty())
            .or_else(loophost::compile_cache::CompileCache::default_dir);
        match dir {
            Some(dir) => loophost::component::use_compile_cache(Some(loophost::compile_cache::CompileCache::new(dir))),
            None => tracing::warn!("no compile cache: neither HOME nor XDG_CACHE_HOME is set (use --cache-dir DIR)"),
        }
    }
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Up(args) => {
            let options = loophost::up::UpOptions {
                manifests: args.manifests,
                listen: args.listen,
                ready_timeout: seconds("--ready-timeout", args.ready_timeout)?,
                drain_timeout: seconds("--drain-timeout", args.drain_timeout)?,
                status: args.status,
                listener: loophost::trigger::ListenerLimits {
                    header_timeout: seconds("--header-timeout", args.header_timeout)?,
                    idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
                    max_connections: args.max_connections.max(1),
                },
            };
            runtime.block_on(loophost::up::up(options))
        }
        Command::Status(args) => {
            let status = runtime.block_on(loophost::status::fetch(args.addr))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", loophost::status::table(&status));
            }
            Ok(0)
        }
        Command::Check(args) => {
            for w in loophost::up::check(&args.manifests)? {
                println!(
                    "ok: {}: workload {}/{}: {} services, {} components",
                    w.file.display(),
                    w.namespace,
                    w.name,
                    w.services.len(),
                    w.components.len()
                );
            }
            Ok(0)
        }
    }
}

async fn run(args: RunArgs) -> Result<i32> {
    let mounts = args
        .dirs
        .iter()
        .map(|spec| loophost::mounts::Mount::from_flag(spec))
        .collect::<Result<Vec<_>>>()?;
    loophost::mounts::check_distinct(&mounts).context("--dir")?;
    let mut background = args.with.iter().map(|s| parse_with(s)).collect::<Result<Vec<_>>>()?;
    for spec in &mut background {
        spec.mounts = mounts.clone();
    }
    let mut env = Vec::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            // `--env NAME` passes the host's value on, as `wasmtime run` does.
            None if !kv.is_empty() => match std::env::var(kv) {
                Ok(value) => env.push((kv.clone(), value)),
                Err(_) => tracing::warn!("--env {kv}: not set in loophost's environment; not passed on"),
            },
            _ => bail!("--env {kv:?}: expected KEY=VALUE, or NAME to pass on the host's value"),
        }
    }
    let options = RunOptions {
        env,
        policy: loophost::policy::from_flags(&args.allow_egress, &args.allow_lookup)?,
        wait_for: args.wait_for,
        ready_timeout: seconds("--ready-timeout", args.ready_timeout)?,
        network: wasi_sockets_virt::NetworkConfig {
            max_connections: cap("--max-connections", args.max_connections)?,
            max_sockets_per_store: cap("--max-sockets", args.max_sockets)?,
            ..Default::default()
        },
    };
    let main = ComponentSpec {
        path: args.component,
        args: args.args,
        mounts,
    };
    loophost::run::run(main, background, options).await
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if !(value.is_finite() && (0.0..=86_400.0).contains(&value)) {
        bail!("{flag} {value}: expected a number of seconds between 0 and 86400");
    }
    Ok(Duration::from_secs_f64(value))
}

fn cap(flag: &str, value: usize) -> Result<usize> {
    let max = loophost::manifest::NetworkLimits::MAX;
    if !(1..=max).contains(&value) {
        bail!("{flag} {value}: expected a number from 1 to {max}");
    }
    Ok(value)
}

/// `--with "server.wasm --port 7000"` → path and args.
fn parse_with(spec: &str) -> Result<ComponentSpec> {
    let words = shlex::split(spec).with_context(|| format!("--with {spec:?}: unbalanced quotes"))?;
    let Some((path, args)) = words.split_first() else {
        bail!("--with needs a component path");
    };
    Ok(ComponentSpec {
        path: PathBuf::from(path),
        args: args.to_vec(),
        ..Default::default()
    })
}
