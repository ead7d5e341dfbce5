//! Demo client for the echo service.
//!
//! ```text
//! hello-client [addr]       (default 127.0.0.1:7000)
//! ```
//!
//! Connects (retrying for up to 5 s while the connection is refused, as the
//! service may still be starting), prints `connected local=<addr>
//! remote=<addr>`, sends `hello 1` .. `hello 3` printing each request and
//! reply as `client -> "hello 1"` / `client <- "hello 1"`, and exits 0. On
//! failure prints `error <ErrorKind> <message>` and exits 1.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Prints one line and flushes stdout right away.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".to_string());
    match run(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error {:?} {e}", e.kind()));
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str) -> io::Result<()> {
    let stream = connect_with_retry(addr)?;
    say(&format!(
        "connected local={} remote={}",
        stream.local_addr()?,
        stream.peer_addr()?
    ));
    // `&TcpStream` reads and writes, so no (fd-duplicating) try_clone needed.
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    for i in 1..=3 {
        let request = format!("hello {i}");
        say(&format!("client -> {request:?}"));
        writer.write_all(format!("{request}\n").as_bytes())?;
        let mut reply = String::new();
        if reader.read_line(&mut reply)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "service closed the connection",
            ));
        }
        say(&format!("client <- {:?}", reply.trim_end_matches('\n')));
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(())
}

/// Connects, retrying refused connections until `CONNECT_TIMEOUT` has passed.
fn connect_with_retry(addr: &str) -> io::Result<TcpStream> {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && start.elapsed() < CONNECT_TIMEOUT => {
                sleep(RETRY_EVERY);
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("connect {addr}: {e}"))),
        }
    }
}
