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
use std::time::Duration;
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
    // mio's accept on wasm32-wasip2 fails after the connection was taken
    // (its `fcntl(F_SETFL, O_NONBLOCK)` on the new socket returns EINVAL, on
    // stock wasmtime too), so accept with std and hand the stream to tokio.
    let listener = std::net::TcpListener::bind(addr).map_err(|e| (format!("bind {addr}"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ("set_nonblocking".to_string(), e))?;
    let local = listener.local_addr().map_err(|e| ("local_addr".to_string(), e))?;
    say!("listening {local}");
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Err(e) => return Err(("accept".to_string(), e)),
        };
        stream
            .set_nonblocking(true)
            .map_err(|e| ("set_nonblocking".to_string(), e))?;
        let stream = TcpStream::from_std(stream).map_err(|e| ("from_std".to_string(), e))?;
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
