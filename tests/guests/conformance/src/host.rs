//! Cases that need something from the host test that runs them, so they are
//! not part of `all`: a real peer to connect to (its address in the
//! environment variable `REAL_PEER`, allowed by an egress rule), a host
//! setting to compare with (`SOCKET_LIMIT`), or an outcome that ends the
//! guest (a trap the WIT prescribes).

use wasip2::sockets::network::IpAddressFamily;
use wasip2::sockets::udp::OutgoingDatagram;

use crate::cx::{CaseFn, Cx, R, must};
use crate::net::*;

pub const CASES: &[(&str, CaseFn)] = &[
    (
        "host-tcp-buffer-sizes-reach-real-socket",
        buffer_sizes_reach_real_socket,
    ),
    ("trap-udp-send-beyond-permit", udp_send_beyond_permit),
    ("trap-udp-send-without-check", udp_send_without_check),
    ("host-socket-limit", socket_limit),
    ("host-udp-sink", udp_sink),
    ("host-udp-flood", udp_flood),
    ("host-connect-ports", connect_ports),
    ("host-connect-error-keeps-bind", connect_error_keeps_bind),
    ("host-udp-real-peer-denied", udp_real_peer_denied),
];

fn real_peer() -> R<wasip2::sockets::network::IpSocketAddress> {
    let peer = std::env::var("REAL_PEER").map_err(|_| "REAL_PEER is not set".to_string())?;
    let addr: std::net::SocketAddrV4 = peer
        .parse()
        .map_err(|_| format!("REAL_PEER {peer:?}: not an IPv4 address"))?;
    let [a, b, c, d] = addr.ip().octets();
    Ok(sa(wasip2::sockets::network::IpAddress::Ipv4((a, b, c, d)), addr.port()))
}

/// Buffer sizes set before connecting reach the OS socket: the kernel
/// reports (about twice) what was asked, not its default.
fn buffer_sizes_reach_real_socket(cx: &mut Cx) -> R<()> {
    let peer = real_peer()?;
    let net = net();
    let s = tcp(IpAddressFamily::Ipv4)?;
    let asked = 8192;
    must("set-receive-buffer-size", s.set_receive_buffer_size(asked))?;
    must("set-send-buffer-size", s.set_send_buffer_size(asked))?;
    let _streams = must("connect to REAL_PEER", tcp_connect(&s, &net, peer))?;
    let recv = must("receive-buffer-size", s.receive_buffer_size())?;
    let send = must("send-buffer-size", s.send_buffer_size())?;
    cx.note(format!("asked {asked}, the OS reports receive {recv}, send {send}"));
    cx.check(recv <= 4 * asked, || {
        format!("receive-buffer-size {recv}: the {asked} set before connect was not applied")
    });
    cx.check(send <= 4 * asked, || {
        format!("send-buffer-size {send}: the {asked} set before connect was not applied")
    });
    Ok(())
}

fn udp_stream() -> R<wasip2::sockets::udp::OutgoingDatagramStream> {
    let net = net();
    let s = udp(IpAddressFamily::Ipv4)?;
    let addr = sa(loopback(IpAddressFamily::Ipv4), 0);
    must("bind", udp_bind(&s, &net, addr))?;
    let (incoming, outgoing) = must("stream", s.stream(None))?;
    // The socket (the streams' parent) must outlive them; these cases end
    // the guest, so keeping them until exit costs nothing.
    std::mem::forget(incoming);
    std::mem::forget(s);
    Ok(outgoing)
}

fn datagram() -> OutgoingDatagram {
    OutgoingDatagram {
        data: b"x".to_vec(),
        remote_address: Some(sa(loopback(IpAddressFamily::Ipv4), 9)),
    }
}

/// The WIT: sending more datagrams than `check-send` permitted traps.
fn udp_send_beyond_permit(cx: &mut Cx) -> R<()> {
    let out = udp_stream()?;
    let permitted = must("check-send", out.check_send())?;
    let too_many: Vec<OutgoingDatagram> = (0..=permitted).map(|_| datagram()).collect();
    let result = out.send(&too_many);
    cx.fail(format!(
        "send of {} datagrams after check-send {permitted} returned {result:?} instead of trapping",
        too_many.len()
    ));
    Ok(())
}

/// Each `send` must be permitted by a preceding `check-send`.
fn udp_send_without_check(cx: &mut Cx) -> R<()> {
    let out = udp_stream()?;
    must("check-send", out.check_send())?;
    must("first send", out.send(&[datagram()]))?;
    let result = out.send(&[datagram()]);
    cx.fail(format!(
        "a second send without check-send returned {result:?} instead of trapping"
    ));
    Ok(())
}

/// A store cannot hold more sockets than its network allows
/// (`SOCKET_LIMIT`, the host's per-store limit): the next create is
/// `new-socket-limit`, and closing one makes room again.
fn socket_limit(cx: &mut Cx) -> R<()> {
    let limit: usize = std::env::var("SOCKET_LIMIT")
        .map_err(|_| "SOCKET_LIMIT is not set".to_string())?
        .parse()
        .map_err(|_| "SOCKET_LIMIT is not a number".to_string())?;
    let mut held = Vec::new();
    let error = loop {
        let r = if held.len() % 2 == 0 {
            wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(|s| (Some(s), None))
        } else {
            wasip2::sockets::udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(|s| (None, Some(s)))
        };
        match r {
            Ok(socket) => held.push(socket),
            Err(e) => break e,
        }
        if held.len() > limit + 10 {
            cx.fail(format!("created {} sockets with a limit of {limit}", held.len()));
            return Ok(());
        }
    };
    cx.note(format!("created {} sockets, then {}", held.len(), error.name()));
    cx.check_eq("sockets created before the limit", held.len(), limit);
    cx.check(error == wasip2::sockets::network::ErrorCode::NewSocketLimit, || {
        format!("expected new-socket-limit, got {}", error.name())
    });
    held.pop();
    cx.check(
        wasip2::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).is_ok(),
        || "closing a socket did not make room for another".to_string(),
    );
    Ok(())
}

fn env_number(name: &str) -> R<u64> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set"))?
        .parse()
        .map_err(|_| format!("{name} is not a number"))
}

/// Binds UDP 127.0.0.1:`UDP_PORT` (with `UDP_RECEIVE_BUFFER` bytes of
/// receive buffer, if set) and never reads, for `SLEEP_MS`.
fn udp_sink(cx: &mut Cx) -> R<()> {
    let net = net();
    let s = udp(IpAddressFamily::Ipv4)?;
    if let Ok(size) = env_number("UDP_RECEIVE_BUFFER") {
        must("set-receive-buffer-size", s.set_receive_buffer_size(size))?;
    }
    let port = env_number("UDP_PORT")? as u16;
    must("bind", udp_bind(&s, &net, sa(loopback(IpAddressFamily::Ipv4), port)))?;
    let (_incoming, _outgoing) = must("stream", s.stream(None))?;
    println!("bound {port}");
    wasip2::clocks::monotonic_clock::subscribe_duration(env_number("SLEEP_MS")? * 1_000_000).block();
    cx.note("slept without reading".to_string());
    Ok(())
}

/// Sends `COUNT` datagrams of `SIZE` bytes to 127.0.0.1:`UDP_PORT`.
fn udp_flood(cx: &mut Cx) -> R<()> {
    let net = net();
    let s = udp(IpAddressFamily::Ipv4)?;
    must("bind", udp_bind(&s, &net, sa(loopback(IpAddressFamily::Ipv4), 0)))?;
    let (_incoming, out) = must("stream", s.stream(None))?;
    let to = sa(loopback(IpAddressFamily::Ipv4), env_number("UDP_PORT")? as u16);
    let (count, size) = (env_number("COUNT")?, env_number("SIZE")? as usize);
    let mut sent = 0;
    for _ in 0..count {
        let d = OutgoingDatagram {
            data: vec![7u8; size],
            remote_address: Some(to),
        };
        let permitted = must("check-send", out.check_send())?;
        if permitted > 0 {
            sent += must("send", out.send(&[d]))?;
        }
    }
    cx.note(format!("sent {sent} datagrams of {size} bytes"));
    Ok(())
}

/// Connects to every port from `FIRST_PORT` to `LAST_PORT` on 127.0.0.1
/// (nothing listens there), as a port scan would.
fn connect_ports(cx: &mut Cx) -> R<()> {
    let net = net();
    let (first, last) = (env_number("FIRST_PORT")? as u16, env_number("LAST_PORT")? as u16);
    let mut refused = 0;
    for port in first..=last {
        let s = tcp(IpAddressFamily::Ipv4)?;
        if tcp_connect(&s, &net, sa(loopback(IpAddressFamily::Ipv4), port)).is_err() {
            refused += 1;
        }
    }
    cx.note(format!("{refused} connects refused"));
    Ok(())
}

/// A `start-connect` that fails after an explicit bind (here: the host is
/// out of file descriptors for the real socket) leaves the socket bound and
/// usable, as the WIT's state machine says. Needs `REAL_PEER` and a host run
/// with a low file-descriptor limit.
fn connect_error_keeps_bind(cx: &mut Cx) -> R<()> {
    let peer = real_peer()?;
    let net = net();
    let s = tcp(IpAddressFamily::Ipv4)?;
    must("bind", tcp_bind(&s, &net, sa(loopback(IpAddressFamily::Ipv4), 0)))?;
    let bound = must("local-address", s.local_address())?;
    // Use up the host's file descriptors with real connects.
    let mut hogs = Vec::new();
    let failure = loop {
        let hog = tcp(IpAddressFamily::Ipv4)?;
        match hog.start_connect(&net, peer) {
            Ok(()) => hogs.push(hog),
            Err(e) => break e,
        }
        if hogs.len() > 4000 {
            return Err("the host never ran out of descriptors; run it with a low `ulimit -n`".into());
        }
    };
    cx.note(format!("{} real connects started, then {}", hogs.len(), failure.name()));
    let refused = s.start_connect(&net, peer);
    cx.check(refused.is_err(), || {
        "start-connect succeeded with no descriptor left".to_string()
    });
    match s.local_address() {
        Ok(addr) => {
            cx.check(addr_eq(&addr, &bound), || {
                format!("the bind moved: {} -> {}", show_addr(&bound), show_addr(&addr))
            });
        }
        Err(e) => cx.fail(format!(
            "after a failed start-connect the socket lost its bind: local-address is error({})",
            e.name()
        )),
    }
    drop(hogs);
    cx.check(tcp_connect(&s, &net, peer).is_ok(), || {
        "the socket could not connect once descriptors were free".to_string()
    });
    Ok(())
}

/// GHSA-hmmr-87qq-258j: upstream's UDP `connect` checked "send OR receive
/// allowed" where it needed both. Here a UDP socket never reaches the real
/// network, whatever the egress rules say (they are TCP rules): fixing the
/// peer to `REAL_PEER` with `stream(some)` is refused, and so is a datagram
/// addressed to it through an unconnected stream; the socket stays usable.
fn udp_real_peer_denied(cx: &mut Cx) -> R<()> {
    let peer = real_peer()?;
    let net = net();
    let s = udp(IpAddressFamily::Ipv4)?;
    must("bind", udp_bind(&s, &net, sa(loopback(IpAddressFamily::Ipv4), 0)))?;
    match s.stream(Some(peer)) {
        Err(wasip2::sockets::network::ErrorCode::AccessDenied) => {}
        Ok(_) => cx.fail(format!("stream({}) to a real peer: allowed", show_addr(&peer))),
        Err(e) => cx.fail(format!(
            "stream({}): expected access-denied, got {e:?}",
            show_addr(&peer)
        )),
    }
    let (_incoming, outgoing) = must("stream(none) after the refusal", s.stream(None))?;
    let permit = must("check-send", outgoing.check_send())?;
    cx.check(permit > 0, || "check-send permits nothing".to_string());
    let sent = outgoing.send(&[OutgoingDatagram {
        data: b"x".to_vec(),
        remote_address: Some(peer),
    }]);
    cx.check(sent == Err(wasip2::sockets::network::ErrorCode::AccessDenied), || {
        format!(
            "a datagram to {}: expected access-denied, got {sent:?}",
            show_addr(&peer)
        )
    });
    Ok(())
}
