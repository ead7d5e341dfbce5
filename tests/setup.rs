//! The setup a newcomer's first `./dev demo` / `./dev test` runs, from the
//! empty machine state it meets there: an empty cargo home (no cached
//! crates), missing system commands.

use loophost_tests::{repo_root, temp_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch root holding just what the vendoring script needs (scripts/ and
/// patches/), so its vendor/ is separate from the one the build uses.
fn scratch_root(name: &str) -> PathBuf {
    let root = temp_dir(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("scratch root");
    for dir in ["scripts", "patches"] {
        let status = Command::new("cp")
            .args(["-r"])
            .arg(repo_root().join(dir))
            .arg(root.join(dir))
            .status()
            .expect("cp");
        assert!(status.success(), "copy {dir}");
    }
    root
}

fn vendor(root: &Path, cargo_home: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(root.join("scripts/vendor-wasmtime-wasi.sh"));
    cmd.env("CARGO_HOME", cargo_home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the vendoring script")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn same_tree(a: &Path, b: &Path) -> bool {
    Command::new("diff")
        .args(["-r", "-q"])
        .arg(a)
        .arg(b)
        .status()
        .expect("diff")
        .success()
}

#[test]
fn the_fork_materializes_from_an_empty_cargo_home() {
    let root = scratch_root("vendor-fresh");
    let cargo_home = root.join("empty-cargo-home");
    std::fs::create_dir_all(&cargo_home).expect("cargo home");

    let first = vendor(&root, &cargo_home, &[]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        same_tree(
            &root.join("vendor/wasmtime-wasi"),
            &repo_root().join("vendor/wasmtime-wasi")
        ),
        "the fork built from an empty cargo home equals the one the build uses"
    );
    // Only the one pinned crate was fetched: cargo's registry was not filled
    // with wasmtime's whole dependency tree.
    assert!(
        !cargo_home.join("registry").exists(),
        "nothing but the pinned crate is downloaded:\n{}",
        text(&first)
    );

    // Later runs work offline: the download is kept beside the fork.
    std::fs::remove_dir_all(root.join("vendor/wasmtime-wasi")).expect("remove fork");
    let offline = [("LOOPHOST_CRATE_URL", "http://127.0.0.1:9/unreachable.crate")];
    let second = vendor(&root, &cargo_home, &offline);
    assert!(second.status.success(), "{}", text(&second));
    assert!(!String::from_utf8_lossy(&second.stderr).contains("downloading"));

    // A corrupt kept download is replaced, never used.
    let crate_file = std::fs::read_dir(root.join("vendor/.crates"))
        .expect("downloads")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "crate"))
        .expect("the kept .crate");
    std::fs::write(&crate_file, b"not a crate").expect("corrupt it");
    let check = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(root.join("scripts/vendor-wasmtime-wasi.sh"));
        cmd.arg("--check").env("CARGO_HOME", &cargo_home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("check")
    };
    let replaced = check(&[]);
    assert!(replaced.status.success(), "{}", text(&replaced));
    assert!(String::from_utf8_lossy(&replaced.stderr).contains("is corrupt; downloading it again"));

    // A registry (or proxy) that serves another file is refused on one line.
    let garbage = root.join("garbage.crate");
    std::fs::write(&garbage, b"not a crate either").expect("garbage");
    std::fs::write(&crate_file, b"corrupt again").expect("corrupt it");
    let url = format!("file://{}", garbage.display());
    let refused = check(&[("LOOPHOST_CRATE_URL", &url)]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("checksum mismatch for the downloaded wasmtime-wasi") && last.contains("patches/UPSTREAM"),
        "{}",
        text(&refused)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_unreachable_registry_is_one_clear_line() {
    let root = scratch_root("vendor-offline");
    let cargo_home = root.join("empty-cargo-home");
    std::fs::create_dir_all(&cargo_home).expect("cargo home");
    // Neither the direct download nor cargo can reach anything.
    let output = vendor(
        &root,
        &cargo_home,
        &[
            ("LOOPHOST_CRATE_URL", "http://127.0.0.1:9/unreachable.crate"),
            ("CARGO_NET_OFFLINE", "true"),
        ],
    );
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot download wasmtime-wasi") && last.contains("check the network"),
        "{}",
        text(&output)
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A PATH with every command of this machine but `hidden`.
fn path_without(hidden: &[&str], name: &str) -> PathBuf {
    let bin = temp_dir(name).join("bin");
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin).expect("bin dir");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let link = bin.join(&file);
            if hidden.iter().any(|h| file == **h) || link.exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(entry.path(), link);
        }
    }
    bin
}

#[test]
fn setup_plans_to_install_missing_system_commands() {
    let setup = repo_root().join("scripts/setup.sh");
    let present = Command::new(&setup).arg("--plan").output().expect("setup --plan");
    assert!(present.status.success(), "{}", text(&present));
    assert!(String::from_utf8_lossy(&present.stdout).starts_with("ok:"));

    let bin = path_without(&["curl", "patch"], "setup-plan");
    let missing = Command::new(&setup)
        .arg("--plan")
        .env("PATH", &bin)
        .output()
        .expect("setup --plan");
    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        stdout.contains("missing: Debian packages curl patch"),
        "{}",
        text(&missing)
    );
    // These machines run setup as root with apt-get; elsewhere it says it can't.
    let as_root = Command::new("id").arg("-u").output().expect("id").stdout == b"0\n";
    if as_root {
        assert!(
            stdout.contains("would run apt-get install -y curl patch"),
            "{}",
            text(&missing)
        );
    } else {
        assert!(
            stdout.contains("apt-get install") || stdout.contains("cannot install them here"),
            "{}",
            text(&missing)
        );
    }
    let _ = std::fs::remove_dir_all(bin);
}

/// rustup's minimal profile has no clippy (which `./dev test` lints with)
/// and no rustfmt: setup must say it would add them. The machine's rustup
/// is shadowed by one that answers `component list` without them.
#[test]
fn setup_plans_to_add_missing_rust_components() {
    let setup = repo_root().join("scripts/setup.sh");
    let bin = path_without(&["rustup"], "setup-components");
    let real = Command::new("bash")
        .args(["-c", "command -v rustup"])
        .output()
        .expect("command -v rustup");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(!real.is_empty(), "rustup is on PATH");
    let fake = bin.join("rustup");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1 $2\" = \"component list\" ]; then echo cargo-x86_64-unknown-linux-gnu; exit 0; fi\nexec '{real}' \"$@\"\n"
        ),
    )
    .expect("write the fake rustup");
    let status = Command::new("chmod").arg("+x").arg(&fake).status().expect("chmod");
    assert!(status.success());
    let output = Command::new(&setup)
        .arg("--plan")
        .env("PATH", &bin)
        .output()
        .expect("setup --plan");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("missing: Rust components clippy rustfmt: would run rustup component add"),
        "{}",
        text(&output)
    );
    let _ = std::fs::remove_dir_all(bin);
}
