//! `loophost up`: run workloads (services, HTTP components, jobs) until
//! SIGINT/SIGTERM, then drain and stop.

use crate::component;
use crate::manifest::{self, Workload};
use crate::output::{LogOutput, Origin, OutputLimiter};
use crate::run::{ComponentSpec, Prepared};
use crate::state::{self, HostState};
use crate::supervisor::{ServiceState, ServiceSupervisor};
use crate::trigger::{ComponentLimits, HttpComponent, ListenerLimits};
use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use wasi_sockets_virt::VirtualNetwork;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Settings of `loophost up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub manifests: Vec<PathBuf>,
    /// Where the HTTP listener binds.
    pub listen: SocketAddr,
    /// How long services get to become ready before HTTP starts anyway.
    pub ready_timeout: Duration,
    /// How long in-flight requests get after SIGINT/SIGTERM.
    pub drain_timeout: Duration,
    /// Serve `GET /.loophost/status` on the HTTP listener.
    pub status: bool,
    /// Limits of the HTTP listener.
    pub listener: ListenerLimits,
}

/// A running workload: its private network and its services.
struct WorkloadRuntime {
    id: String,
    name: String,
    namespace: String,
    network: VirtualNetwork,
    metrics: Arc<crate::metrics::NetworkMetrics>,
    supervisors: Vec<Arc<ServiceSupervisor>>,
}

/// Loads and checks manifests without running anything (`loophost check`).
pub fn check(manifests: &[PathBuf]) -> Result<Vec<Workload>> {
    let workloads = manifests
        .iter()
        .map(|m| manifest::load(m))
        .collect::<Result<Vec<_>>>()?;
    manifest::check_together(&workloads)?;
    let engine = component::engine()?;
    for w in &workloads {
        for s in &w.services {
            Prepared::new(
                &engine,
                ComponentSpec {
                    path: s.wasm.clone(),
                    args: s.args.clone(),
                    ..Default::default()
                },
            )?;
        }
        for c in &w.components {
            prepare_component(&engine, c.route.is_some(), &c.wasm, &c.args)?;
        }
    }
    Ok(workloads)
}

enum Prepped {
    Http(ProxyPre<HostState>),
    Job(Prepared),
}

fn prepare_component(engine: &Engine, http: bool, wasm: &std::path::Path, args: &[String]) -> Result<Prepped> {
    if !http {
        return Ok(Prepped::Job(Prepared::new(
            engine,
            ComponentSpec {
                path: wasm.to_path_buf(),
                args: args.to_vec(),
                ..Default::default()
            },
        )?));
    }
    let component = component::load(engine, wasm)?;
    component::require_export(engine, &component, wasm, "wasi:http/incoming-handler")?;
    let pre = state::linker(engine)?
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{}: cannot be linked", wasm.display()))?;
    let pre = ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{}: does not match the wasi:http/proxy world", wasm.display()))?;
    Ok(Prepped::Http(pre))
}

/// The private domain of workload names: `<service>.<workload>.loophost.internal`.
pub const WORKLOAD_DOMAIN: &str = "loophost.internal";

/// A workload's private network. Its services are reachable by name, as in a
/// pod or a Compose project: `kv`, `kv.<workload>.loophost.internal` and
/// `kv.<workload>.<namespace>.loophost.internal` all resolve to the virtual
/// loopback; names of other workloads do not exist there.
fn workload_network(w: &Workload, observer: Arc<crate::metrics::NetworkMetrics>) -> VirtualNetwork {
    let network = VirtualNetwork::with_observer(w.network.config(), observer);
    network.add_private_domain(WORKLOAD_DOMAIN);
    let loopback = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    for s in &w.services {
        network.add_name(&s.name, loopback.clone());
        network.add_name(&format!("{}.{}.{WORKLOAD_DOMAIN}", s.name, w.name), loopback.clone());
        network.add_name(
            &format!("{}.{}.{}.{WORKLOAD_DOMAIN}", s.name, w.name, w.namespace),
            loopback.clone(),
        );
    }
    network
}

/// The engine for `up`: many short-lived instances, so the pooling
/// allocator, sized from the manifests so that every component's
/// concurrency limit and every service (and its restart) fit together: one
/// workload's flood stops at its components' limits and can never take the
/// instances another workload's requests or a service restart need.
pub fn pooled_engine(workloads: &[Workload]) -> Result<Engine> {
    let mut instances = 16;
    let mut largest_memory = 64 * 1024 * 1024;
    for w in workloads {
        // A restarting service's old instance may still be dropping.
        instances += 2 * w.services.len();
        for s in &w.services {
            largest_memory = largest_memory.max(s.memory_limit);
        }
        for c in &w.components {
            instances += if c.route.is_some() { c.max_concurrency } else { 1 };
            largest_memory = largest_memory.max(c.memory_limit);
        }
    }
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances as u32)
        .total_core_instances((instances * 4) as u32)
        .total_memories((instances * 2) as u32)
        .total_tables((instances * 4) as u32)
        .max_memory_size(largest_memory);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    component::engine_with(config)
}

/// Runs until a signal; returns the process exit code.
pub async fn up(options: UpOptions) -> Result<i32> {
    let workloads = options
        .manifests
        .iter()
        .map(|m| manifest::load(m))
        .collect::<Result<Vec<_>>>()?;
    manifest::check_together(&workloads)?;
    let mut signals = ShutdownSignals::new();
    let engine = pooled_engine(&workloads)?;

    let startup = tracing::info_span!("loophost.start", "loophost.workloads" = workloads.len());
    let _startup = startup.enter();
    // Compile and link everything before starting anything.
    let mut runtimes = Vec::new();
    let mut http_components = Vec::new();
    let mut jobs = Vec::new();
    let mut services = Vec::new();
    for w in &workloads {
        let workload_span = tracing::info_span!("workload.start", "workload.name" = %w.name,
            "workload.namespace" = %w.namespace);
        let _workload = workload_span.enter();
        let ports = w
            .services
            .iter()
            .flat_map(|s| s.ports.iter().map(|&p| (p, s.name.clone())))
            .collect();
        let observer = crate::metrics::NetworkMetrics::new(
            &format!("{}/{}", w.namespace, w.name),
            ports,
            crate::denials::PolicySource::Manifest(w.file.clone()),
        );
        let runtime = Arc::new(WorkloadRuntime {
            id: format!("{}/{}", w.namespace, w.name),
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            network: workload_network(w, observer.clone()),
            metrics: observer,
            supervisors: w
                .services
                .iter()
                .map(|s| ServiceSupervisor::new(format!("{}/{}", w.namespace, w.name), s.clone()))
                .collect(),
        });
        for (s, sup) in w.services.iter().zip(&runtime.supervisors) {
            let prepared = Prepared::new(
                &engine,
                ComponentSpec {
                    path: s.wasm.clone(),
                    args: s.args.clone(),
                    ..Default::default()
                },
            )?;
            // A declared port belongs to its service, even while it starts or
            // backs off: nobody else in the workload may bind it.
            let owner = runtime.network.new_port_owner();
            services.push((runtime.clone(), sup.clone(), Arc::new(prepared), owner));
            for &port in &s.ports {
                runtime.network.reserve_port(port, owner);
                // Connects to a declared port wait for the service (bounded).
                runtime
                    .network
                    .expect_listener(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), w.connect_wait);
                runtime
                    .network
                    .expect_listener(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port), w.connect_wait);
            }
        }
        for c in &w.components {
            let prepped = tracing::info_span!("component.load", "component.name" = %c.name,
                "loophost.wasm" = %c.wasm.display())
            .in_scope(|| prepare_component(&engine, c.route.is_some(), &c.wasm, &c.args))?;
            match prepped {
                Prepped::Http(pre) => http_components.push(HttpComponent {
                    workload_id: runtime.id.clone(),
                    workload_name: runtime.name.clone(),
                    workload_namespace: runtime.namespace.clone(),
                    network: runtime.network.clone(),
                    name: c.name.clone(),
                    route: c.route.clone().unwrap_or_default(),
                    env: c.env.clone(),
                    mounts: c.mounts.clone(),
                    policy: Arc::new(c.policy.clone()),
                    pre,
                    limits: ComponentLimits {
                        timeout: c.timeout,
                        max_concurrency: c.max_concurrency,
                        memory: c.memory_limit,
                    },
                    slots: Arc::new(tokio::sync::Semaphore::new(c.max_concurrency)),
                    output: OutputLimiter::new(&runtime.id, &c.name),
                }),
                Prepped::Job(prepared) => jobs.push((runtime.clone(), c.clone(), Arc::new(prepared))),
            }
        }
        runtimes.push(runtime);
    }

    // Bind every real listener before starting guests, so a taken port fails fast.
    let http_listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", options.listen))?;
    let http_addr = http_listener.local_addr()?;
    let mut published = Vec::new();
    let mut published_at = Vec::new();
    for (runtime, w) in runtimes.iter().zip(&workloads) {
        for s in &w.services {
            for p in &s.publish {
                let listener = TcpListener::bind(p.listen).await.with_context(|| {
                    format!(
                        "{}: service {:?} publish: cannot listen on {}",
                        w.file.display(),
                        s.name,
                        p.listen
                    )
                })?;
                // Port 0 in the manifest means "any free port": show the one we got.
                let actual = listener.local_addr().unwrap_or(p.listen);
                published_at.push((runtime.id.clone(), s.name.clone(), actual, p.port));
                published.push((listener, runtime.network.clone(), p.port));
            }
        }
    }

    drop(_startup);
    let mut tasks = JoinSet::new();
    for (runtime, sup, prepared, owner) in services {
        tasks.spawn(sup.supervise(prepared, runtime.network.clone(), owner));
    }
    for (listener, network, port) in published {
        tasks.spawn(crate::published::forward(listener, network, port));
    }

    wait_ready(&runtimes, options.ready_timeout).await;
    let mut job_tasks = JoinSet::new();
    for (runtime, c, prepared) in jobs {
        job_tasks.spawn(async move {
            let limiter = OutputLimiter::new(&runtime.id, &c.name);
            let origin = |stream| Origin {
                workload: runtime.id.clone(),
                name: c.name.clone(),
                stream,
                limiter: limiter.clone(),
            };
            let mut wasi = prepared.wasi();
            wasi.envs(&c.env)
                .stdout(LogOutput::new(origin("stdout")))
                .stderr(LogOutput::new(origin("stderr")));
            let span = tracing::info_span!("job", "component.name" = %c.name, "workload.name" = %runtime.name,
                "workload.namespace" = %runtime.namespace);
            let result = async {
                crate::mounts::preopen(&mut wasi, &c.mounts)?;
                let state = HostState::new(wasi.build(), &runtime.network, Arc::new(c.policy.clone()))
                    .with_memory_limit(c.memory_limit);
                prepared.run_state(state).await
            }
            .instrument(span)
            .await;
            match &result {
                Ok(0) => tracing::info!(workload = %runtime.id, job = %c.name, "job finished"),
                Ok(code) => tracing::error!(workload = %runtime.id, job = %c.name, code, "job failed"),
                Err(err) => tracing::error!(workload = %runtime.id, job = %c.name, "{}", crate::run::one_line(err)),
            }
            matches!(result, Ok(0))
        });
    }

    print_status(&runtimes, &http_components, &published_at, http_addr);

    let mut routes: Vec<Arc<HttpComponent>> = http_components.into_iter().map(Arc::new).collect();
    routes.sort_by_key(|c| std::cmp::Reverse(c.route.len()));
    let routes = Arc::new(routes);
    let status = options.status.then(|| Arc::new(status_views(&runtimes, &workloads)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server = tokio::spawn(crate::trigger::serve(
        http_listener,
        engine.clone(),
        routes,
        status,
        options.listener,
        stop_rx,
    ));

    signals.next().await;
    tracing::info!("shutting down: draining in-flight requests (a second signal stops at once)");
    let _ = stop_tx.send(true);
    let drained = tokio::select! {
        drained = tokio::time::timeout(options.drain_timeout, &mut server) => match drained {
            Ok(Ok(())) => true,
            Ok(Err(join)) => {
                tracing::error!("HTTP server task failed: {join}");
                false
            }
            Err(_) => {
                tracing::error!("in-flight requests did not finish within {:?}", options.drain_timeout);
                false
            }
        },
        _ = signals.next() => {
            tracing::warn!("second signal: stopping without waiting for in-flight requests");
            false
        }
    };
    // Whatever still runs stops now, and is gone before this returns: an
    // instance's open spans end when its store is dropped, and they must
    // end before the exporter's last flush, not after it.
    if !server.is_finished() {
        server.abort();
        let _ = (&mut server).await;
    }
    tasks.abort_all();
    job_tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut jobs_ok = true;
    while let Some(done) = job_tasks.join_next().await {
        // A job still running at shutdown (aborted) or one that panicked did not succeed.
        jobs_ok &= done.unwrap_or(false);
    }
    let services_ok = runtimes
        .iter()
        .flat_map(|r| &r.supervisors)
        .all(|s| s.status().state != ServiceState::Failed);
    Ok(if drained && jobs_ok && services_ok { 0 } else { 1 })
}

/// What `/.loophost/status` reports on.
fn status_views(runtimes: &[Arc<WorkloadRuntime>], workloads: &[Workload]) -> Vec<crate::status::WorkloadView> {
    runtimes
        .iter()
        .zip(workloads)
        .map(|(r, w)| crate::status::WorkloadView {
            id: r.id.clone(),
            services: r
                .supervisors
                .iter()
                .map(|sup| {
                    let traffic = sup
                        .service
                        .ports
                        .first()
                        .and_then(|&port| r.metrics.traffic(port))
                        .unwrap_or_default();
                    (sup.clone(), traffic)
                })
                .collect(),
            components: w
                .components
                .iter()
                .map(|c| crate::status::ComponentReport {
                    name: c.name.clone(),
                    kind: if c.route.is_some() { "http" } else { "job" }.to_string(),
                    route: c.route.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Waits until every service listens on its ports, or the timeout.
async fn wait_ready(runtimes: &[Arc<WorkloadRuntime>], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pending: Vec<String> = runtimes
            .iter()
            .flat_map(|r| r.supervisors.iter().map(move |s| (r, s)))
            .filter(|(_, s)| matches!(s.status().state, ServiceState::Starting | ServiceState::BackingOff))
            .map(|(r, s)| format!("{}/{}", r.id, s.service.name))
            .collect();
        if pending.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(services = ?pending, "services not ready after {timeout:?}; serving anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A published port as bound: workload id, service name, real address, virtual port.
type PublishedAt = (String, String, SocketAddr, u16);

fn print_status(
    runtimes: &[Arc<WorkloadRuntime>],
    http: &[HttpComponent],
    published: &[PublishedAt],
    addr: SocketAddr,
) {
    println!(
        "{:<24} {:<16} {:<8} {:<12} {:<9} DETAILS",
        "WORKLOAD", "NAME", "KIND", "STATE", "RESTARTS"
    );
    for r in runtimes {
        for s in &r.supervisors {
            let st = s.status();
            let mut details = format!("ports {:?}", s.service.ports);
            for (_, _, listen, port) in published
                .iter()
                .filter(|(id, name, _, _)| *id == r.id && *name == s.service.name)
            {
                details.push_str(&format!(", published {listen} -> {port}"));
            }
            println!(
                "{:<24} {:<16} {:<8} {:<12} {:<9} {details}",
                r.id, s.service.name, "service", st.state, st.restarts
            );
        }
        for c in http.iter().filter(|c| c.workload_id == r.id) {
            println!(
                "{:<24} {:<16} {:<8} {:<12} {:<9} route {}",
                r.id, c.name, "http", "-", "-", c.route
            );
        }
    }
    println!("listening on http://{addr}");
}

/// SIGTERM and SIGINT, listened to for the whole run (so a second signal
/// during the drain is never lost between two listeners).
struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        ShutdownSignals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn next(&mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        if self.term.is_none() && self.int.is_none() {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
        tokio::select! {
            _ = recv(&mut self.term) => {}
            _ = recv(&mut self.int) => {}
        }
    }
}
