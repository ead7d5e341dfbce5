//! Blocking TCP client used by the integration tests.
//!
//! ```text
//! tcp-client connect <addr>            -> connected local=<addr> remote=<addr> (then waits for the server to close)
//! tcp-client roundtrip <addr> <n>      -> roundtrip ok <n>
//! tcp-client upload <addr> <bytes>     -> upload ok <bytes> <hash>   (checksum server)
//! tcp-client echo-bulk <addr> <bytes>  -> echo-bulk ok <bytes>
//! tcp-client half-close <addr>         -> half-close ok
//! tcp-client until-reset <addr>        -> ended <ErrorKind|EOF> after <bytes echoed>
//! tcp-client flood <addr> <bytes>      -> wrote <total> (per write) ... flood done <total>
//! tcp-client bind <addr> [--exit]      -> bound <addr>, then sleeps forever unless --exit
//! tcp-client bind-twice <addr>         -> second bind error <ErrorKind>
//! ```
//!
//! Exits 0 on success. On failure prints `error <kind> <message>` and exits 1;
//! `<kind>` is the `std::io::ErrorKind` Debug name, or `Mismatch` when data
//! came back wrong, or `InvalidInput` for a bad command line.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use guest_util::{Fnv1a, XorShift, say};

const CHUNK: usize = 64 * 1024;
const USAGE: &str =
    "usage: tcp-client <connect|roundtrip|upload|echo-bulk|half-close|until-reset|flood|bind|bind-twice> <addr> [arg]";

/// Why a command failed; printed as `error <kind> <message>`.
enum Failure {
    Io(io::Error, String),
    Mismatch(String),
    Usage(String),
}

type Result<T> = std::result::Result<T, Failure>;

/// Attaches what was being done to an I/O error.
trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Failure::Io(e, what()))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match failure {
                Failure::Io(e, what) => say!("error {:?} {what}: {e}", e.kind()),
                Failure::Mismatch(msg) => say!("error Mismatch {msg}"),
                Failure::Usage(msg) => say!("error InvalidInput {msg}; {USAGE}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[&str]) -> Result<()> {
    match args {
        ["connect", addr] => connect_cmd(addr),
        ["roundtrip", addr, n] => roundtrip(addr, number(n)?),
        ["upload", addr, bytes] => upload(addr, number(bytes)?),
        ["echo-bulk", addr, bytes] => echo_bulk(addr, number(bytes)?),
        ["half-close", addr] => half_close(addr),
        ["until-reset", addr] => until_reset(addr),
        ["flood", addr, bytes] => flood(addr, number(bytes)?),
        ["bind", addr] => bind(addr, false),
        ["bind", addr, "--exit"] => bind(addr, true),
        ["bind-twice", addr] => bind_twice(addr),
        _ => Err(Failure::Usage(format!("bad arguments {args:?}"))),
    }
}

fn number(s: &str) -> Result<u64> {
    s.parse().map_err(|_| Failure::Usage(format!("not a number: {s:?}")))
}

fn connect(addr: &str) -> Result<TcpStream> {
    TcpStream::connect(addr).ctx(|| format!("connect {addr}"))
}

fn connect_cmd(addr: &str) -> Result<()> {
    let stream = connect(addr)?;
    let local = stream.local_addr().ctx(|| "local_addr".into())?;
    let remote = stream.peer_addr().ctx(|| "peer_addr".into())?;
    say!("connected local={local} remote={remote}");
    // Close our side and wait for the server to close its side, so the
    // server has seen the connection (and said so) before we exit.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = (&stream).read_to_end(&mut Vec::new());
    Ok(())
}

fn roundtrip(addr: &str, n: u64) -> Result<()> {
    let mut stream = connect(addr)?;
    for i in 0..n {
        let line = format!("ping {i}\n");
        stream.write_all(line.as_bytes()).ctx(|| format!("write ping {i}"))?;
        let mut back = vec![0u8; line.len()];
        stream.read_exact(&mut back).ctx(|| format!("read ping {i}"))?;
        if back != line.as_bytes() {
            return Err(Failure::Mismatch(format!(
                "sent {line:?}, got {:?}",
                String::from_utf8_lossy(&back)
            )));
        }
    }
    say!("roundtrip ok {n}");
    Ok(())
}

/// Sends `total` bytes of the xorshift(42) stream to a checksum server and
/// compares its `<len> <hash>` reply with our own.
fn upload(addr: &str, total: u64) -> Result<()> {
    let mut stream = connect(addr)?;
    let mut rng = XorShift::new(42);
    let mut hash = Fnv1a::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < total {
        let chunk = &mut buf[..chunk_len(total - sent)];
        rng.fill(chunk);
        hash.update(chunk);
        stream.write_all(chunk).ctx(|| format!("write after {sent} bytes"))?;
        sent += chunk.len() as u64;
    }
    stream.shutdown(Shutdown::Write).ctx(|| "shutdown(Write)".into())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ctx(|| "read reply".into())?;
    let expected = format!("{total} {hash}");
    if reply.trim_end() != expected {
        return Err(Failure::Mismatch(format!(
            "server replied {reply:?}, expected {expected:?}"
        )));
    }
    say!("upload ok {total} {hash}");
    Ok(())
}

/// Sends `total` bytes in 64 KiB chunks to an echo server, reading each chunk
/// back before sending the next.
fn echo_bulk(addr: &str, total: u64) -> Result<()> {
    let mut stream = connect(addr)?;
    let mut rng = XorShift::new(42);
    let mut out = vec![0u8; CHUNK];
    let mut back = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < total {
        let len = chunk_len(total - done);
        rng.fill(&mut out[..len]);
        stream
            .write_all(&out[..len])
            .ctx(|| format!("write at offset {done}"))?;
        stream
            .read_exact(&mut back[..len])
            .ctx(|| format!("read echo at offset {done}"))?;
        if let Some(i) = (0..len).find(|&i| out[i] != back[i]) {
            return Err(Failure::Mismatch(format!(
                "byte {} differs: sent {:#04x}, got {:#04x}",
                done + i as u64,
                out[i],
                back[i]
            )));
        }
        done += len as u64;
    }
    say!("echo-bulk ok {total}");
    Ok(())
}

fn half_close(addr: &str) -> Result<()> {
    let mut stream = connect(addr)?;
    stream.write_all(b"hello").ctx(|| "write".into())?;
    stream.shutdown(Shutdown::Write).ctx(|| "shutdown(Write)".into())?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back).ctx(|| "read to EOF".into())?;
    if back != b"hello" {
        return Err(Failure::Mismatch(format!(
            "expected \"hello\", got {:?}",
            String::from_utf8_lossy(&back)
        )));
    }
    let n = stream.read(&mut [0u8; 16]).ctx(|| "read after EOF".into())?;
    if n != 0 {
        return Err(Failure::Mismatch(format!("read {n} bytes after EOF")));
    }
    say!("half-close ok");
    Ok(())
}

/// Echoes 1 KiB chunks until the connection ends; the end is the expected
/// outcome, so this only fails if the connect fails.
fn until_reset(addr: &str) -> Result<()> {
    let mut stream = connect(addr)?;
    let out = [0x5au8; 1024];
    let mut back = [0u8; 1024];
    let mut echoed = 0u64;
    let ended = 'conn: loop {
        if let Err(e) = stream.write_all(&out) {
            break format!("{:?}", e.kind());
        }
        let mut got = 0;
        while got < back.len() {
            match stream.read(&mut back[got..]) {
                Ok(0) => break 'conn "EOF".to_string(),
                Ok(n) => {
                    got += n;
                    echoed += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break 'conn format!("{:?}", e.kind()),
            }
        }
    };
    say!("ended {ended} after {echoed}");
    Ok(())
}

/// Writes up to `total` bytes without reading anything back.
fn flood(addr: &str, total: u64) -> Result<()> {
    let mut stream = connect(addr)?;
    let buf = vec![0xa5u8; CHUNK];
    let mut written = 0u64;
    while written < total {
        let len = chunk_len(total - written);
        let n = stream
            .write(&buf[..len])
            .ctx(|| format!("write after {written} bytes"))?;
        if n == 0 {
            return Err(Failure::Io(
                io::ErrorKind::WriteZero.into(),
                format!("write after {written} bytes"),
            ));
        }
        written += n as u64;
        say!("wrote {written}");
    }
    say!("flood done {written}");
    Ok(())
}

fn bind(addr: &str, exit: bool) -> Result<()> {
    let listener = TcpListener::bind(addr).ctx(|| format!("bind {addr}"))?;
    let local = listener.local_addr().ctx(|| "local_addr".into())?;
    say!("bound {local}");
    if exit {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Binds twice to the same address (the first listener's actual address, so
/// port 0 works too); succeeds only if the second bind fails.
fn bind_twice(addr: &str) -> Result<()> {
    let first = TcpListener::bind(addr).ctx(|| format!("first bind {addr}"))?;
    let local = first.local_addr().ctx(|| "local_addr".into())?;
    match TcpListener::bind(local) {
        Ok(_second) => Err(Failure::Mismatch(format!("second bind to {local} succeeded"))),
        Err(e) => {
            say!("second bind error {:?}", e.kind());
            Ok(())
        }
    }
}

fn chunk_len(remaining: u64) -> usize {
    remaining.min(CHUNK as u64) as usize
}
