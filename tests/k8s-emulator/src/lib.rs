//! A Kubernetes API server emulator for integration tests.
//!
//! It speaks the real wire protocol (HTTPS with a generated CA, bearer
//! tokens, discovery, JSON objects with resourceVersion/generation/uid,
//! Status errors, the four PATCH types, watches with bookmarks and 410
//! Expired, `meta.k8s.io` Tables for kubectl) over an in-memory store, and
//! has knobs to inject the failures a controller must survive (dropped
//! watches, compaction, 429/500 storms, restarts, token rotation).
//!
//! Module map: [`tls`] certificates, `store` objects + event log, `registry`
//! resource types and discovery, `ops` write semantics, `patch`, `schema`
//! (CRD pruning/defaulting/validation), `table` (server-side printing),
//! `watch`, `api` (HTTP routing and verbs), `server` (listener, restart),
//! `admin` (plain-HTTP fault endpoint), `openapi` (what kubectl needs).
//!
//! ```no_run
//! use k8s_emulator::{Emulator, EmulatorConfig, Gvr};
//! let emu = Emulator::start_blocking(EmulatorConfig::default())?;
//! emu.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), "default")?;
//! // ... run a client against emu.url() ...
//! let cm = emu.get(&Gvr::new("", "v1", "configmaps"), Some("default"), "x");
//! # anyhow::Ok(())
//! ```

mod admin;
mod api;
mod openapi;
mod ops;
mod patch;
mod registry;
mod schema;
mod selectors;
mod server;
mod status;
mod store;
mod table;
mod time;
pub mod tls;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::store::Store;

/// Group, version and resource (plural), e.g. `("apps", "v1", "deployments")`;
/// the core group is `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }

    /// `configmaps` or `greetings.demo.loophost.dev`: how [`Stats`] keys
    /// resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where the HTTPS API listens; port 0 picks a free port (kept across
    /// [`Emulator::restart`]).
    pub listen: SocketAddr,
    /// The accepted bearer token; `None` generates one.
    pub token: Option<String>,
    /// How long the previous token stays valid after [`Emulator::rotate_token`].
    pub token_grace: Duration,
    /// Interval of BOOKMARK events on watches that allow them (the real
    /// server uses about a minute; tests want seconds).
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` lasts.
    pub default_watch_timeout: Duration,
    /// Events kept for watch replay; older ones are compacted away (410).
    pub event_log_capacity: usize,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// What `/version` reports.
    pub server_version: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            token_grace: Duration::ZERO,
            bookmark_interval: Duration::from_secs(3),
            default_watch_timeout: Duration::from_secs(1800),
            event_log_capacity: 10_000,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
            server_version: "v1.30.0".into(),
        }
    }
}

/// Request counters, for assertions such as "the controller created the
/// ConfigMap exactly once".
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Keyed by (verb, qualified resource); verb is the Kubernetes verb
    /// (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`) or `discovery` (resource "" then).
    pub requests: BTreeMap<(String, String), u64>,
    /// Create calls per qualified resource, successful or not (incl. dry runs).
    pub create_calls: BTreeMap<String, u64>,
    /// Creates that stored an object.
    pub creates_succeeded: BTreeMap<String, u64>,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// Requests answered by [`Emulator::fail_requests`].
    pub injected_failures: u64,
}

impl Stats {
    pub fn requests(&self, verb: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((v, _), _)| v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn requests_for(&self, verb: &str, gvr: &Gvr) -> u64 {
        self.requests
            .get(&(verb.to_string(), gvr.qualified()))
            .copied()
            .unwrap_or(0)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not turn every later request into a
    // panic too; the data is still consistent enough for a test server.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Auth {
    current: String,
    previous: Option<(String, Instant)>,
}

impl Auth {
    fn accepts(&self, token: &str) -> bool {
        token == self.current
            || self
                .previous
                .as_ref()
                .is_some_and(|(t, until)| token == t && Instant::now() < *until)
    }
}

pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub store: Mutex<Store>,
    pub auth: Mutex<Auth>,
    /// Until when, and with which status, every API request fails.
    pub fault: Mutex<Option<(Instant, u16)>>,
    pub stats: Mutex<Stats>,
    pub tls: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
    pub addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
    side_tasks: Mutex<Vec<JoinHandle<()>>>,
    sa_dirs: Mutex<Vec<PathBuf>>,
    kubeconfigs: Mutex<Vec<(PathBuf, String)>>,
}

impl Shared {
    pub(crate) fn check_token(&self, token: &str) -> bool {
        lock(&self.auth).accepts(token)
    }

    pub(crate) fn active_fault(&self) -> Option<u16> {
        let mut f = lock(&self.fault);
        match *f {
            Some((until, code)) if Instant::now() < until => Some(code),
            Some(_) => {
                *f = None;
                None
            }
            None => None,
        }
    }

    async fn restart(self: &Arc<Self>, down: Duration) -> anyhow::Result<()> {
        let running = lock(&self.server).take();
        if let Some(h) = running {
            h.abort();
            // Awaiting the aborted task guarantees the listener and every
            // connection are closed before the downtime starts.
            let _ = h.await;
        }
        lock(&self.store).drop_watchers();
        tokio::time::sleep(down).await;
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("rebind {}", self.addr))?;
        *lock(&self.server) = Some(tokio::spawn(server::serve(self.clone(), listener)));
        Ok(())
    }

    fn shutdown(&self) {
        if let Some(h) = lock(&self.server).take() {
            h.abort();
        }
        for h in lock(&self.side_tasks).drain(..) {
            h.abort();
        }
        lock(&self.store).drop_watchers();
    }

    fn token(&self) -> String {
        lock(&self.auth).current.clone()
    }

    fn rotate_token(&self) -> anyhow::Result<String> {
        let new = generate_token();
        {
            let mut auth = lock(&self.auth);
            let old = std::mem::replace(&mut auth.current, new.clone());
            auth.previous = Some((old, Instant::now() + self.config.token_grace));
        }
        for dir in lock(&self.sa_dirs).iter() {
            write_atomic(&dir.join("token"), new.as_bytes())?;
        }
        for (path, ns) in lock(&self.kubeconfigs).iter() {
            write_atomic(path, self.kubeconfig(ns, &new).as_bytes())?;
        }
        Ok(new)
    }

    fn kubeconfig(&self, namespace: &str, token: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k8s-emulator\n  cluster:\n    server: https://{addr}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: k8s-emulator\n  user:\n    token: {token}\ncontexts:\n- \
             name: k8s-emulator\n  context:\n    cluster: k8s-emulator\n    user: k8s-emulator\n    namespace: \
             {namespace}\ncurrent-context: k8s-emulator\n",
            addr = self.addr
        )
    }

    /// Creates the namespace unless it exists, through the normal create
    /// path (so it gets an event and a resourceVersion).
    fn ensure_namespace(&self, name: &str) -> anyhow::Result<()> {
        let mut store = lock(&self.store);
        let Some(rt) = store.registry.lookup("", "v1", "namespaces").cloned() else {
            anyhow::bail!("namespaces not registered");
        };
        if store.get(&ops::gr(&rt), &(String::new(), name.to_string())).is_some() {
            return Ok(());
        }
        let ctx = ops::Ctx {
            rt: &rt,
            version: "v1",
            namespace: None,
            dry_run: false,
        };
        ops::create(&mut store, &ctx, json!({ "metadata": { "name": name } }))
            .map_err(|e| anyhow::anyhow!("create namespace {name}: {}", e.message))?;
        Ok(())
    }
}

fn generate_token() -> String {
    format!("emu-{}", uuid::Uuid::new_v4().simple())
}

/// Write-then-rename, as the kubelet swaps projected token files, so a
/// reader never sees a half-written token.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-k8s-emulator");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// A running emulator on the caller's tokio runtime. Dropping it stops it.
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Emulator {
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let tls = tls::generate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind {}", config.listen))?;
        let addr = listener.local_addr()?;
        let token = config.token.clone().unwrap_or_else(generate_token);
        let namespaces = config.namespaces.clone();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(config.event_log_capacity)),
            config,
            auth: Mutex::new(Auth {
                current: token,
                previous: None,
            }),
            fault: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
            tls: tls.server_config,
            ca_pem: tls.ca_pem,
            addr,
            server: Mutex::new(None),
            side_tasks: Mutex::new(Vec::new()),
            sa_dirs: Mutex::new(Vec::new()),
            kubeconfigs: Mutex::new(Vec::new()),
        });
        for ns in &namespaces {
            shared.ensure_namespace(ns)?;
        }
        *lock(&shared.server) = Some(tokio::spawn(server::serve(shared.clone(), listener)));
        Ok(Emulator { shared })
    }

    /// Starts the emulator on a runtime of its own (two worker threads), for
    /// synchronous tests.
    pub fn start_blocking(config: EmulatorConfig) -> anyhow::Result<BlockingEmulator> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("k8s-emulator")
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let emulator = runtime.block_on(Emulator::start(config))?;
        Ok(BlockingEmulator {
            emulator: Some(emulator),
            runtime: Some(runtime),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    /// The currently valid bearer token.
    pub fn token(&self) -> String {
        self.shared.token()
    }

    /// Writes `token`, `ca.crt` and `namespace` into `dir`, as the kubelet
    /// projects them into a pod at
    /// `/var/run/secrets/kubernetes.io/serviceaccount`. The token file is
    /// rewritten on rotation. The namespace is created if missing.
    pub fn write_service_account_dir(&self, dir: &Path, namespace: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        self.shared.ensure_namespace(namespace)?;
        write_atomic(&dir.join("token"), self.token().as_bytes())?;
        write_atomic(&dir.join("ca.crt"), self.shared.ca_pem.as_bytes())?;
        write_atomic(&dir.join("namespace"), namespace.as_bytes())?;
        lock(&self.shared.sa_dirs).push(dir.to_path_buf());
        Ok(())
    }

    /// Writes a kubeconfig (embedded CA, bearer token, default namespace),
    /// rewritten on token rotation. The namespace is created if missing.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> anyhow::Result<()> {
        self.shared.ensure_namespace(namespace)?;
        write_atomic(path, self.shared.kubeconfig(namespace, &self.token()).as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
        lock(&self.shared.kubeconfigs).push((path.to_path_buf(), namespace.to_string()));
        Ok(())
    }

    fn resource_type(&self, gvr: &Gvr) -> Option<registry::ResourceType> {
        lock(&self.shared.store)
            .registry
            .lookup(&gvr.group, &gvr.version, &gvr.resource)
            .cloned()
    }

    /// The stored object, as a GET in `gvr.version` would return it.
    pub fn get(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Option<Value> {
        let rt = self.resource_type(gvr)?;
        let store = lock(&self.shared.store);
        let ns = if rt.namespaced { namespace.unwrap_or("") } else { "" };
        store
            .get(&ops::gr(&rt), &(ns.to_string(), name.to_string()))
            .map(|o| ops::output(&rt, &gvr.version, o))
    }

    /// Objects in a namespace (or all, with `None`), in key order.
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>) -> Vec<Value> {
        let Some(rt) = self.resource_type(gvr) else {
            return Vec::new();
        };
        let store = lock(&self.shared.store);
        let ns = if rt.namespaced { namespace } else { None };
        store
            .list(&ops::gr(&rt), ns)
            .map(|(_, o)| ops::output(&rt, &gvr.version, o))
            .collect()
    }

    fn write(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        f: impl FnOnce(&mut Store, &ops::Ctx<'_>) -> Result<Value, status::ApiError>,
    ) -> Result<Value, Value> {
        let rt = self
            .resource_type(gvr)
            .ok_or_else(|| status::ApiError::path_not_found().to_status())?;
        let mut store = lock(&self.shared.store);
        let ctx = ops::Ctx {
            rt: &rt,
            version: &gvr.version,
            namespace,
            dry_run: false,
        };
        f(&mut store, &ctx)
            .map(|o| ops::output(&rt, &gvr.version, &o))
            .map_err(|e| e.to_status())
    }

    /// Creates an object directly (same semantics as a POST, no HTTP, not
    /// counted in [`Stats`]). The error is the `Status` the API would return.
    pub fn create(&self, gvr: &Gvr, namespace: Option<&str>, object: Value) -> Result<Value, Value> {
        self.write(gvr, namespace, |s, c| ops::create(s, c, object))
    }

    /// Replaces an object directly (same semantics as a PUT).
    pub fn replace(&self, gvr: &Gvr, namespace: Option<&str>, name: &str, object: Value) -> Result<Value, Value> {
        self.write(gvr, namespace, |s, c| ops::update(s, c, name, object, false))
    }

    /// Replaces an object's status directly (a PUT to `/status`).
    pub fn replace_status(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        object: Value,
    ) -> Result<Value, Value> {
        self.write(gvr, namespace, |s, c| ops::update(s, c, name, object, true))
    }

    /// Deletes an object directly (same semantics as a DELETE: with
    /// finalizers it is only marked). Returns the object's last state.
    pub fn delete(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Result<Value, Value> {
        self.write(gvr, namespace, |s, c| {
            ops::delete(s, c, name, &ops::Preconditions::default()).map(|d| match d {
                ops::Deleted::Pending(o) | ops::Deleted::Gone(o) => o,
            })
        })
    }

    /// The global resourceVersion (that of the latest write).
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).current_rv()
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Create calls for a resource (any outcome).
    pub fn create_calls(&self, gvr: &Gvr) -> u64 {
        lock(&self.shared.stats)
            .create_calls
            .get(&gvr.qualified())
            .copied()
            .unwrap_or(0)
    }

    /// Creates that stored an object.
    pub fn creates_succeeded(&self, gvr: &Gvr) -> u64 {
        lock(&self.shared.stats)
            .creates_succeeded
            .get(&gvr.qualified())
            .copied()
            .unwrap_or(0)
    }

    pub fn unauthorized_count(&self) -> u64 {
        lock(&self.shared.stats).unauthorized
    }

    /// Watches currently streaming.
    pub fn open_watches(&self) -> usize {
        lock(&self.shared.store).watcher_count()
    }

    /// Ends every open watch stream (cleanly, as when the apiserver closes
    /// them); clients must re-watch. Returns how many were closed.
    pub fn drop_watches(&self) -> usize {
        lock(&self.shared.store).drop_watchers()
    }

    /// Forgets the event log: watching (or continuing a list) from any
    /// resourceVersion older than the current one now gets 410 Expired.
    /// Returns the resourceVersion compacted at.
    pub fn compact(&self) -> u64 {
        lock(&self.shared.store).compact()
    }

    /// Answers every API request with `status` (429 comes with
    /// `Retry-After: 1`) for `duration`. Admin requests are unaffected.
    pub fn fail_requests(&self, status: u16, duration: Duration) {
        *lock(&self.shared.fault) = Some((Instant::now() + duration, status));
    }

    pub fn clear_faults(&self) {
        *lock(&self.shared.fault) = None;
    }

    /// Closes the listener and every connection (watches die mid-stream),
    /// refuses connections for `down`, then listens again on the same
    /// address with all state kept, like an apiserver restart over etcd.
    pub async fn restart(&self, down: Duration) -> anyhow::Result<()> {
        self.shared.restart(down).await
    }

    /// Replaces the token; the old one keeps working for
    /// `EmulatorConfig::token_grace`. Service-account dirs and kubeconfigs
    /// written by this emulator get the new token. Returns it.
    pub fn rotate_token(&self) -> anyhow::Result<String> {
        self.shared.rotate_token()
    }

    /// Serves the plain-HTTP admin endpoints (see the `admin` module) on
    /// `addr`; returns the bound address. Stops with the emulator.
    pub async fn serve_admin(&self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind admin {addr}"))?;
        let bound = listener.local_addr()?;
        let task = tokio::spawn(admin::serve(self.shared.clone(), listener));
        lock(&self.shared.side_tasks).push(task);
        Ok(bound)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

/// An [`Emulator`] with its own runtime, for synchronous tests. Derefs to
/// [`Emulator`]; the async methods have blocking twins here.
pub struct BlockingEmulator {
    emulator: Option<Emulator>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for BlockingEmulator {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        match &self.emulator {
            Some(e) => e,
            None => unreachable!("only taken in drop"),
        }
    }
}

impl BlockingEmulator {
    fn rt(&self) -> &tokio::runtime::Runtime {
        match &self.runtime {
            Some(r) => r,
            None => unreachable!("only taken in drop"),
        }
    }

    /// Blocking [`Emulator::restart`]: returns once it listens again.
    pub fn restart(&self, down: Duration) -> anyhow::Result<()> {
        self.rt().block_on(self.shared.restart(down))
    }

    /// Blocking [`Emulator::serve_admin`].
    pub fn serve_admin(&self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        self.rt().block_on(Emulator::serve_admin(self, addr))
    }

    /// The runtime the emulator runs on (for test helpers that need one).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt().handle().clone()
    }
}

impl Drop for BlockingEmulator {
    fn drop(&mut self) {
        drop(self.emulator.take());
        if let Some(rt) = self.runtime.take() {
            // Not `drop(rt)`: that blocks, and panics inside async code.
            rt.shutdown_background();
        }
    }
}
