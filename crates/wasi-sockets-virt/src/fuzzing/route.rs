//! `Policy::route` on any rules and addresses. Properties: binds never reach
//! the host; the unspecified address and IPv4-mapped/compatible forms are
//! never destinations; loopback is virtual unless a rule names loopback
//! explicitly; nothing reaches the host that no rule allows.

use crate::{AddressRule, DenyReason, Policy, Route, SocketUse};
use arbitrary::{Arbitrary, Unstructured};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Arbitrary, Debug)]
struct Input {
    rules: Vec<(Ip, u8, u16, u16)>,
    probes: Vec<(u8, Ip, u16)>,
}

#[derive(Arbitrary, Debug)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
    Loopback4(u8),
    Mapped([u8; 4]),
}

impl Ip {
    fn addr(&self) -> IpAddr {
        match self {
            Ip::V4(b) => IpAddr::V4(Ipv4Addr::from(*b)),
            Ip::V6(b) => IpAddr::V6(Ipv6Addr::from(*b)),
            Ip::Loopback4(last) => IpAddr::V4(Ipv4Addr::new(127, 0, 0, *last)),
            Ip::Mapped(b) => IpAddr::V6(Ipv4Addr::from(*b).to_ipv6_mapped()),
        }
    }
}

/// What may be connected to or sent to, restated from the wasi:sockets spec
/// rather than borrowed from `policy.rs`: the property is only worth
/// something if the oracle is written independently of the code it checks.
fn is_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let compatible = v6.segments()[..6].iter().all(|&s| s == 0) && !v6.is_loopback();
            !v6.is_unspecified() && v6.to_ipv4_mapped().is_none() && !compatible
        }
    }
}

/// Decodes `data` as libFuzzer's structured input does (so the corpus in
/// fuzz/corpus/policy_route replays the same) and checks every probe's route.
/// Panics on a violated property.
pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let egress: Vec<AddressRule> = input
        .rules
        .iter()
        .filter_map(|(ip, prefix, lo, hi)| {
            let ip = ip.addr();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let net = IpNet::new(ip, prefix % (max + 1)).ok()?.trunc();
            Some(AddressRule {
                net,
                ports: *lo.min(hi)..=*lo.max(hi),
            })
        })
        .collect();
    let policy = Policy {
        egress: egress.clone(),
        ..Policy::default()
    };
    for (usage, ip, port) in &input.probes {
        let ip = ip.addr();
        let addr = SocketAddr::new(ip, *port);
        let usage = [
            SocketUse::TcpBind,
            SocketUse::TcpConnect,
            SocketUse::UdpBind,
            SocketUse::UdpSend,
        ][usize::from(*usage) % 4];
        let route = policy.route(usage, addr);
        match usage {
            SocketUse::TcpBind | SocketUse::UdpBind => {
                assert_ne!(route, Route::Host, "a bind reached the host: {addr}");
            }
            SocketUse::TcpConnect | SocketUse::UdpSend => {
                if !is_destination(ip) {
                    assert_eq!(route, Route::Deny(DenyReason::NotADestination), "{addr}");
                    continue;
                }
                let canonical = ip.to_canonical();
                let matching: Vec<&AddressRule> = egress
                    .iter()
                    .filter(|r| r.net.contains(&canonical) && r.ports.contains(port))
                    .collect();
                let explicit_loopback = matching
                    .iter()
                    .any(|r| r.net.network().is_loopback() && r.net.broadcast().is_loopback());
                match route {
                    Route::Host => {
                        assert!(!matching.is_empty(), "{addr} reached the host without a rule");
                        assert!(
                            !canonical.is_loopback() || explicit_loopback,
                            "{addr}: loopback captured by a wide rule"
                        );
                    }
                    Route::Virtual => assert!(canonical.is_loopback(), "{addr} routed to the virtual network"),
                    Route::Deny(_) => assert!(
                        matching.is_empty() || (canonical.is_loopback() && !explicit_loopback),
                        "{addr} denied though a rule allows it"
                    ),
                }
                if canonical.is_loopback() && !explicit_loopback {
                    assert_eq!(route, Route::Virtual, "{addr}: loopback is virtual");
                }
            }
        }
    }
}
