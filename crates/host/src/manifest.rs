//! The workload manifest (TOML), in the spirit of `spin.toml`.
//!
//! ```toml
//! name = "shop"
//! namespace = "default"          # optional, "default"
//! connect_wait_ms = 5000         # connects to a declared port wait this long for its service
//! network = { max_connections = 16384, max_sockets_per_instance = 4096 }  # virtual network caps
//!
//! [[service]]
//! name = "kv"
//! wasm = "kv.wasm"               # relative to this file
//! args = ["--listen", "127.0.0.1:6379"]
//! env = { LOG = "debug" }
//! env_from_host = ["KUBERNETES_SERVICE_HOST"] # passed on from loophost's own environment
//! config = { max_keys = "1000" } # exposed to the guest as env vars CONFIG_MAX_KEYS=...
//! ports = [6379]                 # the service is ready when it listens on all of them
//! restart = "on-failure"         # always | on-failure | never
//! max_restarts = 10
//! backoff_initial_ms = 100
//! backoff_max_ms = 5000
//! publish = [{ listen = "127.0.0.1:16379", port = 6379 }]
//! memory_limit_mb = 1024           # linear memory of one incarnation
//! mounts = [{ host = "secrets", guest = "/var/run/secrets/app" }] # read-only unless writable = true
//! sockets = { allow_egress = ["10.0.0.0/8:5432", "${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"], allow_lookup = ["db.internal"] }
//!
//! [[component]]
//! name = "api"
//! wasm = "kv_http.wasm"
//! route = "/kv"                  # HTTP component (wasi:http/incoming-handler)
//! timeout_ms = 30000             # deadline of one request (504 after it)
//! max_concurrency = 100          # instances at once (503 beyond)
//! memory_limit_mb = 256          # linear memory of one instance
//!
//! [[component]]
//! name = "seed"
//! wasm = "seed.wasm"             # no route: a wasi:cli/run job, run once when services are ready
//! ```
//!
//! Every mistake is reported on one line naming the file, the field and
//! what to do; nothing starts.

use crate::mounts::Mount;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasi_sockets_virt::Policy;

/// A parsed and validated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub file: PathBuf,
    pub name: String,
    pub namespace: String,
    pub connect_wait: Duration,
    /// Caps of the workload's virtual network (`[network]`).
    pub network: NetworkLimits,
    pub services: Vec<Service>,
    pub components: Vec<Component>,
}

/// The `[network]` table: how much of the virtual network one workload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkLimits {
    /// Virtual connections open at once (connects beyond: `connection-refused`).
    pub max_connections: usize,
    /// Sockets one instance may hold (more: `new-socket-limit`).
    pub max_sockets_per_instance: usize,
}

impl Default for NetworkLimits {
    fn default() -> Self {
        let defaults = wasi_sockets_virt::NetworkConfig::default();
        NetworkLimits {
            max_connections: defaults.max_connections,
            max_sockets_per_instance: defaults.max_sockets_per_store,
        }
    }
}

impl NetworkLimits {
    /// Largest value either cap takes: beyond it a workload could make the
    /// host hold more memory than any machine has for idle sockets alone.
    pub const MAX: usize = 10_000_000;

    /// The virtual network configuration with these caps.
    pub fn config(&self) -> wasi_sockets_virt::NetworkConfig {
        wasi_sockets_virt::NetworkConfig {
            max_connections: self.max_connections,
            max_sockets_per_store: self.max_sockets_per_instance,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub wasm: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<u16>,
    pub restart: RestartPolicy,
    pub max_restarts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub publish: Vec<Publish>,
    pub policy: Policy,
    /// Host directories the service sees.
    pub mounts: Vec<Mount>,
    /// Linear memory one incarnation may use, in bytes.
    pub memory_limit: usize,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub wasm: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `Some`: an HTTP component served under this path prefix; `None`: a job.
    pub route: Option<String>,
    pub policy: Policy,
    /// Host directories every instance sees.
    pub mounts: Vec<Mount>,
    /// Linear memory one instance may use, in bytes.
    pub memory_limit: usize,
    /// HTTP: the deadline of one request (instantiation to the end of the body).
    pub timeout: Duration,
    /// HTTP: instances serving at once; a request beyond it gets 503.
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// The real address the host listens on.
    pub listen: SocketAddr,
    /// The service's virtual port it forwards to (on 127.0.0.1).
    pub port: u16,
}

// ---- the file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default = "default_connect_wait_ms")]
    connect_wait_ms: u64,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default, rename = "service")]
    services: Vec<RawService>,
    #[serde(default, rename = "component")]
    components: Vec<RawComponent>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    max_connections: Option<u64>,
    max_sockets_per_instance: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    wasm: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_from_host: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default = "default_restart")]
    restart: RestartPolicy,
    #[serde(default = "default_max_restarts")]
    max_restarts: u32,
    #[serde(default = "default_backoff_initial_ms")]
    backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    backoff_max_ms: u64,
    #[serde(default)]
    publish: Vec<RawPublish>,
    #[serde(default)]
    sockets: RawSockets,
    #[serde(default)]
    mounts: Vec<RawMount>,
    #[serde(default = "default_service_memory_mb")]
    memory_limit_mb: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: String,
    wasm: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    env_from_host: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    route: Option<String>,
    #[serde(default)]
    sockets: RawSockets,
    #[serde(default)]
    mounts: Vec<RawMount>,
    #[serde(default = "default_component_memory_mb")]
    memory_limit_mb: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_max_concurrency")]
    max_concurrency: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    listen: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    writable: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSockets {
    #[serde(default)]
    allow_egress: Vec<String>,
    #[serde(default)]
    allow_lookup: Vec<String>,
}

fn default_namespace() -> String {
    "default".into()
}
fn default_connect_wait_ms() -> u64 {
    5000
}
fn default_restart() -> RestartPolicy {
    RestartPolicy::OnFailure
}
fn default_max_restarts() -> u32 {
    10
}
fn default_backoff_initial_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    5000
}
pub const DEFAULT_SERVICE_MEMORY_MB: u64 = 1024;
pub const DEFAULT_COMPONENT_MEMORY_MB: u64 = 256;
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_CONCURRENCY: u64 = 100;
/// The largest memory limit a manifest may ask for (the 32-bit address space).
const MAX_MEMORY_MB: u64 = 4096;
/// The most instances one HTTP component may run at once.
const MAX_CONCURRENCY: u64 = 1000;
fn default_service_memory_mb() -> u64 {
    DEFAULT_SERVICE_MEMORY_MB
}
fn default_component_memory_mb() -> u64 {
    DEFAULT_COMPONENT_MEMORY_MB
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_max_concurrency() -> u64 {
    DEFAULT_MAX_CONCURRENCY
}

fn memory_limit(file: &str, at: &str, mb: u64) -> Result<usize> {
    if mb == 0 || mb > MAX_MEMORY_MB {
        bail!("{file}: {at} memory_limit_mb: {mb} is outside 1..={MAX_MEMORY_MB}");
    }
    Ok((mb * 1024 * 1024) as usize)
}

/// Reads and validates one manifest file.
pub fn load(path: &Path) -> Result<Workload> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("{shown}: cannot read manifest"))?;
    parse(&shown, path.parent().unwrap_or(Path::new(".")), &text)
}

/// Parses and validates manifest `text` (named `file` in errors; wasm
/// paths relative to `base`).
pub fn parse(file: &str, base: &Path, text: &str) -> Result<Workload> {
    let raw: RawWorkload = toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| before.matches('\n').count() + 1);
        let message = err.message().replace('\n', " ");
        match line {
            Some(line) => anyhow::anyhow!("{file}: line {line}: {message}"),
            None => anyhow::anyhow!("{file}: {message}"),
        }
    })?;
    validate(file, base, raw)
}

fn validate(file: &str, base: &Path, raw: RawWorkload) -> Result<Workload> {
    check_name(file, "name", &raw.name)?;
    check_name(file, "namespace", &raw.namespace)?;
    let mut names: HashMap<String, &'static str> = HashMap::new();
    let mut ports: HashMap<u16, String> = HashMap::new();
    let mut routes: HashMap<String, String> = HashMap::new();

    let mut services = Vec::new();
    for (i, s) in raw.services.into_iter().enumerate() {
        claim_name(file, &format!("service[{i}].name"), &s.name, "service", &mut names)?;
        let at = format!("service {:?}", s.name);
        let wasm = check_wasm(file, &at, base, &s.wasm)?;
        for &port in &s.ports {
            if port == 0 {
                bail!("{file}: {at} ports: 0 is not a port a service can declare; use the port it listens on");
            }
            if let Some(other) = ports.insert(port, s.name.clone()) {
                bail!(
                    "{file}: {at} ports: port {port} is already declared by service {other:?}; each port has one service"
                );
            }
        }
        let mut publish = Vec::new();
        for (j, p) in s.publish.iter().enumerate() {
            let listen: SocketAddr = p.listen.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{file}: {at} publish[{j}].listen: {:?} is not a socket address like 127.0.0.1:8080",
                    p.listen
                )
            })?;
            if !s.ports.contains(&p.port) {
                bail!(
                    "{file}: {at} publish[{j}].port: {} is not one of the service's ports {:?}; add it to ports",
                    p.port,
                    s.ports
                );
            }
            publish.push(Publish { listen, port: p.port });
        }
        if s.backoff_initial_ms == 0 || s.backoff_max_ms < s.backoff_initial_ms {
            bail!("{file}: {at} backoff_initial_ms/backoff_max_ms: need 0 < backoff_initial_ms <= backoff_max_ms");
        }
        services.push(Service {
            name: s.name,
            wasm,
            args: s.args,
            env: environment(file, &at, s.env, &s.env_from_host, s.config)?,
            ports: s.ports,
            restart: s.restart,
            max_restarts: s.max_restarts,
            backoff_initial: Duration::from_millis(s.backoff_initial_ms),
            backoff_max: Duration::from_millis(s.backoff_max_ms),
            publish,
            policy: policy(file, &at, &s.sockets)?,
            mounts: mounts(file, &at, base, &s.mounts)?,
            memory_limit: memory_limit(file, &at, s.memory_limit_mb)?,
        });
    }

    let mut components = Vec::new();
    for (i, c) in raw.components.into_iter().enumerate() {
        claim_name(file, &format!("component[{i}].name"), &c.name, "component", &mut names)?;
        let at = format!("component {:?}", c.name);
        let wasm = check_wasm(file, &at, base, &c.wasm)?;
        if let Some(route) = &c.route {
            if !route.starts_with('/') {
                bail!("{file}: {at} route: {route:?} must start with '/'");
            }
            let key = normalize_route(route);
            if let Some(other) = routes.insert(key, c.name.clone()) {
                bail!(
                    "{file}: {at} route: {route:?} is already served by component {other:?}; give each component its own route"
                );
            }
        }
        if c.timeout_ms == 0 || c.timeout_ms > 3_600_000 {
            bail!(
                "{file}: {at} timeout_ms: {} is outside 1..=3600000 (an hour)",
                c.timeout_ms
            );
        }
        if c.max_concurrency == 0 || c.max_concurrency > MAX_CONCURRENCY {
            bail!(
                "{file}: {at} max_concurrency: {} is outside 1..={MAX_CONCURRENCY}",
                c.max_concurrency
            );
        }
        components.push(Component {
            name: c.name,
            wasm,
            args: c.args,
            env: environment(file, &at, c.env, &c.env_from_host, c.config)?,
            route: c.route.as_deref().map(normalize_route),
            policy: policy(file, &at, &c.sockets)?,
            mounts: mounts(file, &at, base, &c.mounts)?,
            memory_limit: memory_limit(file, &at, c.memory_limit_mb)?,
            timeout: Duration::from_millis(c.timeout_ms),
            max_concurrency: c.max_concurrency as usize,
        });
    }
    if raw.connect_wait_ms > 3_600_000 {
        bail!(
            "{file}: connect_wait_ms: {} is more than an hour; use at most 3600000",
            raw.connect_wait_ms
        );
    }
    if services.is_empty() && components.is_empty() {
        bail!("{file}: declares no [[service]] and no [[component]]; add at least one");
    }
    let network = network_limits(file, &raw.network)?;
    Ok(Workload {
        file: PathBuf::from(file),
        name: raw.name,
        namespace: raw.namespace,
        connect_wait: Duration::from_millis(raw.connect_wait_ms),
        network,
        services,
        components,
    })
}

fn network_limits(file: &str, raw: &RawNetwork) -> Result<NetworkLimits> {
    let defaults = NetworkLimits::default();
    let cap = |field: &str, value: Option<u64>, default: usize| -> Result<usize> {
        match value {
            None => Ok(default),
            Some(n) if (1..=NetworkLimits::MAX as u64).contains(&n) => Ok(n as usize),
            Some(n) => bail!(
                "{file}: network.{field}: {n} is out of range; use 1 to {}",
                NetworkLimits::MAX
            ),
        }
    };
    Ok(NetworkLimits {
        max_connections: cap("max_connections", raw.max_connections, defaults.max_connections)?,
        max_sockets_per_instance: cap(
            "max_sockets_per_instance",
            raw.max_sockets_per_instance,
            defaults.max_sockets_per_instance,
        )?,
    })
}

/// Checks several workloads meant to run in one host together.
pub fn check_together(workloads: &[Workload]) -> Result<()> {
    let mut ids = HashMap::new();
    let mut routes: HashMap<String, String> = HashMap::new();
    let mut published: HashMap<SocketAddr, String> = HashMap::new();
    for w in workloads {
        let id = format!("{}/{}", w.namespace, w.name);
        if let Some(other) = ids.insert(id.clone(), w.file.display().to_string()) {
            bail!(
                "{}: name: workload {id} is also defined in {other}; give each workload its own name",
                w.file.display()
            );
        }
        for c in &w.components {
            let Some(route) = &c.route else { continue };
            if let Some(other) = routes.insert(route.clone(), format!("{id}/{}", c.name)) {
                bail!(
                    "{}: component {:?} route: {route:?} is already served by {other}",
                    w.file.display(),
                    c.name
                );
            }
        }
        for s in &w.services {
            // Port 0 asks for any free port: those can never collide.
            for p in s.publish.iter().filter(|p| p.listen.port() != 0) {
                if let Some(other) = published.insert(p.listen, format!("{id}/{}", s.name)) {
                    bail!(
                        "{}: service {:?} publish: {} is already published by {other}",
                        w.file.display(),
                        s.name,
                        p.listen
                    );
                }
            }
        }
    }
    Ok(())
}

fn check_name(file: &str, field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        bail!("{file}: {field}: {name:?} is not a valid name; use 1-63 lowercase letters, digits, '-' or '_'");
    }
    Ok(())
}

/// Checks a service or component name and that no other one has it.
fn claim_name(
    file: &str,
    field: &str,
    name: &str,
    kind: &'static str,
    names: &mut HashMap<String, &'static str>,
) -> Result<()> {
    check_name(file, field, name)?;
    if let Some(other) = names.insert(name.to_string(), kind) {
        bail!("{file}: {field}: {name:?} is already used by a {other}; names must be unique in a workload");
    }
    Ok(())
}

fn check_wasm(file: &str, at: &str, base: &Path, wasm: &Path) -> Result<PathBuf> {
    let path = if wasm.is_absolute() {
        wasm.to_path_buf()
    } else {
        base.join(wasm)
    };
    if !path.is_file() {
        bail!(
            "{file}: {at} wasm: {} does not exist; build it or fix the path (relative to the manifest)",
            path.display()
        );
    }
    Ok(path)
}

fn policy(file: &str, at: &str, sockets: &RawSockets) -> Result<Policy> {
    let expand_all = |field: &str, rules: &[String]| -> Result<Vec<String>> {
        rules
            .iter()
            .enumerate()
            .map(|(i, rule)| expand_env(rule).map_err(|e| anyhow::anyhow!("{file}: {at} sockets.{field}[{i}]: {e}")))
            .collect()
    };
    let egress = expand_all("allow_egress", &sockets.allow_egress)?;
    let lookup = expand_all("allow_lookup", &sockets.allow_lookup)?;
    crate::policy::from_flags(&egress, &lookup).with_context(|| format!("{file}: {at} sockets"))
}

/// Replaces `${NAME}` with loophost's own value of `NAME`, so a rule can name
/// an address only known where the host runs (in a pod, the API server is
/// `${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}`).
fn expand_env(rule: &str) -> Result<String> {
    let mut out = String::with_capacity(rule.len());
    let mut rest = rule;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("{rule:?} has an unclosed \"${{\"; write ${{NAME}}");
        };
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("{rule:?}: \"${{{name}}}\" is not an environment variable name");
        }
        match std::env::var(name) {
            // An IPv6 address becomes a bracketed host so a port can follow.
            Ok(value) if value.contains(':') && !value.starts_with('[') && after[end + 1..].starts_with(':') => {
                out.push_str(&format!("[{value}]"))
            }
            Ok(value) => out.push_str(&value),
            Err(_) => bail!("{rule:?}: {name} is not set in loophost's environment; set it, or write the address"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn mounts(file: &str, at: &str, base: &Path, raw: &[RawMount]) -> Result<Vec<Mount>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        // Mount::new's errors start with the part at fault ("host: ...").
        let mount = Mount::new(base, &m.host, &m.guest, m.writable)
            .map_err(|err| anyhow::anyhow!("{file}: {at} mounts[{i}].{err:#}"))?;
        out.push(mount);
    }
    crate::mounts::check_distinct(&out).map_err(|err| anyhow::anyhow!("{file}: {at} {err:#}"))?;
    Ok(out)
}

/// The guest's environment: `env`, then `env_from_host` (values read from
/// loophost's own environment now), then `config` as `CONFIG_*`.
fn environment(
    file: &str,
    at: &str,
    env: BTreeMap<String, String>,
    from_host: &[String],
    config: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = env.into_iter().collect();
    for name in from_host {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            bail!("{file}: {at} env_from_host: {name:?} is not an environment variable name");
        }
        if out.iter().any(|(k, _)| k == name) {
            bail!("{file}: {at} env_from_host: {name} is also set in env; keep one of the two");
        }
        let Some(value) = std::env::var_os(name) else {
            bail!(
                "{file}: {at} env_from_host: {name} is not set in loophost's environment; set it, or remove it from env_from_host"
            );
        };
        let Ok(value) = value.into_string() else {
            bail!("{file}: {at} env_from_host: the value of {name} is not UTF-8");
        };
        out.push((name.clone(), value));
    }
    out.extend(
        config
            .into_iter()
            .map(|(k, v)| (format!("CONFIG_{}", k.to_ascii_uppercase()), v)),
    );
    Ok(out)
}

/// `/api/` and `/api` are the same route.
fn normalize_route(route: &str) -> String {
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}
