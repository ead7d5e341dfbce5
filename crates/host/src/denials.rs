//! The operator's log line for a socket operation the policy refused.
//!
//! A refused connect is the guest's business (it gets `access-denied`), but
//! the operator must learn why a service cannot reach, say, its API server,
//! and what to change. Each line names the address and the rule that would
//! allow it, in the terms of where the policy came from (the manifest or
//! `run`'s flags). The address is chosen by the guest, so lines are limited
//! per address: a guest retrying in a loop adds one line a minute, not one
//! per attempt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasi_sockets_virt::{DenyReason, SocketUse};

/// One line per address per this long.
const REPEAT_AFTER: Duration = Duration::from_secs(60);
/// Addresses remembered at once; a guest scanning addresses cannot grow it.
const REMEMBERED: usize = 1024;

/// Where the workload's policy is written, to say where to allow more.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// `sockets.allow_egress` of a service or component in this manifest.
    Manifest(PathBuf),
    /// `loophost run --allow-egress`.
    RunFlags,
}

pub struct DenialLog {
    workload: String,
    source: PolicySource,
    last: Mutex<HashMap<(SocketAddr, u8), Instant>>,
}

impl DenialLog {
    pub fn new(workload: &str, source: PolicySource) -> Self {
        DenialLog {
            workload: workload.to_string(),
            source,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a refusal (at most once a minute per address and kind).
    pub fn denied(&self, usage: SocketUse, addr: SocketAddr, reason: &DenyReason) {
        if !self.first_in_a_while(addr, usage) {
            return;
        }
        let what = match usage {
            SocketUse::TcpConnect => "tcp connect to",
            SocketUse::UdpSend => "udp send to",
            SocketUse::TcpBind => "tcp bind to",
            SocketUse::UdpBind => "udp bind to",
        };
        let fix = match (reason, usage) {
            (DenyReason::EgressNotAllowed, SocketUse::UdpSend) => {
                "the real network is reached over TCP only (udp egress is not supported)".to_string()
            }
            (DenyReason::EgressNotAllowed, _) => match &self.source {
                PolicySource::Manifest(file) => format!(
                    "to allow it, add \"{}\" to sockets.allow_egress of the service or component in {}",
                    rule(addr),
                    file.display()
                ),
                PolicySource::RunFlags => format!("to allow it, run with --allow-egress {}", rule(addr)),
            },
            (DenyReason::HostBindNotAllowed, _) => {
                "guests bind the virtual loopback (127.0.0.1, ::1) or the unspecified address".to_string()
            }
            (DenyReason::NotADestination, _) => "connect to 127.0.0.1 or a real address instead".to_string(),
        };
        tracing::warn!(workload = %self.workload, "{what} {addr} denied: {reason}; {fix}");
    }

    fn first_in_a_while(&self, addr: SocketAddr, usage: SocketUse) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let key = (addr, usage as u8);
        if last.get(&key).is_some_and(|t| now.duration_since(*t) < REPEAT_AFTER) {
            return false;
        }
        if last.len() >= REMEMBERED {
            last.retain(|_, t| now.duration_since(*t) < REPEAT_AFTER);
            if last.len() >= REMEMBERED {
                // Flooded with fresh addresses: stay quiet until some age out.
                return false;
            }
        }
        last.insert(key, now);
        true
    }
}

/// The narrowest rule that allows `addr`, in the syntax `allow_egress` takes.
fn rule(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_address_a_minute_and_bounded_memory() {
        let log = DenialLog::new("demo/w", PolicySource::RunFlags);
        let a: SocketAddr = "10.0.0.1:443".parse().expect("address");
        assert!(log.first_in_a_while(a, SocketUse::TcpConnect));
        assert!(!log.first_in_a_while(a, SocketUse::TcpConnect));
        assert!(log.first_in_a_while(a, SocketUse::UdpSend));
        for port in 0..(REMEMBERED as u16 * 2) {
            log.first_in_a_while(SocketAddr::from(([10, 0, 0, 2], port)), SocketUse::TcpConnect);
        }
        assert!(log.last.lock().map(|m| m.len()).unwrap_or(0) <= REMEMBERED);
    }

    #[test]
    fn rules_use_the_allow_egress_syntax() {
        assert_eq!(rule("10.1.2.3:6443".parse().expect("v4")), "10.1.2.3:6443");
        assert_eq!(rule("[fd00::1]:443".parse().expect("v6")), "[fd00::1]:443");
    }
}
