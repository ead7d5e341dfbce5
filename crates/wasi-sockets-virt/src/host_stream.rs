//! `VirtualTcpStream`: the host's own end of a virtual connection, as a
//! tokio `AsyncRead + AsyncWrite`, for embedders that bridge real sockets or
//! speak protocols (HTTP) into a workload's loopback.

use crate::network::Connection;
use crate::pipe::PipeClosed;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection to a virtual listener, opened by the host with
/// [`VirtualNetwork::connect`](crate::VirtualNetwork::connect).
/// Dropping it closes the connection cleanly.
pub struct VirtualTcpStream {
    /// Shared with the wait futures below.
    conn: Arc<Connection>,
    read_wait: Option<Wait>,
    write_wait: Option<Wait>,
}

impl VirtualTcpStream {
    pub(crate) fn new(conn: Connection) -> Self {
        VirtualTcpStream {
            conn: Arc::new(conn),
            read_wait: None,
            write_wait: None,
        }
    }

    /// Our address on the virtual network.
    pub fn local_addr(&self) -> SocketAddr {
        self.conn.local()
    }

    /// The listener's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.remote()
    }

    /// Aborts the connection: the peer sees `connection-reset`.
    pub fn reset(self) {
        self.conn.reset();
    }
}

fn io_error(closed: PipeClosed) -> io::Error {
    match closed {
        PipeClosed::Eof => io::Error::from(io::ErrorKind::BrokenPipe),
        PipeClosed::Reset => io::Error::from(io::ErrorKind::ConnectionReset),
    }
}

/// Polls a stored wait future, creating it from `pipe` on first use.
fn poll_wait(
    slot: &mut Option<Wait>,
    conn: &Arc<Connection>,
    cx: &mut Context<'_>,
    make: fn(Arc<Connection>) -> Wait,
) -> Poll<()> {
    let wait = slot.get_or_insert_with(|| make(conn.clone()));
    let ready = wait.as_mut().poll(cx);
    if ready.is_ready() {
        *slot = None;
    }
    ready
}

impl AsyncRead for VirtualTcpStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match this.conn.rx().read(buf.remaining()) {
                Ok(bytes) if !bytes.is_empty() || buf.remaining() == 0 => {
                    buf.put_slice(&bytes);
                    return Poll::Ready(Ok(()));
                }
                Ok(_) => {}
                Err(PipeClosed::Eof) => return Poll::Ready(Ok(())),
                Err(closed) => return Poll::Ready(Err(io_error(closed))),
            }
            if poll_wait(&mut this.read_wait, &this.conn, cx, |c| {
                Box::pin(async move { c.rx().wait_readable().await })
            })
            .is_pending()
            {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for VirtualTcpStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match this.conn.tx().check_write() {
                Ok(0) => {}
                Ok(n) => {
                    let n = n.min(buf.len());
                    this.conn
                        .tx()
                        .write(Bytes::copy_from_slice(&buf[..n]))
                        .map_err(io_error)?;
                    return Poll::Ready(Ok(n));
                }
                Err(closed) => return Poll::Ready(Err(io_error(closed))),
            }
            if poll_wait(&mut this.write_wait, &this.conn, cx, |c| {
                Box::pin(async move { c.tx().wait_writable().await })
            })
            .is_pending()
            {
                return Poll::Pending;
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.tx().close_write();
        Poll::Ready(Ok(()))
    }
}
