//! Name resolution, in this order: IP literals and `localhost`; the
//! network's own names (see [`crate::NameAnswer`]); then the host resolver,
//! only for names the policy allows. Anything else is `name-unresolvable`.

use crate::bindings::network::ErrorCode;
use crate::names::NameAnswer;
use crate::{Policy, VirtualNetwork};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::Poll;
use wasmtime_wasi_io::poll::Pollable;

type LookupFuture = Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, ErrorCode>> + Send>>;

/// A future answering a [`Resolver`] query.
pub type ResolveFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves the names a policy lets reach real DNS. The OS resolver by
/// default ([`SystemResolver`]); embedders may plug in their own with
/// [`VirtualNetwork::set_resolver`] (e.g. DNS over a sidecar, or a test's
/// answers). Every real lookup of a network goes through it, so a name is
/// resolved once and the addresses checked are the addresses used.
pub trait Resolver: Send + Sync {
    /// All addresses of `name` (lower-case, no trailing dot).
    fn resolve(&self, name: &str) -> ResolveFuture;
}

/// The host's own resolver (`getaddrinfo`, through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str) -> ResolveFuture {
        let name = name.to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// `wasi:sockets/ip-name-lookup.resolve-address-stream`.
pub struct ResolveAddressStream {
    state: Lookup,
}

enum Lookup {
    Pending(LookupFuture),
    Done(Result<std::vec::IntoIter<IpAddr>, ErrorCode>),
}

impl ResolveAddressStream {
    /// Starts resolving `name`. Errors known without a lookup come back at once.
    pub(crate) fn start(network: &VirtualNetwork, policy: &Policy, name: &str) -> Result<Self, ErrorCode> {
        let done = |addrs: Vec<IpAddr>| ResolveAddressStream {
            state: Lookup::Done(Ok(addrs.into_iter())),
        };
        let trimmed = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(done(vec![ip.to_canonical()]));
        }
        let host = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if !is_valid_hostname(&host) {
            return Err(ErrorCode::InvalidArgument);
        }
        if host == "localhost" || host.ends_with(".localhost") {
            return Ok(done(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]));
        }
        let unresolvable = || ResolveAddressStream {
            state: Lookup::Done(Err(ErrorCode::NameUnresolvable)),
        };
        match network.lookup_name(&host) {
            NameAnswer::Addresses(addrs) => return Ok(done(addrs)),
            NameAnswer::NoSuchName => {
                tracing::debug!(name = %host, "no such name on this network");
                return Ok(unresolvable());
            }
            NameAnswer::NotOurs => {}
        }
        if !policy.may_resolve(&host) {
            // Reported like a name that does not exist (through the stream,
            // as a resolver would): the workload's world has no such name.
            tracing::debug!(name = %host, "name lookup denied by policy");
            return Ok(unresolvable());
        }
        let query = network.resolve_real(&host);
        let future = async move {
            query.await.map_err(|err| {
                tracing::debug!(name = %host, %err, "name lookup failed");
                ErrorCode::NameUnresolvable
            })
        };
        Ok(ResolveAddressStream {
            state: Lookup::Pending(Box::pin(future)),
        })
    }

    /// The next address, `None` when exhausted, `would-block` while pending.
    pub(crate) fn next(&mut self) -> Result<Option<IpAddr>, ErrorCode> {
        if let Lookup::Pending(future) = &mut self.state {
            match crate::poll_now(future) {
                Poll::Ready(result) => self.state = Lookup::Done(result.map(Vec::into_iter)),
                Poll::Pending => return Err(ErrorCode::WouldBlock),
            }
        }
        match &mut self.state {
            Lookup::Done(Ok(addrs)) => Ok(addrs.next()),
            Lookup::Done(Err(err)) => Err(*err),
            Lookup::Pending(_) => Err(ErrorCode::WouldBlock),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ResolveAddressStream {
    async fn ready(&mut self) {
        if let Lookup::Pending(future) = &mut self.state {
            let result = future.await;
            self.state = Lookup::Done(result.map(Vec::into_iter));
        }
    }
}

/// RFC 1123 host names (ASCII letters, digits, hyphens; labels of 1-63).
fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_now(name: &str) -> Result<Vec<IpAddr>, ErrorCode> {
        resolve_on(&VirtualNetwork::new(), &Policy::default(), name)
    }

    fn resolve_on(network: &VirtualNetwork, policy: &Policy, name: &str) -> Result<Vec<IpAddr>, ErrorCode> {
        let mut stream = ResolveAddressStream::start(network, policy, name)?;
        let mut out = Vec::new();
        while let Some(ip) = stream.next()? {
            out.push(ip);
        }
        Ok(out)
    }

    #[test]
    fn localhost_and_literals_need_no_resolver() {
        assert_eq!(resolve_now("localhost").expect("localhost").len(), 2);
        assert_eq!(resolve_now("LOCALHOST.").expect("localhost").len(), 2);
        assert_eq!(
            resolve_now("127.0.0.1").expect("v4"),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
        assert_eq!(resolve_now("[::1]").expect("v6"), vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    }

    #[test]
    fn other_names_are_denied_by_default_and_garbage_is_invalid() {
        assert_eq!(resolve_now("example.com").err(), Some(ErrorCode::NameUnresolvable));
        assert_eq!(resolve_now("not a name").err(), Some(ErrorCode::InvalidArgument));
        assert_eq!(resolve_now("").err(), Some(ErrorCode::InvalidArgument));
    }

    #[test]
    fn the_networks_names_come_first_and_its_private_domain_never_reaches_the_resolver() {
        let network = VirtualNetwork::new();
        network.add_name("kv", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        network.add_name("kv.shop.loophost.internal", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        network.add_private_domain("loophost.internal");
        let any = Policy {
            name_lookup: crate::NameLookup::Any,
            ..Policy::default()
        };
        for name in ["kv", "KV.", "kv.shop.loophost.internal"] {
            assert_eq!(
                resolve_on(&network, &Policy::default(), name),
                Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
                "{name}"
            );
        }
        // Another workload's name: unresolvable even with every lookup allowed.
        assert_eq!(
            resolve_on(&network, &any, "kv.other.loophost.internal"),
            Err(ErrorCode::NameUnresolvable)
        );
        // A network without the name knows nothing of it.
        assert_eq!(resolve_now("kv"), Err(ErrorCode::NameUnresolvable));
    }
}
