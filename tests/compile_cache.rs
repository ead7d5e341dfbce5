//! The compile cache: `run`, `up` and `check` share it; a hit skips
//! Cranelift; corrupt entries are recompiled, never loaded; concurrent
//! writers leave valid entries; restarts never recompile; it can be turned
//! off.

use loophost_tests::{Loophost, free_port, guest, kv_manifest, temp_dir, write_manifest};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `loophost --cache-dir DIR --log-level loophost=debug ARGS`: exit code and stderr.
fn loophost(cache: Option<&Path>, args: &[&str]) -> (i32, String) {
    let mut all: Vec<String> = vec!["--log-level".into(), "loophost=debug".into()];
    match cache {
        Some(dir) => all.extend(["--cache-dir".to_string(), dir.display().to_string()]),
        None => all.push("--no-cache".into()),
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let (code, _, stderr) = Loophost::spawn(&all).wait_with_stderr(Duration::from_secs(120));
    (code, stderr)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    list.sort();
    list
}

/// How many components the log says were taken from the cache / compiled.
fn counts(stderr: &str) -> (usize, usize, usize) {
    let n = |what: &str| {
        stderr
            .lines()
            .filter(|l| l.contains(&format!(": {what} in the compile cache")))
            .count()
    };
    (n("Hit"), n("Miss"), n("Corrupt"))
}

fn kv_workload(dir: &Path) -> PathBuf {
    write_manifest(dir, "shop.toml", &kv_manifest("shop", "/kv", "", ""))
}

#[test]
fn check_fills_the_cache_and_the_next_start_hits_it() {
    let dir = temp_dir("cc-hit");
    let cache = dir.join("cache");
    let manifest = kv_workload(&dir);
    let m = manifest.to_str().expect("utf-8 path");
    let (code, err) = loophost(Some(&cache), &["check", m]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(counts(&err), (0, 2, 0), "both components compiled: {err}");
    let files = entries(&cache);
    assert_eq!(files.len(), 2, "one entry per component: {files:?}");
    assert!(
        files.iter().all(|f| f.extension().is_some_and(|e| e == "cwasm")),
        "{files:?}"
    );

    let (code, err) = loophost(Some(&cache), &["check", m]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(counts(&err), (2, 0, 0), "both from the cache: {err}");

    // `run` shares the cache: the kv component was compiled by `check`.
    let kv = guest("kv").display().to_string();
    let (code, err) = loophost(Some(&cache), &["run", &guest("printenv").display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(counts(&err), (0, 1, 0), "printenv is new: {err}");
    let (code, err) = loophost(
        Some(&cache),
        &[
            "run",
            "--with",
            &format!("{kv} --listen 127.0.0.1:7000"),
            &guest("printenv").display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        counts(&err),
        (2, 0, 0),
        "kv from check, printenv from the last run: {err}"
    );
}

#[test]
fn a_corrupt_or_truncated_entry_is_recompiled_not_loaded() {
    let dir = temp_dir("cc-corrupt");
    let cache = dir.join("cache");
    let printenv = guest("printenv").display().to_string();
    let (code, err) = loophost(Some(&cache), &["run", &printenv]);
    assert_eq!(code, 0, "{err}");
    let [entry] = entries(&cache).try_into().expect("one entry");
    let good = std::fs::read(&entry).expect("read entry");

    // One flipped bit deep inside the compiled code.
    let mut bad = good.clone();
    let at = bad.len() * 2 / 3;
    bad[at] ^= 0x10;
    for (what, bytes) in [
        ("flipped bit", bad),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&entry, &bytes).expect("corrupt entry");
        let (code, err) = loophost(Some(&cache), &["run", &printenv]);
        assert_eq!(code, 0, "{what}: the component still runs: {err}");
        assert_eq!(counts(&err), (0, 0, 1), "{what}: detected and recompiled: {err}");
        assert!(
            err.contains("corrupt entry; recompiling"),
            "{what}: the log says so: {err}"
        );
        assert_eq!(
            std::fs::read(&entry).expect("entry rewritten"),
            good,
            "{what}: replaced by a good entry"
        );
    }
    let (_, err) = loophost(Some(&cache), &["run", &printenv]);
    assert_eq!(counts(&err), (1, 0, 0), "the replacement is used: {err}");
}

#[test]
fn concurrent_writers_leave_one_valid_entry_per_component() {
    let dir = temp_dir("cc-race");
    let cache = dir.join("cache");
    let manifest = kv_workload(&dir);
    let m = manifest.display().to_string();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (cache, m) = (cache.clone(), m.clone());
            std::thread::spawn(move || loophost(Some(&cache), &["check", &m]))
        })
        .collect();
    for run in runs {
        let (code, err) = run.join().expect("thread");
        assert_eq!(code, 0, "{err}");
    }
    let files = entries(&cache);
    assert_eq!(files.len(), 2, "two entries and no leftover temporary files: {files:?}");
    let (code, err) = loophost(Some(&cache), &["check", &m]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        counts(&err),
        (2, 0, 0),
        "whichever writer won left a valid entry: {err}"
    );
}

#[test]
fn no_cache_writes_nothing_and_the_environment_picks_the_directory() {
    let dir = temp_dir("cc-off");
    let printenv = guest("printenv").display().to_string();
    let (code, err) = loophost(None, &["run", &printenv]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(counts(&err), (0, 0, 0), "no cache consulted: {err}");

    // LOOPHOST_CACHE_DIR, and LOOPHOST_NO_CACHE over it.
    let cache = dir.join("from-env");
    let run = |env: &[(&str, String)]| {
        Loophost::spawn_env(["--log-level", "loophost=debug", "run", &printenv], env)
            .wait_with_stderr(Duration::from_secs(60))
    };
    let (code, _, err) = run(&[
        ("LOOPHOST_CACHE_DIR", cache.display().to_string()),
        ("LOOPHOST_NO_CACHE", "1".into()),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(entries(&cache).is_empty(), "LOOPHOST_NO_CACHE=1 turns it off");
    let (code, _, err) = run(&[("LOOPHOST_CACHE_DIR", cache.display().to_string())]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(entries(&cache).len(), 1, "LOOPHOST_CACHE_DIR is used");

    // A cache that cannot be written costs a compile, never the run.
    let blocked = dir.join("a-file");
    std::fs::write(&blocked, b"not a directory").expect("write");
    let (code, err) = loophost(Some(&blocked), &["run", &printenv]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("compile cache: cannot store"), "{err}");
}

#[test]
fn service_restarts_never_recompile() {
    let dir = temp_dir("cc-restart");
    let cache = dir.join("cache");
    let publish = free_port();
    let manifest = write_manifest(
        &dir,
        "shop.toml",
        &kv_manifest(
            "shop",
            "/kv",
            &format!(
                "backoff_initial_ms = 1\nbackoff_max_ms = 1\npublish = [{{ listen = \"127.0.0.1:{publish}\", port = 6379 }}]"
            ),
            "",
        ),
    );
    let args: Vec<String> = [
        "--log-level",
        "loophost=debug",
        "--cache-dir",
        cache.to_str().expect("utf-8"),
        "up",
        "--listen",
        "127.0.0.1:0",
        manifest.to_str().expect("utf-8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut host = Loophost::spawn(&args);
    host.expect_line("listening on http://", Duration::from_secs(120));
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", publish)).expect("connect");
        s.write_all(b"DEBUG SEGFAULT\r\n").expect("write");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        // Served again by a new incarnation.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", publish)).expect("connect");
        s.write_all(b"PING\r\n").expect("write");
        let mut pong = [0u8; 7];
        s.read_exact(&mut pong).expect("pong");
        assert_eq!(&pong, b"+PONG\r\n");
    }
    host.terminate();
    let (_, _, err) = host.wait_with_stderr(Duration::from_secs(30));
    let (hit, miss, corrupt) = counts(&err);
    assert_eq!(
        hit + miss + corrupt,
        2,
        "each component loaded once, however often kv restarted: {err}"
    );
    assert!(err.matches("restart").count() >= 3, "kv did restart: {err}");
}
