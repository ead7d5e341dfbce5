//! `loophost:trace/context`: the opt-in guest interface to the trace
//! context of virtual connections (see `wit/trace.wit`).

use crate::state::HostState;
use opentelemetry::propagation::{Extractor, Injector};
use std::collections::HashMap;
use std::net::SocketAddr;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "wit",
    world: "loophost:trace/imports",
});

use self::loophost::trace::context::Host;

/// Adds the interface to a linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    self::loophost::trace::context::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

impl Host for HostState {
    fn accepted_traceparent(&mut self, peer: String) -> Option<String> {
        let peer: SocketAddr = peer.parse().ok()?;
        let span = self.sockets.accepted_span(peer)?;
        let mut carrier = Carrier(HashMap::new());
        let cx = span.context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
        carrier.0.remove("traceparent")
    }

    fn set_current(&mut self, traceparent: Option<String>) -> bool {
        let Some(traceparent) = traceparent else {
            self.sockets.set_connect_parent(None);
            return true;
        };
        if !is_valid_traceparent(&traceparent) {
            return false;
        }
        let carrier = Carrier(HashMap::from([("traceparent".to_string(), traceparent)]));
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        // A marker span under the guest's context: the connects that follow
        // hang under it, and the trace shows the guest chose the parent.
        let span = tracing::info_span!("guest context");
        let _ = span.set_parent(cx);
        self.sockets.set_connect_parent(Some(span));
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_validation() {
        assert!(super::is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!super::is_valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!super::is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
        ));
        assert!(!super::is_valid_traceparent("garbage"));
    }
}
