//! TCP proxy used by the integration tests.
//!
//! ```text
//! tcp-proxy <listen-addr> <upstream-addr>
//! ```
//!
//! Prints `listening <local addr>`, then accepts connections one at a time
//! (deliberately: the host attributes the upstream connection to the one
//! accepted connection that is open). For each it connects to the upstream
//! and pumps bytes both ways until both directions reached EOF: an EOF from
//! one side shuts down the write half of the other. Then it prints
//! `proxied <bytes up> <bytes down>` (up: client to upstream), closes both
//! and accepts the next one.
//!
//! wasip2 std has no threads, so both directions run in one loop over
//! nonblocking sockets, sleeping 1 ms whenever neither made progress.
//!
//! A failed connection prints `error <ErrorKind> <message>` and the proxy
//! goes on with the next one; a bad command line or a failed bind prints the
//! same and exits 1.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use guest_util::say;

const USAGE: &str = "usage: tcp-proxy <listen-addr> <upstream-addr>";
const BUF: usize = 64 * 1024;
const IDLE: Duration = Duration::from_millis(1);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        say!("error InvalidInput {USAGE}");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            say!("error {:?} bind {listen}: {e}", e.kind());
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => say!("listening {addr}"),
        Err(e) => {
            say!("error {:?} local_addr: {e}", e.kind());
            return ExitCode::FAILURE;
        }
    }
    loop {
        let client = match listener.accept() {
            Ok((client, _peer)) => client,
            Err(e) => {
                say!("error {:?} accept: {e}", e.kind());
                // Do not spin if the listener keeps failing.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        match proxy(client, upstream) {
            Ok((up, down)) => say!("proxied {up} {down}"),
            Err((e, what)) => say!("error {:?} {what}: {e}", e.kind()),
        }
    }
}

/// Proxies one accepted connection; returns the bytes carried each way. Both
/// sockets are closed when it returns.
fn proxy(mut client: TcpStream, upstream: &str) -> Result<(u64, u64), (io::Error, String)> {
    let mut server = TcpStream::connect(upstream).map_err(|e| (e, format!("connect {upstream}")))?;
    // Printed while the connection is open, so the host can attribute it.
    if let (Ok(from), Ok(to)) = (client.peer_addr(), server.peer_addr()) {
        say!("proxying {from} -> {to}");
    }
    client
        .set_nonblocking(true)
        .map_err(|e| (e, "set_nonblocking client".into()))?;
    server
        .set_nonblocking(true)
        .map_err(|e| (e, "set_nonblocking upstream".into()))?;
    let mut up = Direction::new("client to upstream");
    let mut down = Direction::new("upstream to client");
    while !(up.done && down.done) {
        let moved_up = up.pump(&mut client, &mut server)?;
        let moved_down = down.pump(&mut server, &mut client)?;
        if !moved_up && !moved_down {
            std::thread::sleep(IDLE);
        }
    }
    Ok((up.total, down.total))
}

/// One direction of the proxy: bytes read from `src` and not yet written to
/// `dst` sit in `buf[start..end]`.
struct Direction {
    name: &'static str,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `src` reached EOF.
    eof: bool,
    /// EOF seen, everything written, `dst`'s write half shut down.
    done: bool,
    /// Bytes read from `src` (all of them written to `dst` once `done`).
    total: u64,
}

impl Direction {
    fn new(name: &'static str) -> Self {
        Direction {
            name,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            eof: false,
            done: false,
            total: 0,
        }
    }

    /// Moves what it can without blocking; returns whether anything happened.
    fn pump(&mut self, src: &mut TcpStream, dst: &mut TcpStream) -> Result<bool, (io::Error, String)> {
        if self.done {
            return Ok(false);
        }
        let mut progress = false;
        if !self.eof && self.start == self.end {
            match src.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    self.total += n as u64;
                    progress = true;
                }
                Err(e) if retry_later(&e) => {}
                Err(e) => return Err((e, format!("{}: read", self.name))),
            }
        }
        while self.start < self.end {
            match dst.write(&self.buf[self.start..self.end]) {
                Ok(0) => {
                    let e = io::Error::new(ErrorKind::WriteZero, "wrote 0 bytes");
                    return Err((e, format!("{}: write", self.name)));
                }
                Ok(n) => {
                    self.start += n;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err((e, format!("{}: write", self.name))),
            }
        }
        if self.eof && self.start == self.end {
            dst.shutdown(Shutdown::Write)
                .map_err(|e| (e, format!("{}: shutdown", self.name)))?;
            self.done = true;
            progress = true;
        }
        Ok(progress)
    }
}

fn retry_later(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}
