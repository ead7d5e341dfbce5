//! Guest stdout/stderr as host log lines, each tagged with who wrote it
//! (and, for `loophost run`, also written to the terminal as they are).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasi_sockets_virt::ConnectionContext;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Which guest wrote a line.
#[derive(Clone, Debug)]
pub struct Origin {
    pub workload: String,
    pub name: String,
    pub stream: &'static str,
}

/// A `StdoutStream` that turns guest output into one log event per line.
#[derive(Clone)]
pub struct LogOutput {
    origin: Arc<Origin>,
    partial: Arc<Mutex<Vec<u8>>>,
    /// For services: the connection the guest is serving, when unambiguous.
    connection: Option<ConnectionContext>,
    /// Also write the bytes, unchanged, to this stream of the host.
    echo: Option<Echo>,
}

/// The host stream a [`LogOutput`] echoes to.
#[derive(Clone, Copy, Debug)]
pub enum Echo {
    Stdout,
    Stderr,
}

impl Echo {
    fn write(self, bytes: &[u8]) {
        use std::io::Write;
        // A closed terminal or pipe is the guest's problem no more than ours:
        // the line still becomes a log record.
        let _ = match self {
            Echo::Stdout => std::io::stdout().lock().write_all(bytes),
            Echo::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    }

    fn is_terminal(self) -> bool {
        match self {
            Echo::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
            Echo::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

impl LogOutput {
    pub fn new(origin: Origin) -> Self {
        LogOutput {
            origin: Arc::new(origin),
            partial: Arc::default(),
            connection: None,
            echo: None,
        }
    }

    /// Also writes everything, as is, to the host's `echo` stream (for
    /// `loophost run`, where the terminal shows guest output verbatim and
    /// the log lines go only to the exporter).
    pub fn echoing_to(mut self, echo: Echo) -> Self {
        self.echo = Some(echo);
        self
    }

    /// Lines written while the store serves exactly one connection are
    /// attributed to that connection's span.
    pub fn with_connection_context(mut self, connection: ConnectionContext) -> Self {
        self.connection = Some(connection);
        self
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let o = &self.origin;
        let event = || tracing::info!(target: "guest", workload = %o.workload, component = %o.name, stream = o.stream, "{line}");
        // The line belongs to the connection the guest serves, else to the
        // span it runs in (its request, its job, its service incarnation).
        let span = self
            .connection
            .as_ref()
            .and_then(ConnectionContext::current)
            .unwrap_or_else(tracing::Span::current);
        crate::telemetry::in_span(&span, event)
    }

    fn push(&self, bytes: &[u8]) {
        if let Some(echo) = self.echo {
            echo.write(bytes);
        }
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        // Emit every complete line in one pass; keep only the unfinished tail.
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if partial.is_empty() {
                self.emit(&rest[..pos]);
            } else {
                partial.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut *partial);
                self.emit(&line);
            }
            rest = &rest[pos + 1..];
        }
        partial.extend_from_slice(rest);
        // A guest that never prints a newline must not grow host memory.
        if partial.len() > 16 * 1024 {
            let line = std::mem::take(&mut *partial);
            self.emit(&line);
        }
    }
}

impl Drop for LogOutput {
    fn drop(&mut self) {
        if Arc::strong_count(&self.partial) == 1 {
            let rest = std::mem::take(&mut *self.partial.lock().unwrap_or_else(|e| e.into_inner()));
            if !rest.is_empty() {
                self.emit(&rest);
            }
        }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        self.echo.is_some_and(Echo::is_terminal)
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Writes are handled synchronously, inside the guest's call, so each
    /// line is logged in the span the guest runs in (its request or connection).
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
