//! Host directories mounted into guests: `run --dir` and manifest `mounts`,
//! read-only unless asked, and live (a rotated file is seen by a running
//! service, as Kubernetes rotates projected service-account tokens).

use loophost_tests::{Loophost, guest, temp_dir, up, write_manifest};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
fn run_dir_mounts_a_host_directory_where_asked() {
    let dir = temp_dir("mount-run");
    std::fs::write(dir.join("a.txt"), "hello from the host\n").expect("write a.txt");
    let files = guest("files").display().to_string();
    let mount = format!("{}::/data", dir.display());

    let host = Loophost::spawn(["run", "--dir", &mount, &files, "cat", "/data/a.txt", "/etc/hostname"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/data/a.txt: hello from the host"), "{out}");
    // Nothing else of the host is visible.
    assert!(out.contains("/etc/hostname: error NotFound"), "{out}");

    // `--dir` mounts are writable, as with `wasmtime run --dir`.
    let host = Loophost::spawn(["run", "--dir", &mount, &files, "write", "/data/b.txt", "from the guest"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("b.txt")).expect("the guest wrote b.txt"),
        "from the guest"
    );

    // Without a mount the guest sees nothing.
    let host = Loophost::spawn(["run", &files, "cat", "/data/a.txt"]);
    let (code, out) = host.wait(T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/data/a.txt: error NotFound"), "{out}");

    // A missing directory is one clear error, and nothing runs.
    let host = Loophost::spawn(["run", "--dir", "/no/such/dir::/x", &files, "cat", "/x/a"]);
    let (code, out, log) = host.wait_with_stderr(T);
    assert_ne!(code, 0, "{out}");
    assert!(
        log.contains("--dir \"/no/such/dir::/x\": host: /no/such/dir does not exist"),
        "{log}"
    );
}

/// Lays out `dir` as the kubelet lays out a projected volume: the files are
/// symlinks through `..data`, which is swapped atomically on rotation.
fn project(dir: &Path, generation: u32, token: &str) {
    let data = format!("..{generation}");
    std::fs::create_dir_all(dir.join(&data)).expect("create data dir");
    std::fs::write(dir.join(&data).join("token"), token).expect("write token");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&data, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    if std::fs::symlink_metadata(dir.join("token")).is_err() {
        std::os::unix::fs::symlink("..data/token", dir.join("token")).expect("symlink token");
    }
}

#[test]
fn manifest_mounts_are_read_only_unless_writable_and_show_rotated_files() {
    let dir = temp_dir("mount-up");
    let sa = dir.join("serviceaccount");
    project(&sa, 1, "first-token");
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch dir");
    let files = guest("files").display().to_string();
    let manifest = write_manifest(
        &dir,
        "mounts.toml",
        &format!(
            r#"name = "mounts"

[[service]]
name = "watcher"
wasm = "{files}"
args = ["watch", "/var/run/secrets/kubernetes.io/serviceaccount/token", "2", "127.0.0.1:7000"]
ports = [7000]
restart = "never"
mounts = [{{ host = "serviceaccount", guest = "/var/run/secrets/kubernetes.io/serviceaccount" }}]

[[component]]
name = "intruder"
wasm = "{files}"
args = ["write", "/sa/token", "stolen"]
mounts = [{{ host = "serviceaccount", guest = "/sa" }}]

[[component]]
name = "scribe"
wasm = "{files}"
args = ["write", "/scratch/note.txt", "written by a job"]
mounts = [{{ host = "scratch", guest = "/scratch", writable = true }}]
"#
        ),
    );
    let (host, _addr) = up(&[&manifest], &[]);
    host.expect_stderr("serviceaccount/token: first-token", T);
    // Read-only: the job cannot change the token; the writable mount works.
    host.expect_stderr("/sa/token: error", T);
    host.expect_stderr("wrote /scratch/note.txt", T);
    assert_eq!(std::fs::read_to_string(sa.join("token")).expect("token"), "first-token");
    assert_eq!(
        std::fs::read_to_string(dir.join("scratch/note.txt")).expect("note"),
        "written by a job"
    );
    // Rotation, as the kubelet does it: the running service sees the new token.
    project(&sa, 2, "second-token");
    host.expect_stderr("serviceaccount/token: second-token", T);
    host.terminate();
}
