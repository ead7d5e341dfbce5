//! A relay service that uses the opt-in `loophost:trace/context` interface.
//!
//! ```text
//! trace-relay <listen-addr> <upstream-addr> [--explicit] [--hold]
//! ```
//!
//! It accepts TWO connections before serving either (so the host cannot
//! tell which one an upstream connect belongs to), then serves them in
//! order: reads one line, forwards it to a fresh upstream connection, and
//! sends the reply line back. With `--explicit` it tells the host which
//! connection it is working for, so each upstream connect lands in the trace
//! of the client that caused it. With `--hold` it serves the two in reverse
//! order and closes them only after both are served, so every upstream
//! connect happens while two connections are open, and neither "the first"
//! nor "the last accepted" is the one being served.

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
        println!("error InvalidInput usage: trace-relay <listen-addr> <upstream-addr> [--explicit] [--hold]");
        std::process::exit(1);
    };
    let explicit = args.iter().any(|a| a == "--explicit");
    let hold = args.iter().any(|a| a == "--hold");
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
        if hold {
            pending.reverse();
        }
        let mut served = Vec::new();
        for (stream, peer) in pending {
            if explicit {
                let parent = context::accepted_traceparent(&peer.to_string());
                context::set_current(parent.as_deref());
            }
            match relay(&stream, upstream) {
                Ok(line) => println!("relayed {peer}: {}", line.trim_end()),
                Err(e) => println!("error {:?} relay {peer}: {e}", e.kind()),
            }
            if explicit {
                context::set_current(None);
            }
            if hold {
                served.push(stream);
            }
        }
        drop(served);
    }
}

fn relay(client: &TcpStream, upstream: &str) -> std::io::Result<String> {
    let mut request = String::new();
    BufReader::new(client).read_line(&mut request)?;
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(request.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&server).read_line(&mut reply)?;
    let mut client = client;
    client.write_all(reply.as_bytes())?;
    Ok(reply)
}
