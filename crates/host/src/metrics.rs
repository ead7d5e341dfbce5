//! OpenTelemetry instruments. Without a meter provider (export off) they are
//! the API's no-ops.

use crate::denials::{DenialLog, PolicySource};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasi_sockets_virt::{DenyReason, NetworkObserver, SocketUse};

pub struct Instruments {
    pub connections_opened: Counter<u64>,
    pub connections_active: UpDownCounter<i64>,
    pub connections_refused: Counter<u64>,
    pub bytes: Counter<u64>,
    pub connect_wait: Histogram<f64>,
    pub policy_denied: Counter<u64>,
    pub service_restarts: Counter<u64>,
    pub http_request_duration: Histogram<f64>,
    pub instantiation_duration: Histogram<f64>,
    pub guest_lines_dropped: Counter<u64>,
}

/// Series one instrument may keep; beyond it the SDK folds new attribute
/// sets into one overflow series.
pub const SERIES_LIMIT: usize = 1000;

/// The standard HTTP methods as themselves, anything else as `_OTHER` (as the
/// semantic conventions say): a client must not mint a series per method.
pub fn http_method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The process-wide instruments (created on first use, after telemetry init).
pub fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("loophost");
        Instruments {
            connections_opened: meter
                .u64_counter("loophost.virtual.connections.opened")
                .with_description("Virtual TCP connections established, per service port")
                .build(),
            connections_active: meter
                .i64_up_down_counter("loophost.virtual.connections.active")
                .with_description("Virtual TCP connections open now")
                .build(),
            connections_refused: meter
                .u64_counter("loophost.virtual.connections.refused")
                .with_description("Virtual connects that found no listener")
                .build(),
            bytes: meter
                .u64_counter("loophost.virtual.bytes")
                .with_unit("By")
                .with_description("Bytes carried by virtual connections, by direction")
                .build(),
            connect_wait: meter
                .f64_histogram("loophost.virtual.connect.wait")
                .with_unit("s")
                .with_description("Time connects waited for a service that was not listening yet")
                .build(),
            policy_denied: meter
                .u64_counter("loophost.policy.denied")
                .with_description("Socket operations denied by policy, by reason")
                .build(),
            service_restarts: meter.u64_counter("loophost.service.restarts").build(),
            http_request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .build(),
            instantiation_duration: meter
                .f64_histogram("loophost.component.instantiation.duration")
                .with_unit("s")
                .build(),
            guest_lines_dropped: meter
                .u64_counter("loophost.guest.output.dropped")
                .with_description("Guest output lines dropped by the per-component rate limit")
                .build(),
        }
    })
}

/// Traffic to one service's ports, kept for `loophost up`'s status (the
/// instruments above are write-only).
#[derive(Default, Debug)]
pub struct ServiceTraffic {
    pub open: AtomicU64,
    pub total: AtomicU64,
    /// Bytes of closed connections, from the service's point of view.
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

/// Feeds one workload's virtual-network events into the instruments.
pub struct NetworkMetrics {
    workload: String,
    /// Port -> service name, to label connections with the service.
    services: HashMap<u16, String>,
    /// Port -> that service's traffic counters (one per service, shared by its ports).
    traffic: HashMap<u16, Arc<ServiceTraffic>>,
    /// Refusals also go to the operator's log, with what would allow them.
    denials: DenialLog,
}

impl NetworkMetrics {
    pub fn new(workload: &str, services: HashMap<u16, String>, policy: PolicySource) -> Arc<Self> {
        let mut by_service: HashMap<&str, Arc<ServiceTraffic>> = HashMap::new();
        let traffic = services
            .iter()
            .map(|(&port, name)| (port, by_service.entry(name).or_default().clone()))
            .collect();
        Arc::new(NetworkMetrics {
            workload: workload.to_string(),
            services,
            traffic,
            denials: DenialLog::new(workload, policy),
        })
    }

    /// The counters of the service that declared `port`.
    pub fn traffic(&self, port: u16) -> Option<Arc<ServiceTraffic>> {
        self.traffic.get(&port).cloned()
    }

    /// Labels for a connection that reached a listener at `addr`: its port
    /// (listeners are few: a store holds a bounded number of sockets) and
    /// the service that declared it, if any.
    fn attrs(&self, addr: SocketAddr) -> Vec<KeyValue> {
        let mut attrs = self.service_attrs(addr);
        attrs.push(KeyValue::new("server.port", addr.port() as i64));
        attrs
    }

    /// Labels for a connect that may have found nothing: the port only if
    /// a service declared it. Any other port is the guest's choice, and a
    /// guest connecting to every port must not mint a series per port.
    fn target_attrs(&self, addr: SocketAddr) -> Vec<KeyValue> {
        let mut attrs = self.service_attrs(addr);
        if self.services.contains_key(&addr.port()) {
            attrs.push(KeyValue::new("server.port", addr.port() as i64));
        }
        attrs
    }

    fn service_attrs(&self, addr: SocketAddr) -> Vec<KeyValue> {
        let service = self.services.get(&addr.port()).map_or("undeclared", String::as_str);
        vec![
            KeyValue::new("workload.name", self.workload.clone()),
            KeyValue::new("service.name", service.to_string()),
        ]
    }
}

impl NetworkObserver for NetworkMetrics {
    fn connection_opened(&self, listener: SocketAddr) {
        if let Some(t) = self.traffic.get(&listener.port()) {
            t.open.fetch_add(1, Ordering::Relaxed);
            t.total.fetch_add(1, Ordering::Relaxed);
        }
        let attrs = self.attrs(listener);
        instruments().connections_opened.add(1, &attrs);
        instruments().connections_active.add(1, &attrs);
    }

    fn connection_refused(&self, remote: SocketAddr) {
        instruments().connections_refused.add(1, &self.target_attrs(remote));
    }

    fn connection_closed(&self, listener: SocketAddr, to_listener: u64, from_listener: u64) {
        if let Some(t) = self.traffic.get(&listener.port()) {
            t.open.fetch_sub(1, Ordering::Relaxed);
            t.received.fetch_add(to_listener, Ordering::Relaxed);
            t.sent.fetch_add(from_listener, Ordering::Relaxed);
        }
        let attrs = self.attrs(listener);
        instruments().connections_active.add(-1, &attrs);
        let with = |direction: &'static str| {
            let mut a = attrs.clone();
            a.push(KeyValue::new("network.io.direction", direction));
            a
        };
        // Directions from the service's point of view.
        instruments().bytes.add(to_listener, &with("receive"));
        instruments().bytes.add(from_listener, &with("transmit"));
    }

    fn connect_waited(&self, remote: SocketAddr, waited: Duration) {
        instruments()
            .connect_wait
            .record(waited.as_secs_f64(), &self.target_attrs(remote));
    }

    fn denied(&self, usage: SocketUse, addr: SocketAddr, reason: &DenyReason) {
        let attrs = [
            KeyValue::new("workload.name", self.workload.clone()),
            KeyValue::new("loophost.socket.use", format!("{usage:?}")),
            KeyValue::new("loophost.deny_reason", reason.to_string()),
        ];
        // The address is the guest's choice: it goes to the trace and the
        // log (see the socket layer's spans), never into a metric label.
        instruments().policy_denied.add(1, &attrs);
        self.denials.denied(usage, addr, reason);
    }
}
