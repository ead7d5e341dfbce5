//! Bad input gives a one-line error that names the file, a non-zero exit,
//! and no panic.

use loophost_tests::guest;

fn loophost_stderr(args: &[&str]) -> (i32, String) {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let output = std::process::Command::new(loophost_tests::loophost_bin())
        .args(&full)
        .output()
        .expect("run loophost");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_line_error(stderr: &str, file: &str, problem: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    assert!(lines[0].starts_with("loophost: error: "), "{stderr}");
    assert!(lines[0].contains(file), "names the file {file}: {stderr}");
    assert!(lines[0].contains(problem), "says {problem:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_file() {
    let (code, err) = loophost_stderr(&["/nonexistent/app.wasm"]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "/nonexistent/app.wasm", "cannot read component file");
}

#[test]
fn not_wasm_at_all() {
    let dir = std::env::temp_dir().join(format!("loophost-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let path = dir.join("text.wasm");
    std::fs::write(&path, "hello, not wasm").expect("write");
    let (code, err) = loophost_stderr(&[path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "text.wasm", "not a WebAssembly file");
}

#[test]
fn core_module_instead_of_component() {
    let dir = std::env::temp_dir().join(format!("loophost-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let path = dir.join("core.wasm");
    // The smallest valid core module: magic + version 1.
    std::fs::write(&path, b"\0asm\x01\0\0\0").expect("write");
    let (code, err) = loophost_stderr(&[path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "core.wasm", "core WebAssembly module, not a component");
}

#[test]
fn truncated_component() {
    let good = std::fs::read(guest("tcp-client")).expect("read guest");
    let dir = std::env::temp_dir().join(format!("loophost-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let path = dir.join("truncated.wasm");
    std::fs::write(&path, &good[..good.len() / 2]).expect("write");
    let (code, err) = loophost_stderr(&[path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "truncated.wasm", "invalid component");
}

#[test]
fn component_without_wasi_cli_run() {
    let dir = std::env::temp_dir().join(format!("loophost-noexp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let path = dir.join("empty-component.wasm");
    // The smallest valid component: magic + version 0x0d, layer 1; no exports.
    std::fs::write(&path, b"\0asm\x0d\0\x01\0").expect("write");
    let (code, err) = loophost_stderr(&[path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "empty-component.wasm", "does not export wasi:cli/run");
}

#[test]
fn bad_with_component_fails_before_anything_starts() {
    let client = guest("tcp-client").display().to_string();
    let (code, err) = loophost_stderr(&["--with", "/nonexistent/server.wasm", &client, "connect", "127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "/nonexistent/server.wasm", "cannot read component file");
}

#[test]
fn bad_egress_rule() {
    let client = guest("tcp-client").display().to_string();
    let (code, err) = loophost_stderr(&["--allow-egress", "no-such-host.invalid", &client]);
    assert_eq!(code, 1);
    assert_one_line_error(&err, "--allow-egress", "cannot resolve host");
}
