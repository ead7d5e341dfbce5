//! What every store holds, and the linkers that go with it.

use crate::http::LoopbackHttpHooks;
use std::sync::Arc;
use wasi_sockets_virt::{Policy, SocketsCtx, SocketsCtxView, SocketsView, VirtualNetwork};
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Store data: the resource table, WASI (everything but sockets), the
/// virtual sockets, and wasi:http whose loopback requests stay virtual.
pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub sockets: SocketsCtx,
    pub http: WasiHttpCtx,
    pub http_hooks: LoopbackHttpHooks,
    /// Resource limits of the instance (install with `Store::limiter`).
    pub limits: wasmtime::StoreLimits,
    /// Spans the guest opened through `loophost:trace/spans`.
    pub guest_spans: crate::trace_context::GuestSpans,
}

impl HostState {
    /// State for one instance on `network`, routed by `policy`.
    pub fn new(wasi: WasiCtx, network: &VirtualNetwork, policy: Arc<Policy>) -> Self {
        Self::from_parts(wasi, SocketsCtx::with_shared_policy(network.clone(), policy))
    }

    /// State around an existing socket context (when the WASI context needs
    /// something from it, e.g. its connection context for log attribution).
    pub fn from_parts(wasi: WasiCtx, sockets: SocketsCtx) -> Self {
        let http_hooks = LoopbackHttpHooks::new(sockets.network().clone(), sockets.shared_policy());
        HostState {
            table: ResourceTable::new(),
            wasi,
            sockets,
            http: WasiHttpCtx::new(),
            http_hooks,
            limits: wasmtime::StoreLimits::default(),
            guest_spans: Default::default(),
        }
    }

    /// Caps the instance's linear memories at `bytes` each: a `memory.grow`
    /// past it fails (the guest sees an allocation failure, usually a trap).
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.limits = wasmtime::StoreLimitsBuilder::new().memory_size(bytes).build();
        self
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl SocketsView for HostState {
    fn sockets(&mut self) -> SocketsCtxView<'_> {
        SocketsCtxView {
            ctx: &mut self.sockets,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// A linker with WASI p2 (sockets from `wasi-sockets-virt`) and wasi:http.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_without_sockets_async(&mut linker)?;
    wasi_sockets_virt::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::trace_context::add_to_linker(&mut linker)?;
    Ok(linker)
}
