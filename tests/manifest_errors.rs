//! Every class of manifest mistake gives one line naming the file, the field
//! and what to do; nothing starts (checked with `loophost check`).

use loophost_tests::{guest, loophost_bin, temp_dir};
use std::process::Command;

fn check(files: &[(&str, String)]) -> (i32, String) {
    let dir = temp_dir(&format!("manifest-{}", files[0].0.replace('.', "-")));
    let paths: Vec<_> = files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write manifest");
            path
        })
        .collect();
    let out = Command::new(loophost_bin())
        .arg("check")
        .args(&paths)
        .output()
        .expect("run loophost check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_mistake_gets_a_one_line_error() {
    let kv = guest("kv").display().to_string();
    let svc =
        |name: &str, extra: &str| format!("[[service]]\nname = \"{name}\"\nwasm = \"{kv}\"\nports = [6379]\n{extra}\n");
    let ok_head = "name = \"shop\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown-field.toml",
            format!("{ok_head}bogus = 1\n{}", svc("kv", "")),
            "line 2: unknown field `bogus`",
        ),
        (
            "network-zero.toml",
            format!("{ok_head}network = {{ max_connections = 0 }}\n{}", svc("kv", "")),
            "network.max_connections: 0 is out of range; use 1 to 10000000",
        ),
        (
            "network-unknown.toml",
            format!("{ok_head}network = {{ max_conns = 5 }}\n{}", svc("kv", "")),
            "unknown field `max_conns`",
        ),
        (
            "unknown-service-field.toml",
            format!("{ok_head}{}", svc("kv", "wsam = \"x\"")),
            "unknown field `wsam`",
        ),
        (
            "missing-file.toml",
            format!("{ok_head}[[service]]\nname = \"kv\"\nwasm = \"nope/missing.wasm\"\n"),
            "service \"kv\" wasm:",
        ),
        (
            "missing-field.toml",
            format!("{ok_head}[[service]]\nname = \"kv\"\n"),
            "missing field `wasm`",
        ),
        (
            "duplicate-name.toml",
            format!(
                "{ok_head}{}{}",
                svc("kv", ""),
                svc("kv", "ports = [1]").replace("ports = [6379]\n", "")
            ),
            "is already used by a service",
        ),
        (
            "duplicate-port.toml",
            format!("{ok_head}{}{}", svc("kv", ""), svc("cache", "")),
            "port 6379 is already declared by service \"kv\"",
        ),
        (
            "bad-address.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "publish = [{ listen = \"nonsense\", port = 6379 }]")
            ),
            "publish[0].listen: \"nonsense\" is not a socket address",
        ),
        (
            "publish-undeclared.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "publish = [{ listen = \"127.0.0.1:1\", port = 80 }]")
            ),
            "publish[0].port: 80 is not one of the service's ports",
        ),
        (
            "bad-restart.toml",
            format!("{ok_head}{}", svc("kv", "restart = \"sometimes\"")),
            "unknown variant `sometimes`",
        ),
        (
            "bad-name.toml",
            format!("name = \"Bad Name\"\n{}", svc("kv", "")),
            "name: \"Bad Name\" is not a valid name",
        ),
        (
            "bad-route.toml",
            format!("{ok_head}[[component]]\nname = \"api\"\nwasm = \"{kv}\"\nroute = \"api\"\n"),
            "route: \"api\" must start with '/'",
        ),
        (
            "duplicate-route.toml",
            format!(
                "{ok_head}[[component]]\nname = \"a\"\nwasm = \"{kv}\"\nroute = \"/x\"\n[[component]]\nname = \"b\"\nwasm = \"{kv}\"\nroute = \"/x/\"\n"
            ),
            "is already served by component \"a\"",
        ),
        (
            "bad-egress.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "sockets = { allow_egress = [\"10.0.0.0/99\"] }")
            ),
            "service \"kv\" sockets",
        ),
        (
            "mount-missing.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "mounts = [{ host = \"no-such-dir\", guest = \"/data\" }]")
            ),
            "service \"kv\" mounts[0].host: ",
        ),
        (
            "mount-relative-guest.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "mounts = [{ host = \".\", guest = \"data\" }]")
            ),
            "service \"kv\" mounts[0].guest: \"data\" must be an absolute path",
        ),
        (
            "mount-twice.toml",
            format!(
                "{ok_head}{}",
                svc(
                    "kv",
                    "mounts = [{ host = \".\", guest = \"/d\" }, { host = \".\", guest = \"/d/\" }]"
                )
            ),
            "service \"kv\" mounts[1].guest: /d is also mounts[0].guest",
        ),
        (
            "mount-unknown-field.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "mounts = [{ host = \".\", guest = \"/d\", readonly = true }]")
            ),
            "unknown field `readonly`",
        ),
        (
            "egress-env-unset.toml",
            format!(
                "{ok_head}{}",
                svc(
                    "kv",
                    "sockets = { allow_egress = [\"${LOOPHOST_SURELY_NOT_SET}:443\"] }"
                )
            ),
            "service \"kv\" sockets.allow_egress[0]: \"${LOOPHOST_SURELY_NOT_SET}:443\": LOOPHOST_SURELY_NOT_SET is not set",
        ),
        (
            "egress-env-unclosed.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "sockets = { allow_egress = [\"${HOME:443\"] }")
            ),
            "sockets.allow_egress[0]: \"${HOME:443\" has an unclosed",
        ),
        (
            "empty.toml",
            ok_head.to_string(),
            "declares no [[service]] and no [[component]]",
        ),
        (
            "env-from-host-unset.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "env_from_host = [\"LOOPHOST_SURELY_NOT_SET\"]")
            ),
            "service \"kv\" env_from_host: LOOPHOST_SURELY_NOT_SET is not set in loophost's environment",
        ),
        (
            "env-from-host-twice.toml",
            format!(
                "{ok_head}{}",
                svc("kv", "env = { PATH = \"/x\" }\nenv_from_host = [\"PATH\"]")
            ),
            "env_from_host: PATH is also set in env",
        ),
        ("syntax.toml", format!("{ok_head}[[service]\n"), "line 2:"),
        (
            "bad-port.toml",
            format!("{ok_head}{}", svc("kv", "").replace("[6379]", "[70000]")),
            "line 5:",
        ),
    ];
    for (file, text, expected) in &cases {
        let (code, stderr) = check(&[(file, text.clone())]);
        assert_ne!(code, 0, "{file} must fail");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{file}: one line, got {stderr:?}");
        assert!(lines[0].starts_with("loophost: error: "), "{file}: {stderr}");
        assert!(lines[0].contains(file), "{file}: names the file: {stderr}");
        assert!(lines[0].contains(expected), "{file}: expected {expected:?} in {stderr}");
    }
}

#[test]
fn workloads_checked_together_must_not_clash() {
    let kv = guest("kv").display().to_string();
    let text = format!("name = \"shop\"\n[[service]]\nname = \"kv\"\nwasm = \"{kv}\"\n");
    let (code, stderr) = check(&[("one.toml", text.clone()), ("two.toml", text)]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("two.toml") && stderr.contains("workload default/shop is also defined in"),
        "{stderr}"
    );
}

#[test]
fn a_good_manifest_checks_ok() {
    let text = format!(
        "name = \"shop\"\n[[service]]\nname = \"kv\"\nwasm = \"{}\"\nports = [6379]\n[[component]]\nname = \"api\"\nwasm = \"{}\"\nroute = \"/kv\"\n",
        guest("kv").display(),
        guest("kv_http").display()
    );
    let dir = temp_dir("good-manifest");
    let path = dir.join("good.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(loophost_bin())
        .arg("check")
        .arg(&path)
        .output()
        .expect("check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("workload default/shop: 1 services, 1 components"));
}

#[test]
fn egress_rules_may_name_loophost_environment_variables() {
    let kv = guest("kv").display().to_string();
    let dir = temp_dir("manifest-egress-env");
    let path = dir.join("env.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"shop\"\n[[service]]\nname = \"kv\"\nwasm = \"{kv}\"\nsockets = {{ allow_egress = [\"${{API_HOST}}:${{API_PORT}}\"] }}\n"
        ),
    )
    .expect("write manifest");
    for (host, ok) in [("10.96.0.1", true), ("fd00::1", true), ("not an address", false)] {
        let out = Command::new(loophost_bin())
            .arg("check")
            .arg(&path)
            .env("API_HOST", host)
            .env("API_PORT", "443")
            .output()
            .expect("run loophost check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{host}: {stderr}");
        if !ok {
            assert!(stderr.contains("service \"kv\" sockets"), "{stderr}");
        }
    }
}
