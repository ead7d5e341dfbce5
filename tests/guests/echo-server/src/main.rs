//! Blocking TCP server used by the integration tests.
//!
//! ```text
//! echo-server <listen-addr> [--mode MODE] [--once]
//! ```
//!
//! Prints `listening <local addr>`, then accepts connections one at a time
//! (wasip2 std has no threads) and prints `accepted <peer>` for each. MODE:
//!
//! * `echo` (default): echo until EOF, shut down the write half, print
//!   `closed <bytes echoed>`.
//! * `checksum`: read until EOF, reply `<total bytes> <fnv1a-64 hex>\n`, close,
//!   print `closed <bytes received>`.
//! * `sink`: never read; hold the connection open forever.
//! * `trap-after:N`: echo, but panic (a wasm trap) once more than N bytes
//!   have been received.
//!
//! `--once` exits 0 after the first connection is done. A failed connection
//! prints `error <ErrorKind> <message>` (and exits 1 with `--once`); a failed
//! bind or accept prints the same and exits 1.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use guest_util::{Fnv1a, say};

const USAGE: &str = "usage: echo-server <listen-addr> [--mode echo|checksum|sink|trap-after:N] [--once]";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Echo,
    Checksum,
    Sink,
    TrapAfter(u64),
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "echo" => Some(Mode::Echo),
            "checksum" => Some(Mode::Checksum),
            "sink" => Some(Mode::Sink),
            _ => s
                .strip_prefix("trap-after:")
                .and_then(|n| n.parse().ok())
                .map(Mode::TrapAfter),
        }
    }
}

struct Args {
    addr: String,
    mode: Mode,
    once: bool,
}

fn parse_args() -> Option<Args> {
    let mut addr = None;
    let mut mode = Mode::Echo;
    let mut once = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--once" => once = true,
            "--mode" => mode = Mode::parse(&args.next()?)?,
            _ if addr.is_none() && !arg.starts_with("--") => addr = Some(arg),
            _ => return None,
        }
    }
    Some(Args {
        addr: addr?,
        mode,
        once,
    })
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        say!("error InvalidInput {USAGE}");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(&args.addr) {
        Ok(l) => l,
        Err(e) => return fail(&format!("bind {}", args.addr), &e),
    };
    match listener.local_addr() {
        Ok(addr) => say!("listening {addr}"),
        Err(e) => return fail("local_addr", &e),
    }
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => return fail("accept", &e),
        };
        say!("accepted {peer}");
        if let Err(e) = handle(stream, args.mode) {
            say!("error {:?} connection from {peer}: {e}", e.kind());
            if args.once {
                return ExitCode::FAILURE;
            }
        }
        if args.once {
            return ExitCode::SUCCESS;
        }
    }
}

fn fail(what: &str, e: &io::Error) -> ExitCode {
    say!("error {:?} {what}: {e}", e.kind());
    ExitCode::FAILURE
}

fn handle(mut stream: TcpStream, mode: Mode) -> io::Result<()> {
    match mode {
        Mode::Echo => echo(&mut stream, u64::MAX),
        Mode::TrapAfter(limit) => echo(&mut stream, limit),
        Mode::Checksum => checksum(&mut stream),
        Mode::Sink => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

/// Echoes until EOF; panics once more than `limit` bytes have arrived.
fn echo(stream: &mut TcpStream, limit: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            panic!("trap-after:{limit}: received {total} bytes");
        }
        stream.write_all(&buf[..n])?;
    }
    stream.shutdown(Shutdown::Write)?;
    say!("closed {total}");
    Ok(())
}

/// Reads until EOF, then replies with `<length> <fnv1a hex>\n`.
fn checksum(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut hash = Fnv1a::new();
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    stream.write_all(format!("{total} {hash}\n").as_bytes())?;
    stream.shutdown(Shutdown::Write)?;
    say!("closed {total}");
    Ok(())
}
