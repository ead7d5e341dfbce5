//! The `udp-socket` resource and its datagram streams, on the virtual network.
//!
//! Datagrams between loopback addresses are queued straight into the
//! receiver's [`UdpEndpoint`]; like real UDP, a datagram to a port nobody
//! bound, or to a full queue, is dropped silently.

use crate::bindings::network::{ErrorCode, IpAddressFamily};
use crate::error::{SocketError, SocketResult};
use crate::network::{PortBinding, Protocol, UdpEndpoint, VirtualNetwork, loopback_for};
use crate::policy::{Route, SocketUse};
use crate::tcp::{check_bind_route, check_local_address, check_remote_address};
use crate::{Policy, SocketsCtx};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime_wasi_io::poll::Pollable;

/// Largest UDP payload.
pub(crate) const MAX_DATAGRAM: usize = u16::MAX as usize;
/// Datagrams `check-send` permits at once.
const SEND_PERMITS: u64 = 64;

/// A datagram in flight on the virtual network.
pub(crate) struct Datagram {
    pub(crate) data: Vec<u8>,
    pub(crate) from: SocketAddr,
}

/// The largest receive buffer a socket may ask for (like `net.core.rmem_max`).
const MAX_RECEIVE_BUFFER: u64 = 4 * 1024 * 1024;

/// A `wasi:sockets/udp.udp-socket`.
pub struct UdpSocket {
    family: IpAddressFamily,
    bound: Option<Bound>,
    bind_in_progress: bool,
    remote: Option<SocketAddr>,
    hop_limit: u8,
    receive_buffer: u64,
    send_buffer: u64,
    _slot: crate::SocketSlot,
}

struct Bound {
    binding: Arc<PortBinding>,
    endpoint: Arc<UdpEndpoint>,
}

impl UdpSocket {
    pub(crate) fn new(family: IpAddressFamily, slot: crate::SocketSlot) -> Self {
        UdpSocket {
            _slot: slot,
            family,
            bound: None,
            bind_in_progress: false,
            remote: None,
            hop_limit: 64,
            receive_buffer: 208 * 1024,
            send_buffer: 208 * 1024,
        }
    }

    pub(crate) fn start_bind(&mut self, ctx: &SocketsCtx, addr: SocketAddr) -> SocketResult<()> {
        if self.bind_in_progress {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        check_local_address(self.family, addr)?;
        if self.bound.is_some() {
            return Err(ErrorCode::InvalidState.into());
        }
        check_bind_route(ctx, SocketUse::UdpBind, addr)?;
        let binding = ctx.network.bind(Protocol::Udp, addr, ctx.port_owner)?;
        let endpoint = binding.open_udp(usize::try_from(self.receive_buffer).unwrap_or(usize::MAX));
        self.bound = Some(Bound {
            binding: Arc::new(binding),
            endpoint,
        });
        self.bind_in_progress = true;
        Ok(())
    }

    pub(crate) fn finish_bind(&mut self) -> SocketResult<()> {
        if !self.bind_in_progress {
            return Err(ErrorCode::NotInProgress.into());
        }
        self.bind_in_progress = false;
        Ok(())
    }

    /// Sets (or clears) the fixed peer and returns fresh datagram streams.
    pub(crate) fn stream(
        &mut self,
        ctx: &SocketsCtx,
        remote: Option<SocketAddr>,
    ) -> SocketResult<(IncomingDatagramStream, OutgoingDatagramStream)> {
        let Some(bound) = &self.bound else {
            return Err(ErrorCode::InvalidState.into());
        };
        if let Some(remote) = remote {
            check_remote_address(self.family, remote)?;
            route_send(&ctx.policy, remote)?;
        }
        self.remote = remote;
        let incoming = IncomingDatagramStream {
            endpoint: bound.endpoint.clone(),
            remote,
        };
        let outgoing = OutgoingDatagramStream {
            network: ctx.network.clone(),
            policy: ctx.policy.clone(),
            family: self.family,
            local: bound.binding.clone(),
            endpoint: bound.endpoint.clone(),
            remote,
            permitted: 0,
        };
        Ok((incoming, outgoing))
    }

    pub(crate) fn local_address(&self) -> SocketResult<SocketAddr> {
        match &self.bound {
            Some(bound) => Ok(source_address(bound.binding.addr(), self.remote)),
            None => Err(ErrorCode::InvalidState.into()),
        }
    }

    pub(crate) fn remote_address(&self) -> SocketResult<SocketAddr> {
        self.remote.ok_or_else(|| ErrorCode::InvalidState.into())
    }

    pub(crate) fn address_family(&self) -> IpAddressFamily {
        self.family
    }

    pub(crate) fn unicast_hop_limit(&self) -> SocketResult<u8> {
        Ok(self.hop_limit)
    }

    pub(crate) fn set_unicast_hop_limit(&mut self, value: u8) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        self.hop_limit = value;
        Ok(())
    }

    pub(crate) fn receive_buffer_size(&self) -> SocketResult<u64> {
        Ok(self.receive_buffer)
    }

    pub(crate) fn set_receive_buffer_size(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        // Clamped like the kernel's rmem_max: the size bounds host memory.
        let value = value.min(MAX_RECEIVE_BUFFER);
        self.receive_buffer = value;
        if let Some(bound) = &self.bound {
            bound.endpoint.set_capacity(value as usize);
        }
        Ok(())
    }

    pub(crate) fn send_buffer_size(&self) -> SocketResult<u64> {
        Ok(self.send_buffer)
    }

    pub(crate) fn set_send_buffer_size(&mut self, value: u64) -> SocketResult<()> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        self.send_buffer = value;
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for UdpSocket {
    async fn ready(&mut self) {}
}

/// Where a datagram to `remote` may go; only the virtual network carries UDP.
fn route_send(policy: &Policy, remote: SocketAddr) -> Result<(), ErrorCode> {
    match policy.route(SocketUse::UdpSend, remote) {
        Route::Virtual => Ok(()),
        Route::Host => {
            tracing::debug!(%remote, "udp to the real network is not supported; denied");
            Err(ErrorCode::AccessDenied)
        }
        Route::Deny(reason) => {
            tracing::debug!(%remote, %reason, "udp send denied by policy");
            Err(ErrorCode::AccessDenied)
        }
    }
}

/// The address datagrams leave from: a wildcard binding sends from the
/// loopback address of the destination's family.
fn source_address(bound: SocketAddr, to: Option<SocketAddr>) -> SocketAddr {
    match to {
        Some(to) if bound.ip().is_unspecified() => SocketAddr::new(loopback_for(to.ip()), bound.port()),
        _ => bound,
    }
}

/// A received datagram as the guest sees it.
pub(crate) struct Received {
    pub(crate) data: Vec<u8>,
    pub(crate) from: SocketAddr,
}

/// `wasi:sockets/udp.incoming-datagram-stream`.
pub struct IncomingDatagramStream {
    endpoint: Arc<UdpEndpoint>,
    remote: Option<SocketAddr>,
}

impl IncomingDatagramStream {
    pub(crate) fn receive(&mut self, max: u64) -> SocketResult<Vec<Received>> {
        if self.remote.is_some() && self.endpoint.take_refused() {
            return Err(ErrorCode::ConnectionRefused.into());
        }
        let max = usize::try_from(max).unwrap_or(usize::MAX).min(1024);
        let remote = self.remote;
        let datagrams = self.endpoint.receive(max, |d| remote.is_none_or(|r| r == d.from));
        Ok(datagrams
            .into_iter()
            .map(|d| Received {
                data: d.data,
                from: d.from,
            })
            .collect())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for IncomingDatagramStream {
    async fn ready(&mut self) {
        self.endpoint.wait_incoming().await;
    }
}

/// `wasi:sockets/udp.outgoing-datagram-stream`.
pub struct OutgoingDatagramStream {
    network: VirtualNetwork,
    policy: Arc<Policy>,
    family: IpAddressFamily,
    local: Arc<PortBinding>,
    /// Our own receive queue, where "port unreachable" is reported.
    endpoint: Arc<UdpEndpoint>,
    remote: Option<SocketAddr>,
    /// Datagrams the last `check-send` permitted; each `send` uses them up.
    permitted: u64,
}

impl OutgoingDatagramStream {
    pub(crate) fn check_send(&mut self) -> SocketResult<u64> {
        self.permitted = SEND_PERMITS;
        Ok(SEND_PERMITS)
    }

    /// Sends datagrams in order; stops at the first failure, which is
    /// reported only if nothing was sent. Sending more than the preceding
    /// `check-send` permitted is a guest bug and traps, as the WIT says.
    pub(crate) fn send(&mut self, datagrams: Vec<(Vec<u8>, Option<SocketAddr>)>) -> SocketResult<u64> {
        if datagrams.is_empty() {
            return Ok(0);
        }
        if datagrams.len() as u64 > self.permitted {
            return Err(SocketError::Trap(wasmtime::format_err!(
                "unpermitted: send of {} datagrams exceeds the {} permitted by check-send",
                datagrams.len(),
                self.permitted
            )));
        }
        self.permitted = 0;
        let mut sent = 0;
        for (data, to) in datagrams {
            match self.send_one(data, to) {
                Ok(()) => sent += 1,
                Err(err) if sent == 0 => return Err(err.into()),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    fn send_one(&mut self, data: Vec<u8>, to: Option<SocketAddr>) -> Result<(), ErrorCode> {
        let to = match (self.remote, to) {
            (Some(fixed), Some(to)) if fixed != to => return Err(ErrorCode::InvalidArgument),
            (Some(fixed), _) => fixed,
            (None, Some(to)) => to,
            (None, None) => return Err(ErrorCode::InvalidArgument),
        };
        check_remote_address(self.family, to)?;
        if data.len() > MAX_DATAGRAM {
            return Err(ErrorCode::DatagramTooLarge);
        }
        route_send(&self.policy, to)?;
        match self.network.find_udp(to) {
            Some(endpoint) => {
                let from = source_address(self.local.addr(), Some(to));
                endpoint.deliver(Datagram { data, from });
            }
            // Like an ICMP "port unreachable": a connected socket learns
            // of it on its next receive; an unconnected one never does.
            None if self.remote.is_some() => self.endpoint.report_refused(),
            None => {}
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutgoingDatagramStream {
    async fn ready(&mut self) {}
}
