//! A driver for fuzzing (feature `fuzzing`): runs any sequence of socket
//! operations against the crate's TCP state machine and virtual network,
//! natively, with no wasm. Whatever the sequence: nothing panics, and once
//! everything is dropped every port, connection and buffered byte is back.

pub mod route;

use crate::bindings::network::IpAddressFamily;
use crate::tcp::TcpSocket;
use crate::{NetworkConfig, Policy, SocketsCtx, VirtualNetwork};
use bytes::Bytes;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

/// Runs the operations encoded in `data` (three bytes each) and checks the
/// network is empty afterwards. Panics on a violated invariant.
pub fn run(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(drive(data));
}

async fn drive(data: &[u8]) {
    // Small limits, so sequences reach them.
    let network = VirtualNetwork::with_config(NetworkConfig {
        connection_buffer: 1024,
        max_connections: 6,
        max_buffered_bytes: 3000,
        max_sockets_per_store: 12,
        ..NetworkConfig::default()
    });
    {
        let ctx = SocketsCtx::new(network.clone(), Policy::default());
        let mut sockets: Vec<TcpSocket> = Vec::new();
        let mut streams: Vec<(DynInputStream, DynOutputStream)> = Vec::new();
        let addr = |b: u8| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 7000 + u16::from(b % 4));
        for op in data.chunks(3) {
            let (code, a, b) = (op[0], op.get(1).copied().unwrap_or(0), op.get(2).copied().unwrap_or(0));
            let sock = |sockets: &Vec<TcpSocket>| (!sockets.is_empty()).then(|| usize::from(a) % sockets.len());
            let stream = |streams: &Vec<_>| (!streams.is_empty()).then(|| usize::from(a) % streams.len());
            match code % 12 {
                0 => {
                    if let Ok(slot) = ctx.socket_slot() {
                        sockets.push(TcpSocket::new(&ctx, IpAddressFamily::Ipv4, slot));
                    }
                }
                1 => {
                    if let Some(i) = sock(&sockets) {
                        let target = if b & 0x80 != 0 {
                            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)
                        } else {
                            addr(b)
                        };
                        if sockets[i].start_bind(&ctx, target).is_ok() {
                            let _ = sockets[i].finish_bind();
                        }
                    }
                }
                2 => {
                    if let Some(i) = sock(&sockets)
                        && sockets[i].start_listen().is_ok()
                    {
                        let _ = sockets[i].finish_listen();
                    }
                }
                3 => {
                    if let Some(i) = sock(&sockets) {
                        let _ = sockets[i].start_connect(&ctx, addr(b));
                    }
                }
                4 => {
                    if let Some(i) = sock(&sockets)
                        && let Ok(pair) = sockets[i].finish_connect()
                    {
                        streams.push(pair);
                    }
                }
                5 => {
                    if let Some(i) = sock(&sockets)
                        && let Ok((socket, input, output)) = sockets[i].accept()
                    {
                        sockets.push(socket);
                        streams.push((input, output));
                    }
                }
                6 => {
                    if let Some(i) = stream(&streams) {
                        let out = &mut streams[i].1;
                        if let Ok(permit) = out.check_write() {
                            let n = permit.min(usize::from(b) * 8);
                            let _ = out.write(Bytes::from(vec![b; n]));
                        }
                    }
                }
                7 => {
                    if let Some(i) = stream(&streams) {
                        let _ = streams[i].0.read(usize::from(b) * 8);
                    }
                }
                8 => {
                    if let Some(i) = sock(&sockets) {
                        let how = [Shutdown::Read, Shutdown::Write, Shutdown::Both][usize::from(b) % 3];
                        let _ = sockets[i].shutdown(how);
                    }
                }
                9 => {
                    if let Some(i) = sock(&sockets) {
                        drop(sockets.swap_remove(i));
                    }
                }
                10 => {
                    if let Some(i) = stream(&streams) {
                        drop(streams.swap_remove(i));
                    }
                }
                _ => {
                    if b & 1 == 1 {
                        ctx.abort_connections();
                    }
                    tokio::task::yield_now().await;
                }
            }
            let stats = network.stats();
            assert!(stats.open_connections <= 6, "connection cap: {stats:?}");
            assert!(stats.buffered_bytes <= 3000 + 1024, "buffer budget: {stats:?}");
        }
        drop(streams);
        drop(sockets);
    }
    let stats = network.stats();
    assert_eq!(stats, crate::NetworkStats::default(), "everything given back");
}
