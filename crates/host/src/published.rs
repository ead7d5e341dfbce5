//! Published ports: a real TCP listener on the machine spliced into a
//! service's virtual port, so tools outside (`redis-cli -p 16379`) reach it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasi_sockets_virt::VirtualNetwork;

/// Connections one published port carries at once; more wait in the backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// Splices each real connection into the service's virtual listener.
pub async fn forward(listener: TcpListener, network: VirtualNetwork, port: u16) {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = open.clone().acquire_owned().await else {
            return;
        };
        let (mut real, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // E.g. out of file descriptors: say so, and don't spin.
                tracing::warn!(%target, "published port: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small request/response protocols (RESP, HTTP) must not wait on Nagle.
        let _ = real.set_nodelay(true);
        let network = network.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match network.connect(target).await {
                Ok(mut virt) => {
                    let _ = tokio::io::copy_bidirectional(&mut real, &mut virt).await;
                }
                Err(code) => tracing::debug!(%peer, %target, ?code, "published port: service refused"),
            }
        });
    }
}
