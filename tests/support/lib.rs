//! Test harness: locate the guests and the `loophost` binary, run them, read
//! their output line by line with deadlines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory (where this test binary lives).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // .../target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("target dir above the test binary")
        .to_path_buf()
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(2)
        .expect("profile dir above the test binary")
        .to_path_buf()
}

/// The `loophost` binary built for this test run.
pub fn loophost_bin() -> PathBuf {
    let bin = profile_dir().join("loophost");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// The path of a guest component, building the guests once per test binary.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Serialize with other tests of this binary; cargo locks across binaries.
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let status = Command::new(repo_root().join("scripts/build-guests.sh"))
            .env("CARGO_TARGET_DIR", target_dir())
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-guests.sh");
        assert!(status.success(), "building the guests failed");
    });
    let path = target_dir().join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(path.exists(), "guest {} was not built", path.display());
    path
}

/// A running `loophost` process whose stdout is read line by line.
pub struct Loophost {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Loophost {
    /// Starts `loophost <args>`.
    pub fn spawn<I, S>(args: I) -> Loophost
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(loophost_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn loophost");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Loophost {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for a stdout line containing `needle`; returns it.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no line containing {needle:?} within {timeout:?}\nstdout so far:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Everything printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for the process to exit; returns its exit code and all stdout.
    pub fn wait(mut self, timeout: Duration) -> (i32, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Drain what is left of stdout.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                std::thread::sleep(Duration::from_millis(50));
                return (status.code().unwrap_or(-1), self.seen.join("\n"));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "loophost did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                );
            }
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Loophost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `loophost run --with <server...> <client...>` to completion.
pub fn run_pair(server: &[&str], client: &[&str], timeout: Duration) -> (i32, String, String) {
    let with = shell_join(server);
    let mut args: Vec<String> = vec!["run".into(), "--with".into(), with];
    args.extend(client.iter().map(|s| s.to_string()));
    let host = Loophost::spawn(&args);
    let stderr = host.stderr.clone();
    let (code, out) = host.wait(timeout);
    let err = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (code, out, err)
}

/// Quotes words for `--with`.
pub fn shell_join(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resident memory of a process in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
