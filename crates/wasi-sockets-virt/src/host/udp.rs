//! `udp` and `udp-create-socket`.

use crate::bindings::network::{IpAddressFamily, IpSocketAddress};
use crate::bindings::udp::{self, IncomingDatagram, OutgoingDatagram};
use crate::bindings::udp_create_socket;
use crate::error::SocketResult;
use crate::udp::{IncomingDatagramStream, OutgoingDatagramStream, UdpSocket};
use crate::{Network, SocketsCtxView};
use wasmtime::component::Resource;
use wasmtime_wasi_io::poll::{DynPollable, subscribe};

impl udp_create_socket::Host for SocketsCtxView<'_> {
    fn create_udp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        let slot = self.ctx.socket_slot()?;
        Ok(self.table.push(UdpSocket::new(family, slot))?)
    }
}

impl udp::Host for SocketsCtxView<'_> {}

impl udp::HostUdpSocket for SocketsCtxView<'_> {
    async fn start_bind(
        &mut self,
        this: Resource<UdpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&this)?;
        socket.start_bind(self.ctx, local_address.into())
    }

    fn finish_bind(&mut self, this: Resource<UdpSocket>) -> SocketResult<()> {
        self.table.get_mut(&this)?.finish_bind()
    }

    async fn stream(
        &mut self,
        this: Resource<UdpSocket>,
        remote_address: Option<IpSocketAddress>,
    ) -> SocketResult<(Resource<IncomingDatagramStream>, Resource<OutgoingDatagramStream>)> {
        let socket = self.table.get_mut(&this)?;
        let (incoming, outgoing) = socket.stream(self.ctx, remote_address.map(Into::into))?;
        let incoming = self.table.push_child(incoming, &this)?;
        let outgoing = self.table.push_child(outgoing, &this)?;
        Ok((incoming, outgoing))
    }

    fn local_address(&mut self, this: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        Ok(self.table.get(&this)?.local_address()?.into())
    }

    fn remote_address(&mut self, this: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        Ok(self.table.get(&this)?.remote_address()?.into())
    }

    fn address_family(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(&this)?.address_family())
    }

    fn unicast_hop_limit(&mut self, this: Resource<UdpSocket>) -> SocketResult<u8> {
        self.table.get(&this)?.unicast_hop_limit()
    }

    fn set_unicast_hop_limit(&mut self, this: Resource<UdpSocket>, value: u8) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_unicast_hop_limit(value)
    }

    fn receive_buffer_size(&mut self, this: Resource<UdpSocket>) -> SocketResult<u64> {
        self.table.get(&this)?.receive_buffer_size()
    }

    fn set_receive_buffer_size(&mut self, this: Resource<UdpSocket>, value: u64) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_receive_buffer_size(value)
    }

    fn send_buffer_size(&mut self, this: Resource<UdpSocket>) -> SocketResult<u64> {
        self.table.get(&this)?.send_buffer_size()
    }

    fn set_send_buffer_size(&mut self, this: Resource<UdpSocket>, value: u64) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_send_buffer_size(value)
    }

    fn subscribe(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl udp::HostIncomingDatagramStream for SocketsCtxView<'_> {
    fn receive(
        &mut self,
        this: Resource<IncomingDatagramStream>,
        max_results: u64,
    ) -> SocketResult<Vec<IncomingDatagram>> {
        let received = self.table.get_mut(&this)?.receive(max_results)?;
        Ok(received
            .into_iter()
            .map(|d| IncomingDatagram {
                data: d.data,
                remote_address: d.from.into(),
            })
            .collect())
    }

    fn subscribe(&mut self, this: Resource<IncomingDatagramStream>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<IncomingDatagramStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl udp::HostOutgoingDatagramStream for SocketsCtxView<'_> {
    fn check_send(&mut self, this: Resource<OutgoingDatagramStream>) -> SocketResult<u64> {
        self.table.get_mut(&this)?.check_send()
    }

    fn send(&mut self, this: Resource<OutgoingDatagramStream>, datagrams: Vec<OutgoingDatagram>) -> SocketResult<u64> {
        let datagrams = datagrams
            .into_iter()
            .map(|d| (d.data, d.remote_address.map(Into::into)))
            .collect();
        self.table.get_mut(&this)?.send(datagrams)
    }

    fn subscribe(&mut self, this: Resource<OutgoingDatagramStream>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<OutgoingDatagramStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
