//! Floods its stdout, for tests of the host's output limits.
//!
//! ```text
//! chatter <lines> <bytes-per-line>
//! ```
//!
//! Writes `<lines>` lines of `<bytes-per-line>` `x`s (0: empty lines) in
//! 64 KiB writes, then `done` on a line of its own, and exits 0.

use std::io::Write;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [lines, width] = args[..] else {
        eprintln!("usage: chatter <lines> <bytes-per-line>");
        std::process::exit(2);
    };
    let mut line = vec![b'x'; width];
    line.push(b'\n');
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    for _ in 0..lines {
        if out.write_all(&line).is_err() {
            std::process::exit(1);
        }
    }
    let _ = out.write_all(b"done\n");
    let _ = out.flush();
}
