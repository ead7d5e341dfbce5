//! Accepting TCP connections with tokio on wasm32-wasip2, woken by the
//! reactor instead of a timer.
//!
//! Why this crate exists: `tokio::net::TcpListener::accept` fails there.
//! mio accepts on WASI with `accept()` and then makes the new socket
//! non-blocking with `fcntl(F_SETFL, O_NONBLOCK)`; the wasi-libc in Rust
//! 1.95's wasm32-wasip2 sysroot (wasi-sdk 30) has no `F_GETFL`/`F_SETFL` for
//! sockets and returns `EINVAL` — after the connection was taken, so the
//! client sees a reset. (wasi-libc fixed it in PR #742, first in wasi-sdk
//! 31; `mio-accept4-wasi.patch` next to this crate is the mio change we would
//! send upstream: accept with `accept4(SOCK_NONBLOCK)` on WASI.) The usual
//! workaround, accepting with a non-blocking std listener and sleeping 1 ms
//! when nothing is pending, adds up to a millisecond to every connect and
//! keeps an idle server waking up a thousand times a second.
//!
//! How: tokio offers no `AsyncFd` on WASI, but it registers any
//! `TcpStream`'s descriptor with its reactor. So the listening socket is
//! registered disguised as a stream and only ever used through
//! `async_io(READABLE, ..)`, whose closure accepts with std; a `WouldBlock`
//! from it clears readiness and re-arms mio's poll selector. The accepted
//! socket is made non-blocking with `ioctl(FIONBIO)` (std's
//! `set_nonblocking`), which wasi-libc supports.
//!
//! Once Rust ships a newer wasi-libc, `tokio::net::TcpListener` works as is
//! and this crate can go.

use std::io;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// A listening socket whose readiness comes from tokio's reactor.
pub struct TcpListener {
    /// The listener, registered as a stream; never read from or written to.
    io: TcpStream,
}

impl TcpListener {
    /// Binds and listens on `addr`. Must be called inside a tokio runtime.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::from_std(std::net::TcpListener::bind(addr)?)
    }

    /// Takes a bound, listening std listener. Must be called inside a runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        // SAFETY: the descriptor was just released by `into_raw_fd`; the
        // stream owns it from here on and closes it on drop.
        let disguised = unsafe { std::net::TcpStream::from_raw_fd(listener.into_raw_fd()) };
        Ok(TcpListener {
            io: TcpStream::from_std(disguised)?,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // getsockname answers the same for a listener as for a stream.
        self.io.local_addr()
    }

    /// Waits for the next connection (no timer, no busy loop).
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self
            .io
            .async_io(Interest::READABLE, || {
                // SAFETY: borrows the descriptor `self.io` owns;
                // ManuallyDrop keeps this temporary from closing it.
                let listener = ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(self.io.as_raw_fd()) });
                listener.accept()
            })
            .await?;
        stream.set_nonblocking(true)?;
        Ok((TcpStream::from_std(stream)?, peer))
    }
}
