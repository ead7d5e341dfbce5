//! Socket policy from command-line flags.
//!
//! `--allow-egress` takes `HOST`, `HOST:PORT`, `HOST:LOW-HIGH`, `CIDR`,
//! `CIDR:PORT` or `[IPV6]:PORT`, where HOST is an IP address.

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use std::net::IpAddr;
use wasi_sockets_virt::{AddressRule, NameLookup, Policy};

/// Builds a policy from `--allow-egress` and `--allow-lookup` values.
pub fn from_flags(egress: &[String], lookups: &[String]) -> Result<Policy> {
    let egress = egress
        .iter()
        .map(|s| parse_rule(s).with_context(|| format!("--allow-egress {s:?}")))
        .collect::<Result<Vec<_>>>()?;
    let name_lookup = if lookups.iter().any(|l| l == "*" || l == "any") {
        NameLookup::Any
    } else if lookups.is_empty() {
        NameLookup::LocalOnly
    } else {
        NameLookup::Names(lookups.to_vec())
    };
    Ok(Policy { egress, name_lookup })
}

/// Parses one egress rule.
pub fn parse_rule(s: &str) -> Result<AddressRule> {
    let (addr, ports) = split_port(s);
    let net: IpNet = if addr.contains('/') {
        addr.parse()
            .with_context(|| format!("{addr:?} is not a CIDR like 10.0.0.0/8"))?
    } else {
        let ip: IpAddr = addr.parse().with_context(|| {
            format!("{addr:?} is not an IP address (names are not allowed here; use an address or CIDR)")
        })?;
        IpNet::from(ip)
    };
    let ports = match ports {
        None => 0..=u16::MAX,
        Some(p) => match p.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u16, u16) = (parse_port(lo)?, parse_port(hi)?);
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
    };
    Ok(AddressRule {
        net: net.trunc(),
        ports,
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
        assert!(parse_rule("1.2.3.4:99999").is_err());
        assert!(parse_rule("1.2.3.4:9-1").is_err());
    }
}
