#!/usr/bin/env python3
"""End-to-end check of the greeter controller against the k8s emulator.

    python3 scenario.py            # the native controller
    python3 scenario.py --wasm     # the wasm guests under `loophost up` (workload.toml)

Starts tests/k8s-emulator (HTTPS, a service-account dir, fault admin
endpoint), applies crd.yaml, starts the controller the way a pod would run
it, and checks that it converges: ConfigMaps, owner references, finalizer,
status; spec changes; a managed ConfigMap deleted or edited by hand; watch
drops, compaction (410), 429s, an API server restart, a token rotation; a
Greeting deleted. Stdlib only, plus PyYAML for crd.yaml.

Binaries (built beforehand; the script does not build):
  K8S_EMULATOR   default $CARGO_TARGET_DIR/{release,debug}/k8s-emulator
                 (cargo build -p k8s-emulator, from the repository root)
  GREETER_BIN    default $CARGO_TARGET_DIR/release/greeter-controller (build.sh)
  GREETER_WASM_DIR  default $CARGO_TARGET_DIR/wasm32-wasip2/release (build.sh)
  LOOPHOST       default $CARGO_TARGET_DIR/{release,debug}/loophost (--wasm only)
CARGO_TARGET_DIR defaults to ~/.cache/loophost/target. SCENARIO_VERBOSE=1
prints every line the emulator and the controller wrote.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
NS = "demo"
GROUP_PATH = f"/apis/demo.loophost.dev/v1/namespaces/{NS}/greetings"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"
FINALIZER = "demo.loophost.dev/cleanup"
OWNER_LABEL = "demo.loophost.dev/greeting"
TIMEOUT = 30.0

checks = {"passed": 0, "failed": 0}


def fail(message):
    raise SystemExit(f"scenario: FAILED: {message}")


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/loophost/target")


def find_binary(env, candidates, hint):
    path = os.environ.get(env)
    if path:
        if not os.access(path, os.X_OK):
            fail(f"{env}={path} is not an executable")
        return path
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    fail(f"no {hint} found (looked at {', '.join(candidates)}); build it or set {env}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child whose output is collected (and shown if the scenario fails)."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.lines = []
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.dump()
        fail(f"{self.name} did not print {prefix!r}")

    def dump(self, last=60):
        print(f"--- last lines of {self.name}:", file=sys.stderr)
        for line in self.lines[-last:]:
            print(f"    {line}", file=sys.stderr)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Api:
    def __init__(self, url, sa_dir):
        self.url = url
        self.sa_dir = sa_dir
        self.ssl = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt"))

    def request(self, method, path, body=None, content_type="application/json"):
        with open(os.path.join(self.sa_dir, "token")) as f:
            token = f.read().strip()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def ok(self, method, path, body=None, content_type="application/json"):
        status, answer = self.request(method, path, body, content_type)
        if status >= 300:
            fail(f"{method} {path}: {status} {answer}")
        return answer


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()


def eventually(what, probe, timeout=TIMEOUT):
    """Polls probe() until it returns None (converged) or the time is up."""
    deadline = time.monotonic() + timeout
    problem = None
    while time.monotonic() < deadline:
        problem = probe()
        if problem is None:
            checks["passed"] += 1
            print(f"ok: {what}")
            return
        time.sleep(0.2)
    checks["failed"] += 1
    raise AssertionError(f"{what}: {problem}")


def converged(api, name, message, copies):
    def probe():
        status, greeting = api.request("GET", f"{GROUP_PATH}/{name}")
        if status != 200:
            return f"GET greeting: {status}"
        meta = greeting["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return "no finalizer"
        st = greeting.get("status") or {}
        if st.get("observedGeneration") != meta.get("generation"):
            return f"observedGeneration {st.get('observedGeneration')} != generation {meta.get('generation')}"
        if st.get("copies") != copies:
            return f"status.copies {st.get('copies')} != {copies}"
        ready = [c for c in st.get("conditions") or [] if c.get("type") == "Ready"]
        if not ready or ready[0].get("status") != "True":
            return f"Ready condition {ready}"
        for field in ("reason", "message", "lastTransitionTime", "observedGeneration"):
            if field not in ready[0]:
                return f"Ready condition lacks {field}"
        cms = api.ok("GET", f"{CM_PATH}?labelSelector={OWNER_LABEL}%3D{name}")["items"]
        names = sorted(cm["metadata"]["name"] for cm in cms)
        wanted = sorted(f"{name}-greeting-{i}" for i in range(copies))
        if names != wanted:
            return f"ConfigMaps {names} != {wanted}"
        for cm in cms:
            cm_meta = cm["metadata"]
            if cm.get("data") != {"message": message}:
                return f"{cm_meta['name']} data {cm.get('data')}"
            labels = cm_meta.get("labels") or {}
            if labels.get("app.kubernetes.io/managed-by") != "loophost-greeter" or labels.get(OWNER_LABEL) != name:
                return f"{cm_meta['name']} labels {labels}"
            refs = cm_meta.get("ownerReferences") or []
            want = {
                "apiVersion": "demo.loophost.dev/v1",
                "kind": "Greeting",
                "name": name,
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
            if want not in refs:
                return f"{cm_meta['name']} ownerReferences {refs}"
        return None

    return probe


def greeting(name, message, copies):
    return {
        "apiVersion": "demo.loophost.dev/v1",
        "kind": "Greeting",
        "metadata": {"name": name},
        "spec": {"message": message, "copies": copies},
    }


def merge(api, path, patch):
    return api.ok("PATCH", path, patch, "application/merge-patch+json")


def admin(admin_url, path):
    req = urllib.request.Request(admin_url + path, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode().strip()


def main():
    wasm = "--wasm" in sys.argv[1:]
    unknown = [a for a in sys.argv[1:] if a != "--wasm"]
    if unknown:
        fail(f"unknown arguments {unknown}; usage: scenario.py [--wasm]")
    try:
        import yaml
    except ImportError:
        fail("PyYAML is missing (apt-get install python3-yaml)")

    target = target_dir()
    emulator_bin = find_binary(
        "K8S_EMULATOR",
        [os.path.join(target, p, "k8s-emulator") for p in ("release", "debug")],
        "k8s-emulator",
    )
    work = tempfile.mkdtemp(prefix="greeter-scenario-")
    sa_dir = os.path.join(work, "serviceaccount")
    processes = []
    try:
        emulator = Process(
            "k8s-emulator",
            [emulator_bin, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
             "--serviceaccount-dir", sa_dir, "--namespace", NS, "--bookmark-interval", "2"],
        )
        processes.append(emulator)
        url = emulator.wait_line("listening on ")
        admin_url = emulator.wait_line("admin on ")
        host, port = url.removeprefix("https://").rsplit(":", 1)
        api = Api(url, sa_dir)

        with open(os.path.join(HERE, "crd.yaml")) as f:
            api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(f))
        eventually("the CRD is served", lambda: None if api.request("GET", GROUP_PATH)[0] == 200 else "not yet")

        env = dict(os.environ, KUBERNETES_SERVICE_HOST=host, KUBERNETES_SERVICE_PORT=port,
                   RUST_LOG=os.environ.get("RUST_LOG", "info"))
        if wasm:
            loophost = find_binary(
                "LOOPHOST", [os.path.join(target, p, "loophost") for p in ("release", "debug")], "loophost"
            )
            wasm_dir = os.environ.get("GREETER_WASM_DIR") or os.path.join(target, "wasm32-wasip2", "release")
            for guest in ("greeter-controller.wasm", "greetings_http.wasm"):
                src = os.path.join(wasm_dir, guest)
                if not os.path.isfile(src):
                    fail(f"{src} missing; run build.sh or set GREETER_WASM_DIR")
                shutil.copy(src, work)
            shutil.copy(os.path.join(HERE, "workload.toml"), work)
            listen = f"127.0.0.1:{free_port()}"
            controller = Process("loophost up", [loophost, "up", "--listen", listen, "workload.toml"], env=env, cwd=work)
            greetings_url = f"http://{listen}/greetings"
        else:
            controller_bin = find_binary(
                "GREETER_BIN", [os.path.join(target, "release", "greeter-controller")], "greeter-controller"
            )
            listen = f"127.0.0.1:{free_port()}"
            env.update(GREETER_SERVICEACCOUNT_DIR=sa_dir, GREETER_LISTEN=listen)
            controller = Process("greeter-controller", [controller_bin], env=env)
            greetings_url = f"http://{listen}/greetings"
        processes.append(controller)
        eventually("the controller answers /greetings", lambda: None if http_get(greetings_url)[0] == 200 else http_get(greetings_url))

        for name, copies in (("alpha", 2), ("beta", 1), ("gamma", 3)):
            api.ok("POST", GROUP_PATH, greeting(name, f"hello {name}", copies))
        for name, copies in (("alpha", 2), ("beta", 1), ("gamma", 3)):
            eventually(f"{name}: {copies} ConfigMaps, status, finalizer", converged(api, name, f"hello {name}", copies))

        merge(api, f"{GROUP_PATH}/alpha", {"spec": {"message": "bonjour", "copies": 4}})
        merge(api, f"{GROUP_PATH}/gamma", {"spec": {"copies": 0}})
        eventually("alpha: new message, scaled up to 4", converged(api, "alpha", "bonjour", 4))
        eventually("gamma: scaled down to 0", converged(api, "gamma", "hello gamma", 0))

        api.ok("DELETE", f"{CM_PATH}/alpha-greeting-1")
        merge(api, f"{CM_PATH}/alpha-greeting-2", {"data": {"message": "edited", "extra": "x"},
                                                  "metadata": {"labels": {OWNER_LABEL: "someone-else"}}})
        eventually("alpha: deleted and edited ConfigMaps restored", converged(api, "alpha", "bonjour", 4))

        admin(admin_url, "/faults/compact")
        admin(admin_url, "/faults/drop-watches")
        merge(api, f"{GROUP_PATH}/beta", {"spec": {"copies": 2}})
        eventually("beta: converges after compaction (410) and dropped watches", converged(api, "beta", "hello beta", 2))

        merge(api, f"{GROUP_PATH}/beta", {"spec": {"message": "through 429s"}})
        admin(admin_url, "/faults/fail?status=429&seconds=2")
        admin(admin_url, "/faults/drop-watches")
        time.sleep(2.5)
        eventually("beta: converges after 2 s of 429s", converged(api, "beta", "through 429s", 2))

        admin(admin_url, "/faults/restart?down_ms=1000")
        merge(api, f"{GROUP_PATH}/gamma", {"spec": {"copies": 1}})
        eventually("gamma: converges after an API server restart", converged(api, "gamma", "hello gamma", 1))

        admin(admin_url, "/faults/rotate-token")
        merge(api, f"{GROUP_PATH}/gamma", {"spec": {"message": "new token"}})
        eventually("gamma: converges after a token rotation", converged(api, "gamma", "new token", 1))

        status, body = http_get(greetings_url)
        listed = sorted(g["name"] for g in json.loads(body)) if status == 200 else None
        if listed != ["alpha", "beta", "gamma"]:
            checks["failed"] += 1
            raise AssertionError(f"GET /greetings: {status} {body[:300]!r}")
        checks["passed"] += 1
        print("ok: GET /greetings lists alpha, beta, gamma")

        api.ok("DELETE", f"{GROUP_PATH}/alpha")

        def alpha_gone():
            status, _ = api.request("GET", f"{GROUP_PATH}/alpha")
            if status != 404:
                return f"greeting still there ({status})"
            left = api.ok("GET", f"{CM_PATH}?labelSelector={OWNER_LABEL}%3Dalpha")["items"]
            return f"ConfigMaps left: {[c['metadata']['name'] for c in left]}" if left else None

        eventually("alpha deleted: ConfigMaps removed, finalizer released", alpha_gone)
    except AssertionError as e:
        print(f"scenario: FAILED: {e}", file=sys.stderr)
        for process in processes:
            process.dump()
        checks["failed"] = max(checks["failed"], 1)
    finally:
        if os.environ.get("SCENARIO_VERBOSE"):
            for process in processes:
                process.dump(last=100000)
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
