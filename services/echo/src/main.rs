//! Demo echo service.
//!
//! ```text
//! echo [listen-addr]        (default 127.0.0.1:7000)
//! ```
//!
//! Prints `echo service listening on <addr>`, then serves one connection at a
//! time, echoing everything back until the client closes, and prints
//! `echo: connection from <peer>, echoed <n> bytes` for each. Errors print
//! `error <ErrorKind> <message>`; only a failed bind or accept exits (with 1).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;

/// Prints one line and flushes stdout right away.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".to_string());
    let listener = match TcpListener::bind(&addr) {
        Ok(listener) => listener,
        Err(e) => return fail(&format!("bind {addr}"), &e),
    };
    match listener.local_addr() {
        Ok(local) => say(&format!("echo service listening on {local}")),
        Err(e) => return fail("local_addr", &e),
    }
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => return fail("accept", &e),
        };
        match echo(stream) {
            Ok(n) => say(&format!("echo: connection from {peer}, echoed {n} bytes")),
            Err(e) => say(&format!("error {:?} connection from {peer}: {e}", e.kind())),
        }
    }
}

fn fail(what: &str, e: &io::Error) -> ExitCode {
    say(&format!("error {:?} {what}: {e}", e.kind()));
    ExitCode::FAILURE
}

/// Echoes until EOF and returns how many bytes went back.
fn echo(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}
