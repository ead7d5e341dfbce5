//! The official Python client (Debian's python3-kubernetes) as a second
//! real client: list, create, watch from a resourceVersion, custom objects,
//! and the 410 it raises after compaction.

mod common;

use std::process::Command;

use k8s_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

const SCRIPT: &str = r#"
import json, sys, urllib.request
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

kubeconfig, admin = sys.argv[1], sys.argv[2]
config.load_kube_config(kubeconfig)
v1 = client.CoreV1Api()
out = {}

listed = v1.list_namespaced_config_map("default")
out["initial"] = [c.metadata.name for c in listed.items]
start_rv = listed.metadata.resource_version
v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-a"), data={"k": "1"}))
v1.patch_namespaced_config_map("py-a", "default", {"data": {"k": "2"}})
v1.delete_namespaced_config_map("py-a", "default")
events = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=start_rv, timeout_seconds=5):
    events.append([ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("k")])
    if len(events) == 3:
        w.stop()
out["events"] = events

# Paginated list.
for i in range(5):
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"page-{i}")))
names, token = [], None
while True:
    page = v1.list_namespaced_config_map("default", limit=2, _continue=token)
    names += [c.metadata.name for c in page.items]
    token = page.metadata._continue
    if not token:
        break
out["paged"] = names

crds = client.ApiextensionsV1Api()
crds.create_custom_resource_definition(json.loads(sys.stdin.read()))
co = client.CustomObjectsApi()
co.create_namespaced_custom_object("demo.loophost.dev", "v1", "default", "greetings",
    {"apiVersion": "demo.loophost.dev/v1", "kind": "Greeting", "metadata": {"name": "py"}, "spec": {"message": "from python"}})
g = co.get_namespaced_custom_object("demo.loophost.dev", "v1", "default", "greetings", "py")
out["greeting"] = [g["spec"]["copies"], g["metadata"]["generation"]]
co.patch_namespaced_custom_object_status("demo.loophost.dev", "v1", "default", "greetings", "py", {"status": {"observedGeneration": 1}})
g = co.get_namespaced_custom_object("demo.loophost.dev", "v1", "default", "greetings", "py")
out["status"] = g["status"]

# Compaction makes an old resourceVersion expire: the client raises 410.
urllib.request.urlopen(urllib.request.Request(admin + "/faults/compact", method="POST")).read()
try:
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=start_rv, timeout_seconds=5):
        out["unexpected"] = ev["type"]
        break
except ApiException as e:
    out["expired"] = [e.status, e.reason]
print(json.dumps(out))
"#;

fn python_has_kubernetes() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn python_kubernetes_client() {
    assert!(
        python_has_kubernetes(),
        "/usr/bin/python3 cannot import kubernetes (Debian package python3-kubernetes): run scripts/setup.sh"
    );
    let emu = Emulator::start_blocking(EmulatorConfig::default()).unwrap();
    let admin = emu.serve_admin("127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("k8s-emulator-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig, "default").unwrap();
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(&kubeconfig)
        .arg(format!("http://{admin}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(common::GREETING_CRD.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    assert_eq!(v["initial"], serde_json::json!([]));
    assert_eq!(
        v["events"],
        serde_json::json!([
            ["ADDED", "py-a", "1"],
            ["MODIFIED", "py-a", "2"],
            ["DELETED", "py-a", "2"]
        ])
    );
    assert_eq!(
        v["paged"],
        serde_json::json!(["page-0", "page-1", "page-2", "page-3", "page-4"])
    );
    assert_eq!(v["greeting"], serde_json::json!([1, 1]));
    assert_eq!(v["status"], serde_json::json!({"observedGeneration": 1}));
    assert_eq!(v["expired"][0], 410, "{v}");
    assert!(v.get("unexpected").is_none(), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
