//! Guest stdout/stderr as host log lines, each tagged with who wrote it
//! (and, for `loophost run`, also written to the terminal as they are).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use wasi_sockets_virt::ConnectionContext;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line logged as is; longer ones are cut (and say so).
pub const MAX_LINE: usize = 8 * 1024;
/// Lines a guest may log per second, sustained...
const LINES_PER_SECOND: f64 = 500.0;
/// ...and at once, after a quiet spell.
const LINE_BURST: f64 = 2000.0;

/// Which guest wrote a line.
#[derive(Clone)]
pub struct Origin {
    pub workload: String,
    pub name: String,
    pub stream: &'static str,
    /// Shared by every instance of the same component or service.
    pub limiter: Arc<OutputLimiter>,
}

/// The log-line rate limit of one component or service (all its instances,
/// both streams): a guest printing in a loop cannot flood the host's log or
/// its exporter. Lines over the limit are dropped and counted; a warning
/// says how many, at most once a second.
pub struct OutputLimiter {
    bucket: Mutex<Bucket>,
    /// Whose lines these are, for the reports.
    workload: String,
    name: String,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    reported: Instant,
}

impl Drop for OutputLimiter {
    fn drop(&mut self) {
        let b = self.bucket.get_mut().unwrap_or_else(|e| e.into_inner());
        if b.dropped > 0 {
            report_dropped(&self.workload, &self.name, b.dropped);
        }
    }
}

fn report_dropped(workload: &str, name: &str, dropped: u64) {
    tracing::warn!(workload = %workload, component = %name, dropped,
        "guest output over {LINES_PER_SECOND} lines/s: lines dropped");
    crate::metrics::instruments().guest_lines_dropped.add(
        dropped,
        &[
            opentelemetry::KeyValue::new("workload.name", workload.to_string()),
            opentelemetry::KeyValue::new("component.name", name.to_string()),
        ],
    );
}

impl OutputLimiter {
    /// The limit for the lines of component or service `name` of `workload`.
    pub fn new(workload: &str, name: &str) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(OutputLimiter {
            bucket: Mutex::new(Bucket {
                tokens: LINE_BURST,
                refilled: now,
                dropped: 0,
                // The first drop is reported at once.
                reported: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
            }),
            workload: workload.to_string(),
            name: name.to_string(),
        })
    }

    /// May one more line be logged? Returns the lines dropped since the
    /// last report when it is time to report them.
    fn admit(&self) -> (bool, Option<u64>) {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.refilled).as_secs_f64() * LINES_PER_SECOND;
        b.tokens = (b.tokens + refill).min(LINE_BURST);
        b.refilled = now;
        let admitted = b.tokens >= 1.0;
        if admitted {
            b.tokens -= 1.0;
        } else {
            b.dropped += 1;
        }
        let report = (b.dropped > 0 && now.duration_since(b.reported) >= Duration::from_secs(1)).then(|| {
            b.reported = now;
            std::mem::take(&mut b.dropped)
        });
        (admitted, report)
    }
}

/// A `StdoutStream` that turns guest output into one log event per line.
#[derive(Clone)]
pub struct LogOutput {
    origin: Arc<Origin>,
    partial: Arc<Mutex<Partial>>,
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

    /// Lines written while the store serves an accepted connection (see
    /// `ConnectionContext`) are attributed to that connection's span.
    pub fn with_connection_context(mut self, connection: ConnectionContext) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Logs one line (`cut`: bytes of it that were dropped for length).
    fn emit(&self, line: &[u8], cut: usize) {
        let o = &self.origin;
        let (admitted, report) = o.limiter.admit();
        if let Some(dropped) = report {
            report_dropped(&o.limiter.workload, &o.limiter.name, dropped);
        }
        if !admitted {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let line = if cut > 0 {
            format!("{line} [line cut: {cut} more bytes]")
        } else {
            line.to_string()
        };
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
        // Emit every complete line in one pass; keep only the unfinished
        // tail, and of an overlong line only its first MAX_LINE bytes (a
        // guest that never prints a newline must not grow host memory).
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if partial.line.is_empty() && partial.cut == 0 {
                let cut = pos.saturating_sub(MAX_LINE);
                self.emit(&rest[..pos - cut], cut);
            } else {
                partial.append(&rest[..pos]);
                let (line, cut) = partial.take();
                self.emit(&line, cut);
            }
            rest = &rest[pos + 1..];
        }
        partial.append(rest);
    }
}

/// The unfinished last line of a stream.
#[derive(Default)]
struct Partial {
    line: Vec<u8>,
    /// Bytes of this line beyond MAX_LINE, dropped.
    cut: usize,
}

impl Partial {
    fn append(&mut self, bytes: &[u8]) {
        let keep = bytes.len().min(MAX_LINE - self.line.len().min(MAX_LINE));
        self.line.extend_from_slice(&bytes[..keep]);
        self.cut += bytes.len() - keep;
    }

    fn take(&mut self) -> (Vec<u8>, usize) {
        let cut = std::mem::take(&mut self.cut);
        (std::mem::take(&mut self.line), cut)
    }
}

impl Drop for LogOutput {
    fn drop(&mut self) {
        if Arc::strong_count(&self.partial) == 1 {
            let (rest, cut) = self.partial.lock().unwrap_or_else(|e| e.into_inner()).take();
            if !rest.is_empty() || cut > 0 {
                self.emit(&rest, cut);
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
