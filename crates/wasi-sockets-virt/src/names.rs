//! Names a [`VirtualNetwork`](crate::VirtualNetwork) answers itself: the
//! network's own hosts file. The embedder fills it (e.g. with service names);
//! `ip-name-lookup` consults it before the policy and the OS resolver, and
//! embedders that resolve for other protocols (HTTP) use the same table.
//!
//! Names under a *private domain* are answered only from the table: a name
//! there that the table lacks does not exist, whatever the policy allows, so
//! it can never leak to (or be answered by) real DNS.

use std::collections::HashMap;
use std::net::IpAddr;

/// What the table says about a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameAnswer {
    /// The name is in the table.
    Addresses(Vec<IpAddr>),
    /// The name is under a private domain and not in the table: it does not exist.
    NoSuchName,
    /// The table knows nothing of this name: ask the policy and the resolver.
    NotOurs,
}

#[derive(Default)]
pub(crate) struct NameTable {
    entries: HashMap<String, Vec<IpAddr>>,
    /// Domain suffixes, stored with a leading dot (`.loophost.internal`).
    private_domains: Vec<String>,
}

/// Lower-case, without the trailing dot of a fully-qualified name.
pub(crate) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl NameTable {
    pub(crate) fn insert(&mut self, name: &str, addrs: Vec<IpAddr>) {
        let addrs = addrs.into_iter().map(|ip| ip.to_canonical()).collect();
        self.entries.insert(normalize(name), addrs);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.entries.remove(&normalize(name));
    }

    pub(crate) fn add_private_domain(&mut self, domain: &str) {
        let domain = format!(".{}", normalize(domain.trim_start_matches('.')));
        if !self.private_domains.contains(&domain) {
            self.private_domains.push(domain);
        }
    }

    pub(crate) fn lookup(&self, name: &str) -> NameAnswer {
        let name = normalize(name);
        if let Some(addrs) = self.entries.get(&name) {
            return NameAnswer::Addresses(addrs.clone());
        }
        let private = self
            .private_domains
            .iter()
            .any(|domain| name.ends_with(domain.as_str()) || name == domain[1..]);
        if private {
            NameAnswer::NoSuchName
        } else {
            NameAnswer::NotOurs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn names_are_case_insensitive_and_private_domains_are_closed() {
        let mut table = NameTable::default();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        table.insert("KV", vec![lo]);
        table.insert("kv.shop.loophost.internal.", vec![lo]);
        table.add_private_domain("loophost.internal");
        assert_eq!(table.lookup("kv"), NameAnswer::Addresses(vec![lo]));
        assert_eq!(
            table.lookup("Kv.Shop.Loophost.Internal"),
            NameAnswer::Addresses(vec![lo])
        );
        assert_eq!(table.lookup("db.other.loophost.internal"), NameAnswer::NoSuchName);
        assert_eq!(table.lookup("loophost.internal"), NameAnswer::NoSuchName);
        assert_eq!(table.lookup("example.com"), NameAnswer::NotOurs);
        assert_eq!(table.lookup("notloophost.internal"), NameAnswer::NotOurs);
        table.remove("kv");
        assert_eq!(table.lookup("kv"), NameAnswer::NotOurs);
    }
}
