//! The one routing decision: for every bind, connect and send, is the address
//! served by the virtual loopback, by a real OS socket, or denied?
//!
//! A [`Policy`] is plain data given by the embedder. The crate never reads
//! files or knows what a workload is.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// Where a socket operation goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The in-memory loopback of this store's [`VirtualNetwork`](crate::VirtualNetwork).
    Virtual,
    /// A real OS socket.
    Host,
    /// Refused; the guest sees `access-denied` (`address-not-bindable` for binds).
    Deny(DenyReason),
}

/// Why the policy refused an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// Connecting or sending to an address outside the virtual loopback that
    /// no egress rule allows.
    EgressNotAllowed,
    /// Binding a real (non-loopback) local address; the guest sees
    /// `address-not-bindable`.
    HostBindNotAllowed,
    /// Connecting or sending to the unspecified address (`0.0.0.0`, `::`)
    /// or an IPv4-mapped / IPv4-compatible IPv6 form: none is a destination
    /// (an OS would take them to mean its own, real, loopback).
    NotADestination,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::EgressNotAllowed => "real network egress to this address is not allowed",
            DenyReason::HostBindNotAllowed => "binding a real network address is not allowed",
            DenyReason::NotADestination => {
                "the unspecified address and IPv4-mapped/compatible IPv6 addresses are not destinations"
            }
        })
    }
}

/// What a socket operation is doing with the address handed to [`Policy::route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketUse {
    /// Binding a TCP socket to a local address.
    TcpBind,
    /// Connecting a TCP socket to a remote address.
    TcpConnect,
    /// Binding a UDP socket to a local address.
    UdpBind,
    /// Sending a datagram (or fixing the remote address of a UDP socket).
    UdpSend,
}

/// A set of remote addresses: an IP network and a port range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRule {
    /// Addresses covered, e.g. `10.0.0.0/8` or `127.0.0.1/32`.
    pub net: IpNet,
    /// Ports covered; `0..=65535` for all.
    pub ports: RangeInclusive<u16>,
}

impl AddressRule {
    /// A rule for every port of `net`.
    pub fn any_port(net: IpNet) -> Self {
        AddressRule {
            net,
            ports: 0..=u16::MAX,
        }
    }

    fn matches(&self, addr: SocketAddr) -> bool {
        self.net.contains(&addr.ip().to_canonical()) && self.ports.contains(&addr.port())
    }

    /// True when the rule only covers loopback addresses, i.e. the operator
    /// deliberately named a loopback destination.
    fn is_loopback_only(&self) -> bool {
        self.net.network().is_loopback() && self.net.broadcast().is_loopback()
    }
}

impl fmt::Display for AddressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ports == (0..=u16::MAX) {
            write!(f, "{}", self.net)
        } else if self.ports.start() == self.ports.end() {
            write!(f, "{} port {}", self.net, self.ports.start())
        } else {
            write!(f, "{} ports {}-{}", self.net, self.ports.start(), self.ports.end())
        }
    }
}

/// Which names `ip-name-lookup` may resolve with the host's resolver.
/// `localhost` and IP literals are always answered without it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NameLookup {
    /// Only `localhost` and literals (the default).
    #[default]
    LocalOnly,
    /// Any name.
    Any,
    /// These names, and names ending in `.<suffix>` for entries that start
    /// with a dot (e.g. `.svc.cluster.local`).
    Names(Vec<String>),
}

/// The embedder's routing rules for one store.
///
/// Defaults: loopback (`127.0.0.0/8`, `::1`) and the unspecified address are
/// virtual; every other address is denied; name lookups answer only
/// `localhost` and IP literals.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Remote addresses that may be reached over the real network. A rule
    /// that names loopback addresses explicitly (e.g. `127.0.0.1/32` port
    /// 5432) sends that loopback traffic to the machine's real loopback
    /// instead of the virtual one; wider rules (`0.0.0.0/0`) never capture
    /// loopback.
    pub egress: Vec<AddressRule>,
    /// Which names may be resolved by the host's resolver.
    pub name_lookup: NameLookup,
}

impl Policy {
    /// Decides where an operation on `addr` goes.
    pub fn route(&self, usage: SocketUse, addr: SocketAddr) -> Route {
        let ip = addr.ip().to_canonical();
        match usage {
            SocketUse::TcpBind | SocketUse::UdpBind => {
                if ip.is_loopback() || ip.is_unspecified() {
                    Route::Virtual
                } else {
                    Route::Deny(DenyReason::HostBindNotAllowed)
                }
            }
            SocketUse::TcpConnect | SocketUse::UdpSend => {
                // Decided on the address as given, before any canonical
                // form: `::ffff:127.0.0.1` must not pass as 127.0.0.1 for one
                // caller and reach the real loopback for another.
                if !is_destination(addr.ip()) {
                    return Route::Deny(DenyReason::NotADestination);
                }
                let allowed = self
                    .egress
                    .iter()
                    .any(|rule| rule.matches(addr) && (!ip.is_loopback() || rule.is_loopback_only()));
                if allowed {
                    Route::Host
                } else if ip.is_loopback() {
                    Route::Virtual
                } else {
                    Route::Deny(DenyReason::EgressNotAllowed)
                }
            }
        }
    }

    /// May `name` (already lower-cased, not `localhost`, not a literal) be
    /// resolved by the host resolver?
    pub fn may_resolve(&self, name: &str) -> bool {
        match &self.name_lookup {
            NameLookup::LocalOnly => false,
            NameLookup::Any => true,
            NameLookup::Names(names) => names.iter().any(|allowed| {
                let allowed = allowed.to_ascii_lowercase();
                match allowed.strip_prefix('.') {
                    Some(suffix) => name == suffix || name.ends_with(&allowed),
                    None => name == allowed,
                }
            }),
        }
    }
}

/// Can `ip` be the remote end of a connection or datagram?
fn is_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            let compatible = v6.segments()[..6].iter().all(|&s| s == 0) && !v6.is_loopback();
            !v6.is_unspecified() && v6.to_ipv4_mapped().is_none() && !compatible
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn loopback_is_virtual_by_default_and_real_network_is_denied() {
        let policy = Policy::default();
        assert_eq!(
            policy.route(SocketUse::TcpConnect, addr("127.0.0.1:80")),
            Route::Virtual
        );
        assert_eq!(policy.route(SocketUse::TcpConnect, addr("[::1]:80")), Route::Virtual);
        assert_eq!(
            policy.route(SocketUse::TcpConnect, addr("10.1.2.3:80")),
            Route::Deny(DenyReason::EgressNotAllowed)
        );
        assert_eq!(
            policy.route(SocketUse::TcpBind, addr("192.168.1.1:0")),
            Route::Deny(DenyReason::HostBindNotAllowed)
        );
        assert_eq!(policy.route(SocketUse::TcpBind, addr("0.0.0.0:8080")), Route::Virtual);
    }

    #[test]
    fn wide_egress_rules_never_capture_loopback_but_explicit_ones_do() {
        let policy = Policy {
            egress: vec![
                AddressRule::any_port("0.0.0.0/0".parse().expect("net")),
                AddressRule {
                    net: "127.0.0.1/32".parse().expect("net"),
                    ports: 5432..=5432,
                },
            ],
            ..Policy::default()
        };
        assert_eq!(policy.route(SocketUse::TcpConnect, addr("10.1.2.3:80")), Route::Host);
        assert_eq!(
            policy.route(SocketUse::TcpConnect, addr("127.0.0.1:80")),
            Route::Virtual
        );
        assert_eq!(policy.route(SocketUse::TcpConnect, addr("127.0.0.1:5432")), Route::Host);
    }

    #[test]
    fn unspecified_and_mapped_destinations_are_denied_whatever_the_rules() {
        let everything = Policy {
            egress: vec![
                AddressRule::any_port("0.0.0.0/0".parse().expect("net")),
                AddressRule::any_port("::/0".parse().expect("net")),
                AddressRule::any_port("127.0.0.0/8".parse().expect("net")),
            ],
            ..Policy::default()
        };
        for policy in [Policy::default(), everything] {
            for dest in [
                "0.0.0.0:80",
                "[::]:80",
                "[::ffff:127.0.0.1]:80",
                "[::ffff:10.1.2.3]:80",
                "[::127.0.0.1]:80",
                "[::ffff:0.0.0.0]:80",
            ] {
                for usage in [SocketUse::TcpConnect, SocketUse::UdpSend] {
                    assert_eq!(
                        policy.route(usage, addr(dest)),
                        Route::Deny(DenyReason::NotADestination),
                        "{usage:?} {dest}"
                    );
                }
            }
            assert_ne!(
                policy.route(SocketUse::TcpConnect, addr("[::1]:80")),
                Route::Deny(DenyReason::NotADestination)
            );
        }
    }

    #[test]
    fn name_lookup_rules() {
        let policy = Policy {
            name_lookup: NameLookup::Names(vec!["db.internal".into(), ".svc.cluster.local".into()]),
            ..Policy::default()
        };
        assert!(policy.may_resolve("db.internal"));
        assert!(policy.may_resolve("api.default.svc.cluster.local"));
        assert!(!policy.may_resolve("example.com"));
        assert!(!Policy::default().may_resolve("example.com"));
    }
}
