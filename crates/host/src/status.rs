//! What `loophost up` is running, for people: services (state, restarts,
//! uptime, connections, bytes) and components of every workload.
//!
//! `loophost up --status` serves it as JSON at `GET /.loophost/status` on the
//! HTTP listener (off by default: it tells whoever can reach the listener
//! what runs inside); `loophost status` fetches it and prints a table.

use crate::metrics::ServiceTraffic;
use crate::supervisor::ServiceSupervisor;
use anyhow::{Context, Result, bail};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The path of the status endpoint.
pub const PATH: &str = "/.loophost/status";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Status {
    pub workloads: Vec<WorkloadStatus>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WorkloadStatus {
    /// `namespace/name`.
    pub id: String,
    pub services: Vec<ServiceReport>,
    pub components: Vec<ComponentReport>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceReport {
    pub name: String,
    pub state: String,
    pub restarts: u32,
    /// Seconds the running incarnation has been up; absent while none runs.
    pub uptime_seconds: Option<f64>,
    pub ports: Vec<u16>,
    pub connections_open: u64,
    pub connections_total: u64,
    /// Bytes of closed connections, as the service saw them.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub last_exit: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ComponentReport {
    pub name: String,
    /// `http` or `job`.
    pub kind: String,
    pub route: Option<String>,
}

/// One workload as the status sees it; filled by `up`.
pub struct WorkloadView {
    pub id: String,
    pub services: Vec<(Arc<ServiceSupervisor>, Arc<ServiceTraffic>)>,
    pub components: Vec<ComponentReport>,
}

/// A snapshot of everything running.
pub fn snapshot(workloads: &[WorkloadView]) -> Status {
    Status {
        workloads: workloads
            .iter()
            .map(|w| WorkloadStatus {
                id: w.id.clone(),
                services: w
                    .services
                    .iter()
                    .map(|(sup, traffic)| {
                        let st = sup.status();
                        ServiceReport {
                            name: sup.service.name.clone(),
                            state: st.state.to_string(),
                            restarts: st.restarts,
                            uptime_seconds: st.since.map(|t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
                            ports: sup.service.ports.clone(),
                            connections_open: traffic.open.load(Ordering::Relaxed),
                            connections_total: traffic.total.load(Ordering::Relaxed),
                            bytes_received: traffic.received.load(Ordering::Relaxed),
                            bytes_sent: traffic.sent.load(Ordering::Relaxed),
                            last_exit: st.last_exit,
                        }
                    })
                    .collect(),
                components: w.components.clone(),
            })
            .collect(),
    }
}

/// The status as a table, one line a service or component.
pub fn table(status: &Status) -> String {
    let mut out = format!(
        "{:<24} {:<16} {:<8} {:<12} {:>8} {:>9} {:>11} {:>12} {:>12}  DETAILS\n",
        "WORKLOAD", "NAME", "KIND", "STATE", "RESTARTS", "UPTIME", "CONNS", "BYTES IN", "BYTES OUT"
    );
    for w in &status.workloads {
        for s in &w.services {
            let uptime = s.uptime_seconds.map_or("-".to_string(), |u| format!("{u:.1}s"));
            let mut details = format!("ports {:?}", s.ports);
            if let Some(exit) = &s.last_exit {
                details.push_str(&format!("; last exit: {exit}"));
            }
            out.push_str(&format!(
                "{:<24} {:<16} {:<8} {:<12} {:>8} {:>9} {:>11} {:>12} {:>12}  {details}\n",
                w.id,
                s.name,
                "service",
                s.state,
                s.restarts,
                uptime,
                format!("{}/{}", s.connections_open, s.connections_total),
                s.bytes_received,
                s.bytes_sent,
            ));
        }
        for c in &w.components {
            let details = c.route.as_ref().map(|r| format!("route {r}")).unwrap_or_default();
            out.push_str(&format!(
                "{:<24} {:<16} {:<8} {:<12} {:>8} {:>9} {:>11} {:>12} {:>12}  {details}\n",
                w.id, c.name, c.kind, "-", "-", "-", "-", "-", "-"
            ));
        }
    }
    out
}

/// Fetches the status of the `loophost up` listening at `addr`.
pub async fn fetch(addr: SocketAddr) -> Result<Status> {
    let what = || format!("loophost status: cannot reach loophost up at {addr}");
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.with_context(what)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(tcp))
            .await
            .with_context(what)?;
        tokio::spawn(conn);
        let request = http::Request::get(PATH)
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await.with_context(what)?;
        let code = response.status();
        let body = response.into_body().collect().await.with_context(what)?.to_bytes();
        anyhow::Ok((code, body))
    };
    let (code, body) = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("loophost status: {addr} did not answer within 10 s"))??;
    if code == http::StatusCode::NOT_FOUND {
        bail!("{addr} has no status endpoint: start loophost up with --status");
    }
    if !code.is_success() {
        bail!("{addr}{PATH} answered {code}");
    }
    serde_json::from_slice(&body).with_context(|| format!("{addr}{PATH}: not a loophost status"))
}
