//! Async echo server on a single-threaded tokio runtime.
//!
//! ```text
//! tokio-echo-server <listen-addr>
//! ```
//!
//! Prints `listening <local addr>`, then echoes every connection until EOF in
//! a task of its own, so thousands of connections can be open at once. A
//! failed connection prints `error <ErrorKind> <message>` and the server goes
//! on; a failed bind or accept prints the same and exits 1.

use std::io;
use std::process::ExitCode;

use guest_util::say;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), None) = (args.next(), args.next()) else {
        say!("error InvalidInput usage: tokio-echo-server <listen-addr>");
        return ExitCode::FAILURE;
    };
    match serve(&addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((what, e)) => {
            say!("error {:?} {what}: {e}", e.kind());
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str) -> Result<(), (String, io::Error)> {
    // tokio's own TcpListener cannot accept on wasm32-wasip2 (see the
    // tokio-listener crate in services/); this one is woken by the reactor.
    let listener = tokio_listener::TcpListener::bind(addr).map_err(|e| (format!("bind {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| ("local_addr".to_string(), e))?;
    say!("listening {local}");
    loop {
        let (stream, peer) = listener.accept().await.map_err(|e| ("accept".to_string(), e))?;
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                say!("error {:?} connection from {peer}: {e}", e.kind());
            }
        });
    }
}

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let (mut reader, mut writer) = stream.split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}
