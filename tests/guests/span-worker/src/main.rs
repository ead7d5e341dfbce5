//! A unit of work in a guest span, using the opt-in `loophost:trace/spans`
//! interface.
//!
//! ```text
//! span-worker <echo-addr> <real-addr>
//! ```
//!
//! Opens a `reconcile` span (attribute `object=demo/greeting`), enters it,
//! opens a nested `tls handshake` span, then sends a line through the
//! service at `echo-addr` (the virtual loopback) and connects to
//! `real-addr` (a real listener the policy allows), marks the reconcile
//! failed and ends both. Prints `done <echo reply>`; errors are printed, not
//! panicked on.
//!
//! ```text
//! span-worker hold
//! ```
//!
//! Opens and enters a `held open` span, prints `holding` and never ends it
//! (a service stopped in the middle of its work).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

wit_bindgen::generate!({
    path: "../../../crates/host/wit",
    world: "loophost:trace/imports",
});

use loophost::trace::spans::Span;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("hold") {
        let held = Span::new("held open", &[("work".to_string(), "unfinished".to_string())]);
        held.enter();
        println!("holding");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    let (Some(echo), Some(real)) = (args.get(1), args.get(2)) else {
        println!("error InvalidInput usage: span-worker <echo-addr> <real-addr>");
        std::process::exit(1);
    };
    let reconcile = Span::new("reconcile", &[("object".to_string(), "demo/greeting".to_string())]);
    reconcile.enter();
    {
        let handshake = Span::new("tls handshake", &[]);
        handshake.set_attribute("tls.server.name", "127.0.0.1");
    }
    let reply = match roundtrip(echo) {
        Ok(reply) => reply,
        Err(e) => {
            println!("error {:?} echo {echo}: {e}", e.kind());
            std::process::exit(1);
        }
    };
    if let Err(e) = TcpStream::connect(real.as_str()) {
        println!("error {:?} connect {real}: {e}", e.kind());
        std::process::exit(1);
    }
    reconcile.set_attribute("result", "error");
    reconcile.set_error("the API refused the update");
    println!("traceparent {}", reconcile.traceparent().unwrap_or_default());
    reconcile.leave();
    drop(reconcile);
    println!("done {}", reply.trim_end());
}

fn roundtrip(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"hello spans\n")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply)
}
