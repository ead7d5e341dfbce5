//! `tcp` and `tcp-create-socket`.

use crate::bindings::network::{IpAddressFamily, IpSocketAddress};
use crate::bindings::tcp::{self, ShutdownType};
use crate::bindings::tcp_create_socket;
use crate::error::SocketResult;
use crate::tcp::TcpSocket;
use crate::{Network, SocketsCtxView};
use std::net::Shutdown;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Duration;
use wasmtime_wasi_io::poll::{DynPollable, subscribe};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

impl tcp_create_socket::Host for SocketsCtxView<'_> {
    fn create_tcp_socket(&mut self, family: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        let slot = self.ctx.socket_slot()?;
        Ok(self.table.push(TcpSocket::new(self.ctx, family, slot))?)
    }
}

impl tcp::Host for SocketsCtxView<'_> {}

impl tcp::HostTcpSocket for SocketsCtxView<'_> {
    async fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&this)?;
        socket.start_bind(self.ctx, local_address.into())
    }

    fn finish_bind(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.table.get_mut(&this)?.finish_bind()
    }

    fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&this)?;
        socket.start_connect(self.ctx, remote_address.into())
    }

    fn finish_connect(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
        let (input, output) = self.table.get_mut(&this)?.finish_connect()?;
        let input = self.table.push_child(input, &this)?;
        let output = self.table.push_child(output, &this)?;
        Ok((input, output))
    }

    async fn start_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.table.get_mut(&this)?.start_listen()
    }

    fn finish_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.table.get_mut(&this)?.finish_listen()
    }

    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<TcpSocket>, Resource<DynInputStream>, Resource<DynOutputStream>)> {
        let (socket, input, output) = self.table.get_mut(&this)?.accept()?;
        let socket = self.table.push(socket)?;
        let input = self.table.push_child(input, &socket)?;
        let output = self.table.push_child(output, &socket)?;
        Ok((socket, input, output))
    }

    fn local_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        Ok(self.table.get_mut(&this)?.local_address()?.into())
    }

    fn remote_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        Ok(self.table.get_mut(&this)?.remote_address()?.into())
    }

    fn is_listening(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&this)?.is_listening())
    }

    fn address_family(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(&this)?.address_family())
    }

    fn set_listen_backlog_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_listen_backlog_size(value)
    }

    fn keep_alive_enabled(&mut self, this: Resource<TcpSocket>) -> SocketResult<bool> {
        self.table.get(&this)?.keep_alive_enabled()
    }

    fn set_keep_alive_enabled(&mut self, this: Resource<TcpSocket>, value: bool) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_keep_alive_enabled(value)
    }

    fn keep_alive_idle_time(&mut self, this: Resource<TcpSocket>) -> SocketResult<Duration> {
        self.table.get(&this)?.keep_alive_idle_time()
    }

    fn set_keep_alive_idle_time(&mut self, this: Resource<TcpSocket>, value: Duration) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_keep_alive_idle_time(value)
    }

    fn keep_alive_interval(&mut self, this: Resource<TcpSocket>) -> SocketResult<Duration> {
        self.table.get(&this)?.keep_alive_interval()
    }

    fn set_keep_alive_interval(&mut self, this: Resource<TcpSocket>, value: Duration) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_keep_alive_interval(value)
    }

    fn keep_alive_count(&mut self, this: Resource<TcpSocket>) -> SocketResult<u32> {
        self.table.get(&this)?.keep_alive_count()
    }

    fn set_keep_alive_count(&mut self, this: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_keep_alive_count(value)
    }

    fn hop_limit(&mut self, this: Resource<TcpSocket>) -> SocketResult<u8> {
        self.table.get(&this)?.hop_limit()
    }

    fn set_hop_limit(&mut self, this: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_hop_limit(value)
    }

    fn receive_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.table.get(&this)?.receive_buffer_size()
    }

    fn set_receive_buffer_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_receive_buffer_size(value)
    }

    fn send_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.table.get(&this)?.send_buffer_size()
    }

    fn set_send_buffer_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.table.get_mut(&this)?.set_send_buffer_size(value)
    }

    fn subscribe(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, this)
    }

    fn shutdown(&mut self, this: Resource<TcpSocket>, how: ShutdownType) -> SocketResult<()> {
        let how = match how {
            ShutdownType::Receive => Shutdown::Read,
            ShutdownType::Send => Shutdown::Write,
            ShutdownType::Both => Shutdown::Both,
        };
        self.table.get_mut(&this)?.shutdown(how)
    }

    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        // Dropping closes the connection (see `TcpSocket`'s Drop).
        self.table.delete(this)?;
        Ok(())
    }
}
