//! Guest stdout/stderr as host log lines, each tagged with who wrote it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

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
}

impl LogOutput {
    pub fn new(origin: Origin) -> Self {
        LogOutput {
            origin: Arc::new(origin),
            partial: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let o = &self.origin;
        tracing::info!(target: "guest", workload = %o.workload, component = %o.name, stream = o.stream, "{line}");
    }

    fn push(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        partial.extend_from_slice(bytes);
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
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
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
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
