//! The vendored wasmtime-wasi fork: the patch series applies to the pinned
//! upstream crate, and the build graph holds exactly one wasmtime-wasi.

use loophost_tests::repo_root;
use std::process::Command;

#[test]
fn patch_series_applies_and_vendor_matches() {
    let output = Command::new(repo_root().join("scripts/vendor-wasmtime-wasi.sh"))
        .arg("--check")
        .output()
        .expect("run the vendoring script");
    assert!(
        output.status.success(),
        "check mode failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn exactly_one_wasmtime_wasi_in_the_graph() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--workspace",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-e",
            "normal,build",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo tree");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8_lossy(&output.stdout);
    // `(*)` marks a repeated subtree, not another copy.
    let mut copies: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("wasmtime-wasi v"))
        .map(|l| l.trim_end_matches(" (*)"))
        .collect();
    copies.sort();
    copies.dedup();
    assert_eq!(copies.len(), 1, "wasmtime-wasi copies: {copies:?}");
    assert!(
        copies[0].contains("vendor/wasmtime-wasi"),
        "the one copy is our fork: {copies:?}"
    );
    assert!(
        tree.lines().any(|l| l.starts_with("wasmtime-wasi-http v")),
        "wasmtime-wasi-http is in the graph"
    );

    // And cargo's own duplicate report does not list it.
    let dups = Command::new(env!("CARGO"))
        .args(["tree", "--workspace", "--duplicates", "--offline"])
        .current_dir(repo_root())
        .output()
        .expect("cargo tree -d");
    let dups = String::from_utf8_lossy(&dups.stdout);
    assert!(
        !dups.lines().any(|l| l.starts_with("wasmtime-wasi v")),
        "duplicates:\n{dups}"
    );
}
