//! `VirtualNetwork`: the in-memory loopback shared by the stores of one
//! workload. It owns the TCP and UDP port tables (per address family), the
//! listen queues, and creates connections as pairs of [`Pipe`]s.
//!
//! Data path: a client's `connect` looks up the listener here, creates two
//! pipes and queues the server's end in the listener's backlog; the server's
//! `accept` pops it. Nothing touches the kernel.

use crate::lookup::{Resolver, SystemResolver};
use crate::names::{NameAnswer, NameTable};
use crate::pipe::{BufferBudget, Pipe};
use crate::udp::Datagram;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

use crate::bindings::network::ErrorCode;

/// Tunables of a [`VirtualNetwork`].
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Bytes one direction of a connection may hold before the writer waits.
    /// Host memory per connection is at most twice this.
    pub connection_buffer: usize,
    /// Ports handed out for binds to port 0 and for implicit client binds.
    pub ephemeral_ports: RangeInclusive<u16>,
    /// Connections open at once on this network; connects beyond it are
    /// refused. Each holds up to two `connection_buffer`s.
    pub max_connections: usize,
    /// Bytes all connections of this network may hold together; once
    /// reached, writers wait (as for a full connection) until someone reads.
    /// This bounds the memory a workload's guests can make the host hold.
    pub max_buffered_bytes: usize,
    /// Sockets (TCP and UDP, accepted connections included) one store may
    /// hold at once; more get `new-socket-limit`. Every bound port belongs
    /// to a socket, so this also caps the ports a store holds.
    pub max_sockets_per_store: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            // Measured with 64 KiB writes on a 2 MiB-L2 machine: 1 MiB lets
            // writer and reader run four times longer between handoffs than
            // 256 KiB (bulk +8-12 %) while both stay in cache; 2 MiB no
            // longer fits and is slower than 256 KiB. Linux autotunes its
            // socket buffers up to 4 MiB (send) and 6 MiB (receive).
            connection_buffer: 1024 * 1024,
            ephemeral_ports: 49152..=65535,
            max_connections: 16_384,
            max_buffered_bytes: 512 * 1024 * 1024,
            max_sockets_per_store: 4096,
        }
    }
}

/// A snapshot of a network's resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Bytes queued in all connection buffers right now.
    pub buffered_bytes: usize,
    /// Connections with at least one end still open.
    pub open_connections: usize,
    /// TCP sockets listening.
    pub listeners: usize,
    /// Bound TCP and UDP ports (listeners, bound sockets and client ports).
    pub bound_ports: usize,
}

/// Who may bind a reserved port: give it to the stores of one service with
/// [`SocketsCtx::with_port_owner`](crate::SocketsCtx::with_port_owner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortOwner(u64);

/// A private loopback network: `127.0.0.0/8` and `::1`, in memory.
///
/// Create one per workload (it is cheap) and give every store of that
/// workload a [`SocketsCtx`](crate::SocketsCtx) on it. Cloning shares the network.
#[derive(Clone)]
pub struct VirtualNetwork {
    inner: Arc<Inner>,
}

impl Default for VirtualNetwork {
    fn default() -> Self {
        Self::new()
    }
}

struct Inner {
    config: NetworkConfig,
    observer: Option<Arc<dyn NetworkObserver>>,
    tables: Mutex<Tables>,
    budget: Arc<BufferBudget>,
    open_connections: Arc<AtomicUsize>,
    /// Woken whenever a socket starts listening.
    listener_added: Notify,
    /// Names this network answers itself (see [`crate::NameAnswer`]).
    names: RwLock<NameTable>,
    /// Resolves the names the policy lets out (`None`: the OS resolver).
    resolver: RwLock<Option<Arc<dyn Resolver>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

#[derive(Default)]
struct Tables {
    /// (protocol, is_ipv6, port) -> bindings on that port.
    ports: HashMap<(Protocol, bool, u16), Vec<Binding>>,
    /// TCP addresses someone will listen on soon, and how long a connect
    /// to them waits for that listener before it is refused.
    expected: HashMap<SocketAddr, Duration>,
    /// TCP ports only their owner may bind (a service's declared ports).
    reserved: HashMap<u16, PortOwner>,
    next_owner: u64,
    next_id: u64,
    /// Free ephemeral ports per (protocol, is_ipv6): binds to port 0 take
    /// one in O(1), however many ports are in use.
    ephemeral: HashMap<(Protocol, bool), FreePorts>,
    /// Bindings, and those listening: kept as counts so stats are O(1).
    bound: usize,
    listening: usize,
}

/// Ports waiting to be handed out, oldest released first (so a port is not
/// reused at once), each listed at most once.
struct FreePorts {
    queue: VecDeque<u16>,
    /// One bit a port: is it in `queue`?
    listed: Vec<u64>,
}

impl FreePorts {
    fn new(range: &RangeInclusive<u16>) -> Self {
        let mut free = FreePorts {
            queue: VecDeque::new(),
            listed: vec![0; 1024],
        };
        for port in range.clone() {
            free.push(port);
        }
        free
    }

    fn bit(port: u16) -> (usize, u64) {
        (usize::from(port) / 64, 1 << (port % 64))
    }

    fn pop(&mut self) -> Option<u16> {
        let port = self.queue.pop_front()?;
        let (word, bit) = Self::bit(port);
        self.listed[word] &= !bit;
        Some(port)
    }

    fn push(&mut self, port: u16) {
        let (word, bit) = Self::bit(port);
        if self.listed[word] & bit == 0 {
            self.listed[word] |= bit;
            self.queue.push_back(port);
        }
    }
}

struct Binding {
    id: u64,
    ip: IpAddr,
    role: Role,
}

enum Role {
    Reserved,
    Listening(Arc<Listener>),
    Udp(Arc<UdpEndpoint>),
}

impl VirtualNetwork {
    /// A new, empty network with default tunables.
    pub fn new() -> Self {
        Self::with_config(NetworkConfig::default())
    }

    /// A new, empty network.
    pub fn with_config(config: NetworkConfig) -> Self {
        Self::build(config, None)
    }

    /// A new, empty network whose events are reported to `observer`
    /// (e.g. to turn them into metrics).
    pub fn with_observer(config: NetworkConfig, observer: Arc<dyn NetworkObserver>) -> Self {
        Self::build(config, Some(observer))
    }

    fn build(config: NetworkConfig, observer: Option<Arc<dyn NetworkObserver>>) -> Self {
        VirtualNetwork {
            inner: Arc::new(Inner {
                budget: BufferBudget::new(config.max_buffered_bytes),
                config,
                observer,
                tables: Mutex::default(),
                open_connections: Arc::default(),
                listener_added: Notify::new(),
                names: RwLock::default(),
                resolver: RwLock::default(),
            }),
        }
    }

    /// The observer given at creation, for embedders that refuse or route
    /// traffic outside the socket interfaces (e.g. outgoing wasi:http) and
    /// report it the same way.
    pub fn observer(&self) -> Option<&dyn NetworkObserver> {
        self.inner.observer.as_deref()
    }

    /// The tunables this network was created with.
    pub fn config(&self) -> &NetworkConfig {
        &self.inner.config
    }

    /// Current resource use.
    pub fn stats(&self) -> NetworkStats {
        let tables = self.tables();
        let mut stats = NetworkStats {
            buffered_bytes: self.inner.budget.used(),
            open_connections: self.inner.open_connections.load(Ordering::Relaxed),
            ..NetworkStats::default()
        };
        stats.bound_ports = tables.bound;
        stats.listeners = tables.listening;
        stats
    }

    /// Is something listening on this TCP address? (Used by embedders to
    /// tell when a service is ready.)
    pub fn is_listening(&self, addr: SocketAddr) -> bool {
        self.find_listener(addr).is_some()
    }

    /// Waits until something listens on every address in `addrs`.
    pub async fn wait_listening(&self, addrs: &[SocketAddr]) {
        loop {
            let added = self.inner.listener_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if addrs.iter().all(|addr| self.is_listening(*addr)) {
                return;
            }
            added.await;
        }
    }

    /// Makes `name` resolve to `addrs` for every store on this network
    /// (`ip-name-lookup`, and embedders that call [`VirtualNetwork::lookup_name`]),
    /// without the OS resolver. Replaces an earlier entry of the same name.
    pub fn add_name(&self, name: &str, addrs: Vec<IpAddr>) {
        self.names_mut().insert(name, addrs);
    }

    /// Forgets a name added with [`VirtualNetwork::add_name`].
    pub fn remove_name(&self, name: &str) {
        self.names_mut().remove(name);
    }

    /// Names under `domain` (e.g. `loophost.internal`) are answered only by
    /// this network's names: one it lacks does not exist, even where the
    /// policy lets other names reach the OS resolver.
    pub fn add_private_domain(&self, domain: &str) {
        self.names_mut().add_private_domain(domain);
    }

    /// What this network's names say about `name`.
    pub fn lookup_name(&self, name: &str) -> NameAnswer {
        self.inner.names.read().unwrap_or_else(|e| e.into_inner()).lookup(name)
    }

    /// Resolves real names (those the policy lets out) with `resolver`
    /// instead of the OS resolver, for `ip-name-lookup` and for embedders
    /// that call [`VirtualNetwork::resolve_real`].
    pub fn set_resolver(&self, resolver: Arc<dyn Resolver>) {
        *self.inner.resolver.write().unwrap_or_else(|e| e.into_inner()) = Some(resolver);
    }

    /// Resolves `name` with this network's resolver: one query, its
    /// addresses in canonical form (IPv4-mapped IPv6 as IPv4), without
    /// duplicates, in the resolver's order. The caller checks the policy.
    pub fn resolve_real(&self, name: &str) -> impl Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static {
        let resolver = self.inner.resolver.read().unwrap_or_else(|e| e.into_inner()).clone();
        let query = match resolver {
            Some(resolver) => resolver.resolve(name),
            None => SystemResolver.resolve(name),
        };
        async move {
            let mut out: Vec<IpAddr> = Vec::new();
            for ip in query.await? {
                let ip = ip.to_canonical();
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
            Ok(out)
        }
    }

    fn names_mut(&self) -> std::sync::RwLockWriteGuard<'_, NameTable> {
        self.inner.names.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares that something will listen on `addr` (the unspecified
    /// address covers every loopback address of its family): until it does,
    /// connects to it wait up to `wait` instead of failing at once with
    /// `connection-refused`. Used for services that are still starting or
    /// restarting.
    pub fn expect_listener(&self, addr: SocketAddr, wait: Duration) {
        self.tables().expected.insert(addr, wait);
    }

    /// A new identity that ports can be reserved for.
    pub fn new_port_owner(&self) -> PortOwner {
        let mut tables = self.tables();
        tables.next_owner += 1;
        PortOwner(tables.next_owner)
    }

    /// Reserves TCP `port` (every loopback address, both families) for
    /// `owner`: other stores get `address-in-use` when they bind it, even
    /// while the owner is not running (a service backing off keeps its
    /// ports). Ephemeral ports never land on a reserved port.
    pub fn reserve_port(&self, port: u16, owner: PortOwner) {
        self.tables().reserved.insert(port, owner);
    }

    /// How long a connect to `addr` may wait for a listener.
    fn expected_wait(&self, addr: SocketAddr) -> Option<Duration> {
        let tables = self.tables();
        let wildcard = SocketAddr::new(unspecified_like(addr.ip()), addr.port());
        tables
            .expected
            .get(&addr)
            .or_else(|| tables.expected.get(&wildcard))
            .copied()
    }

    /// Finds the listener for `remote`, waiting for an expected one.
    async fn listener_for(&self, remote: SocketAddr) -> Option<Arc<Listener>> {
        let wait = self.expected_wait(remote)?;
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(wait).unwrap_or(now + Duration::from_secs(86_400));
        loop {
            let added = self.inner.listener_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(listener) = self.find_listener(remote) {
                return Some(listener);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return self.find_listener(remote);
            }
        }
    }

    /// Opens a connection from the host itself (e.g. a published port or an
    /// outgoing HTTP request) to a virtual listener.
    pub async fn connect(&self, remote: SocketAddr) -> Result<crate::VirtualTcpStream, ErrorCode> {
        let local = self.bind(Protocol::Tcp, SocketAddr::new(loopback_for(remote.ip()), 0), None)?;
        let span = tracing::info_span!("virtual connect", "otel.kind" = "client", "server.port" = remote.port(),
            "server.address" = %remote.ip(), "loophost.from" = "host");
        let conn = self.open(local, remote, span).await?;
        Ok(crate::VirtualTcpStream::new(conn))
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.inner.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `addr` (port 0: an ephemeral port) for a store acting as `owner`.
    pub(crate) fn bind(
        &self,
        proto: Protocol,
        addr: SocketAddr,
        owner: Option<PortOwner>,
    ) -> Result<PortBinding, ErrorCode> {
        let ip = addr.ip();
        let v6 = ip.is_ipv6();
        let mut tables = self.tables();
        let port = if addr.port() == 0 {
            self.ephemeral_port(&mut tables, proto, v6)?
        } else {
            if proto == Protocol::Tcp
                && let Some(reserved_for) = tables.reserved.get(&addr.port())
                && Some(*reserved_for) != owner
            {
                return Err(ErrorCode::AddressInUse);
            }
            let taken = tables
                .ports
                .get(&(proto, v6, addr.port()))
                .is_some_and(|list| list.iter().any(|b| overlaps(b.ip, ip)));
            if taken {
                return Err(ErrorCode::AddressInUse);
            }
            addr.port()
        };
        tables.next_id += 1;
        tables.bound += 1;
        let id = tables.next_id;
        // Most ports hold one binding: no room for four.
        tables
            .ports
            .entry((proto, v6, port))
            .or_insert_with(|| Vec::with_capacity(1))
            .push(Binding {
                id,
                ip,
                role: Role::Reserved,
            });
        Ok(PortBinding {
            network: self.clone(),
            proto,
            addr: SocketAddr::new(ip, port),
            id,
        })
    }

    fn ephemeral_port(&self, tables: &mut Tables, proto: Protocol, v6: bool) -> Result<u16, ErrorCode> {
        let range = &self.inner.config.ephemeral_ports;
        let Tables {
            ports,
            reserved,
            ephemeral,
            ..
        } = tables;
        let free = ephemeral.entry((proto, v6)).or_insert_with(|| FreePorts::new(range));
        // A listed port may have been taken by an explicit bind since it was
        // freed: skip it (its release lists it again).
        while let Some(port) = free.pop() {
            let is_reserved = proto == Protocol::Tcp && reserved.contains_key(&port);
            if !is_reserved && ports.get(&(proto, v6, port)).is_none_or(|l| l.is_empty()) {
                return Ok(port);
            }
        }
        Err(ErrorCode::AddressInUse)
    }

    fn set_role(&self, binding: &PortBinding, role: Role) {
        let mut tables = self.tables();
        let key = (binding.proto, binding.addr.is_ipv6(), binding.addr.port());
        let listening = matches!(role, Role::Listening(_));
        let mut became_listener = false;
        if let Some(b) = tables
            .ports
            .get_mut(&key)
            .and_then(|l| l.iter_mut().find(|b| b.id == binding.id))
        {
            became_listener = listening && !matches!(b.role, Role::Listening(_));
            b.role = role;
        }
        if became_listener {
            tables.listening += 1;
        }
    }

    fn release(&self, binding: &PortBinding) {
        let mut tables = self.tables();
        let (proto, v6, port) = (binding.proto, binding.addr.is_ipv6(), binding.addr.port());
        let Some(list) = tables.ports.get_mut(&(proto, v6, port)) else {
            return;
        };
        let Some(i) = list.iter().position(|b| b.id == binding.id) else {
            return;
        };
        let gone = list.swap_remove(i);
        let now_free = list.is_empty();
        if now_free {
            tables.ports.remove(&(proto, v6, port));
        }
        tables.bound -= 1;
        if matches!(gone.role, Role::Listening(_)) {
            tables.listening -= 1;
        }
        if now_free
            && self.inner.config.ephemeral_ports.contains(&port)
            && let Some(free) = tables.ephemeral.get_mut(&(proto, v6))
        {
            free.push(port);
        }
        // The binding's listener may hold queued connections whose drop
        // releases their client ports: never drop it under the lock.
        drop(tables);
        drop(gone);
    }

    fn find_listener(&self, addr: SocketAddr) -> Option<Arc<Listener>> {
        let tables = self.tables();
        let list = tables.ports.get(&(Protocol::Tcp, addr.is_ipv6(), addr.port()))?;
        // A specific address wins over the wildcard, as in the kernel.
        let mut wildcard = None;
        for b in list {
            if let Role::Listening(l) = &b.role {
                if b.ip == addr.ip() {
                    return Some(l.clone());
                }
                if b.ip.is_unspecified() {
                    wildcard = Some(l.clone());
                }
            }
        }
        wildcard
    }

    pub(crate) fn find_udp(&self, addr: SocketAddr) -> Option<Arc<UdpEndpoint>> {
        let tables = self.tables();
        let list = tables.ports.get(&(Protocol::Udp, addr.is_ipv6(), addr.port()))?;
        list.iter().find_map(|b| match &b.role {
            Role::Udp(e) if b.ip == addr.ip() || b.ip.is_unspecified() => Some(e.clone()),
            _ => None,
        })
    }

    /// Opens a connection from `local` to the listener at `remote`. Waits
    /// while the listener's backlog is full; fails with `connection-refused`
    /// when nothing listens or the listener closes meanwhile.
    /// Opens a connection from `local` to the listener at `remote`. Waits
    /// while the listener's backlog is full, or (bounded) for an expected
    /// listener; fails with `connection-refused` when nothing listens or the
    /// listener closes meanwhile. `origin` is the connecting side's span: the
    /// accepting side's connection span becomes its child.
    pub(crate) async fn open(
        &self,
        local: PortBinding,
        remote: SocketAddr,
        origin: tracing::Span,
    ) -> Result<Connection, ErrorCode> {
        let listener = match self.find_listener(remote) {
            Some(listener) => listener,
            None => {
                let started = tokio::time::Instant::now();
                let found = self.listener_for(remote).await;
                if let (Some(observer), Some(_)) = (self.observer(), self.expected_wait(remote)) {
                    observer.connect_waited(remote, started.elapsed());
                }
                match found {
                    Some(listener) => listener,
                    None => {
                        if let Some(observer) = self.observer() {
                            observer.connection_refused(remote);
                        }
                        return Err(ErrorCode::ConnectionRefused);
                    }
                }
            }
        };
        // Checked and taken in one step: two connects racing for the last
        // place cannot both get it. `ConnectionShared`'s drop gives it back.
        let limit = self.inner.config.max_connections;
        let taken = self
            .inner
            .open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        if taken.is_err() {
            tracing::warn!(%remote, limit = self.inner.config.max_connections, "virtual connection limit reached");
            if let Some(observer) = self.observer() {
                observer.connection_refused(remote);
            }
            return Err(ErrorCode::ConnectionRefused);
        }
        let capacity = self.inner.config.connection_buffer;
        // A client bound to the wildcard talks from a concrete loopback address.
        let client = if local.addr.ip().is_unspecified() {
            SocketAddr::new(loopback_for(remote.ip()), local.addr.port())
        } else {
            local.addr
        };
        let shared = Arc::new(ConnectionShared {
            listener: remote,
            client,
            to_server: Pipe::new(capacity, self.inner.budget.clone()),
            to_client: Pipe::new(capacity, self.inner.budget.clone()),
            origin: (!origin.is_disabled()).then(|| Box::new(origin)),
            opened: AtomicBool::new(false),
            client_port: local,
        });
        let mut server_end = Some(Connection {
            shared: shared.clone(),
            side: Side::Server,
        });
        loop {
            let space = listener.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match listener.offer(&mut server_end) {
                Offer::Queued => break,
                Offer::Full => {}
                Offer::Closed => return Err(ErrorCode::ConnectionRefused),
            }
            space.await;
        }
        shared.opened.store(true, Ordering::Relaxed);
        if let Some(observer) = self.observer() {
            observer.connection_opened(remote);
        }
        Ok(Connection {
            shared,
            side: Side::Client,
        })
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// The loopback address of `ip`'s family: where implicit binds land.
pub(crate) fn loopback_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

/// Two bindings on the same port conflict when their addresses are equal or
/// either is the wildcard.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// A reserved port; released when dropped.
pub(crate) struct PortBinding {
    network: VirtualNetwork,
    proto: Protocol,
    addr: SocketAddr,
    id: u64,
}

impl PortBinding {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn network(&self) -> &VirtualNetwork {
        &self.network
    }

    /// Turns a TCP binding into a listener.
    pub(crate) fn listen(&self, backlog: usize) -> Arc<Listener> {
        let listener = Arc::new(Listener {
            queue: Mutex::new(ListenQueue {
                pending: VecDeque::new(),
                backlog,
                closed: false,
            }),
            incoming: Notify::new(),
            space: Notify::new(),
        });
        self.network.set_role(self, Role::Listening(listener.clone()));
        self.network.inner.listener_added.notify_waiters();
        listener
    }

    /// Turns a UDP binding into a datagram endpoint.
    /// Makes this binding a UDP socket's, holding at most `receive_buffer`
    /// bytes of datagrams (see [`UdpEndpoint::deliver`]).
    pub(crate) fn open_udp(&self, receive_buffer: usize) -> Arc<UdpEndpoint> {
        let endpoint = Arc::new(UdpEndpoint {
            queue: Mutex::new(UdpQueue {
                datagrams: VecDeque::new(),
                cost: 0,
                capacity: receive_buffer,
            }),
            budget: self.network.inner.budget.clone(),
            incoming: Notify::new(),
            refused: AtomicBool::new(false),
        });
        self.network.set_role(self, Role::Udp(endpoint.clone()));
        endpoint
    }
}

impl Drop for PortBinding {
    fn drop(&mut self) {
        self.network.release(self);
    }
}

enum Offer {
    Queued,
    Full,
    Closed,
}

/// The accept queue of a listening socket.
pub(crate) struct Listener {
    queue: Mutex<ListenQueue>,
    incoming: Notify,
    space: Notify,
}

struct ListenQueue {
    pending: VecDeque<Connection>,
    backlog: usize,
    closed: bool,
}

impl Listener {
    fn lock(&self) -> MutexGuard<'_, ListenQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the server-side end held in `end` (taking it) unless the
    /// backlog is full.
    fn offer(&self, end: &mut Option<Connection>) -> Offer {
        let mut q = self.lock();
        if q.closed {
            drop(q);
            if let Some(end) = end.take() {
                end.reset();
            }
            return Offer::Closed;
        }
        if q.pending.len() >= q.backlog {
            return Offer::Full;
        }
        q.pending.extend(end.take());
        drop(q);
        self.incoming.notify_waiters();
        Offer::Queued
    }

    pub(crate) fn try_accept(&self) -> Option<Connection> {
        let conn = self.lock().pending.pop_front();
        if conn.is_some() {
            self.space.notify_waiters();
        }
        conn
    }

    pub(crate) async fn wait_incoming(&self) {
        loop {
            let incoming = self.incoming.notified();
            tokio::pin!(incoming);
            incoming.as_mut().enable();
            {
                let q = self.lock();
                if !q.pending.is_empty() || q.closed {
                    return;
                }
            }
            incoming.await;
        }
    }

    pub(crate) fn set_backlog(&self, backlog: usize) {
        self.lock().backlog = backlog;
        self.space.notify_waiters();
    }

    /// Stops accepting; connections still queued are reset.
    pub(crate) fn close(&self) {
        let pending = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.pending)
        };
        for conn in pending {
            conn.reset();
        }
        self.space.notify_waiters();
        self.incoming.notify_waiters();
    }
}

const _: () = assert!(std::mem::size_of::<Connection>() <= 16);

/// One end of a virtual TCP connection. Everything lives in the
/// [`ConnectionShared`] both ends point to (one allocation per connection,
/// not one per pipe and end): an idle connection is mostly this.
pub(crate) struct Connection {
    shared: Arc<ConnectionShared>,
    side: Side,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Connection {
    /// Bytes the peer sends us.
    pub(crate) fn rx(&self) -> &Pipe {
        match self.side {
            Side::Client => &self.shared.to_client,
            Side::Server => &self.shared.to_server,
        }
    }

    /// Bytes we send the peer.
    pub(crate) fn tx(&self) -> &Pipe {
        match self.side {
            Side::Client => &self.shared.to_server,
            Side::Server => &self.shared.to_client,
        }
    }

    pub(crate) fn local(&self) -> SocketAddr {
        match self.side {
            Side::Client => self.shared.client,
            Side::Server => self.shared.listener,
        }
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        match self.side {
            Side::Client => self.shared.listener,
            Side::Server => self.shared.client,
        }
    }

    /// The connecting side's span.
    pub(crate) fn origin(&self) -> tracing::Span {
        self.shared
            .origin
            .as_deref()
            .cloned()
            .unwrap_or_else(tracing::Span::none)
    }

    /// Orderly close: FIN to the peer; the peer's further writes fail.
    pub(crate) fn close(&self) {
        self.tx().close_write();
        self.rx().reset();
    }

    /// Abortive close: both directions fail with `connection-reset`.
    pub(crate) fn reset(&self) {
        self.tx().reset();
        self.rx().reset();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // An end nobody closed explicitly (e.g. a finished connect that was
        // never collected) still closes cleanly; after a reset this is a no-op.
        self.close();
    }
}

/// State shared by both ends of a connection; when the last end goes,
/// the connection is counted closed and reported.
pub(crate) struct ConnectionShared {
    /// The listener's address (the service side).
    listener: SocketAddr,
    /// The client's address.
    client: SocketAddr,
    to_server: Pipe,
    to_client: Pipe,
    /// The connecting side's span, unless disabled (boxed: 8 bytes, not
    /// 40, on every idle connection when nobody collects spans).
    origin: Option<Box<tracing::Span>>,
    /// Set once the connection reached the listener's queue (and was
    /// reported opened), so only those are reported closed.
    opened: AtomicBool,
    /// The client's ephemeral port, held until both ends are gone (the
    /// port is not reused while the server still holds the connection, as
    /// with TIME_WAIT); also the way to the network.
    client_port: PortBinding,
}

impl Drop for ConnectionShared {
    fn drop(&mut self) {
        let network = self.client_port.network();
        network.inner.open_connections.fetch_sub(1, Ordering::Relaxed);
        if let Some(observer) = network.observer()
            && self.opened.load(Ordering::Relaxed)
        {
            observer.connection_closed(self.listener, self.to_server.written(), self.to_client.written());
        }
    }
}

/// Hooks for an embedder that wants to count what happens on a network
/// (the host turns these into metrics). All methods default to nothing.
pub trait NetworkObserver: Send + Sync {
    /// A connection to the listener at `listener` was established.
    fn connection_opened(&self, listener: SocketAddr) {
        let _ = listener;
    }
    /// A connect to `remote` found no listener.
    fn connection_refused(&self, remote: SocketAddr) {
        let _ = remote;
    }
    /// A connection to `listener` closed; bytes sent to and from the listener.
    fn connection_closed(&self, listener: SocketAddr, to_listener: u64, from_listener: u64) {
        let _ = (listener, to_listener, from_listener);
    }
    /// A connect to a declared-but-not-yet-listening address waited this long.
    fn connect_waited(&self, remote: SocketAddr, waited: Duration) {
        let _ = (remote, waited);
    }
    /// The policy refused an operation.
    fn denied(&self, usage: crate::SocketUse, addr: SocketAddr, reason: &crate::DenyReason) {
        let _ = (usage, addr, reason);
    }
}

/// What one queued datagram costs beyond its payload (as a kernel counts
/// its buffer overhead), so a flood of empty datagrams is bounded too.
const DATAGRAM_OVERHEAD: usize = 256;

/// The receive queue of a bound virtual UDP socket.
pub(crate) struct UdpEndpoint {
    queue: Mutex<UdpQueue>,
    /// The network-wide cap, shared with TCP connections.
    budget: Arc<BufferBudget>,
    incoming: Notify,
    /// A datagram this socket sent found no receiver (see `report_refused`).
    refused: AtomicBool,
}

struct UdpQueue {
    datagrams: VecDeque<Datagram>,
    /// Payload plus overhead of what is queued.
    cost: usize,
    /// The socket's receive buffer size.
    capacity: usize,
}

fn cost_of(datagram: &Datagram) -> usize {
    datagram.data.len() + DATAGRAM_OVERHEAD
}

impl UdpEndpoint {
    fn lock(&self) -> MutexGuard<'_, UdpQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a datagram; drops it, as UDP does, when the socket's receive
    /// buffer or the network's budget has no room for it.
    pub(crate) fn deliver(&self, datagram: Datagram) {
        let cost = cost_of(&datagram);
        let mut q = self.lock();
        if q.cost + cost > q.capacity || cost > self.budget.space() {
            return;
        }
        q.cost += cost;
        q.datagrams.push_back(datagram);
        self.budget.take(cost);
        drop(q);
        self.incoming.notify_waiters();
    }

    /// A new receive buffer size (`set-receive-buffer-size` after bind).
    pub(crate) fn set_capacity(&self, bytes: usize) {
        self.lock().capacity = bytes;
    }

    /// Takes up to `max` datagrams that pass `accept`; others are discarded.
    pub(crate) fn receive(&self, max: usize, accept: impl Fn(&Datagram) -> bool) -> Vec<Datagram> {
        let mut q = self.lock();
        let mut out = Vec::new();
        let mut freed = 0;
        while out.len() < max {
            let Some(d) = q.datagrams.pop_front() else { break };
            freed += cost_of(&d);
            if accept(&d) {
                out.push(d);
            }
        }
        q.cost -= freed;
        drop(q);
        self.budget.release(freed);
        out
    }

    /// Records that a datagram sent from here had no receiver.
    pub(crate) fn report_refused(&self) {
        self.refused.store(true, Ordering::Release);
        self.incoming.notify_waiters();
    }

    /// Takes the pending "refused" report, if any.
    pub(crate) fn take_refused(&self) -> bool {
        self.refused.swap(false, Ordering::AcqRel)
    }

    pub(crate) async fn wait_incoming(&self) {
        loop {
            let incoming = self.incoming.notified();
            tokio::pin!(incoming);
            incoming.as_mut().enable();
            if !self.lock().datagrams.is_empty() || self.refused.load(Ordering::Acquire) {
                return;
            }
            incoming.await;
        }
    }
}

impl Drop for UdpEndpoint {
    fn drop(&mut self) {
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget.release(q.cost);
    }
}

/// Per-store flag: set when the store died abnormally, so the drops that
/// follow reset connections instead of closing them cleanly.
#[derive(Clone, Default)]
pub(crate) struct AbortFlag(Arc<AtomicBool>);

impl AbortFlag {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_and_the_slot_comes_back() {
        let net = VirtualNetwork::with_config(NetworkConfig {
            max_connections: 2,
            ..NetworkConfig::default()
        });
        let binding = net.bind(Protocol::Tcp, addr("127.0.0.1:9000"), None).expect("bind");
        let _listener = binding.listen(16);
        let first = net.connect(addr("127.0.0.1:9000")).await.expect("first");
        let _second = net.connect(addr("127.0.0.1:9000")).await.expect("second");
        assert_eq!(
            net.connect(addr("127.0.0.1:9000")).await.err(),
            Some(ErrorCode::ConnectionRefused)
        );
        drop(first);
        // The first connection's server end is still queued: accept and drop it.
        drop(_listener.try_accept());
        assert_eq!(net.stats().open_connections, 1);
        net.connect(addr("127.0.0.1:9000")).await.expect("a slot is free again");
    }

    #[test]
    fn ephemeral_ports_run_out_cleanly_and_come_back() {
        let net = VirtualNetwork::with_config(NetworkConfig {
            ephemeral_ports: 60000..=60009,
            ..NetworkConfig::default()
        });
        // An explicit bind inside the range is skipped, never handed out twice.
        let explicit = net
            .bind(Protocol::Tcp, addr("127.0.0.1:60003"), None)
            .expect("explicit");
        let taken: Vec<_> = (0..9)
            .map(|_| net.bind(Protocol::Tcp, addr("127.0.0.1:0"), None).expect("ephemeral"))
            .collect();
        let mut ports: Vec<u16> = taken.iter().map(|b| b.addr().port()).collect();
        ports.sort();
        assert!(!ports.contains(&60003));
        ports.dedup();
        assert_eq!(ports.len(), 9);
        assert_eq!(
            net.bind(Protocol::Tcp, addr("127.0.0.1:0"), None).err(),
            Some(ErrorCode::AddressInUse)
        );
        assert_eq!(net.stats().bound_ports, 10);
        drop(explicit);
        assert_eq!(
            net.bind(Protocol::Tcp, addr("127.0.0.1:0"), None)
                .expect("freed")
                .addr()
                .port(),
            60003
        );
        drop(taken);
        assert_eq!(net.stats().bound_ports, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_connects_never_exceed_the_connection_cap() {
        for _ in 0..50 {
            let net = VirtualNetwork::with_config(NetworkConfig {
                max_connections: 4,
                ..NetworkConfig::default()
            });
            let binding = net.bind(Protocol::Tcp, addr("127.0.0.1:9100"), None).expect("bind");
            let _listener = binding.listen(256);
            let start = Arc::new(tokio::sync::Barrier::new(32));
            let racers: Vec<_> = (0..32)
                .map(|_| {
                    let (net, start) = (net.clone(), start.clone());
                    tokio::spawn(async move {
                        start.wait().await;
                        net.connect(addr("127.0.0.1:9100")).await.ok()
                    })
                })
                .collect();
            let mut open = Vec::new();
            for racer in racers {
                if let Some(conn) = racer.await.expect("join") {
                    open.push(conn);
                }
            }
            assert_eq!(open.len(), 4, "exactly the cap's worth of connects win");
            assert_eq!(net.stats().open_connections, 4);
        }
    }

    #[tokio::test]
    async fn ports_conflict_with_the_wildcard_and_are_released() {
        let net = VirtualNetwork::new();
        let wildcard = net.bind(Protocol::Tcp, addr("0.0.0.0:8080"), None).expect("bind");
        assert_eq!(
            net.bind(Protocol::Tcp, addr("127.0.0.1:8080"), None).err(),
            Some(ErrorCode::AddressInUse)
        );
        // Other family, other protocol: separate namespaces.
        let _v6 = net.bind(Protocol::Tcp, addr("[::1]:8080"), None).expect("v6");
        let _udp = net.bind(Protocol::Udp, addr("127.0.0.1:8080"), None).expect("udp");
        drop(wildcard);
        net.bind(Protocol::Tcp, addr("127.0.0.1:8080"), None).expect("released");
    }
}
