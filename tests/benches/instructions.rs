//! Benchmark: instruction counts (`valgrind --tool=callgrind`), repeatable
//! where wall-clock time on a shared 2-core machine is not.
//!
//! Each figure is the difference between two runs that differ only in how
//! many times the operation is done, divided by that difference, so start-up
//! and compilation cancel out:
//! - one 64-byte round trip between two guests (`bench-loopback pingpong`),
//!   under loophost (virtual) and the reference host (kernel loopback; the
//!   kernel's own instructions are not counted by callgrind, so the ratio
//!   flatters the kernel);
//! - one instantiation of the hello `wasi:http` component, loophost's store
//!   against upstream's (`bench-instantiate`), on the on-demand allocator
//!   for both (valgrind cannot reserve the pooling allocator's address space).
//!
//! Run with `scripts/bench.sh instructions` (installs valgrind).

use loophost_tests::bench::reference_host_bin;
use loophost_tests::{free_port, guest, loophost_bin, temp_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Total instructions (Ir) of running `bin args` under callgrind.
fn instructions(bin: &Path, args: &[String], out: &Path) -> u64 {
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--smc-check=all-non-file")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run valgrind (apt-get install valgrind)");
    assert!(status.success(), "callgrind run of {} {args:?} failed", bin.display());
    let text = std::fs::read_to_string(out).expect("callgrind output");
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("callgrind summary line")
}

/// Instructions per operation: (runs with `hi` − runs with `lo`) / (hi − lo).
fn per_op(bin: &Path, args: impl Fn(u64) -> Vec<String>, lo: u64, hi: u64, dir: &Path) -> f64 {
    let a = instructions(bin, &args(lo), &dir.join("lo.out"));
    let b = instructions(bin, &args(hi), &dir.join("hi.out"));
    b.saturating_sub(a) as f64 / (hi - lo) as f64
}

fn pingpong_args(n: u64) -> Vec<String> {
    let addr = format!("127.0.0.1:{}", free_port());
    let bench = guest("bench-loopback");
    vec![
        "run".into(),
        "--with".into(),
        format!("{} serve {addr}", bench.display()),
        bench.display().to_string(),
        "pingpong".into(),
        addr,
        n.to_string(),
    ]
}

fn bench_instantiate_bin() -> PathBuf {
    reference_host_bin().with_file_name("bench-instantiate")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = temp_dir("bench-callgrind");
    // Compile once so neither run's count includes the compile cache's fill.
    let _ = instructions(&loophost_bin(), &pingpong_args(1), &dir.join("warm.out"));
    let ours = per_op(&loophost_bin(), pingpong_args, 2000, 4000, &dir);
    let kernel = per_op(&reference_host_bin(), pingpong_args, 2000, 4000, &dir);
    let hello = guest("http_hello").display().to_string();
    let inst = |store: &'static str| {
        let hello = hello.clone();
        move |n: u64| vec![store.to_string(), hello.clone(), n.to_string(), "on-demand".to_string()]
    };
    let inst_ours = per_op(&bench_instantiate_bin(), inst("loophost"), 200, 600, &dir);
    let inst_upstream = per_op(&bench_instantiate_bin(), inst("upstream"), 200, 600, &dir);
    println!("\n### instructions (callgrind), per operation\n");
    println!("| operation | loophost | baseline | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| one 64 B round trip (2 guests) | {ours:.0} | {kernel:.0} (kernel loopback, user space only) | {:.3} |",
        ours / kernel
    );
    println!(
        "| one instantiation (hello wasi:http) | {inst_ours:.0} | {inst_upstream:.0} (upstream store) | {:.3} |",
        inst_ours / inst_upstream
    );
}
