//! Socket policy from command-line flags.
//!
//! `--allow-egress` takes `HOST`, `HOST:PORT`, `HOST:LOW-HIGH`, `CIDR`,
//! `CIDR:PORT` or `[IPV6]:PORT`. HOST is an IP address or a host name; a
//! name is resolved once, at startup, and may then also be looked up by the
//! components.

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use std::net::{IpAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use wasi_sockets_virt::{AddressRule, NameLookup, Policy};

/// Builds a policy from `--allow-egress` and `--allow-lookup` values.
pub fn from_flags(egress: &[String], lookups: &[String]) -> Result<Policy> {
    let mut rules = Vec::new();
    let mut names: Vec<String> = lookups.to_vec();
    for spec in egress {
        let (host, ports) = split_port(spec);
        let ports = parse_ports(ports).with_context(|| format!("--allow-egress {spec:?}"))?;
        match parse_net(host) {
            Some(net) => rules.push(AddressRule {
                net: net.with_context(|| format!("--allow-egress {spec:?}"))?,
                ports,
            }),
            None => {
                for ip in resolve(host).with_context(|| format!("--allow-egress {spec:?}"))? {
                    rules.push(AddressRule {
                        net: IpNet::from(ip),
                        ports: ports.clone(),
                    });
                }
                names.push(host.to_string());
            }
        }
    }
    let name_lookup = if names.iter().any(|l| l == "*" || l == "any") {
        NameLookup::Any
    } else if names.is_empty() {
        NameLookup::LocalOnly
    } else {
        NameLookup::Names(names)
    };
    Ok(Policy {
        egress: rules,
        name_lookup,
    })
}

/// Parses one egress rule whose host is an IP address or CIDR.
pub fn parse_rule(s: &str) -> Result<AddressRule> {
    let (host, ports) = split_port(s);
    let ports = parse_ports(ports)?;
    match parse_net(host) {
        Some(net) => Ok(AddressRule { net: net?, ports }),
        None => bail!("{host:?} is not an IP address or CIDR"),
    }
}

/// `None` when `host` looks like a host name rather than an address.
fn parse_net(host: &str) -> Option<Result<IpNet>> {
    if host.contains('/') {
        return Some(
            host.parse::<IpNet>()
                .map(|net| net.trunc())
                .with_context(|| format!("{host:?} is not a CIDR like 10.0.0.0/8")),
        );
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Ok(IpNet::from(ip)));
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ':') {
        return Some(Err(anyhow::anyhow!("{host:?} is not a valid IP address")));
    }
    None
}

fn resolve(host: &str) -> Result<Vec<IpAddr>> {
    let mut ips: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve host {host:?}; use an IP address or CIDR"))?
        .map(|a| a.ip().to_canonical())
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        bail!("host {host:?} resolved to no address");
    }
    Ok(ips)
}

fn parse_ports(ports: Option<&str>) -> Result<RangeInclusive<u16>> {
    Ok(match ports {
        None => 0..=u16::MAX,
        Some(p) => match p.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
                if lo > hi {
                    bail!("port range {p:?} is empty (low > high)");
                }
                lo..=hi
            }
            None => {
                let port = parse_port(p)?;
                port..=port
            }
        },
    })
}

fn parse_port(s: &str) -> Result<u16> {
    s.parse()
        .with_context(|| format!("{s:?} is not a port number (0-65535)"))
}

/// Splits `addr:port`, `[v6]:port`, `cidr:port`; a bare IPv6 address has no port.
fn split_port(s: &str) -> (&str, Option<&str>) {
    if let Some((addr, tail)) = s.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return (addr, tail.strip_prefix(':'));
    }
    match s.rsplit_once(':') {
        Some((addr, port)) if !addr.contains(':') => (addr, Some(port)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_names_resolve_at_startup_and_become_lookup_names() {
        let policy = from_flags(&["localhost:5432".to_string()], &[]).expect("policy");
        assert!(policy.egress.iter().all(|r| r.ports == (5432..=5432)));
        assert!(policy.egress.iter().any(|r| r.net.addr().is_loopback()));
        assert_eq!(policy.name_lookup, NameLookup::Names(vec!["localhost".to_string()]));
        let err = from_flags(&["no-such-host.invalid".to_string()], &[]).expect_err("unresolvable");
        assert!(format!("{err:#}").contains("cannot resolve host"), "{err:#}");
    }

    use super::*;

    #[test]
    fn parses_hosts_cidrs_and_ports() {
        let r = parse_rule("127.0.0.1:5432").expect("rule");
        assert_eq!(r.to_string(), "127.0.0.1/32 port 5432");
        let r = parse_rule("10.0.0.0/8").expect("rule");
        assert_eq!(r.to_string(), "10.0.0.0/8");
        let r = parse_rule("[::1]:80-90").expect("rule");
        assert_eq!(r.to_string(), "::1/128 ports 80-90");
        let r = parse_rule("2001:db8::/32").expect("rule");
        assert_eq!(r.to_string(), "2001:db8::/32");
        assert!(parse_rule("example.com").is_err());
        assert!(parse_rule("1.2.3.999").is_err());
        assert!(parse_rule("1.2.3.4:99999").is_err());
        assert!(parse_rule("1.2.3.4:9-1").is_err());
    }
}
