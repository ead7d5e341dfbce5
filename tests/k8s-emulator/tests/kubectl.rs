//! Fidelity against real kubectl binaries: Debian's kubectl 1.20 (required;
//! installed by scripts/setup.sh) and, when present and different,
//! `/usr/bin/kubectl` (on the dev machine: Google Cloud SDK's 1.32
//! dispatcher). Where kubectl and the emulator disagree, the emulator is
//! wrong.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use k8s_emulator::{Emulator, EmulatorConfig, Gvr};
use serde_json::{Value, json};

fn debian_kubectl() -> PathBuf {
    let path = match std::env::var_os("LOOPHOST_KUBECTL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/loophost/tools/kubectl"),
    };
    assert!(
        path.is_file(),
        "kubectl not found at {} (set LOOPHOST_KUBECTL, or run scripts/setup.sh, which unpacks Debian's kubectl 1.20 there)",
        path.display()
    );
    path
}

fn client_version(bin: &Path) -> String {
    let out = Command::new(bin)
        .args(["version", "--client"])
        .output()
        .expect("run kubectl version");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `v1.32.4-dispatcher` → `v1.32.0`, for a server version a version
/// dispatcher maps to this very client.
fn matching_server_version(client: &str) -> Option<String> {
    let start = client.find("v1.")?;
    let mut parts = client[start + 1..].split(['.', '-', '"', ' ']);
    let (major, minor) = (parts.next()?, parts.next()?);
    Some(format!("v{major}.{minor}.0"))
}

struct Kubectl {
    bin: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl -o json")
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.to_string_lossy().into_owned()
    }
}

const CRD_YAML: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: greetings.demo.loophost.dev
spec:
  group: demo.loophost.dev
  scope: Namespaced
  names: {plural: greetings, singular: greeting, kind: Greeting, shortNames: [gr]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Message, type: string, jsonPath: .spec.message}
    - {name: Copies, type: integer, jsonPath: .spec.copies}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [message]
            properties:
              message: {type: string}
              copies: {type: integer, default: 1, minimum: 0}
          status:
            type: object
            properties:
              observedGeneration: {type: integer}
"#;

fn objects_yaml(message: &str, label: &str, data: &str) -> String {
    format!(
        "apiVersion: demo.loophost.dev/v1\nkind: Greeting\nmetadata:\n  name: hello\n  labels: {{look: {label}}}\nspec:\n  message: {message}\n\
         ---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  greeting: {data}\n"
    )
}

fn dry_run_yaml(ns: &str, objects_ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: controller, namespace: {objects_ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: controller, namespace: {objects_ns}}}
rules:
- apiGroups: [demo.loophost.dev]
  resources: [greetings, greetings/status]
  verbs: [get, list, watch, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: controller, namespace: {objects_ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: controller}}
subjects:
- {{kind: ServiceAccount, name: controller, namespace: {objects_ns}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.demo.loophost.dev}}
spec:
  group: demo.loophost.dev
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {objects_ns}}}
data: {{mode: dry}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: controller, namespace: {objects_ns}}}
spec:
  selector:
    matchLabels: {{app: controller}}
  template:
    metadata:
      labels: {{app: controller}}
    spec:
      containers:
      - name: controller
        image: example.com/controller:1
"#
    )
}

fn scenario(bin: PathBuf, server_version: Option<String>) {
    let label = bin.to_string_lossy().replace('/', "_");
    let dir = std::env::temp_dir().join(format!("k8s-emulator-kubectl-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = EmulatorConfig::default();
    if let Some(v) = server_version {
        config.server_version = v;
    }
    let emu = Emulator::start_blocking(config).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig, "default").unwrap();
    let k = Kubectl {
        bin,
        dir: dir.clone(),
        kubeconfig,
    };
    let client = Client::for_emulator(&emu);
    let greetings = Gvr::new("demo.loophost.dev", "v1", "greetings");
    let configmaps = Gvr::new("", "v1", "configmaps");
    let version = k.ok(&["version", "-o", "json"]);
    eprintln!("kubectl version against the emulator: {}", version.replace('\n', " "));

    // CRD, then wait for it to be served.
    let crd = k.file("crd.yaml", CRD_YAML);
    assert!(
        k.ok(&["apply", "-f", &crd])
            .contains("customresourcedefinition.apiextensions.k8s.io/greetings.demo.loophost.dev created")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !k.run(&["get", "crd", "greetings.demo.loophost.dev"]).status.success() {
        assert!(Instant::now() < deadline, "CRD never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let crds = k.ok(&["get", "crd"]);
    assert!(
        crds.starts_with("NAME") && crds.contains("greetings.demo.loophost.dev"),
        "{crds}"
    );

    // Apply a Greeting and a ConfigMap; defaults come from the CRD schema.
    let objs = k.file("objects.yaml", &objects_yaml("hi", "one", "hello"));
    let out = k.ok(&["apply", "-f", &objs]);
    assert!(
        out.contains("greeting.demo.loophost.dev/hello created") && out.contains("configmap/cfg created"),
        "{out}"
    );
    let g = emu.get(&greetings, Some("default"), "hello").expect("greeting stored");
    assert_eq!(
        (g["metadata"]["generation"].as_i64(), g["spec"]["copies"].as_i64()),
        (Some(1), Some(1))
    );

    // Unchanged apply: nothing written.
    let rv_before = emu.resource_version();
    let out = k.ok(&["apply", "-f", &objs]);
    assert!(
        out.contains("greeting.demo.loophost.dev/hello unchanged") && out.contains("configmap/cfg unchanged"),
        "{out}"
    );
    assert_eq!(emu.resource_version(), rv_before);

    // Metadata-only change: generation stays; spec change: it bumps.
    let objs = k.file("objects.yaml", &objects_yaml("hi", "two", "hello"));
    assert!(
        k.ok(&["apply", "-f", &objs])
            .contains("greeting.demo.loophost.dev/hello configured")
    );
    let g = k.json(&["get", "greeting", "hello"]);
    assert_eq!(
        (
            g["metadata"]["labels"]["look"].as_str(),
            g["metadata"]["generation"].as_i64()
        ),
        (Some("two"), Some(1))
    );
    let objs = k.file("objects.yaml", &objects_yaml("hello there", "two", "bonjour"));
    let out = k.ok(&["apply", "-f", &objs]);
    assert!(
        out.contains("greeting.demo.loophost.dev/hello configured") && out.contains("configmap/cfg configured"),
        "{out}"
    );
    let list = k.json(&["get", "greetings"]);
    assert_eq!(list["kind"], "List");
    let item = &list["items"][0];
    assert_eq!(
        (
            item["spec"]["message"].as_str(),
            item["metadata"]["generation"].as_i64()
        ),
        (Some("hello there"), Some(2))
    );
    assert_eq!(
        emu.get(&configmaps, Some("default"), "cfg").unwrap()["data"]["greeting"],
        "bonjour"
    );
    let yaml = k.ok(&["get", "greetings", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Greeting") && yaml.contains("message: hello there") && yaml.contains("copies: 1"),
        "{yaml}"
    );

    // Server-side printing: the CRD's printer columns.
    let table = k.ok(&["get", "greetings"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "MESSAGE", "COPIES", "AGE"], "{table}");
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with("hello") && row.contains("hello there") && row.contains(" 1 "),
        "{table}"
    );
    let cms = k.ok(&["get", "configmaps"]);
    assert!(
        cms.lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .eq(["NAME", "DATA", "AGE"]),
        "{cms}"
    );

    // kubectl get -w prints a row per event made by another client.
    let mut watch = k
        .command(&["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| -> String {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("kubectl get -w printed no line for {what}"))
    };
    assert!(next_line("header").starts_with("NAME"));
    assert!(next_line("initial list").starts_with("cfg "));
    let deadline = Instant::now() + Duration::from_secs(10);
    while emu.open_watches() == 0 {
        assert!(Instant::now() < deadline, "kubectl never started watching");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        client.post(CONFIGMAPS, &configmap("watched", json!({"a": "1"}))).status,
        201
    );
    let added = next_line("ADDED");
    assert!(
        added.starts_with("watched") && added.split_whitespace().nth(1) == Some("1"),
        "{added}"
    );
    client.put(
        &format!("{CONFIGMAPS}/watched"),
        &configmap("watched", json!({"a": "1", "b": "2"})),
    );
    let modified = next_line("MODIFIED");
    assert!(
        modified.starts_with("watched") && modified.split_whitespace().nth(1) == Some("2"),
        "{modified}"
    );
    client.delete(&format!("{CONFIGMAPS}/watched"));
    assert!(next_line("DELETED").starts_with("watched"));
    let _ = watch.kill();
    let _ = watch.wait();

    // Delete.
    assert!(
        k.ok(&["delete", "configmap", "cfg"])
            .contains("configmap \"cfg\" deleted")
    );
    assert!(emu.get(&configmaps, Some("default"), "cfg").is_none());
    assert!(k.fails(&["get", "configmap", "cfg"]).contains("NotFound"));

    // Server-side dry run of a whole controller deployment: accepted,
    // nothing stored, no resourceVersion consumed.
    let rv_before = emu.resource_version();
    let manifest = k.file("deploy.yaml", &dry_run_yaml("controller-system", "default"));
    let out = k.ok(&["apply", "--dry-run=server", "-f", &manifest]);
    assert_eq!(out.matches("(server dry run)").count(), 7, "{out}");
    assert_eq!(emu.resource_version(), rv_before);
    assert!(
        emu.get(&Gvr::new("", "v1", "namespaces"), None, "controller-system")
            .is_none()
    );
    assert!(
        emu.get(&Gvr::new("apps", "v1", "deployments"), Some("default"), "controller")
            .is_none()
    );
    assert!(
        emu.get(
            &Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            None,
            "widgets.demo.loophost.dev"
        )
        .is_none()
    );
    // Like a real cluster, a dry-run namespace does not exist for the
    // objects that follow it.
    let manifest = k.file(
        "deploy-ns.yaml",
        &dry_run_yaml("controller-system", "controller-system"),
    );
    let err = k.fails(&["apply", "--dry-run=server", "-f", &manifest]);
    assert!(err.contains("namespaces \"controller-system\" not found"), "{err}");
    // The example CRD of the controller service, if it is there yet.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/k8s-controller-service/crd.yaml");
    if example.is_file() {
        let out = k.ok(&["apply", "--dry-run=server", "-f", &example.to_string_lossy()]);
        assert!(out.contains("(server dry run)"), "{out}");
    }

    // Patches.
    assert!(
        k.ok(&[
            "patch",
            "greeting",
            "hello",
            "--type=merge",
            "-p",
            r#"{"spec":{"copies":3}}"#
        ])
        .contains("patched")
    );
    let g = emu.get(&greetings, Some("default"), "hello").unwrap();
    assert_eq!(
        (g["spec"]["copies"].as_i64(), g["metadata"]["generation"].as_i64()),
        (Some(3), Some(3))
    );
    let json_patch =
        r#"[{"op":"test","path":"/spec/copies","value":3},{"op":"replace","path":"/spec/message","value":"patched"}]"#;
    assert!(
        k.ok(&["patch", "greeting", "hello", "--type=json", "-p", json_patch])
            .contains("patched")
    );
    assert_eq!(
        emu.get(&greetings, Some("default"), "hello").unwrap()["spec"]["message"],
        "patched"
    );
    let err = k.fails(&[
        "patch",
        "greeting",
        "hello",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/copies","value":9}]"#,
    ]);
    assert!(err.contains("invalid"), "{err}");
    assert!(k.ok(&["delete", "greeting", "hello"]).contains("deleted"));

    // A wrong token.
    let err = k.fails(&["--token", "not-the-token", "get", "configmaps"]);
    assert!(err.contains("Unauthorized"), "{err}");
    assert!(emu.unauthorized_count() >= 1);

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kubectl_1_20_from_debian() {
    let bin = debian_kubectl();
    let version = client_version(&bin);
    assert!(
        version.contains("v1.20"),
        "expected Debian's kubectl 1.20 at {}, got {version:?}",
        bin.display()
    );
    scenario(bin, None);
}

#[test]
fn system_kubectl_when_installed() {
    let system = PathBuf::from("/usr/bin/kubectl");
    if !system.exists() {
        eprintln!("no /usr/bin/kubectl: only Debian's kubectl is checked");
        return;
    }
    let version = client_version(&system);
    if version == client_version(&debian_kubectl()) {
        eprintln!("/usr/bin/kubectl is the same version as Debian's ({version}): covered by kubectl_1_20_from_debian");
        return;
    }
    eprintln!("/usr/bin/kubectl: {version}");
    // Google Cloud SDK's kubectl is a dispatcher that runs the client
    // matching the server's minor version; report its own.
    scenario(system, matching_server_version(&version));
}

#[test]
fn server_version_for_dispatchers() {
    assert_eq!(
        matching_server_version("Client Version: v1.32.4-dispatcher").as_deref(),
        Some("v1.32.0")
    );
    assert_eq!(
        matching_server_version("Client Version: version.Info{Major:\"1\", Minor:\"20\", GitVersion:\"v1.20.2\"")
            .as_deref(),
        Some("v1.20.0")
    );
    let _ = std::io::stdout().flush();
}
