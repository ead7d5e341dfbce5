//! Test harness: locate the guests and the `loophost` binary, run them, read
//! their output line by line with deadlines.

pub mod bench;
pub mod instantiate;
pub mod k8s;
pub mod otlp;
pub mod reference;

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
    // Benchmarks point this at a release build.
    if let Ok(bin) = std::env::var("LOOPHOST_BIN") {
        return PathBuf::from(bin);
    }
    let bin = profile_dir().join("loophost");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`; ./dev test does)",
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
        Self::spawn_env(args, &[])
    }

    /// Starts `loophost <args>` with extra environment variables.
    pub fn spawn_env<I, S>(args: I, env: &[(&str, String)]) -> Loophost
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Self::spawn_program(&loophost_bin(), args, env)
    }

    /// Starts another host program (a benchmark's baseline) the same way.
    pub fn spawn_program<I, S>(bin: &Path, args: I, env: &[(&str, String)]) -> Loophost
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
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
        self.expect_line_any(&[needle], timeout)
    }

    /// Waits for a stdout line containing any of `needles`; returns it.
    pub fn expect_line_any(&mut self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().any(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no line containing {needles:?} within {timeout:?}\nstdout so far:\n{}\nstderr:\n{}",
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

    /// Like [`Loophost::wait`], also returning everything written to stderr.
    pub fn wait_with_stderr(self, timeout: Duration) -> (i32, String, String) {
        let stderr = self.stderr.clone();
        let (code, out) = self.wait(timeout);
        let err = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (code, out, err)
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A stdout line already read (e.g. by [`up`]) that contains `needle`.
    pub fn seen_line(&self, needle: &str) -> Option<String> {
        self.seen.iter().find(|l| l.contains(needle)).cloned()
    }

    /// Has the process not exited yet?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

/// A minimal HTTP/1.1 client (one request per connection), so tests need
/// no client library. Returns the status code and body.
pub fn http_request(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    http_request_with(addr, method, path, &[], body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A free TCP port on the real loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A temporary directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loophost-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// `loophost up --listen 127.0.0.1:0 <manifests>`; returns the host and its
/// HTTP address once it is serving.
pub fn up(manifests: &[&Path], extra: &[&str]) -> (Loophost, String) {
    up_with_env(manifests, extra, &[])
}

/// [`up`] with extra environment variables.
pub fn up_with_env(manifests: &[&Path], extra: &[&str], env: &[(&str, String)]) -> (Loophost, String) {
    let mut args: Vec<String> = vec!["up".into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(manifests.iter().map(|m| m.display().to_string()));
    let mut host = Loophost::spawn_env(&args, env);
    let line = host.expect_line("listening on http://", Duration::from_secs(120));
    let addr = line.trim().trim_start_matches("listening on http://").to_string();
    (host, addr)
}

impl Loophost {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
    }
}

impl Loophost {
    /// Waits until stderr (the host's log) contains `needle`.
    pub fn expect_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Like [`http_request`], with extra request headers.
pub fn http_request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(rest) } else { rest.to_string() }))
}

/// Writes a manifest into `dir`; returns its path.
pub fn write_manifest(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The text of a workload `name`: the kv service (plus `kv_extra` lines) and
/// its HTTP front end `api` at `route` (plus `api_extra` lines).
pub fn kv_manifest(name: &str, route: &str, kv_extra: &str, api_extra: &str) -> String {
    format!(
        r#"
name = "{name}"

[[service]]
name = "kv"
wasm = "{kv}"
ports = [6379]
{kv_extra}

[[component]]
name = "api"
wasm = "{api}"
route = "{route}"
{api_extra}
"#,
        kv = guest("kv").display(),
        api = guest("kv_http").display(),
    )
}

/// Percent-encodes everything but ASCII letters and digits (for `?url=`).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The resident set size of process `pid`, in KiB (0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
