//! In-cluster configuration, read exactly where a pod finds it: the API
//! server's address in `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`,
//! the credentials in the service-account directory.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::ServerName;

pub const DEFAULT_SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lets the native build (no mounted secret) read the files elsewhere.
pub const SERVICEACCOUNT_DIR_ENV: &str = "GREETER_SERVICEACCOUNT_DIR";
pub const LISTEN_ENV: &str = "GREETER_LISTEN";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

#[derive(Debug)]
pub struct Config {
    /// As written in a URI authority: an IPv6 address is bracketed.
    pub authority: String,
    /// Unbracketed, for resolving and for the TLS server name.
    pub host: String,
    pub port: u16,
    pub server_name: ServerName<'static>,
    pub ca_pem: Vec<u8>,
    pub ca_path: PathBuf,
    pub token_path: PathBuf,
    pub namespace: String,
    pub listen: String,
}

/// A configuration problem, shown as one line saying what to do.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn env_var(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(ConfigError(format!(
            "{name} is not set: run inside a pod, or set {name} to the API server's address \
             (loophost: env or env_from_host in the manifest)"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError(format!("{name} is not valid UTF-8"))),
    }
}

fn read_file(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), ConfigError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) => Err(ConfigError(format!(
            "cannot read {}: {e}; mount the service account there (loophost: `mounts` in the manifest) \
             or point {SERVICEACCOUNT_DIR_ENV} at a directory holding token, ca.crt and namespace",
            path.display()
        ))),
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let host = env_var("KUBERNETES_SERVICE_HOST")?;
        let port_text = env_var("KUBERNETES_SERVICE_PORT")?;
        let port: u16 = port_text.parse().map_err(|_| {
            ConfigError(format!(
                "KUBERNETES_SERVICE_PORT is {port_text:?}, not a port number (1-65535)"
            ))
        })?;
        // Tolerate a host given already bracketed; the brackets belong to
        // the URI only, not to resolution or the certificate's IP SAN.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let server_name = ServerName::try_from(host.clone()).map_err(|_| {
            ConfigError(format!(
                "KUBERNETES_SERVICE_HOST is {host:?}, neither an IP address nor a DNS name"
            ))
        })?;

        let dir = std::env::var_os(SERVICEACCOUNT_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_SERVICEACCOUNT_DIR), PathBuf::from);
        let (ca_path, ca_pem) = read_file(&dir, "ca.crt")?;
        // Read now so a missing token is a start-up error, not a 401 later;
        // the transport re-reads it as it rotates.
        let (token_path, token) = read_file(&dir, "token")?;
        if token.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError(format!(
                "{} is empty: the service account has no token yet",
                token_path.display()
            )));
        }
        let (ns_path, namespace) = read_file(&dir, "namespace")?;
        let namespace = String::from_utf8(namespace)
            .map(|n| n.trim().to_string())
            .ok()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConfigError(format!("{} is empty or not UTF-8", ns_path.display())))?;
        let listen = std::env::var(LISTEN_ENV).unwrap_or_else(|_| DEFAULT_LISTEN.to_string());

        Ok(Config {
            authority,
            host,
            port,
            server_name,
            ca_pem,
            ca_path,
            token_path,
            namespace,
            listen,
        })
    }
}
