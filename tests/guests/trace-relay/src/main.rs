//! A relay service that uses the opt-in `loophost:trace/context` interface.
//!
//! ```text
//! trace-relay <listen-addr> <upstream-addr> [--explicit]
//! ```
//!
//! It accepts TWO connections before serving either (so the host cannot
//! tell which one an upstream connect belongs to), then serves them in
//! order: reads one line, forwards it to a fresh upstream connection, and
//! sends the reply line back. With `--explicit` it tells the host which
//! connection it is working for, so each upstream connect lands in the trace
//! of the client that caused it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

wit_bindgen::generate!({
    path: "../../../crates/host/wit",
    world: "loophost:trace/imports",
});

use loophost::trace::context;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        println!("error InvalidInput usage: trace-relay <listen-addr> <upstream-addr> [--explicit]");
        std::process::exit(1);
    };
    let explicit = args.iter().any(|a| a == "--explicit");
    let listener = match TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(e) => {
            println!("error {:?} bind {listen}: {e}", e.kind());
            std::process::exit(1);
        }
    };
    println!("listening {listen}");
    loop {
        let mut pending = Vec::new();
        while pending.len() < 2 {
            match listener.accept() {
                Ok((stream, peer)) => pending.push((stream, peer)),
                Err(e) => println!("error {:?} accept: {e}", e.kind()),
            }
        }
        for (stream, peer) in pending {
            if explicit {
                let parent = context::accepted_traceparent(&peer.to_string());
                context::set_current(parent.as_deref());
            }
            match relay(stream, upstream) {
                Ok(line) => println!("relayed {peer}: {}", line.trim_end()),
                Err(e) => println!("error {:?} relay {peer}: {e}", e.kind()),
            }
            if explicit {
                context::set_current(None);
            }
        }
    }
}

fn relay(client: TcpStream, upstream: &str) -> std::io::Result<String> {
    let mut request = String::new();
    BufReader::new(&client).read_line(&mut request)?;
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(request.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&server).read_line(&mut reply)?;
    (&client).write_all(reply.as_bytes())?;
    Ok(reply)
}
