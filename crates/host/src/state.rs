//! What every store holds.

use wasi_sockets_virt::{SocketsCtx, SocketsCtxView, SocketsView};
use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Store data: the resource table, WASI (everything but sockets) and the
/// virtual sockets.
pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub sockets: SocketsCtx,
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

/// A linker with WASI p2 where sockets come from `wasi-sockets-virt`.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_without_sockets_async(&mut linker)?;
    wasi_sockets_virt::add_to_linker_async(&mut linker)?;
    Ok(linker)
}
