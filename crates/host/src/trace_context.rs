//! `loophost:trace`: the opt-in guest interfaces to the trace context of
//! virtual connections (`context`) and to spans of the guest's own work
//! (`spans`); see `wit/trace.wit`.

use crate::state::HostState;
use opentelemetry::propagation::{Extractor, Injector};
use std::collections::HashMap;
use std::net::SocketAddr;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use wasmtime::component::{HasSelf, Linker, Resource};

wasmtime::component::bindgen!({
    path: "wit",
    world: "loophost:trace/imports",
    with: { "loophost:trace/spans.span": GuestSpan },
    imports: { default: trappable },
});

use self::loophost::trace::context::Host;
use self::loophost::trace::spans::{Host as SpansHost, HostSpan};

/// Adds the interfaces to a linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    self::loophost::trace::context::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    self::loophost::trace::spans::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

/// Attributes kept per guest span, and their sizes: a guest must not be
/// able to make the host's exporter buffer unbounded data.
const MAX_ATTRIBUTES: usize = 32;
const MAX_KEY_BYTES: usize = 128;
const MAX_VALUE_BYTES: usize = 1024;

/// A span a guest opened (the `span` resource).
pub struct GuestSpan {
    span: tracing::Span,
    attributes: usize,
}

/// An instance's entered guest spans and the parent it set with
/// `context.set-current`; the innermost entered span wins.
#[derive(Default)]
pub struct GuestSpans {
    /// Entered spans, innermost last, by resource handle.
    entered: Vec<(u32, tracing::Span)>,
    /// What `set-current` asked for.
    explicit: Option<tracing::Span>,
}

impl HostState {
    /// Tells the sockets which span their connects hang under now.
    fn apply_current_span(&mut self) {
        let current = self
            .guest_spans
            .entered
            .last()
            .map(|(_, span)| span.clone())
            .or_else(|| self.guest_spans.explicit.clone());
        self.sockets.set_connect_parent(current);
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn set_attribute(span: &mut GuestSpan, key: &str, value: &str) {
    if span.attributes >= MAX_ATTRIBUTES || key.is_empty() {
        return;
    }
    span.attributes += 1;
    span.span.set_attribute(
        truncate(key, MAX_KEY_BYTES).to_string(),
        truncate(value, MAX_VALUE_BYTES).to_string(),
    );
}

fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = Carrier(HashMap::new());
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.0.remove("traceparent")
}

impl SpansHost for HostState {}

impl HostSpan for HostState {
    fn new(&mut self, name: String, attributes: Vec<(String, String)>) -> wasmtime::Result<Resource<GuestSpan>> {
        let parent = match self.guest_spans.entered.last() {
            Some((_, span)) => span.clone(),
            None => self.sockets.current_parent(),
        };
        let name = truncate(&name, MAX_KEY_BYTES);
        let span = tracing::info_span!(parent: &parent, "guest span", "otel.name" = name);
        let mut guest = GuestSpan { span, attributes: 0 };
        for (key, value) in &attributes {
            set_attribute(&mut guest, key, value);
        }
        Ok(self.table.push(guest)?)
    }

    fn set_attribute(&mut self, span: Resource<GuestSpan>, key: String, value: String) -> wasmtime::Result<()> {
        set_attribute(self.table.get_mut(&span)?, &key, &value);
        Ok(())
    }

    fn set_error(&mut self, span: Resource<GuestSpan>, message: String) -> wasmtime::Result<()> {
        let guest = self.table.get(&span)?;
        guest.span.set_status(opentelemetry::trace::Status::error(
            truncate(&message, MAX_VALUE_BYTES).to_string(),
        ));
        Ok(())
    }

    fn enter(&mut self, span: Resource<GuestSpan>) -> wasmtime::Result<()> {
        let handle = span.rep();
        let inner = self.table.get(&span)?.span.clone();
        // Entering twice is once: the stack holds each span at most once.
        self.guest_spans.entered.retain(|(h, _)| *h != handle);
        self.guest_spans.entered.push((handle, inner));
        self.apply_current_span();
        Ok(())
    }

    fn leave(&mut self, span: Resource<GuestSpan>) -> wasmtime::Result<()> {
        let handle = span.rep();
        self.guest_spans.entered.retain(|(h, _)| *h != handle);
        self.apply_current_span();
        Ok(())
    }

    fn traceparent(&mut self, span: Resource<GuestSpan>) -> wasmtime::Result<Option<String>> {
        Ok(traceparent_of(&self.table.get(&span)?.span))
    }

    fn drop(&mut self, span: Resource<GuestSpan>) -> wasmtime::Result<()> {
        let handle = span.rep();
        self.table.delete(span)?;
        if self.guest_spans.entered.iter().any(|(h, _)| *h == handle) {
            self.guest_spans.entered.retain(|(h, _)| *h != handle);
            self.apply_current_span();
        }
        Ok(())
    }
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
    fn accepted_traceparent(&mut self, peer: String) -> wasmtime::Result<Option<String>> {
        let Ok(peer) = peer.parse::<SocketAddr>() else {
            return Ok(None);
        };
        Ok(self.sockets.accepted_span(peer).and_then(|span| traceparent_of(&span)))
    }

    fn set_current(&mut self, traceparent: Option<String>) -> wasmtime::Result<bool> {
        let Some(traceparent) = traceparent else {
            self.guest_spans.explicit = None;
            self.apply_current_span();
            return Ok(true);
        };
        if !is_valid_traceparent(&traceparent) {
            return Ok(false);
        }
        let carrier = Carrier(HashMap::from([("traceparent".to_string(), traceparent)]));
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        // A marker span under the guest's context: the connects that follow
        // hang under it, and the trace shows the guest chose the parent.
        let span = tracing::info_span!("guest context");
        let _ = span.set_parent(cx);
        self.guest_spans.explicit = Some(span);
        self.apply_current_span();
        Ok(true)
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
