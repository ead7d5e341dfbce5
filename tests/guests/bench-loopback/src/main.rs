//! The guest pair of the `loopback` benchmark: the same program is the
//! server and the client, so both hosts run exactly the same code.
//!
//! ```text
//! bench-loopback serve <addr>                      std, one connection at a time
//! bench-loopback connect <addr> <millis>           connect + first byte + close, repeatedly
//! bench-loopback pingpong <addr> <round-trips>     64-byte request/response latency
//! bench-loopback bulk <addr> <mib> <write-size>    one-way throughput
//! bench-loopback many <addr> <connections> <millis>  concurrent echo (tokio), against an echo server
//! bench-loopback hold <addr>                       accept and keep every connection (idle server)
//! bench-loopback open <addr> <connections>         open idle connections and keep them
//! ```
//!
//! `open` prints `ready`, waits 2 s (the bench reads the host's memory),
//! connects from distinct source addresses (127.0.0.2, .3, ... ports
//! 10000-59999, bound explicitly, so more connections fit than one address
//! has ports), prints `connected <n> <millis>` and sleeps.
//!
//! Every client retries its first connect for up to 5 s (the server may
//! still be starting), measures with the guest's monotonic clock, and prints
//! one line `result <key>=<value> ...`. Any failure prints `error ...` and
//! exits 1. The server reads the first byte of each connection to know what
//! the client measures: `c` answers one byte and closes, `p` echoes 64-byte
//! messages until EOF, `b` counts bytes until EOF and answers the count.

use guest_util::say;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MESSAGE: usize = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match words.as_slice() {
        ["serve", addr] => serve(addr),
        ["connect", addr, millis] => number(millis).and_then(|m| connect_rate(addr, m)),
        ["pingpong", addr, n] => number(n).and_then(|n| pingpong(addr, n)),
        ["bulk", addr, mib, size] => number(mib).and_then(|m| number(size).and_then(|s| bulk(addr, m, s))),
        ["hold", addr] => hold(addr),
        ["open", addr, n] => number(n).and_then(|n| open_idle(addr, n)),
        ["many", addr, conns, millis] => number(conns).and_then(|c| number(millis).and_then(|m| many(addr, c, m))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: bench-loopback serve|connect|pingpong|bulk|many <addr> ...",
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("error {:?} {e}", e.kind());
            ExitCode::FAILURE
        }
    }
}

fn number(s: &str) -> io::Result<u64> {
    s.parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("not a number: {s}")))
}

fn serve(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    say!("listening {}", listener.local_addr()?);
    loop {
        let (mut stream, _) = listener.accept()?;
        // A client that misbehaves ends its own connection, not the server.
        let _ = serve_one(&mut stream);
    }
}

fn serve_one(stream: &mut TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut op = [0u8; 1];
    stream.read_exact(&mut op)?;
    match op[0] {
        b'c' => stream.write_all(b"!"),
        b'p' => {
            let mut buf = [0u8; MESSAGE];
            loop {
                match stream.read_exact(&mut buf) {
                    Ok(()) => stream.write_all(&buf)?,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        b'b' => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf)? {
                    0 => break,
                    n => total += n as u64,
                }
            }
            stream.write_all(&total.to_le_bytes())
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unknown operation")),
    }
}

/// Connects, retrying while the server is not listening yet.
fn dial(addr: &str) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn connect_rate(addr: &str, millis: u64) -> io::Result<()> {
    drop(dial(addr)?.write_all(b"c"));
    let window = Duration::from_millis(millis);
    let started = Instant::now();
    let mut done = 0u64;
    let mut reply = [0u8; 1];
    while started.elapsed() < window {
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(b"c")?;
        stream.read_exact(&mut reply)?;
        done += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    say!("result connects={done} per_sec={:.0}", done as f64 / secs);
    Ok(())
}

fn pingpong(addr: &str, n: u64) -> io::Result<()> {
    let mut stream = dial(addr)?;
    stream.write_all(b"p")?;
    let message = [0x5au8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    // Warm up: the first round trips pay for lazy allocations on both sides.
    for _ in 0..n.min(1000) {
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
    }
    let mut nanos = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    if reply != message {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs"));
    }
    stream.shutdown(Shutdown::Write)?;
    nanos.sort_unstable();
    let at = |q: f64| nanos[((nanos.len() as f64 * q) as usize).min(nanos.len() - 1)] as f64 / 1000.0;
    say!(
        "result round_trips={n} p50_us={:.2} p99_us={:.2} p999_us={:.2}",
        at(0.50),
        at(0.99),
        at(0.999)
    );
    Ok(())
}

fn bulk(addr: &str, mib: u64, write_size: u64) -> io::Result<()> {
    let mut stream = dial(addr)?;
    stream.write_all(b"b")?;
    let chunk = vec![0xa5u8; write_size.max(1) as usize];
    let total = mib * 1024 * 1024;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        // In u64: on wasm32 a usize holds less than 4 GiB.
        let n = (total - sent).min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count)?;
    let secs = started.elapsed().as_secs_f64();
    let received = u64::from_le_bytes(count);
    if received != total {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("server counted {received} of {total} bytes"),
        ));
    }
    say!("result bytes={total} gb_per_sec={:.3}", total as f64 / secs / 1e9);
    Ok(())
}

/// `connections` tasks, each echoing 64-byte messages through its own
/// connection for `millis`; prints the total round trips per second.
fn many(addr: &str, connections: u64, millis: u64) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        drop(dial(addr)?);
        let mut streams = Vec::with_capacity(connections as usize);
        for _ in 0..connections {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            streams.push(stream);
        }
        let window = Duration::from_millis(millis);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for mut stream in streams {
            tasks.spawn(async move {
                let message = [0x33u8; MESSAGE];
                let mut reply = [0u8; MESSAGE];
                let mut done = 0u64;
                while started.elapsed() < window {
                    stream.write_all(&message).await?;
                    stream.read_exact(&mut reply).await?;
                    done += 1;
                }
                stream.shutdown().await?;
                io::Result::Ok(done)
            });
        }
        let mut total = 0u64;
        while let Some(joined) = tasks.join_next().await {
            total += joined.map_err(io::Error::other)??;
        }
        let secs = started.elapsed().as_secs_f64();
        say!(
            "result connections={connections} round_trips={total} per_sec={:.0}",
            total as f64 / secs
        );
        Ok(())
    })
}

fn hold(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    say!("listening {}", listener.local_addr()?);
    let mut held = Vec::new();
    loop {
        let (stream, _) = listener.accept()?;
        held.push(stream);
    }
}

fn open_idle(addr: &str, n: u64) -> io::Result<()> {
    let server: std::net::SocketAddrV4 = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "open: need an IPv4 address"))?;
    drop(dial(addr)?);
    say!("ready");
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut held = Vec::with_capacity(n as usize);
    const PORTS: u64 = 50_000;
    for i in 0..n {
        let ip = std::net::Ipv4Addr::new(127, 0, (2 + i / PORTS / 250) as u8, (2 + (i / PORTS) % 250) as u8);
        let source = std::net::SocketAddrV4::new(ip, 10_000 + (i % PORTS) as u16);
        held.push(connect_from(source, server)?);
    }
    say!("connected {n} {}", started.elapsed().as_millis());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A blocking connect from an explicit source address (std has no
/// bind-before-connect; wasi-libc maps these calls onto wasi:sockets).
fn connect_from(source: std::net::SocketAddrV4, dest: std::net::SocketAddrV4) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    fn sockaddr(a: std::net::SocketAddrV4) -> libc::sockaddr_in {
        // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
        let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        s.sin_family = libc::AF_INET as libc::sa_family_t;
        s.sin_port = a.port().to_be();
        s.sin_addr = libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        };
        s
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain libc calls on a descriptor this function owns; the
    // addresses outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let (from, to) = (sockaddr(source), sockaddr(dest));
        if libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}
