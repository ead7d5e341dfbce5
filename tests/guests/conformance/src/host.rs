//! Cases that need something from the host test that runs them, so they are
//! not part of `all`: a real peer to connect to (its address in the
//! environment variable `REAL_PEER`, allowed by an egress rule), or an
//! outcome that ends the guest (a trap the WIT prescribes).

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
