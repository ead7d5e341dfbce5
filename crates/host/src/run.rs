//! `loophost run`: run a `wasi:cli/run` component, optionally next to
//! background components on the same virtual network.

use crate::component;
use crate::mounts::Mount;
use crate::output::{Echo, LogOutput, Origin, OutputLimiter};
use crate::state::{self, HostState};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use wasi_sockets_virt::{Policy, VirtualNetwork};
use wasmtime::Engine;
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// A component file, the arguments it gets and the host directories it sees.
#[derive(Clone, Debug, Default)]
pub struct ComponentSpec {
    pub path: PathBuf,
    pub args: Vec<String>,
    /// Mounted by [`Prepared::run`]; `up` gives services and jobs their own.
    pub mounts: Vec<Mount>,
}

/// Settings shared by every component of one `run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Environment variables given to every component.
    pub env: Vec<(String, String)>,
    /// Socket routing for every component.
    pub policy: Policy,
    /// Addresses that must be listening before the main component starts.
    /// When empty, the main component starts once every background
    /// component listens on something (or exited), up to `ready_timeout`.
    pub wait_for: Vec<SocketAddr>,
    /// Bound on the wait for background components.
    pub ready_timeout: Duration,
    /// The virtual network's caps (connections, sockets per instance).
    pub network: wasi_sockets_virt::NetworkConfig,
}

/// A component compiled and linked, ready to be instantiated (many times).
pub struct Prepared {
    spec: ComponentSpec,
    pre: CommandPre<HostState>,
}

impl Prepared {
    /// Loads, checks and links a `wasi:cli/run` component.
    pub fn new(engine: &Engine, spec: ComponentSpec) -> Result<Self> {
        let component = component::load(engine, &spec.path)?;
        component::require_export(engine, &component, &spec.path, "wasi:cli/run")?;
        let linker = state::linker(engine)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{}: cannot be linked", spec.path.display()))?;
        let pre = CommandPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{}: does not match the wasi:cli/command world", spec.path.display()))?;
        Ok(Prepared { spec, pre })
    }

    /// Runs one instance with inherited stdio; returns its exit code.
    /// A trap resets the instance's connections and is returned as an error.
    pub async fn run(&self, network: &VirtualNetwork, policy: Arc<Policy>, env: &[(String, String)]) -> Result<i32> {
        self.run_with_stdout(network, policy, env, None).await
    }

    /// Like [`Prepared::run`], with the guest's stdout captured in `stdout`
    /// instead of inherited.
    pub async fn run_with_stdout(
        &self,
        network: &VirtualNetwork,
        policy: Arc<Policy>,
        env: &[(String, String)],
        stdout: Option<MemoryOutputPipe>,
    ) -> Result<i32> {
        let mut wasi = self.wasi();
        wasi.inherit_stdio().envs(env);
        // With export on, output is also turned into log records (with the
        // component's trace context), as in `up`; the terminal still gets
        // every byte as written.
        if crate::telemetry::export_enabled() {
            let limiter = OutputLimiter::new("run", &self.name());
            let origin = |stream| Origin {
                workload: "run".to_string(),
                name: self.name(),
                stream,
                limiter: limiter.clone(),
            };
            wasi.stdout(LogOutput::new(origin("stdout")).echoing_to(Echo::Stdout))
                .stderr(LogOutput::new(origin("stderr")).echoing_to(Echo::Stderr));
        }
        if let Some(pipe) = stdout {
            wasi.stdout(pipe);
        }
        crate::mounts::preopen(&mut wasi, &self.spec.mounts)?;
        let span = tracing::info_span!("component run", "component.name" = %self.name());
        let state = HostState::new(wasi.build(), network, policy);
        self.run_state(state).instrument(span).await
    }

    /// A WASI context builder with this component's argv filled in.
    pub fn wasi(&self) -> wasmtime_wasi::WasiCtxBuilder {
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        wasi.arg(self.name()).args(&self.spec.args);
        wasi
    }

    /// Runs one instance in a fresh store holding `state` to completion.
    pub async fn run_state(&self, state: HostState) -> Result<i32> {
        // Dropped before the run completes (cancelled: the host is stopping
        // or the supervisor gave up): the instance dies abnormally, so its
        // peers see resets, not clean ends of stream.
        struct AbortUnlessDone(Option<wasi_sockets_virt::AbortHandle>);
        impl Drop for AbortUnlessDone {
            fn drop(&mut self) {
                if let Some(handle) = self.0.take() {
                    handle.abort();
                }
            }
        }
        let abort = state.sockets.abort_handle();
        let mut store = component::new_store(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // Declared after the store so that it drops first: the flag must be
        // set before the store's sockets are dropped.
        let mut guard = AbortUnlessDone(Some(abort));
        let outcome = async {
            let command = self.pre.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        }
        .await;
        guard.0 = None;
        match outcome {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(err) => {
                if let Some(exit) = err.downcast_ref::<I32Exit>() {
                    return Ok(exit.0);
                }
                // The instance is dead: its peers must see resets, not EOFs.
                store.data().sockets.abort_connections();
                Err(anyhow::Error::from(err)).with_context(|| format!("{}: trapped", self.spec.path.display()))
            }
        }
    }

    /// The file name, for logs.
    pub fn name(&self) -> String {
        file_name(&self.spec.path)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Runs `main` after starting `background` components on one private
/// virtual network; returns `main`'s exit code.
pub async fn run(main: ComponentSpec, background: Vec<ComponentSpec>, options: RunOptions) -> Result<i32> {
    let engine = component::engine()?;
    // Load everything before starting anything, so bad input fails fast.
    let background = background
        .into_iter()
        .map(|spec| Prepared::new(&engine, spec))
        .collect::<Result<Vec<_>>>()?;
    let main = Prepared::new(&engine, main)?;

    let network = VirtualNetwork::with_observer(
        options.network.clone(),
        crate::metrics::NetworkMetrics::new("run", Default::default(), crate::denials::PolicySource::RunFlags),
    );
    // Addresses we wait for are declared: a component that connects to one
    // before it listens waits (bounded) instead of being refused.
    for addr in &options.wait_for {
        network.expect_listener(*addr, options.ready_timeout);
    }
    let policy = Arc::new(options.policy.clone());
    let mut tasks = Vec::new();
    for prepared in background {
        let (network, policy, env) = (network.clone(), policy.clone(), options.env.clone());
        tasks.push(tokio::spawn(async move {
            let name = prepared.name();
            match prepared.run(&network, policy, &env).await {
                Ok(code) => tracing::info!(component = %name, code, "background component exited"),
                Err(err) => tracing::error!(component = %name, "{}", one_line(&err)),
            }
        }));
    }
    wait_until_ready(&network, &tasks, &options).await;

    // The main component runs as a runtime task like the others, not on the
    // thread that waits for it: a guest pair then hands data to each other
    // on the runtime's workers instead of waking a thread for every message
    // (a 64-byte round trip took twice as long that way).
    let mut main_task = {
        let (network, env) = (network.clone(), options.env.clone());
        AbortOnDrop(tokio::spawn(async move { main.run(&network, policy, &env).await }))
    };
    let code = match (&mut main_task.0).await {
        Ok(code) => code,
        Err(join) => Err(anyhow::anyhow!("the component's task failed: {join}")),
    };
    // Stop the background components and wait until their stores are gone,
    // so their connections are closed (and counted) before we return.
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    code
}

/// Aborts a task when dropped (the `run` future was cancelled).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for the background components to listen (see [`RunOptions::wait_for`]).
async fn wait_until_ready(network: &VirtualNetwork, tasks: &[tokio::task::JoinHandle<()>], options: &RunOptions) {
    if tasks.is_empty() && options.wait_for.is_empty() {
        return;
    }
    let deadline = Instant::now() + options.ready_timeout;
    loop {
        let ready = if options.wait_for.is_empty() {
            let exited = tasks.iter().filter(|t| t.is_finished()).count();
            network.stats().listeners + exited >= tasks.len()
        } else {
            options.wait_for.iter().all(|addr| network.is_listening(*addr))
        };
        if ready {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                "background components not ready after {:?}; starting anyway",
                options.ready_timeout
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An error chain on one line: the first line of each cause, joined by ": ".
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|cause| cause.to_string().lines().next().unwrap_or_default().trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}
