//! `k8s-emulator`: the Kubernetes API server emulator as a process.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use k8s_emulator::{Emulator, EmulatorConfig};

#[derive(Parser)]
#[command(about = "Kubernetes API server emulator (HTTPS, bearer token, in-memory store)")]
struct Args {
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Plain-HTTP admin endpoint for fault injection (POST /faults/...).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Bearer token to accept (generated when absent).
    #[arg(long)]
    token: Option<String>,
    /// Seconds the previous token stays valid after a rotation.
    #[arg(long, default_value_t = 0)]
    token_grace_seconds: u64,
    /// Write token, ca.crt and namespace here, as a pod's service-account dir.
    #[arg(long)]
    serviceaccount_dir: Option<PathBuf>,
    /// Namespace for the service-account dir and kubeconfig (created).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Write a kubeconfig for this emulator here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// What /version reports (kubectl dispatchers pick a client by it).
    #[arg(long, default_value = "v1.30.0")]
    server_version: String,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 3)]
    bookmark_interval: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = EmulatorConfig {
        listen: args.listen,
        token: args.token,
        server_version: args.server_version,
        token_grace: std::time::Duration::from_secs(args.token_grace_seconds),
        bookmark_interval: std::time::Duration::from_secs(args.bookmark_interval),
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config).await?;
    if let Some(dir) = &args.serviceaccount_dir {
        emulator.write_service_account_dir(dir, &args.namespace)?;
    }
    if let Some(path) = &args.kubeconfig {
        emulator.write_kubeconfig(path, &args.namespace)?;
    }
    println!("listening on {}", emulator.url());
    if let Some(addr) = args.admin {
        let bound = emulator.serve_admin(addr).await?;
        println!("admin on http://{bound}");
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
