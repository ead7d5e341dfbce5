//! A modular `wasi:sockets` (WASI 0.2) implementation for wasmtime with an
//! in-memory loopback network.
//!
//! Guests keep using plain sockets (`std::net`, tokio, any client library).
//! Loopback traffic (`127.0.0.0/8`, `::1`, `localhost`) between stores that
//! share a [`VirtualNetwork`] is carried in memory: no kernel socket, no real
//! port. Everything else is decided by the embedder's [`Policy`]: denied by
//! default, or sent to a real OS socket (upstream wasmtime-wasi's socket
//! core) when allowed.
//!
//! # Use
//!
//! ```
//! use wasi_sockets_virt::{Policy, SocketsCtx, SocketsCtxView, SocketsView, VirtualNetwork};
//! use wasmtime::component::{Linker, ResourceTable};
//! use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
//!
//! struct State {
//!     table: ResourceTable,
//!     wasi: WasiCtx,
//!     sockets: SocketsCtx,
//! }
//!
//! impl WasiView for State {
//!     fn ctx(&mut self) -> WasiCtxView<'_> {
//!         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
//!     }
//! }
//!
//! impl SocketsView for State {
//!     fn sockets(&mut self) -> SocketsCtxView<'_> {
//!         SocketsCtxView { ctx: &mut self.sockets, table: &mut self.table }
//!     }
//! }
//!
//! # fn main() -> wasmtime::Result<()> {
//! let engine = wasmtime::Engine::default();
//! let mut linker = Linker::<State>::new(&engine);
//! // Every WASI interface but sockets from upstream, sockets from us.
//! wasmtime_wasi::p2::add_to_linker_without_sockets_async(&mut linker)?;
//! wasi_sockets_virt::add_to_linker_async(&mut linker)?;
//!
//! // One network per workload; one context per store.
//! let network = VirtualNetwork::new();
//! let state = State {
//!     table: ResourceTable::new(),
//!     wasi: WasiCtx::builder().build(),
//!     sockets: SocketsCtx::new(network.clone(), Policy::default()),
//! };
//! let _store = wasmtime::Store::new(&engine, state);
//! # Ok(())
//! # }
//! ```
//!
//! When a store dies abnormally (a trap, a kill), call
//! [`SocketsCtx::abort_connections`] before dropping it: its peers then see
//! `connection-reset` instead of a clean end of stream.
//!
//! # Names, reserved ports, limits
//!
//! - [`VirtualNetwork::add_name`] gives the network names of its own (a
//!   workload's services); `ip-name-lookup` answers them without the OS, and
//!   [`VirtualNetwork::add_private_domain`] makes a domain answer only from
//!   them. Real names the policy lets out go through one [`Resolver`]
//!   ([`VirtualNetwork::set_resolver`]; the OS by default), and embedders
//!   resolving for other protocols call [`VirtualNetwork::resolve_real`], so
//!   the addresses checked are the addresses used.
//! - [`VirtualNetwork::reserve_port`] keeps a port for the stores of one
//!   [`PortOwner`] ([`SocketsCtx::with_port_owner`]).
//! - [`NetworkConfig`] bounds what guests can make the host hold: bytes per
//!   connection and per network, connections per network, sockets per store.

mod bindings;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod host_stream;
mod lookup;
mod names;
mod network;
mod pipe;
mod policy;
mod streams;
mod tcp;
mod trace;
mod udp;

pub use bindings::network::ErrorCode;
pub use error::{SocketError, SocketResult};
pub use host_stream::VirtualTcpStream;
pub use lookup::{ResolveFuture, Resolver, SystemResolver};
pub use names::NameAnswer;
pub use network::{NetworkConfig, NetworkObserver, NetworkStats, PortOwner, VirtualNetwork};
pub use policy::{AddressRule, DenyReason, NameLookup, Policy, Route, SocketUse};

use network::AbortFlag;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The `network` resource: the capability handle guests pass to bind and
/// connect. It carries nothing; the store's [`SocketsCtx`] holds the state.
pub struct Network;

/// Per-store socket state: which network, which policy.
pub struct SocketsCtx {
    network: VirtualNetwork,
    policy: Arc<Policy>,
    abort: AbortFlag,
    trace: Arc<trace::StoreTrace>,
    /// The identity this store binds reserved ports as (see [`VirtualNetwork::reserve_port`]).
    port_owner: Option<PortOwner>,
    /// Sockets this store holds, against its limit.
    sockets: Arc<SocketQuota>,
    /// What this store's new TCP sockets start with (shared, see `tcp.rs`).
    tcp_defaults: Arc<tcp::Options>,
    /// Upstream's socket context, for the real sockets the policy allows.
    /// Its own address check allows everything: our policy already decided.
    real: OnceLock<wasmtime_wasi::sockets::WasiSocketsCtx>,
}

impl SocketsCtx {
    /// A context whose loopback is `network`, routed by `policy`.
    pub fn new(network: VirtualNetwork, policy: Policy) -> Self {
        Self::with_shared_policy(network, Arc::new(policy))
    }

    /// Like [`SocketsCtx::new`], sharing one policy between many stores.
    pub fn with_shared_policy(network: VirtualNetwork, policy: Arc<Policy>) -> Self {
        let sockets = SocketQuota::new(network.config().max_sockets_per_store);
        let tcp_defaults = Arc::new(tcp::Options::defaults(network.config().connection_buffer as u64));
        SocketsCtx {
            tcp_defaults,
            network,
            policy,
            abort: AbortFlag::default(),
            trace: Arc::default(),
            port_owner: None,
            sockets,
            real: OnceLock::new(),
        }
    }

    /// This store may bind the ports reserved for `owner` (a service's
    /// declared ports, reserved with [`VirtualNetwork::reserve_port`]).
    pub fn with_port_owner(mut self, owner: PortOwner) -> Self {
        self.port_owner = Some(owner);
        self
    }

    /// The network this store's loopback is on.
    pub fn network(&self) -> &VirtualNetwork {
        &self.network
    }

    /// The routing policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy, shared (for embedders that route other protocols, such as
    /// HTTP, by the same rules).
    pub fn shared_policy(&self) -> Arc<Policy> {
        self.policy.clone()
    }

    /// Makes `span` the parent of this store's next outgoing connections
    /// (`None`: back to automatic, see the `trace` module docs).
    pub fn set_connect_parent(&self, span: Option<tracing::Span>) {
        self.trace.set_explicit(span);
    }

    /// The span this store's next outgoing connection would hang under (see
    /// the `trace` module docs), for embedders that open spans of their own
    /// in the same place.
    pub fn current_parent(&self) -> tracing::Span {
        self.trace.connect_parent()
    }

    /// The span of this store's open accepted connection from `peer`.
    pub fn accepted_span(&self, peer: std::net::SocketAddr) -> Option<tracing::Span> {
        self.trace.accepted_from(peer)
    }

    /// A handle that tells which connection this store is serving right now.
    pub fn connection_context(&self) -> ConnectionContext {
        ConnectionContext(self.trace.clone())
    }

    /// A handle that can mark this store dead later, even from a drop guard
    /// (see [`SocketsCtx::abort_connections`]).
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle(self.abort.clone())
    }

    /// Marks the store as dead: from now on, dropping its sockets and streams
    /// resets their connections (peers see `connection-reset`).
    pub fn abort_connections(&self) {
        self.abort.set();
    }

    /// A slot for one more socket, or `new-socket-limit` when the store
    /// holds as many as its network allows.
    pub(crate) fn socket_slot(&self) -> Result<SocketSlot, ErrorCode> {
        self.sockets.take()
    }

    fn real_sockets(&self) -> &wasmtime_wasi::sockets::WasiSocketsCtx {
        self.real.get_or_init(|| {
            let mut wasi = wasmtime_wasi::WasiCtx::builder();
            wasi.inherit_network().allow_tcp(true).allow_udp(true);
            wasi.build().sockets().clone()
        })
    }
}

/// How many sockets (TCP and UDP, accepted ones included, hence also bound
/// ports) one store holds, and its limit.
pub(crate) struct SocketQuota {
    open: AtomicUsize,
    limit: usize,
}

impl SocketQuota {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(SocketQuota {
            open: AtomicUsize::new(0),
            limit,
        })
    }

    pub(crate) fn take(self: &Arc<Self>) -> Result<SocketSlot, ErrorCode> {
        let taken = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.limit).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(SocketSlot(self.clone())),
            Err(_) => {
                tracing::debug!(limit = self.limit, "socket limit of the store reached");
                Err(ErrorCode::NewSocketLimit)
            }
        }
    }
}

/// One socket's place in its store's [`SocketQuota`], given back on drop.
pub(crate) struct SocketSlot(Arc<SocketQuota>);

impl SocketSlot {
    /// Another slot of the same store (for an accepted connection).
    pub(crate) fn sibling(&self) -> Result<SocketSlot, ErrorCode> {
        self.0.take()
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a store dead; see [`SocketsCtx::abort_handle`].
#[derive(Clone)]
pub struct AbortHandle(AbortFlag);

impl AbortHandle {
    /// From now on the store's connections reset when dropped.
    pub fn abort(&self) {
        self.0.set();
    }
}

/// Which accepted connection a store is serving, for attributing its logs.
#[derive(Clone)]
pub struct ConnectionContext(Arc<trace::StoreTrace>);

impl ConnectionContext {
    /// The span of the accepted connection the store is serving: the only
    /// open one, else the one the guest last read from.
    pub fn current(&self) -> Option<tracing::Span> {
        self.0.serving()
    }
}

/// A borrow of a store's socket state and resource table.
pub struct SocketsCtxView<'a> {
    /// The store's socket context.
    pub ctx: &'a mut SocketsCtx,
    /// The store's resource table (shared with the rest of WASI).
    pub table: &'a mut ResourceTable,
}

/// Implemented by store data that has sockets.
pub trait SocketsView: Send {
    /// Borrows the socket context and the resource table.
    fn sockets(&mut self) -> SocketsCtxView<'_>;
}

struct HasSockets;

impl HasData for HasSockets {
    type Data<'a> = SocketsCtxView<'a>;
}

/// Adds all seven `wasi:sockets` interfaces to an async linker.
///
/// Pair it with `wasmtime_wasi::p2::add_to_linker_without_sockets_async`
/// for the rest of WASI.
pub fn add_to_linker_async<T: SocketsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use bindings::{instance_network, ip_name_lookup, network, tcp, tcp_create_socket, udp, udp_create_socket};
    tcp::add_to_linker::<T, HasSockets>(linker, T::sockets)?;
    tcp_create_socket::add_to_linker::<T, HasSockets>(linker, T::sockets)?;
    udp::add_to_linker::<T, HasSockets>(linker, T::sockets)?;
    udp_create_socket::add_to_linker::<T, HasSockets>(linker, T::sockets)?;
    instance_network::add_to_linker::<T, HasSockets>(linker, T::sockets)?;
    network::add_to_linker::<T, HasSockets>(linker, &Default::default(), T::sockets)?;
    ip_name_lookup::add_to_linker::<T, HasSockets>(linker, T::sockets)?;
    Ok(())
}

/// Polls `future` once, outside tokio's co-operative budget, for the p2
/// `finish-*` calls that must answer at once. Inside a task that has used
/// up its budget, tokio's own futures would report `Pending` even when
/// ready, and the guest would see a spurious `would-block` (as upstream
/// wasmtime-wasi fixed in 49).
pub(crate) fn poll_now<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::pin!(tokio::task::unconstrained(future)).poll(&mut cx)
}
