//! Reads and writes files the host mounted, and says what happened.
//!
//! ```text
//! files cat PATH...             prints "PATH: CONTENTS" or "PATH: error KIND"
//! files write PATH TEXT         prints "wrote PATH" or "PATH: error KIND"
//! files watch PATH N [LISTEN]   prints "PATH: CONTENTS" each time the contents
//!                               change, N times, then exits; with LISTEN
//!                               (an address), listens there first, so a
//!                               service is "ready" once it watches
//! ```
//!
//! Errors are printed, never panicked on: the tests assert on them.

use guest_util::say;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cat") => {
            for path in &args[1..] {
                cat(path);
            }
        }
        Some("write") if args.len() == 3 => match std::fs::write(&args[1], &args[2]) {
            Ok(()) => say!("wrote {}", args[1]),
            Err(err) => say!("{}: error {:?}", args[1], err.kind()),
        },
        Some("watch") if args.len() >= 3 => {
            let _listener = args.get(3).map(|addr| std::net::TcpListener::bind(addr.as_str()));
            let times: usize = args[2].parse().unwrap_or(1);
            let mut last = None;
            let mut seen = 0;
            while seen < times {
                let now = std::fs::read_to_string(&args[1]).ok();
                if now.is_some() && now != last {
                    say!("{}: {}", args[1], now.as_deref().unwrap_or_default().trim_end());
                    seen += 1;
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        _ => {
            eprintln!("usage: files cat PATH... | files write PATH TEXT | files watch PATH N [LISTEN]");
            std::process::exit(2);
        }
    }
}

fn cat(path: &str) {
    match std::fs::read_to_string(path) {
        Ok(text) => say!("{path}: {}", text.trim_end()),
        Err(err) => say!("{path}: error {:?}", err.kind()),
    }
}
