//! The `tcp-socket` resource: one state machine for both routes.
//!
//! ```text
//! Unbound ──bind──▶ Bound ──listen──▶ Listening ──accept──▶ (new Connected socket)
//!    │                │
//!    └───connect──────┴──▶ Connecting ──▶ Connected ──(drop)──▶ FIN / RST
//!                               └──────▶ Closed (connect failed)
//! ```
//!
//! `Bound`/`Listening` are always virtual: components may not bind real
//! ports. A connect goes where [`Policy::route`](crate::Policy::route)
//! says: the virtual network, or upstream's real-OS socket core.

use crate::SocketsCtx;
use crate::bindings::network::{ErrorCode, IpAddressFamily};
use crate::error::{SocketResult, from_upstream};
use crate::network::{AbortFlag, Connection, Listener, PortBinding, Protocol, loopback_for};
use crate::policy::{Route, SocketUse};
use crate::streams;
use crate::trace::{AcceptedGuard, StoreTrace};
use std::future::Future;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

/// Default listen backlog, as in Rust's std.
const DEFAULT_BACKLOG: u32 = 128;
const MAX_BACKLOG: u32 = 4096;
const DEFAULT_HOP_LIMIT: u8 = 64;
const DEFAULT_KEEP_ALIVE_IDLE: u64 = 7200 * 1_000_000_000;
const DEFAULT_KEEP_ALIVE_INTERVAL: u64 = 75 * 1_000_000_000;
const DEFAULT_KEEP_ALIVE_COUNT: u32 = 9;

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Connected, ErrorCode>> + Send>>;

// Every idle connection holds two of these (see the `idle` bench): a
// field that grows them should be boxed or shared instead.
const _: () = assert!(std::mem::size_of::<TcpSocket>() <= 128);

/// A `wasi:sockets/tcp.tcp-socket`.
pub struct TcpSocket {
    family: IpAddressFamily,
    state: State,
    /// The p2 start/finish operation in flight, if any.
    pending: Option<Op>,
    /// Shared with the store's other sockets (and an accepted socket with
    /// its listener) until the guest sets one: copy on write, 8 bytes per
    /// idle socket.
    options: Arc<Options>,
    abort: AbortFlag,
    trace: Arc<StoreTrace>,
    /// An accepted connection, registered with the store (which holds its
    /// span).
    accepted: Option<AcceptedGuard>,
    /// This socket's place in the store's socket limit.
    slot: crate::SocketSlot,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Bind,
    Connect,
    Listen,
}

enum State {
    Unbound,
    Bound(PortBinding),
    Connecting(ConnectFuture),
    /// The connect finished (observed by a pollable) but `finish-connect`
    /// has not collected it yet.
    ConnectDone(Result<Connected, ErrorCode>),
    Connected(Connected),
    Listening {
        binding: PortBinding,
        listener: Arc<Listener>,
    },
    Closed,
}

enum Connected {
    Virtual(Arc<Connection>),
    /// Boxed: most connections are virtual, and upstream's socket is five
    /// times the size of our `Arc` (it would size every idle socket).
    Real(Box<wasmtime_wasi::p2::TcpSocket>),
}

/// Socket options. Virtual sockets only remember them (there is no wire to
/// apply them to); real sockets get them applied when created.
#[derive(Clone)]
pub(crate) struct Options {
    backlog: u32,
    keep_alive: Option<bool>,
    // NonZero: the setters refuse 0, and `Option<NonZero…>` is half the
    // size of `Option<u64>`; every idle socket carries these.
    keep_alive_idle: Option<NonZeroU64>,
    keep_alive_interval: Option<NonZeroU64>,
    keep_alive_count: Option<NonZeroU32>,
    hop_limit: Option<u8>,
    /// Set by the guest (`None`: the virtual connection buffer's size).
    receive_buffer: Option<NonZeroU64>,
    send_buffer: Option<NonZeroU64>,
    /// What the buffer sizes read as before the guest sets them.
    default_buffer: u64,
}

impl TcpSocket {
    pub(crate) fn new(ctx: &SocketsCtx, family: IpAddressFamily, slot: crate::SocketSlot) -> Self {
        TcpSocket {
            family,
            state: State::Unbound,
            pending: None,
            options: ctx.tcp_defaults.clone(),
            abort: ctx.abort.clone(),
            trace: ctx.trace.clone(),
            accepted: None,
            slot,
        }
    }

    fn begin(&mut self, op: Op) -> SocketResult<()> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        self.pending = Some(op);
        Ok(())
    }

    fn finish(&mut self, op: Op) -> SocketResult<()> {
        if self.pending != Some(op) {
            return Err(ErrorCode::NotInProgress.into());
        }
        self.pending = None;
        Ok(())
    }

    pub(crate) fn start_bind(&mut self, ctx: &SocketsCtx, addr: SocketAddr) -> SocketResult<()> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        check_local_address(self.family, addr)?;
        if !matches!(self.state, State::Unbound) {
            return Err(ErrorCode::InvalidState.into());
        }
        check_bind_route(ctx, SocketUse::TcpBind, addr)?;
        let binding = ctx.network.bind(Protocol::Tcp, addr, ctx.port_owner)?;
        self.state = State::Bound(binding);
        self.begin(Op::Bind)
    }

    pub(crate) fn finish_bind(&mut self) -> SocketResult<()> {
        self.finish(Op::Bind)
    }

    pub(crate) fn start_connect(&mut self, ctx: &SocketsCtx, remote: SocketAddr) -> SocketResult<()> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        // The state check comes before argument checks, as upstream does.
        if !matches!(self.state, State::Unbound | State::Bound(_)) {
            return Err(ErrorCode::InvalidState.into());
        }
        check_remote_address(self.family, remote)?;
        let parent = self.trace.connect_parent();
        // Everything that can fail at start happens before the state changes:
        // a failed start-connect leaves the socket (and its bind) as it was.
        let future: ConnectFuture = match ctx.policy.route(SocketUse::TcpConnect, remote) {
            Route::Virtual => {
                let implicit = match &self.state {
                    State::Bound(_) => None,
                    _ => Some(
                        ctx.network
                            .bind(Protocol::Tcp, SocketAddr::new(loopback_for(remote.ip()), 0), None)?,
                    ),
                };
                let local = match (std::mem::replace(&mut self.state, State::Closed), implicit) {
                    (State::Bound(binding), _) | (_, Some(binding)) => binding,
                    (other, None) => {
                        self.state = other;
                        return Err(ErrorCode::InvalidState.into());
                    }
                };
                let span = tracing::info_span!(parent: &parent, "virtual connect", "otel.kind" = "client",
                    "server.address" = %remote.ip(), "server.port" = remote.port(),
                    "client.port" = local.addr().port(), "error.type" = tracing::field::Empty);
                Box::pin(async move {
                    let result = local.network().clone().open(local, remote, span.clone()).await;
                    match result {
                        Ok(conn) => Ok(Connected::Virtual(Arc::new(conn))),
                        Err(code) => {
                            span.record("error.type", tracing::field::debug(code));
                            Err(code)
                        }
                    }
                })
            }
            Route::Host => {
                let span = tracing::info_span!(parent: &parent, "real connect", "otel.kind" = "client",
                    "server.address" = %remote.ip(), "server.port" = remote.port(), "loophost.policy" = "allowed",
                    "error.type" = tracing::field::Empty);
                let mut core =
                    wasmtime_wasi::sockets::TcpSocket::new(ctx.real_sockets(), to_upstream_family(self.family))
                        .map_err(from_upstream)?;
                self.options.apply_to(&mut core);
                core.start_connect(remote).map_err(from_upstream)?;
                // A virtual binding has no meaning on the real network; the
                // OS picks the local address.
                self.state = State::Closed;
                Box::pin(async move {
                    let result = std::future::poll_fn(|cx| core.poll_finish_connect(cx))
                        .await
                        .map_err(from_upstream);
                    if let Err(code) = result {
                        span.record("error.type", tracing::field::debug(code));
                        return Err(code);
                    }
                    Ok(Connected::Real(Box::new(wasmtime_wasi::p2::TcpSocket::new(core))))
                })
            }
            Route::Deny(reason) => {
                tracing::info_span!(parent: &parent, "real connect", "otel.kind" = "client",
                    "server.address" = %remote.ip(), "server.port" = remote.port(), "loophost.policy" = "denied",
                    "loophost.deny_reason" = %reason, "error.type" = "access-denied")
                .in_scope(|| tracing::debug!(%remote, %reason, "tcp connect denied by policy"));
                if let Some(observer) = ctx.network.observer() {
                    observer.denied(SocketUse::TcpConnect, remote, &reason);
                }
                // As upstream: the denial is the connect's outcome (finish-connect).
                self.state = State::Closed;
                Box::pin(async { Err(ErrorCode::AccessDenied) })
            }
        };
        self.state = State::Connecting(future);
        self.begin(Op::Connect)
    }

    pub(crate) fn finish_connect(&mut self) -> SocketResult<(DynInputStream, DynOutputStream)> {
        if self.pending != Some(Op::Connect) {
            return Err(ErrorCode::NotInProgress.into());
        }
        let result = match std::mem::replace(&mut self.state, State::Closed) {
            State::Connecting(mut future) => match crate::poll_now(&mut future) {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    self.state = State::Connecting(future);
                    return Err(ErrorCode::WouldBlock.into());
                }
            },
            State::ConnectDone(result) => result,
            other => {
                self.state = other;
                return Err(ErrorCode::NotInProgress.into());
            }
        };
        self.pending = None;
        let mut connected = result?;
        let streams = connected.take_streams(&self.abort)?;
        self.state = State::Connected(connected);
        Ok(streams)
    }

    pub(crate) fn start_listen(&mut self) -> SocketResult<()> {
        if self.pending.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Bound(binding) => {
                tracing::debug_span!("virtual listen", "server.address" = %binding.addr().ip(),
                    "server.port" = binding.addr().port(), "loophost.backlog" = self.options.backlog)
                .in_scope(|| {});
                let listener = binding.listen(self.options.backlog as usize);
                self.state = State::Listening { binding, listener };
                self.begin(Op::Listen)
            }
            other => {
                self.state = other;
                Err(ErrorCode::InvalidState.into())
            }
        }
    }

    pub(crate) fn finish_listen(&mut self) -> SocketResult<()> {
        self.finish(Op::Listen)
    }

    pub(crate) fn accept(&mut self) -> SocketResult<(TcpSocket, DynInputStream, DynOutputStream)> {
        let State::Listening { listener, .. } = &self.state else {
            return Err(ErrorCode::InvalidState.into());
        };
        // The slot first: at the limit, the connection stays queued (as in
        // the kernel's backlog on EMFILE) until the store frees a socket.
        let slot = self.slot.sibling()?;
        let conn = Arc::new(listener.try_accept().ok_or(ErrorCode::WouldBlock)?);
        let span = tracing::info_span!(parent: &conn.origin(), "virtual connection", "otel.kind" = "server",
            "server.port" = conn.local().port(), "network.peer.address" = %conn.remote().ip(),
            "network.peer.port" = conn.remote().port(), "loophost.bytes_in" = tracing::field::Empty,
            "loophost.bytes_out" = tracing::field::Empty, "loophost.close" = tracing::field::Empty);
        tracing::info_span!(parent: &span, "virtual accept", "network.peer.port" = conn.remote().port())
            .in_scope(|| {});
        // A disabled span (nobody collects traces or logs at this level) has
        // nothing to attribute: skip the registry, which is most of an idle
        // accepted connection's bookkeeping.
        let guard = (!span.is_disabled()).then(|| self.trace.register(conn.remote(), span.clone()));
        let (input, output) = streams::pair(&conn, &self.abort, guard.as_ref().map(AcceptedGuard::read_mark));
        let socket = TcpSocket {
            family: self.family,
            state: State::Connected(Connected::Virtual(conn)),
            pending: None,
            options: self.options.clone(),
            abort: self.abort.clone(),
            trace: self.trace.clone(),
            accepted: guard,
            slot,
        };
        Ok((socket, Box::new(input), Box::new(output)))
    }

    pub(crate) fn local_address(&mut self) -> SocketResult<SocketAddr> {
        match &mut self.state {
            State::Bound(binding) | State::Listening { binding, .. } => Ok(binding.addr()),
            State::Connected(Connected::Virtual(conn)) => Ok(conn.local()),
            State::Connected(Connected::Real(socket)) => {
                Ok(socket.core_mut().local_address().map_err(from_upstream)?)
            }
            _ => Err(ErrorCode::InvalidState.into()),
        }
    }

    // `&mut self`: from wasmtime 50 upstream's socket caches its peer on the
    // first ask (so the address survives a reset), which needs `&mut`.
    pub(crate) fn remote_address(&mut self) -> SocketResult<SocketAddr> {
        match &mut self.state {
            State::Connected(Connected::Virtual(conn)) => Ok(conn.remote()),
            State::Connected(Connected::Real(socket)) => {
                Ok(socket.core_mut().remote_address().map_err(from_upstream)?)
            }
            _ => Err(ErrorCode::InvalidState.into()),
        }
    }

    pub(crate) fn is_listening(&self) -> bool {
        matches!(self.state, State::Listening { .. })
    }

    pub(crate) fn address_family(&self) -> IpAddressFamily {
        self.family
    }

    pub(crate) fn set_listen_backlog_size(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        // Clamped like the kernel's somaxconn: a huge backlog would let a guest
        // queue unbounded connections (and their buffers) nobody accepts.
        let value = u32::try_from(value).unwrap_or(u32::MAX).min(MAX_BACKLOG);
        match &self.state {
            State::Unbound | State::Bound(_) => {}
            State::Listening { listener, .. } => listener.set_backlog(value as usize),
            _ => return Err(ErrorCode::InvalidState.into()),
        }
        Arc::make_mut(&mut self.options).backlog = value;
        Ok(())
    }

    /// The real socket, once connected over the real network; option
    /// accessors go there.
    fn real(&self) -> Option<&wasmtime_wasi::sockets::TcpSocket> {
        match &self.state {
            State::Connected(Connected::Real(socket)) => Some(socket.core()),
            _ => None,
        }
    }

    fn real_mut(&mut self) -> Option<&mut wasmtime_wasi::sockets::TcpSocket> {
        match &mut self.state {
            State::Connected(Connected::Real(socket)) => Some(socket.core_mut()),
            _ => None,
        }
    }

    fn check_open(&self) -> SocketResult<()> {
        match self.state {
            State::Closed => Err(ErrorCode::InvalidState.into()),
            _ => Ok(()),
        }
    }

    pub(crate) fn keep_alive_enabled(&self) -> SocketResult<bool> {
        if let Some(real) = self.real() {
            return Ok(real.keep_alive_enabled().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self.options.keep_alive.unwrap_or(false))
    }

    pub(crate) fn set_keep_alive_enabled(&mut self, value: bool) -> SocketResult<()> {
        if let Some(real) = self.real() {
            return Ok(real.set_keep_alive_enabled(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).keep_alive = Some(value);
        Ok(())
    }

    pub(crate) fn keep_alive_idle_time(&self) -> SocketResult<u64> {
        if let Some(real) = self.real() {
            return Ok(real.keep_alive_idle_time().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self
            .options
            .keep_alive_idle
            .map_or(DEFAULT_KEEP_ALIVE_IDLE, NonZeroU64::get))
    }

    pub(crate) fn set_keep_alive_idle_time(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        if let Some(real) = self.real_mut() {
            return Ok(real.set_keep_alive_idle_time(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).keep_alive_idle = NonZeroU64::new(clamp_keep_alive_time(value));
        Ok(())
    }

    pub(crate) fn keep_alive_interval(&self) -> SocketResult<u64> {
        if let Some(real) = self.real() {
            return Ok(real.keep_alive_interval().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self
            .options
            .keep_alive_interval
            .map_or(DEFAULT_KEEP_ALIVE_INTERVAL, NonZeroU64::get))
    }

    pub(crate) fn set_keep_alive_interval(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        if let Some(real) = self.real() {
            return Ok(real.set_keep_alive_interval(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).keep_alive_interval = NonZeroU64::new(clamp_keep_alive_time(value));
        Ok(())
    }

    pub(crate) fn keep_alive_count(&self) -> SocketResult<u32> {
        if let Some(real) = self.real() {
            return Ok(real.keep_alive_count().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self
            .options
            .keep_alive_count
            .map_or(DEFAULT_KEEP_ALIVE_COUNT, NonZeroU32::get))
    }

    pub(crate) fn set_keep_alive_count(&mut self, value: u32) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        if let Some(real) = self.real() {
            return Ok(real.set_keep_alive_count(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).keep_alive_count = NonZeroU32::new(value.clamp(1, i8::MAX as u32));
        Ok(())
    }

    pub(crate) fn hop_limit(&self) -> SocketResult<u8> {
        if let Some(real) = self.real() {
            return Ok(real.hop_limit().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self.options.hop_limit.unwrap_or(DEFAULT_HOP_LIMIT))
    }

    pub(crate) fn set_hop_limit(&mut self, value: u8) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        if let Some(real) = self.real_mut() {
            return Ok(real.set_hop_limit(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).hop_limit = Some(value);
        Ok(())
    }

    pub(crate) fn receive_buffer_size(&self) -> SocketResult<u64> {
        if let Some(real) = self.real() {
            return Ok(real.receive_buffer_size().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self
            .options
            .receive_buffer
            .map_or(self.options.default_buffer, NonZeroU64::get))
    }

    pub(crate) fn set_receive_buffer_size(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        if let Some(real) = self.real_mut() {
            return Ok(real.set_receive_buffer_size(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).receive_buffer = NonZeroU64::new(value);
        Ok(())
    }

    pub(crate) fn send_buffer_size(&self) -> SocketResult<u64> {
        if let Some(real) = self.real() {
            return Ok(real.send_buffer_size().map_err(from_upstream)?);
        }
        self.check_open()?;
        Ok(self
            .options
            .send_buffer
            .map_or(self.options.default_buffer, NonZeroU64::get))
    }

    pub(crate) fn set_send_buffer_size(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        if let Some(real) = self.real_mut() {
            return Ok(real.set_send_buffer_size(value).map_err(from_upstream)?);
        }
        self.check_open()?;
        Arc::make_mut(&mut self.options).send_buffer = NonZeroU64::new(value);
        Ok(())
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> SocketResult<()> {
        match &mut self.state {
            State::Connected(Connected::Virtual(conn)) => {
                if matches!(how, Shutdown::Read | Shutdown::Both) {
                    conn.rx().close_read();
                }
                if matches!(how, Shutdown::Write | Shutdown::Both) {
                    conn.tx().close_write();
                }
                Ok(())
            }
            State::Connected(Connected::Real(socket)) => Ok(socket.shutdown(how)?),
            _ => Err(ErrorCode::InvalidState.into()),
        }
    }
}

impl Connected {
    fn take_streams(&mut self, abort: &AbortFlag) -> SocketResult<(DynInputStream, DynOutputStream)> {
        match self {
            Connected::Virtual(conn) => {
                let (input, output) = streams::pair(conn, abort, None);
                Ok((Box::new(input), Box::new(output)))
            }
            Connected::Real(socket) => Ok(socket.take_streams()?),
        }
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        match &self.state {
            State::Connected(Connected::Virtual(conn)) => {
                let how = if self.abort.is_set() {
                    conn.reset();
                    "reset"
                } else {
                    conn.close();
                    "closed"
                };
                if let Some(span) = self.accepted.as_ref().map(AcceptedGuard::span) {
                    span.record("loophost.bytes_in", conn.rx().written());
                    span.record("loophost.bytes_out", conn.tx().written());
                    span.record("loophost.close", how);
                }
            }
            State::Listening { listener, .. } => listener.close(),
            _ => {}
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TcpSocket {
    async fn ready(&mut self) {
        match &mut self.state {
            State::Connecting(future) => {
                let result = future.await;
                self.state = State::ConnectDone(result);
            }
            State::Listening { listener, .. } => listener.wait_incoming().await,
            _ => {}
        }
    }
}

impl Options {
    /// What a new socket starts with; `buffer` is what the buffer sizes
    /// read as until set.
    pub(crate) fn defaults(buffer: u64) -> Self {
        Options {
            backlog: DEFAULT_BACKLOG,
            keep_alive: None,
            keep_alive_idle: None,
            keep_alive_interval: None,
            keep_alive_count: None,
            hop_limit: None,
            receive_buffer: None,
            send_buffer: None,
            default_buffer: buffer,
        }
    }

    /// Applies what the guest set before connecting to a new real socket.
    fn apply_to(&self, core: &mut wasmtime_wasi::sockets::TcpSocket) {
        // Failures here are not fatal: the OS may clamp or refuse options,
        // and the guest can read back what took effect.
        if let Some(v) = self.keep_alive {
            let _ = core.set_keep_alive_enabled(v);
        }
        if let Some(v) = self.keep_alive_idle {
            let _ = core.set_keep_alive_idle_time(v.get());
        }
        if let Some(v) = self.keep_alive_interval {
            let _ = core.set_keep_alive_interval(v.get());
        }
        if let Some(v) = self.keep_alive_count {
            let _ = core.set_keep_alive_count(v.get());
        }
        if let Some(v) = self.hop_limit {
            let _ = core.set_hop_limit(v);
        }
        if let Some(v) = self.receive_buffer {
            let _ = core.set_receive_buffer_size(v.get());
        }
        if let Some(v) = self.send_buffer {
            let _ = core.set_send_buffer_size(v.get());
        }
    }
}

fn clamp_keep_alive_time(nanos: u64) -> u64 {
    nanos.clamp(1_000_000_000, i16::MAX as u64 * 1_000_000_000)
}

/// Binds are virtual only. The virtual network has no interface but
/// loopback, so any other address is `address-not-bindable`, as an OS says
/// for an address it does not own.
pub(crate) fn check_bind_route(ctx: &SocketsCtx, usage: SocketUse, addr: SocketAddr) -> Result<(), ErrorCode> {
    match ctx.policy.route(usage, addr) {
        Route::Virtual => Ok(()),
        Route::Host | Route::Deny(_) => {
            tracing::debug!(%addr, ?usage, "bind outside the virtual loopback refused");
            if let Some(observer) = ctx.network.observer() {
                observer.denied(usage, addr, &crate::DenyReason::HostBindNotAllowed);
            }
            Err(ErrorCode::AddressNotBindable)
        }
    }
}

pub(crate) fn to_upstream_family(family: IpAddressFamily) -> wasmtime_wasi::sockets::SocketAddressFamily {
    match family {
        IpAddressFamily::Ipv4 => wasmtime_wasi::sockets::SocketAddressFamily::Ipv4,
        IpAddressFamily::Ipv6 => wasmtime_wasi::sockets::SocketAddressFamily::Ipv6,
    }
}

/// Does `ip` belong to `family`? IPv4-mapped and deprecated IPv4-compatible
/// IPv6 addresses are refused, as the WIT requires.
pub(crate) fn check_family(family: IpAddressFamily, ip: IpAddr) -> Result<(), ErrorCode> {
    let ok = match (family, ip) {
        (IpAddressFamily::Ipv4, IpAddr::V4(_)) => true,
        (IpAddressFamily::Ipv6, IpAddr::V6(v6)) => {
            let deprecated_compatible =
                matches!(v6.segments(), [0, 0, 0, 0, 0, 0, _, _]) && !v6.is_unspecified() && !v6.is_loopback();
            v6.to_ipv4_mapped().is_none() && !deprecated_compatible
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(ErrorCode::InvalidArgument) }
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

pub(crate) fn check_local_address(family: IpAddressFamily, addr: SocketAddr) -> Result<(), ErrorCode> {
    check_family(family, addr.ip())?;
    if !is_unicast(addr.ip()) {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(())
}

pub(crate) fn check_remote_address(family: IpAddressFamily, addr: SocketAddr) -> Result<(), ErrorCode> {
    check_local_address(family, addr)?;
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    Ok(())
}
