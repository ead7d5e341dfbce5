//! Address helpers and bounded-time wrappers around the non-blocking
//! wasi:sockets calls. Every wait has a deadline so a misbehaving host turns
//! into a FAIL line instead of a hung guest.
//!
//! Resource discipline (hosts may trap otherwise): child resources (streams,
//! pollables) are always dropped before the socket that produced them, UDP
//! streams are dropped before `stream` is called again, `send` is always
//! preceded by `check-send`, and `write` never exceeds `check-write`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{self, Pollable};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network;
use wasip2::sockets::ip_name_lookup;
use wasip2::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, Network,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::udp::{
    IncomingDatagram, IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream, UdpSocket,
};
use wasip2::sockets::{tcp_create_socket, udp_create_socket};

use crate::cx::{R, must};

/// Upper bound for a single socket operation (upstream uses 1 s).
pub const TIMEOUT_NS: u64 = 2_000_000_000;
/// Upper bound for bulk transfers.
pub const TRANSFER_TIMEOUT_NS: u64 = 20_000_000_000;
pub const SECOND: u64 = 1_000_000_000;

pub const FAMILIES: [IpAddressFamily; 2] = [IpAddressFamily::Ipv4, IpAddressFamily::Ipv6];

pub const LO4: IpAddress = IpAddress::Ipv4((127, 0, 0, 1));
pub const LO6: IpAddress = IpAddress::Ipv6((0, 0, 0, 0, 0, 0, 0, 1));
pub const ANY4: IpAddress = IpAddress::Ipv4((0, 0, 0, 0));
pub const ANY6: IpAddress = IpAddress::Ipv6((0, 0, 0, 0, 0, 0, 0, 0));
pub const MAPPED_LO: IpAddress = IpAddress::Ipv6((0, 0, 0, 0, 0, 0xffff, 0x7f00, 0x0001));
pub const BCAST4: IpAddress = IpAddress::Ipv4((255, 255, 255, 255));
pub const MCAST4: IpAddress = IpAddress::Ipv4((224, 254, 0, 0));
pub const MCAST6: IpAddress = IpAddress::Ipv6((0xff00, 0, 0, 0, 0, 0, 0, 0));
/// TEST-NET-1 / documentation prefixes: never configured on a machine.
pub const DOC4: IpAddress = IpAddress::Ipv4((192, 0, 2, 0));
pub const DOC6: IpAddress = IpAddress::Ipv6((0x2001, 0x0db8, 0, 0, 0, 0, 0, 0));

pub fn fam(f: IpAddressFamily) -> &'static str {
    match f {
        IpAddressFamily::Ipv4 => "ipv4",
        IpAddressFamily::Ipv6 => "ipv6",
    }
}

pub fn loopback(f: IpAddressFamily) -> IpAddress {
    match f {
        IpAddressFamily::Ipv4 => LO4,
        IpAddressFamily::Ipv6 => LO6,
    }
}

pub fn unspecified(f: IpAddressFamily) -> IpAddress {
    match f {
        IpAddressFamily::Ipv4 => ANY4,
        IpAddressFamily::Ipv6 => ANY6,
    }
}

/// The loopback address of the *other* family.
pub fn wrong_loopback(f: IpAddressFamily) -> IpAddress {
    match f {
        IpAddressFamily::Ipv4 => LO6,
        IpAddressFamily::Ipv6 => LO4,
    }
}

pub fn sa(ip: IpAddress, port: u16) -> IpSocketAddress {
    match ip {
        IpAddress::Ipv4(address) => IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
        IpAddress::Ipv6(address) => IpSocketAddress::Ipv6(Ipv6SocketAddress {
            port,
            address,
            flow_info: 0,
            scope_id: 0,
        }),
    }
}

pub fn ip_of(a: &IpSocketAddress) -> IpAddress {
    match a {
        IpSocketAddress::Ipv4(a) => IpAddress::Ipv4(a.address),
        IpSocketAddress::Ipv6(a) => IpAddress::Ipv6(a.address),
    }
}

pub fn port_of(a: &IpSocketAddress) -> u16 {
    match a {
        IpSocketAddress::Ipv4(a) => a.port,
        IpSocketAddress::Ipv6(a) => a.port,
    }
}

pub fn family_of(a: &IpSocketAddress) -> IpAddressFamily {
    match a {
        IpSocketAddress::Ipv4(_) => IpAddressFamily::Ipv4,
        IpSocketAddress::Ipv6(_) => IpAddressFamily::Ipv6,
    }
}

pub fn ip_eq(a: &IpAddress, b: &IpAddress) -> bool {
    match (a, b) {
        (IpAddress::Ipv4(x), IpAddress::Ipv4(y)) => x == y,
        (IpAddress::Ipv6(x), IpAddress::Ipv6(y)) => x == y,
        _ => false,
    }
}

/// Full equality, including IPv6 flow-info and scope-id (as upstream compares).
pub fn addr_eq(a: &IpSocketAddress, b: &IpSocketAddress) -> bool {
    match (a, b) {
        (IpSocketAddress::Ipv4(x), IpSocketAddress::Ipv4(y)) => x.port == y.port && x.address == y.address,
        (IpSocketAddress::Ipv6(x), IpSocketAddress::Ipv6(y)) => {
            x.port == y.port && x.address == y.address && x.flow_info == y.flow_info && x.scope_id == y.scope_id
        }
        _ => false,
    }
}

pub fn std_ip(ip: &IpAddress) -> std::net::IpAddr {
    match *ip {
        IpAddress::Ipv4((a, b, c, d)) => Ipv4Addr::new(a, b, c, d).into(),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => Ipv6Addr::new(a, b, c, d, e, f, g, h).into(),
    }
}

pub fn show_ip(ip: &IpAddress) -> String {
    std_ip(ip).to_string()
}

pub fn show_addr(a: &IpSocketAddress) -> String {
    let s: SocketAddr = match a {
        IpSocketAddress::Ipv4(a) => {
            let (x, y, z, w) = a.address;
            SocketAddrV4::new(Ipv4Addr::new(x, y, z, w), a.port).into()
        }
        IpSocketAddress::Ipv6(a) => {
            let (p, q, r, s, t, u, v, w) = a.address;
            SocketAddrV6::new(Ipv6Addr::new(p, q, r, s, t, u, v, w), a.port, a.flow_info, a.scope_id).into()
        }
    };
    if let IpSocketAddress::Ipv6(a) = a
        && (a.flow_info != 0 || a.scope_id != 0)
    {
        return format!("{s} (flow-info {}, scope-id {})", a.flow_info, a.scope_id);
    }
    s.to_string()
}

pub fn show_stream_err(e: &StreamError) -> String {
    match e {
        StreamError::Closed => "stream-error(closed)".to_string(),
        StreamError::LastOperationFailed(err) => {
            format!("stream-error(last-operation-failed: {})", err.to_debug_string())
        }
    }
}

pub fn net() -> Network {
    instance_network::instance_network()
}

pub fn tcp(f: IpAddressFamily) -> R<TcpSocket> {
    must(
        &format!("create-tcp-socket({})", fam(f)),
        tcp_create_socket::create_tcp_socket(f),
    )
}

pub fn udp(f: IpAddressFamily) -> R<UdpSocket> {
    must(
        &format!("create-udp-socket({})", fam(f)),
        udp_create_socket::create_udp_socket(f),
    )
}

/// Random port in 1024..65535 (same range upstream draws from).
pub fn random_port() -> u16 {
    let r = wasip2::random::random::get_random_u64();
    (1024 + r % (65535 - 1024)) as u16
}

/// A point on the monotonic clock.
pub struct Deadline(u64);

impl Deadline {
    pub fn after(ns: u64) -> Self {
        Deadline(monotonic_clock::now().saturating_add(ns))
    }

    pub fn expired(&self) -> bool {
        monotonic_clock::now() >= self.0
    }

    /// Blocks until `p` is ready (true) or the deadline passes (false).
    pub fn wait(&self, p: &Pollable) -> bool {
        self.wait_any(&[p]).is_some()
    }

    /// Blocks until one of `ps` is ready; `None` on timeout.
    pub fn wait_any(&self, ps: &[&Pollable]) -> Option<Vec<u32>> {
        let timer = monotonic_clock::subscribe_instant(self.0);
        let mut all: Vec<&Pollable> = ps.to_vec();
        all.push(&timer);
        let ready = poll::poll(&all);
        let n = ps.len() as u32;
        let hits: Vec<u32> = ready.into_iter().filter(|&i| i < n).collect();
        if hits.is_empty() { None } else { Some(hits) }
    }
}

// ---------------------------------------------------------------- TCP

pub fn tcp_bind(s: &TcpSocket, net: &Network, addr: IpSocketAddress) -> Result<(), ErrorCode> {
    let sub = s.subscribe();
    s.start_bind(net, addr)?;
    let dl = Deadline::after(TIMEOUT_NS);
    loop {
        match s.finish_bind() {
            Err(ErrorCode::WouldBlock) => {
                if !dl.wait(&sub) {
                    return Err(ErrorCode::Timeout);
                }
            }
            r => return r,
        }
    }
}

pub fn tcp_listen(s: &TcpSocket) -> Result<(), ErrorCode> {
    let sub = s.subscribe();
    s.start_listen()?;
    let dl = Deadline::after(TIMEOUT_NS);
    loop {
        match s.finish_listen() {
            Err(ErrorCode::WouldBlock) => {
                if !dl.wait(&sub) {
                    return Err(ErrorCode::Timeout);
                }
            }
            r => return r,
        }
    }
}

/// Completes an already started connect.
pub fn tcp_finish_connect(s: &TcpSocket) -> Result<(InputStream, OutputStream), ErrorCode> {
    let sub = s.subscribe();
    let dl = Deadline::after(TIMEOUT_NS);
    loop {
        match s.finish_connect() {
            Err(ErrorCode::WouldBlock) => {
                if !dl.wait(&sub) {
                    return Err(ErrorCode::Timeout);
                }
            }
            r => return r,
        }
    }
}

pub fn tcp_connect(
    s: &TcpSocket,
    net: &Network,
    addr: IpSocketAddress,
) -> Result<(InputStream, OutputStream), ErrorCode> {
    s.start_connect(net, addr)?;
    tcp_finish_connect(s)
}

pub fn tcp_accept(s: &TcpSocket) -> Result<(TcpSocket, InputStream, OutputStream), ErrorCode> {
    let sub = s.subscribe();
    let dl = Deadline::after(TIMEOUT_NS);
    loop {
        match s.accept() {
            Err(ErrorCode::WouldBlock) => {
                if !dl.wait(&sub) {
                    return Err(ErrorCode::Timeout);
                }
            }
            r => return r,
        }
    }
}

/// One end of a TCP connection. Field order matters: the streams (children
/// of the socket) are dropped before the socket.
pub struct Conn {
    pub input: InputStream,
    pub output: OutputStream,
    pub sock: TcpSocket,
}

/// A bound + listening socket on `ip:0`; returns it with its local address.
pub fn tcp_listener(net: &Network, ip: IpAddress) -> R<(TcpSocket, IpSocketAddress)> {
    let f = match ip {
        IpAddress::Ipv4(_) => IpAddressFamily::Ipv4,
        IpAddress::Ipv6(_) => IpAddressFamily::Ipv6,
    };
    let l = tcp(f)?;
    must(
        &format!("bind listener to {}", show_addr(&sa(ip, 0))),
        tcp_bind(&l, net, sa(ip, 0)),
    )?;
    must("listen", tcp_listen(&l))?;
    let addr = must("listener local-address", l.local_address())?;
    Ok((l, addr))
}

/// A connected (server, client) pair over the loopback of `f`.
pub fn tcp_pair(net: &Network, f: IpAddressFamily) -> R<(Conn, Conn)> {
    let (listener, addr) = tcp_listener(net, loopback(f))?;
    let client = tcp(f)?;
    let (ci, co) = must(
        &format!("connect to {}", show_addr(&addr)),
        tcp_connect(&client, net, addr),
    )?;
    let (s, si, so) = must("accept", tcp_accept(&listener))?;
    Ok((
        Conn {
            input: si,
            output: so,
            sock: s,
        },
        Conn {
            input: ci,
            output: co,
            sock: client,
        },
    ))
}

/// How a bounded read ended.
#[derive(Debug, PartialEq)]
pub enum ReadEnd {
    /// Got the requested number of bytes.
    Full,
    /// `stream-error(closed)`.
    Closed,
    /// `stream-error(last-operation-failed)`.
    Failed(String),
    Timeout,
}

/// Reads until `limit` bytes (if any), end of stream, error or timeout.
pub fn read_until(input: &InputStream, limit: Option<usize>, timeout_ns: u64) -> (Vec<u8>, ReadEnd) {
    let sub = input.subscribe();
    let dl = Deadline::after(timeout_ns);
    let mut data = Vec::new();
    loop {
        let want = match limit {
            Some(n) if data.len() >= n => return (data, ReadEnd::Full),
            Some(n) => (n - data.len()).min(64 * 1024),
            None => 64 * 1024,
        };
        match input.read(want as u64) {
            Ok(chunk) if !chunk.is_empty() => data.extend(chunk),
            Ok(_) => {
                if !dl.wait(&sub) {
                    return (data, ReadEnd::Timeout);
                }
            }
            Err(StreamError::Closed) => return (data, ReadEnd::Closed),
            Err(e) => return (data, ReadEnd::Failed(show_stream_err(&e))),
        }
    }
}

/// Reads exactly `n` bytes or explains why not.
pub fn read_exact(input: &InputStream, n: usize) -> R<Vec<u8>> {
    match read_until(input, Some(n), TIMEOUT_NS) {
        (d, ReadEnd::Full) => Ok(d),
        (d, end) => Err(format!("reading {n} bytes: got {} then {end:?}", d.len())),
    }
}

/// Reads to end of stream (`stream-error(closed)`) or explains why not.
pub fn read_to_end(input: &InputStream) -> R<Vec<u8>> {
    match read_until(input, None, TIMEOUT_NS) {
        (d, ReadEnd::Closed) => Ok(d),
        (d, end) => Err(format!(
            "reading to end: got {} bytes then {end:?} (expected stream-error(closed))",
            d.len()
        )),
    }
}

/// check-write / write / flush until all of `bytes` is written and flushed.
pub fn write_all(out: &OutputStream, mut bytes: &[u8]) -> R<()> {
    let sub = out.subscribe();
    let dl = Deadline::after(TIMEOUT_NS);
    let err = |e: StreamError| format!("write: {}", show_stream_err(&e));
    while !bytes.is_empty() {
        let permit = out.check_write().map_err(err)? as usize;
        if permit == 0 {
            if !dl.wait(&sub) {
                return Err(format!("write: timed out with {} bytes left", bytes.len()));
            }
            continue;
        }
        let (now, rest) = bytes.split_at(permit.min(bytes.len()));
        out.write(now).map_err(err)?;
        out.flush().map_err(err)?;
        bytes = rest;
    }
    // Wait for the last flush to complete.
    loop {
        if out.check_write().map_err(err)? > 0 {
            return Ok(());
        }
        if !dl.wait(&sub) {
            return Err("flush: timed out".to_string());
        }
    }
}

/// Pushes `data` through `out` while draining `input` (the other end of the
/// same connection), so transfers larger than any buffer complete in a
/// single-threaded guest. Returns what was read.
pub fn transfer(out: &OutputStream, input: &InputStream, data: &[u8]) -> R<Vec<u8>> {
    let out_sub = out.subscribe();
    let in_sub = input.subscribe();
    let dl = Deadline::after(TRANSFER_TIMEOUT_NS);
    let mut sent = 0usize;
    let mut got: Vec<u8> = Vec::with_capacity(data.len());
    while got.len() < data.len() {
        let mut progressed = false;
        if sent < data.len() {
            let permit = out
                .check_write()
                .map_err(|e| format!("check-write after {sent} bytes: {}", show_stream_err(&e)))?
                as usize;
            if permit > 0 {
                let n = permit.min(data.len() - sent);
                out.write(&data[sent..sent + n])
                    .map_err(|e| format!("write after {sent} bytes: {}", show_stream_err(&e)))?;
                out.flush()
                    .map_err(|e| format!("flush after {sent} bytes: {}", show_stream_err(&e)))?;
                sent += n;
                progressed = true;
            }
        }
        match input.read(256 * 1024) {
            Ok(chunk) => {
                if !chunk.is_empty() {
                    got.extend(chunk);
                    progressed = true;
                }
            }
            Err(e) => {
                return Err(format!("read after {} bytes: {}", got.len(), show_stream_err(&e)));
            }
        }
        if !progressed {
            let woke = if sent < data.len() {
                dl.wait_any(&[&out_sub, &in_sub])
            } else {
                dl.wait_any(&[&in_sub])
            };
            if woke.is_none() {
                return Err(format!(
                    "timed out: wrote {sent}, read {} of {} bytes",
                    got.len(),
                    data.len()
                ));
            }
        }
    }
    Ok(got)
}

/// Deterministic test payload.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i.wrapping_mul(7) + seed as usize) % 251) as u8)
        .collect()
}

// ---------------------------------------------------------------- UDP

pub fn udp_bind(s: &UdpSocket, net: &Network, addr: IpSocketAddress) -> Result<(), ErrorCode> {
    let sub = s.subscribe();
    s.start_bind(net, addr)?;
    let dl = Deadline::after(TIMEOUT_NS);
    loop {
        match s.finish_bind() {
            Err(ErrorCode::WouldBlock) => {
                if !dl.wait(&sub) {
                    return Err(ErrorCode::Timeout);
                }
            }
            r => return r,
        }
    }
}

pub fn dgram(data: &[u8], to: Option<IpSocketAddress>) -> OutgoingDatagram {
    OutgoingDatagram {
        data: data.to_vec(),
        remote_address: to,
    }
}

/// Sends all datagrams, honouring check-send permits.
pub fn udp_send(out: &OutgoingDatagramStream, mut dgrams: &[OutgoingDatagram]) -> Result<(), ErrorCode> {
    let sub = out.subscribe();
    let dl = Deadline::after(TIMEOUT_NS);
    while !dgrams.is_empty() {
        let permit = out.check_send()? as usize;
        if permit == 0 {
            if !dl.wait(&sub) {
                return Err(ErrorCode::Timeout);
            }
            continue;
        }
        let n = permit.min(dgrams.len());
        let sent = out.send(&dgrams[..n])? as usize;
        if sent == 0 && dl.expired() {
            return Err(ErrorCode::Timeout);
        }
        dgrams = &dgrams[sent.min(n)..];
    }
    Ok(())
}

/// Receives between `min` and `max` datagrams (fewer only on timeout, which
/// is reported as an error message).
pub fn udp_recv(input: &IncomingDatagramStream, min: usize, max: usize) -> R<Vec<IncomingDatagram>> {
    let sub = input.subscribe();
    let dl = Deadline::after(TIMEOUT_NS);
    let mut got = Vec::new();
    loop {
        match input.receive((max - got.len()) as u64) {
            Ok(mut chunk) => {
                if got.len() + chunk.len() > max {
                    return Err(format!(
                        "receive returned {} datagrams, more than max-results {}",
                        chunk.len(),
                        max - got.len()
                    ));
                }
                got.append(&mut chunk);
                if got.len() >= min {
                    return Ok(got);
                }
                if !dl.wait(&sub) {
                    return Err(format!("timed out waiting for datagrams: got {} of {min}", got.len()));
                }
            }
            Err(e) => {
                return Err(format!("receive after {} datagrams: error({})", got.len(), e.name()));
            }
        }
    }
}

// ---------------------------------------------------------------- DNS

/// Resolves `name` completely, with a deadline (timeout → `error(timeout)`).
pub fn resolve(net: &Network, name: &str) -> Result<Vec<IpAddress>, ErrorCode> {
    let stream = ip_name_lookup::resolve_addresses(net, name)?;
    let sub = stream.subscribe();
    let dl = Deadline::after(5 * SECOND);
    let mut out = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(a)) => out.push(a),
            Ok(None) => return Ok(out),
            Err(ErrorCode::WouldBlock) => {
                if !dl.wait(&sub) {
                    return Err(ErrorCode::Timeout);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
