//! Loading component files. Every error names the file and says what to do.

use crate::compile_cache::CompileCache;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::RwLock;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// The engine all stores share (Cranelift-compiled; async host calls, so a
/// guest blocked on a socket does not block a thread).
pub fn engine() -> Result<Engine> {
    engine_with(Config::new())
}

/// How often running guests yield to the host's scheduler.
const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Builds an engine on `config` with epoch interruption: a guest that
/// computes without calling the host still yields every few milliseconds,
/// so it cannot hold a host thread, and can be stopped (dropped) like any
/// other instance.
pub fn engine_with(mut config: Config) -> Result<Engine> {
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Our guests are WASIp2: no component-model-async, so none of the
    // bookkeeping wasmtime does for concurrent guest tasks on every host
    // call (a task pushed to and popped from a table per call; a third of
    // the instructions of a virtual round trip).
    config.concurrency_support(false);
    // `LOOPHOST_PROFILE=perfmap` names guest functions for `perf`
    // (/tmp/perf-PID.map), as `wasmtime --profile perfmap` does.
    if std::env::var("LOOPHOST_PROFILE").is_ok_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("loophost-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(YIELD_EVERY);
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the epoch ticker thread: {e}"))?;
    Ok(engine)
}

/// Component-model handles a guest needs per socket: the socket and its
/// input and output streams, and a pollable.
const HANDLES_PER_SOCKET: usize = 4;

/// A store whose guest yields at every epoch tick (see [`engine_with`]),
/// with room for the handles of as many sockets as its network lets one
/// store hold (wasmtime's default of 100 000 handles would stop a guest at
/// about 33 000 connections, whatever the network's caps say).
pub fn new_store(engine: &Engine, state: crate::state::HostState) -> wasmtime::Store<crate::state::HostState> {
    let sockets = state.sockets.network().config().max_sockets_per_store;
    let mut store = wasmtime::Store::new(engine, state);
    let handles = sockets.saturating_mul(HANDLES_PER_SOCKET).saturating_add(10_000);
    if handles > store.max_component_handles() {
        store.set_max_component_handles(handles);
    }
    store.epoch_deadline_async_yield_and_update(1);
    store
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Reads and compiles a component, checking the file is really one.
pub fn load(engine: &Engine, path: &Path) -> Result<Component> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read component file"))?;
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        bail!("{shown}: not a WebAssembly file (expected a wasm32-wasip2 component)");
    }
    // Bytes 4..8: version and layer. Layer 0 is a core module, 1 a component.
    if bytes[6..8] == [0, 0] {
        bail!(
            "{shown}: is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
        );
    }
    let cache = COMPILE_CACHE.read().unwrap_or_else(|e| e.into_inner()).clone();
    match cache {
        Some(cache) => {
            let started = std::time::Instant::now();
            let (component, lookup) = cache.load_or_compile(engine, &bytes, path)?;
            tracing::debug!(
                "{shown}: {lookup:?} in the compile cache, ready in {:?}",
                started.elapsed()
            );
            Ok(component)
        }
        None => Component::new(engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown}: invalid component")),
    }
}

/// The compile cache [`load`] uses; none until [`use_compile_cache`] sets one.
static COMPILE_CACHE: RwLock<Option<CompileCache>> = RwLock::new(None);

/// Makes [`load`] keep compiled components in `cache` (`None`: always compile).
/// The CLI sets it once at start from `--cache-dir`/`--no-cache`.
pub fn use_compile_cache(cache: Option<CompileCache>) {
    *COMPILE_CACHE.write().unwrap_or_else(|e| e.into_inner()) = cache;
}

/// Checks that `component` exports `interface` (e.g. `wasi:cli/run`) in any 0.2 version.
pub fn require_export(engine: &Engine, component: &Component, path: &Path, interface: &str) -> Result<()> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    let found = exports
        .iter()
        .any(|name| name == interface || name.starts_with(&format!("{interface}@")));
    if !found {
        let list = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        bail!("{}: does not export {interface} (it exports {list})", path.display());
    }
    Ok(())
}
