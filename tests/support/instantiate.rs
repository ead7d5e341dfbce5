//! Instantiating a `wasi:http/proxy` component again and again, as the HTTP
//! trigger does once per request: timed by the `http` benchmark, counted in
//! instructions by the `instructions` benchmark (through the
//! `bench-instantiate` binary).

use std::path::Path;
use std::time::Instant;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Whose store and engine.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    /// The engine `loophost up` builds and the state every request gets
    /// (virtual sockets, wasi:http, limits, epoch yields).
    Loophost,
    /// Upstream's WASI and wasi:http on a pooling engine, as `wasmtime serve`.
    Upstream,
}

/// Instantiates the component at `path` `n` times in a row; returns each
/// instantiation's time in µs (store creation included). `pooling: false`
/// uses wasmtime's on-demand allocator instead of the pooling one (valgrind
/// cannot reserve the pool's address space).
pub fn times(store: Store, path: &Path, n: usize, pooling: bool) -> Vec<f64> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut out = Vec::with_capacity(n);
        match store {
            Store::Loophost => {
                use loophost::state::HostState;
                let dir = crate::temp_dir("instantiate");
                let manifest = crate::write_manifest(
                    &dir,
                    "inst.toml",
                    &format!(
                        "name = \"inst\"\n[[component]]\nname = \"hello\"\nwasm = \"{}\"\nroute = \"/\"\n",
                        path.display()
                    ),
                );
                let workloads = loophost::up::check(&[manifest]).expect("manifest");
                let engine = if pooling {
                    loophost::up::pooled_engine(&workloads).expect("engine")
                } else {
                    loophost::component::engine().expect("engine")
                };
                let component = loophost::component::load(&engine, path).expect("load");
                let pre = loophost::state::linker(&engine)
                    .and_then(|l| Ok(ProxyPre::new(l.instantiate_pre(&component)?)?))
                    .expect("link");
                let network = wasi_sockets_virt::VirtualNetwork::new();
                let policy = std::sync::Arc::new(wasi_sockets_virt::Policy::default());
                for _ in 0..n {
                    let t = Instant::now();
                    let state = HostState::new(wasmtime_wasi::WasiCtx::builder().build(), &network, policy.clone());
                    let mut store = loophost::component::new_store(&engine, state);
                    store.limiter(|s| &mut s.limits);
                    let instance = pre.instantiate_async(&mut store).await.expect("instantiate");
                    out.push(t.elapsed().as_secs_f64() * 1e6);
                    drop((instance, store));
                }
            }
            Store::Upstream => {
                let mut config = wasmtime::Config::new();
                if pooling {
                    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(Default::default()));
                }
                let engine = wasmtime::Engine::new(&config).expect("engine");
                let pre = crate::reference::proxy_pre(&engine, &path.display().to_string()).expect("link");
                for _ in 0..n {
                    let t = Instant::now();
                    let mut store = wasmtime::Store::new(&engine, crate::reference::state(&[]));
                    let instance = pre.instantiate_async(&mut store).await.expect("instantiate");
                    out.push(t.elapsed().as_secs_f64() * 1e6);
                    drop((instance, store));
                }
            }
        }
        out
    })
}
