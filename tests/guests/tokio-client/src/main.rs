//! Opens many concurrent connections to an echo server and checks the echoes.
//!
//! ```text
//! tokio-client <addr> <connections> [<rounds>]
//! ```
//!
//! Spawns one task per connection (no limit on how many run at once); each
//! sends `conn <i> round <r>\n` `rounds` times (default 3) and expects the
//! same bytes back. Prints `tokio-client ok <connections>`, or, for each
//! failed connection, `error <kind> conn <i>: <message>` followed by
//! `error Failed <failures> of <connections> connections failed` and exit 1.

use std::io;
use std::process::ExitCode;

use guest_util::say;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const USAGE: &str = "usage: tokio-client <addr> <connections> [<rounds>]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [addr, conns] => conns.parse().ok().map(|c| (addr.clone(), c, 3)),
        [addr, conns, rounds] => conns
            .parse()
            .ok()
            .zip(rounds.parse().ok())
            .map(|(c, r)| (addr.clone(), c, r)),
        _ => None,
    };
    let Some((addr, connections, rounds)) = parsed else {
        say!("error InvalidInput {USAGE}");
        return ExitCode::FAILURE;
    };

    let mut tasks = JoinSet::new();
    for i in 0..connections {
        let addr = addr.clone();
        tasks.spawn(async move { (i, conversation(&addr, i, rounds).await) });
    }
    let mut failures = 0u64;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((i, Err(e))) => {
                failures += 1;
                say!("error {:?} conn {i}: {e}", e.kind());
            }
            Err(e) => {
                failures += 1;
                say!("error TaskFailed {e}");
            }
        }
    }
    if failures == 0 {
        say!("tokio-client ok {connections}");
        ExitCode::SUCCESS
    } else {
        say!("error Failed {failures} of {connections} connections failed");
        ExitCode::FAILURE
    }
}

async fn conversation(addr: &str, i: u64, rounds: u64) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    for r in 0..rounds {
        let line = format!("conn {i} round {r}\n");
        stream.write_all(line.as_bytes()).await?;
        let mut back = vec![0u8; line.len()];
        stream.read_exact(&mut back).await?;
        if back != line.as_bytes() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mismatch: sent {line:?}, got {:?}", String::from_utf8_lossy(&back)),
            ));
        }
    }
    stream.shutdown().await
}
