//! What every benchmark needs: medians and spreads over alternating rounds,
//! the `result k=v ...` lines the bench guests print, and one table format.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// The baseline host of the benchmarks (upstream sockets and wasi:http).
pub fn reference_host_bin() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("REFERENCE_HOST_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.ancestors().nth(2).expect("profile dir").to_path_buf();
    dir.join("reference-host")
}

/// Runs a host command to completion and returns the `key=value` pairs of
/// the guest's `result` line; panics with the output when there is none.
pub fn run_for_result(bin: &std::path::Path, args: &[String]) -> BTreeMap<String, f64> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("result ")) else {
        panic!(
            "{} {args:?} printed no result (exit {:?}):\n{stdout}\n{}",
            bin.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    parse_result(line)
}

/// `result a=1 b=2.5` → {a: 1, b: 2.5}.
pub fn parse_result(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Samples of one figure across rounds.
#[derive(Default, Clone, Debug)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// `median (min–max)`.
    pub fn show(&self, digits: usize) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.d$} ({:.d$}–{:.d$})", self.median(), min, max, d = digits)
    }
}

/// One line of a comparison table.
pub struct Row {
    pub figure: String,
    pub ours: Samples,
    pub baseline: Samples,
    /// What the ratio ours/baseline should be, for the reader (e.g. "≤ 0.1").
    pub target: String,
    pub digits: usize,
}

/// Prints rows as a Markdown table with the ratio of the medians.
pub fn print_table(title: &str, ours: &str, baseline: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| figure | {ours} | {baseline} | ratio | target |");
    println!("| --- | --- | --- | --- | --- |");
    for r in rows {
        let ratio = r.ours.median() / r.baseline.median();
        println!(
            "| {} | {} | {} | {:.3} | {} |",
            r.figure,
            r.ours.show(r.digits),
            r.baseline.show(r.digits),
            ratio,
            r.target
        );
    }
}

/// Rounds to run (`LOOPHOST_BENCH_ROUNDS`, default `default`).
pub fn rounds(default: usize) -> usize {
    std::env::var("LOOPHOST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
