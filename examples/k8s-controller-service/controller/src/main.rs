//! greeter-controller: keeps `copies` ConfigMaps for every `Greeting`
//! (demo.loophost.dev/v1) in its namespace, and serves what it does on
//! `GET /greetings` (127.0.0.1:9090). Built for wasm32-wasip2, where it
//! runs as a loophost service, and natively from the same source.
//!
//! Configuration is what a pod gets: `KUBERNETES_SERVICE_HOST`,
//! `KUBERNETES_SERVICE_PORT`, and `token`, `ca.crt`, `namespace` in
//! /var/run/secrets/kubernetes.io/serviceaccount (elsewhere with
//! `GREETER_SERVICEACCOUNT_DIR`). `GREETER_LISTEN` moves the HTTP endpoint;
//! `RUST_LOG` filters the log (default `info,kube_client=error`).

mod backoff;
mod config;
mod controller;
mod faults;
mod greeting;
mod reconcile;
mod server;
#[cfg(target_os = "wasi")]
mod telemetry;
mod transport;
mod watcher;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, CustomResourceExt as _};
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::greeting::{API_VERSION, Greeting, KIND, OWNER_LABEL, managed_selector};
use crate::reconcile::Ctx;
use crate::watcher::Store;

const USAGE: &str = "\
usage: greeter-controller [--print-crd]

Runs the Greeting controller in-cluster style:
  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT   the API server
  token, ca.crt, namespace in /var/run/secrets/kubernetes.io/serviceaccount
      (GREETER_SERVICEACCOUNT_DIR=DIR reads them from DIR instead)
  GREETER_LISTEN   the HTTP endpoint (default 127.0.0.1:9090)
  RUST_LOG         log filter (default info,kube_client=error)

  --print-crd      print the CustomResourceDefinition (JSON) and exit";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("--print-crd") => return print_crd(),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("greeter-controller: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }

    init_logging();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("greeter-controller: error: {e}");
            return ExitCode::FAILURE;
        }
    };

    // One thread: wasm32-wasip2 has no others, and the native build is
    // kept the same so the two compare like for like.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("greeter-controller: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

/// The log on stderr (`RUST_LOG`, default info); under loophost also the
/// spans, which the host exports (see `telemetry`).
fn init_logging() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    // kube's own warnings are about watch streams ending, which the watch
    // loop handles (and logs at debug).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube_client=error"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // loophost stamps every line a guest writes; a second clock is noise.
    #[cfg(target_os = "wasi")]
    let log = log.without_time();
    let registry = tracing_subscriber::registry().with(log.with_filter(filter));
    #[cfg(target_os = "wasi")]
    let registry = registry.with(telemetry::HostSpans.with_filter(tracing_subscriber::filter::LevelFilter::INFO));
    registry.init();
}

fn print_crd() -> ExitCode {
    match serde_json::to_string_pretty(&Greeting::crd()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("greeter-controller: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let listener = match server::bind(&config.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "greeter-controller: error: cannot listen on {}: {e} (set {} to another address)",
                config.listen,
                config::LISTEN_ENV
            );
            return ExitCode::FAILURE;
        }
    };
    let client = match transport::client(&config) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("greeter-controller: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        api_server = %config.authority,
        namespace = %config.namespace,
        listen = %config.listen,
        "greeter-controller starting"
    );

    let ctx = Arc::new(Ctx {
        greetings: Api::namespaced(client.clone(), &config.namespace),
        configmaps: Api::namespaced(client.clone(), &config.namespace),
        greeting_store: Store::default(),
        configmap_store: Store::default(),
    });
    let reports = controller::Reports::default();
    tokio::spawn(server::serve(
        listener,
        Arc::new(server::State {
            greetings: ctx.greeting_store.clone(),
            reports: reports.clone(),
        }),
    ));

    let (queue, keys) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watcher::run(
        "Greetings",
        Api::<Greeting>::namespaced(client.clone(), &config.namespace),
        None,
        ctx.greeting_store.clone(),
        |greeting: &Greeting| greeting.metadata.name.clone().into_iter().collect(),
        queue.clone(),
    ));
    tokio::spawn(watcher::run(
        "ConfigMaps",
        Api::<ConfigMap>::namespaced(client, &config.namespace),
        Some(managed_selector()),
        ctx.configmap_store.clone(),
        owners,
        queue,
    ));
    controller::run(ctx, config.namespace, reports, keys).await;
    ExitCode::SUCCESS
}

/// The Greetings a ConfigMap event concerns: its controlling Greeting and
/// the one its label names (they differ only if someone edited it).
fn owners(configmap: &ConfigMap) -> Vec<String> {
    let mut keys: Vec<String> = configmap
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.kind == KIND && r.api_version == API_VERSION)
        .map(|r| r.name.clone())
        .collect();
    if let Some(label) = configmap.metadata.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)) {
        keys.push(label.clone());
    }
    keys.sort();
    keys.dedup();
    keys
}
