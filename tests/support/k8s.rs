//! The Greeting controller example under test: the Kubernetes API emulator
//! (`tests/k8s-emulator`), the example's own workload manifest run by
//! `loophost up`, and the checks of what "converged" means in the
//! controller's contract (examples/k8s-controller-service).

use crate::{Loophost, guest, repo_root, temp_dir, up_with_env};
use k8s_emulator::{BlockingEmulator, Emulator, EmulatorConfig, Gvr};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const NAMESPACE: &str = "demo";
pub const MANAGED_BY: &str = "loophost-greeter";
pub const FINALIZER: &str = "demo.loophost.dev/cleanup";

pub fn greetings() -> Gvr {
    Gvr::new("demo.loophost.dev", "v1", "greetings")
}

pub fn configmaps() -> Gvr {
    Gvr::new("", "v1", "configmaps")
}

/// The example's directory.
pub fn example_dir() -> PathBuf {
    repo_root().join("examples/k8s-controller-service")
}

/// Debian's kubectl, unpacked by scripts/setup.sh (or `LOOPHOST_KUBECTL`).
pub fn kubectl_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LOOPHOST_KUBECTL") {
        return PathBuf::from(bin);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let bin = home.join(".cache/loophost/tools/kubectl");
    assert!(bin.exists(), "{} is missing: run scripts/setup.sh", bin.display());
    bin
}

/// How a test wants the workload changed from the shipped manifest.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra `env` entries of the controller service.
    pub controller_env: Vec<(String, String)>,
    /// Drop the service's `sockets` line (no egress allowed).
    pub no_egress: bool,
    /// What KUBERNETES_SERVICE_HOST says (default 127.0.0.1).
    pub api_host: Option<String>,
    /// Replace the token in the service-account dir with this one.
    pub token: Option<String>,
    /// Restart backoff of the controller service, in ms (default: the manifest's).
    pub backoff_initial_ms: Option<u64>,
    /// Extra environment of `loophost up` itself (e.g. OTLP export).
    pub host_env: Vec<(&'static str, String)>,
}

/// An emulator with the Greeting CRD, and the example workload running
/// against it under `loophost up`.
pub struct Cluster {
    pub emu: BlockingEmulator,
    pub dir: PathBuf,
    pub sa_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub host: Loophost,
    /// The HTTP listener of `loophost up`.
    pub http: String,
}

/// An emulator with the Greeting CRD applied, and what a controller needs
/// to reach it (a service-account dir, a kubeconfig) in a fresh temp dir.
pub struct ApiServer {
    pub emu: BlockingEmulator,
    pub dir: PathBuf,
    pub sa_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ApiServer {
    /// `token`: what the service-account dir holds instead of a valid token.
    pub fn start(dir_name: &str, token: Option<&str>) -> ApiServer {
        let emu = Emulator::start_blocking(EmulatorConfig {
            bookmark_interval: Duration::from_secs(1),
            ..EmulatorConfig::default()
        })
        .expect("start the Kubernetes API emulator");
        let dir = temp_dir(dir_name);
        let sa_dir = dir.join("serviceaccount");
        emu.write_service_account_dir(&sa_dir, NAMESPACE)
            .expect("write the service-account dir");
        if let Some(token) = token {
            std::fs::write(sa_dir.join("token"), token).expect("write a token");
        }
        let kubeconfig = dir.join("kubeconfig");
        emu.write_kubeconfig(&kubeconfig, NAMESPACE)
            .expect("write a kubeconfig");
        let out = kubectl(
            &kubeconfig,
            &["apply", "-f", &example_dir().join("crd.yaml").display().to_string()],
        );
        assert!(out.contains("created"), "kubectl apply the CRD: {out}");
        ApiServer {
            emu,
            dir,
            sa_dir,
            kubeconfig,
        }
    }
}

impl Cluster {
    pub fn start(name: &str, options: Options) -> Cluster {
        let ApiServer {
            emu,
            dir,
            sa_dir,
            kubeconfig,
        } = ApiServer::start(&format!("k8s-{name}"), options.token.as_deref());
        let manifest = workload_manifest(&dir, &options);
        let port = emu.addr().port().to_string();
        let mut env = vec![
            (
                "KUBERNETES_SERVICE_HOST",
                options.api_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            ),
            ("KUBERNETES_SERVICE_PORT", port),
        ];
        env.extend(options.host_env.iter().cloned());
        let (host, http) = up_with_env(&[&manifest], &[], &env);
        Cluster {
            emu,
            dir,
            sa_dir,
            kubeconfig,
            host,
            http,
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        kubectl(&self.kubeconfig, args)
    }

    pub fn create_greeting(&self, name: &str, message: &str, copies: Option<u32>) {
        let mut spec = json!({ "message": message });
        if let Some(copies) = copies {
            spec["copies"] = json!(copies);
        }
        let object = json!({
            "apiVersion": "demo.loophost.dev/v1",
            "kind": "Greeting",
            "metadata": { "name": name, "namespace": NAMESPACE },
            "spec": spec,
        });
        self.emu
            .create(&greetings(), Some(NAMESPACE), object)
            .unwrap_or_else(|status| panic!("create greeting {name}: {status}"));
    }

    /// Changes a Greeting's spec (a read-modify-write; retried on conflict,
    /// since the controller writes the same object).
    pub fn update_greeting(&self, name: &str, message: &str, copies: u32) {
        for _ in 0..50 {
            let mut object = self
                .emu
                .get(&greetings(), Some(NAMESPACE), name)
                .unwrap_or_else(|| panic!("greeting {name} exists"));
            object["spec"] = json!({ "message": message, "copies": copies });
            match self.emu.replace(&greetings(), Some(NAMESPACE), name, object) {
                Ok(_) => return,
                Err(status) if status["code"] == 409 => continue,
                Err(status) => panic!("update greeting {name}: {status}"),
            }
        }
        panic!("update greeting {name}: conflicts did not stop");
    }

    pub fn delete_greeting(&self, name: &str) {
        self.emu
            .delete(&greetings(), Some(NAMESPACE), name)
            .unwrap_or_else(|status| panic!("delete greeting {name}: {status}"));
    }

    /// Waits until the cluster holds exactly `want` (name → (message,
    /// copies)) and the controller's contract holds for each; returns how
    /// long it took.
    pub fn converge(&self, want: &BTreeMap<String, (String, u32)>, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let problems = self.problems(want);
            if problems.is_empty() {
                return started.elapsed();
            }
            if started.elapsed() > timeout {
                panic!(
                    "not converged after {timeout:?}:\n{}\n--- loophost log ---\n{}",
                    problems.join("\n"),
                    self.host.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What is not yet as the contract says.
    pub fn problems(&self, want: &BTreeMap<String, (String, u32)>) -> Vec<String> {
        let mut problems = Vec::new();
        let all_greetings = self.emu.list(&greetings(), Some(NAMESPACE));
        let names: Vec<&str> = all_greetings
            .iter()
            .filter_map(|g| g["metadata"]["name"].as_str())
            .collect();
        for name in &names {
            if !want.contains_key(*name) {
                problems.push(format!("greeting {name} should be gone"));
            }
        }
        let managed: Vec<Value> = self
            .emu
            .list(&configmaps(), Some(NAMESPACE))
            .into_iter()
            .filter(|cm| cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY)
            .collect();
        let mut expected_maps = BTreeMap::new();
        for (name, (message, copies)) in want {
            let Some(g) = all_greetings.iter().find(|g| g["metadata"]["name"] == name.as_str()) else {
                problems.push(format!("greeting {name} is missing"));
                continue;
            };
            let uid = g["metadata"]["uid"].as_str().unwrap_or_default();
            let generation = &g["metadata"]["generation"];
            let finalizers = g["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if !finalizers.iter().any(|f| f == FINALIZER) {
                problems.push(format!("greeting {name} lacks the finalizer"));
            }
            let status = &g["status"];
            if &status["observedGeneration"] != generation {
                problems.push(format!(
                    "greeting {name}: observedGeneration {} != generation {generation}",
                    status["observedGeneration"]
                ));
            }
            if status["copies"] != json!(copies) {
                problems.push(format!(
                    "greeting {name}: status.copies {} != {copies}",
                    status["copies"]
                ));
            }
            let ready = status["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone());
            if ready != Some(json!("True")) {
                problems.push(format!("greeting {name}: Ready is {ready:?}"));
            }
            for i in 0..*copies {
                expected_maps.insert(
                    format!("{name}-greeting-{i}"),
                    (name.clone(), uid.to_string(), message.clone()),
                );
            }
        }
        for cm in &managed {
            let cm_name = cm["metadata"]["name"].as_str().unwrap_or_default();
            match expected_maps.get(cm_name) {
                None => problems.push(format!("configmap {cm_name} should not exist")),
                Some((owner, uid, message)) => {
                    if cm["data"]["message"] != message.as_str() {
                        problems.push(format!(
                            "configmap {cm_name}: message {} != {message:?}",
                            cm["data"]["message"]
                        ));
                    }
                    let refs = cm["metadata"]["ownerReferences"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let owned = refs.iter().any(|r| {
                        r["kind"] == "Greeting"
                            && r["name"] == owner.as_str()
                            && r["uid"] == uid.as_str()
                            && r["controller"] == true
                    });
                    if !owned {
                        problems.push(format!("configmap {cm_name}: no controller ownerReference to {owner}"));
                    }
                }
            }
        }
        for cm_name in expected_maps.keys() {
            if !managed.iter().any(|cm| cm["metadata"]["name"] == cm_name.as_str()) {
                problems.push(format!("configmap {cm_name} is missing"));
            }
        }
        problems
    }

    /// ConfigMaps the API server stored by a create, over the whole test.
    pub fn configmap_creates(&self) -> u64 {
        self.emu.creates_succeeded(&configmaps())
    }
}

pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {args:?} failed: {text}");
    text
}

/// The example's workload.toml, runnable from `dir`: the guests' absolute
/// paths, the service-account dir beside it, and the test's changes.
fn workload_manifest(dir: &Path, options: &Options) -> PathBuf {
    let text = std::fs::read_to_string(example_dir().join("workload.toml")).expect("read the example's workload.toml");
    let controller = guest("greeter-controller").display().to_string();
    let http = guest("greetings_http").display().to_string();
    let mut out = String::new();
    let mut in_controller = false;
    for line in text.lines() {
        let line = line
            .replace("\"greeter-controller.wasm\"", &format!("{controller:?}"))
            .replace("\"greetings_http.wasm\"", &format!("{http:?}"));
        if line.starts_with("[[") {
            in_controller = line == "[[service]]";
        }
        if in_controller && options.no_egress && line.starts_with("sockets") {
            continue;
        }
        if in_controller
            && line.starts_with("backoff_initial_ms")
            && let Some(ms) = options.backoff_initial_ms
        {
            out.push_str(&format!("backoff_initial_ms = {ms}\n"));
            continue;
        }
        if in_controller && line.starts_with("env = {") && !options.controller_env.is_empty() {
            let extra: Vec<String> = options
                .controller_env
                .iter()
                .map(|(k, v)| format!("{k} = {v:?}"))
                .collect();
            out.push_str(&line.replacen("env = {", &format!("env = {{ {},", extra.join(", ")), 1));
            out.push('\n');
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    let path = dir.join("workload.toml");
    std::fs::write(&path, out).expect("write the workload manifest");
    path
}

/// `n` Greetings named `{prefix}-{i}` with message `hello {i}` and `copies`.
pub fn want(prefix: &str, n: usize, copies: u32) -> BTreeMap<String, (String, u32)> {
    (0..n)
        .map(|i| (format!("{prefix}-{i}"), (format!("hello {i}"), copies)))
        .collect()
}
