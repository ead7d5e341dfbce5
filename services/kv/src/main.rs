//! In-memory key-value service speaking a subset of the Redis protocol (RESP2).
//!
//! ```text
//! kv [--listen ADDR] [--start-delay-ms N]     (default 127.0.0.1:6379, no delay)
//! ```
//!
//! `--start-delay-ms` sleeps before binding. Once listening it prints
//! `kv listening on <addr>` and serves any number of connections at once on
//! a single-threaded tokio runtime, sharing one key space.
//!
//! Commands (case-insensitive; RESP2 multibulk or inline like `PING\r\n`):
//! `PING [msg]`, `ECHO msg`, `GET key`,
//! `SET key value [NX|XX] [GET] [EX seconds|PX millis|KEEPTTL]`, `DEL key...`,
//! `EXISTS key...`, `INCR key`, `DECR key`, `INCRBY key n`, `DECRBY key n`,
//! `EXPIRE key seconds [NX|XX|GT|LT]`, `PEXPIRE key millis [...]`, `TTL key`
//! (-2 missing, -1 no expiry), `PTTL key`, `PERSIST key`, `KEYS pattern`
//! (glob: `* ? [abc] [a-z] [^a] \x`), `MGET key...`, `MSET key value...`,
//! `DBSIZE`, `FLUSHALL`, `FLUSHDB`, `SELECT 0`, `CLIENT SETINFO|SETNAME|GETNAME`,
//! `COMMAND` (empty reply), `QUIT`, and `DEBUG SEGFAULT`, which panics on
//! purpose (the host turns that into a trap; tests use it to crash the
//! service). Keys expire lazily, on access and on `KEYS`/`DBSIZE`.
//!
//! Bad commands get `-ERR ...` replies; a malformed request gets
//! `-ERR Protocol error: ...` and the connection is closed. A failed
//! connection prints `error <ErrorKind> connection from <peer>: <message>`;
//! bad arguments or a failed bind/accept print `error <ErrorKind> <message>`
//! and exit 1.

mod glob;
mod resp;
mod store;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use resp::{Parsed, ProtocolError, Reply};
use store::{Outcome, Store};

const USAGE: &str = "usage: kv [--listen ADDR] [--start-delay-ms N]";
const DEFAULT_LISTEN: &str = "127.0.0.1:6379";
/// Bytes read per read call, and buffer capacity kept between requests.
const READ_CHUNK: usize = 16 * 1024;
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Prints one line to stdout and flushes it (write errors are ignored: there
/// is nowhere to report them).
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut out = ::std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

struct Config {
    listen: String,
    start_delay: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config {
        listen: DEFAULT_LISTEN.to_string(),
        start_delay: Duration::ZERO,
    };
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.to_string())),
            _ => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => config.listen = value()?,
            "--start-delay-ms" => {
                let text = value()?;
                let ms: u64 = text
                    .parse()
                    .map_err(|_| format!("--start-delay-ms: not a number: {text:?}"))?;
                config.start_delay = Duration::from_millis(ms);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(config)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            say!("error InvalidInput {message}; {USAGE}");
            return ExitCode::FAILURE;
        }
    };
    if !config.start_delay.is_zero() {
        tokio::time::sleep(config.start_delay).await;
    }
    match serve(&config.listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((what, e)) => {
            say!("error {:?} {what}: {e}", e.kind());
            ExitCode::FAILURE
        }
    }
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A poisoned lock can only come from a panic, which on wasm aborts anyway.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve(addr: &str) -> Result<(), (String, io::Error)> {
    // tokio's own TcpListener cannot accept on wasm32-wasip2 (see the
    // tokio-listener crate); this one is woken by the reactor all the same.
    let listener = tokio_listener::TcpListener::bind(addr).map_err(|e| (format!("bind {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| ("local_addr".to_string(), e))?;
    say!("kv listening on {local}");
    let store = Arc::new(Mutex::new(Store::new()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(("accept".to_string(), e)),
        };
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, store).await {
                say!("error {:?} connection from {peer}: {e}", e.kind());
            }
        });
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, store: Arc<Mutex<Store>>) -> io::Result<()> {
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut output: Vec<u8> = Vec::new();
    loop {
        input.reserve(READ_CHUNK);
        if stream.read_buf(&mut input).await? == 0 {
            // The client closed its side; anything half-sent is dropped.
            return Ok(());
        }
        // Answer every complete request in the buffer (pipelining), then
        // write all the replies at once.
        let mut used = 0;
        let mut close = false;
        while !close {
            match resp::parse(&input[used..]) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Request(args, len)) => {
                    used += len;
                    if args.is_empty() {
                        continue;
                    }
                    let outcome = lock(&store).execute(&args, Instant::now());
                    match outcome {
                        Outcome::Reply(reply) => reply.encode(&mut output),
                        Outcome::Quit => {
                            Reply::OK.encode(&mut output);
                            close = true;
                        }
                        // Deliberate: the tests crash the service this way.
                        Outcome::Crash => panic!("kv: DEBUG SEGFAULT requested by {peer}"),
                    }
                }
                Err(ProtocolError(message)) => {
                    Reply::err(format!("Protocol error: {message}")).encode(&mut output);
                    close = true;
                }
            }
        }
        input.drain(..used);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if close {
            return stream.shutdown().await;
        }
        // Give back memory after a large request or reply.
        if input.capacity() > KEEP_CAPACITY {
            input.shrink_to(READ_CHUNK.max(input.len()));
        }
        if output.capacity() > KEEP_CAPACITY {
            output.shrink_to(0);
        }
    }
}
