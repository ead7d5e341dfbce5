//! `network`, `instance-network`, `ip-name-lookup` and address conversions.

use crate::bindings::network::{ErrorCode, IpAddress, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress};
use crate::bindings::{instance_network, ip_name_lookup, network};
use crate::error::{SocketError, stream_error_code};
use crate::lookup::ResolveAddressStream;
use crate::{Network, SocketsCtxView};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use wasmtime::component::Resource;
use wasmtime_wasi_io::poll::{DynPollable, subscribe};

impl network::Host for SocketsCtxView<'_> {
    fn convert_error_code(&mut self, err: SocketError) -> wasmtime::Result<ErrorCode> {
        err.into_wasmtime()
    }

    fn network_error_code(&mut self, err: Resource<wasmtime::Error>) -> wasmtime::Result<Option<ErrorCode>> {
        Ok(stream_error_code(self.table.get(&err)?))
    }
}

impl network::HostNetwork for SocketsCtxView<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl instance_network::Host for SocketsCtxView<'_> {
    fn instance_network(&mut self) -> wasmtime::Result<Resource<Network>> {
        Ok(self.table.push(Network)?)
    }
}

impl ip_name_lookup::Host for SocketsCtxView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        self.table.get(&network)?;
        let stream = ResolveAddressStream::start(&self.ctx.network, &self.ctx.policy, &name)?;
        Ok(self.table.push(stream)?)
    }
}

impl ip_name_lookup::HostResolveAddressStream for SocketsCtxView<'_> {
    fn resolve_next_address(&mut self, this: Resource<ResolveAddressStream>) -> Result<Option<IpAddress>, SocketError> {
        Ok(self.table.get_mut(&this)?.next()?.map(IpAddress::from))
    }

    fn subscribe(&mut self, this: Resource<ResolveAddressStream>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl From<IpSocketAddress> for SocketAddr {
    fn from(addr: IpSocketAddress) -> Self {
        match addr {
            IpSocketAddress::Ipv4(v4) => {
                let (a, b, c, d) = v4.address;
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), v4.port))
            }
            IpSocketAddress::Ipv6(v6) => {
                let (a, b, c, d, e, f, g, h) = v6.address;
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::new(a, b, c, d, e, f, g, h),
                    v6.port,
                    v6.flow_info,
                    v6.scope_id,
                ))
            }
        }
    }
}

impl From<SocketAddr> for IpSocketAddress {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => {
                let [a, b, c, d] = v4.ip().octets();
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: v4.port(),
                    address: (a, b, c, d),
                })
            }
            SocketAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h] = v6.ip().segments();
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: v6.port(),
                    flow_info: v6.flowinfo(),
                    address: (a, b, c, d, e, f, g, h),
                    scope_id: v6.scope_id(),
                })
            }
        }
    }
}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                IpAddress::Ipv4((a, b, c, d))
            }
            IpAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h] = v6.segments();
                IpAddress::Ipv6((a, b, c, d, e, f, g, h))
            }
        }
    }
}
