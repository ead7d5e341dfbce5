//! `wasi:io` streams over a virtual connection.
//!
//! Dropping the output stream sends FIN and dropping the input stream stops
//! reading, as with upstream's real sockets; when the owning store was
//! aborted (it trapped or was killed) both reset the connection instead.

use crate::bindings::network::ErrorCode;
use crate::network::{AbortFlag, Connection};
use crate::pipe::PipeClosed;
use crate::trace::ReadMark;
use bytes::Bytes;
use std::sync::Arc;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream, StreamError, StreamResult};

pub(crate) struct VirtualInputStream {
    pub(crate) conn: Arc<Connection>,
    pub(crate) abort: AbortFlag,
    /// A reset is reported once as an error, then the stream is closed.
    reported_reset: bool,
    /// Set on accepted connections: reads tell the store which one it serves.
    read_mark: Option<ReadMark>,
}

pub(crate) struct VirtualOutputStream {
    pub(crate) conn: Arc<Connection>,
    pub(crate) abort: AbortFlag,
    /// What the last `check-write` allowed and `write` has not used yet.
    pub(crate) permit: usize,
}

pub(crate) fn pair(
    conn: &Arc<Connection>,
    abort: &AbortFlag,
    read_mark: Option<ReadMark>,
) -> (VirtualInputStream, VirtualOutputStream) {
    (
        VirtualInputStream {
            conn: conn.clone(),
            abort: abort.clone(),
            reported_reset: false,
            read_mark,
        },
        VirtualOutputStream {
            conn: conn.clone(),
            abort: abort.clone(),
            permit: 0,
        },
    )
}

fn reset_error() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::from(ErrorCode::ConnectionReset))
}

#[wasmtime_wasi::async_trait]
impl InputStream for VirtualInputStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match self.conn.rx().read(size) {
            Ok(bytes) => {
                if let (Some(mark), false) = (&self.read_mark, bytes.is_empty()) {
                    mark.mark();
                }
                Ok(bytes)
            }
            Err(PipeClosed::Eof) => Err(StreamError::Closed),
            Err(PipeClosed::Reset) if !self.reported_reset => {
                self.reported_reset = true;
                Err(reset_error())
            }
            Err(PipeClosed::Reset) => Err(StreamError::Closed),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for VirtualInputStream {
    async fn ready(&mut self) {
        self.conn.rx().wait_readable().await;
    }
}

impl Drop for VirtualInputStream {
    fn drop(&mut self) {
        if self.abort.is_set() {
            self.conn.reset();
        } else {
            self.conn.rx().close_read();
        }
    }
}

fn write_error(closed: PipeClosed) -> StreamError {
    match closed {
        PipeClosed::Eof => StreamError::Closed,
        PipeClosed::Reset => reset_error(),
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for VirtualOutputStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        // Writing more than `check-write` allowed is a guest bug, and a trap
        // upstream too; it must not be mistaken for a network event. The
        // permit is the one handed out: the network's shared budget may have
        // shrunk since, which is not this guest's fault.
        if bytes.len() > self.permit {
            return Err(StreamError::trap("write exceeded the permit returned by check-write"));
        }
        self.permit -= bytes.len();
        self.conn.tx().write(bytes).map_err(write_error)
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Written bytes are immediately visible to the reader.
        self.conn.tx().check_write().map(|_| ()).map_err(write_error)
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let permit = self.conn.tx().check_write().map_err(write_error)?;
        self.permit = permit;
        Ok(permit)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for VirtualOutputStream {
    async fn ready(&mut self) {
        self.conn.tx().wait_writable().await;
    }
}

impl Drop for VirtualOutputStream {
    fn drop(&mut self) {
        if self.abort.is_set() {
            self.conn.reset();
        } else {
            self.conn.tx().close_write();
        }
    }
}
