//! wasi:sockets (WASI 0.2) conformance guest.
//!
//! Exercises the raw `wasi:sockets` imports and checks the semantics that the
//! WIT documentation and wasmtime's upstream p2 socket test programs assert
//! (`crates/test-programs/src/bin/p2_{tcp,udp,ip_name_lookup}_*.rs`), expressed
//! as independent cases.
//!
//! Usage:
//!   conformance all            run every case in order
//!   conformance list           print the case names
//!   conformance <case>...      run the named cases (a trailing `*` matches a prefix);
//!                              `host-*` and `trap-*` cases (src/host.rs) run only by name
//!
//! Each case prints `PASS <case>` or `FAIL <case>: <what differed>`, preceded
//! by any `NOTE <case>: ...` lines (e.g. which policy error was accepted).
//! Running more than one case ends with `conformance: <n> passed, <m> failed`.
//! The exit status is 1 if any case failed, 2 on a usage error.
//!
//! Policy: the host denies real (non-loopback) network access by default.
//! Checks whose upstream expectation involves a non-loopback address (binding
//! 0.0.0.0 / ::, binding 192.0.2.0 / 2001:db8::, resolving real DNS names)
//! accept either the upstream result or `access-denied`, and say which in a
//! NOTE. No check ever sends traffic to a non-loopback address.

mod cx;
mod host;
mod lookup;
mod net;
mod tcp;
mod udp;

use cx::{CaseFn, Cx};

fn registry() -> Vec<(&'static str, CaseFn)> {
    let mut all = Vec::new();
    all.extend_from_slice(tcp::CASES);
    all.extend_from_slice(udp::CASES);
    all.extend_from_slice(lookup::CASES);
    all
}

/// Runs one case, prints its lines, returns whether it passed.
fn run(name: &str, f: CaseFn) -> bool {
    let mut cx = Cx::default();
    if let Err(e) = f(&mut cx) {
        cx.fail(format!("aborted: {e}"));
    }
    for n in &cx.notes {
        println!("NOTE {name}: {n}");
    }
    if cx.failures.is_empty() {
        println!("PASS {name}");
        true
    } else {
        println!("FAIL {name}: {}", cx.failures.join("; "));
        false
    }
}

fn usage(all: &[(&'static str, CaseFn)]) -> ! {
    eprintln!("usage: conformance all | list | <case>... (a trailing `*` matches a prefix)");
    eprintln!("cases:");
    for (name, _) in all {
        eprintln!("  {name}");
    }
    std::process::exit(2);
}

fn main() {
    let all = registry();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        usage(&all);
    }
    if args.len() == 1 && args[0] == "list" {
        for (name, _) in &all {
            println!("{name}");
        }
        return;
    }

    let mut selected: Vec<(&'static str, CaseFn)> = Vec::new();
    for arg in &args {
        let matched: Vec<_> = if arg == "all" {
            all.clone()
        } else if let Some(prefix) = arg.strip_suffix('*') {
            all.iter().copied().filter(|(n, _)| n.starts_with(prefix)).collect()
        } else {
            all.iter()
                .chain(host::CASES)
                .copied()
                .filter(|(n, _)| n == arg)
                .collect()
        };
        if matched.is_empty() {
            eprintln!("conformance: unknown case `{arg}`");
            usage(&all);
        }
        for case in matched {
            if !selected.iter().any(|(n, _)| *n == case.0) {
                selected.push(case);
            }
        }
    }

    let mut passed = 0usize;
    let mut failed = 0usize;
    for (name, f) in &selected {
        if run(name, *f) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    if selected.len() > 1 || args.iter().any(|a| a == "all") {
        println!("conformance: {passed} passed, {failed} failed");
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
