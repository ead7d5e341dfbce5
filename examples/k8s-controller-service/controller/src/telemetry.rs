//! Under loophost, the controller's `tracing` spans (a reconcile, an API
//! request, a TLS handshake) become spans the host exports, through the
//! opt-in `loophost:trace/spans` interface. A span the guest is inside
//! (entered, i.e. while its future is being polled) is the parent of the
//! host's own spans for the connects made then: a reconcile's `real
//! connect` to the API server hangs under it.
//!
//! Only info-level spans and above are mirrored, so library internals at
//! debug/trace stay out. Fields become attributes; recording
//! `otel.status_code = "ERROR"` (tracing-opentelemetry's convention) marks
//! the span failed with `otel.status_message`.

use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, field::Field, field::Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

wit_bindgen::generate!({
    path: "../../../crates/host/wit",
    world: "loophost:trace/imports",
});

use loophost::trace::spans::Span as HostSpan;

/// The layer; add it to the subscriber (see `main`).
pub struct HostSpans;

/// Collects fields as attribute strings.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_string(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl Fields {
    fn apply(self, span: &HostSpan) {
        let mut error = None;
        let mut message = None;
        for (key, value) in &self.0 {
            match key.as_str() {
                "otel.status_code" => error = Some(value.eq_ignore_ascii_case("error")),
                "otel.status_message" => message = Some(value.clone()),
                _ => span.set_attribute(key, value),
            }
        }
        if error == Some(true) {
            span.set_error(message.as_deref().unwrap_or("error"));
        }
    }
}

impl<S> Layer<S> for HostSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        // Opened now, its parent is whatever span is entered now: the
        // current `tracing` span, mirrored by `on_enter`.
        let host = HostSpan::new(attrs.metadata().name(), &[]);
        fields.apply(&host);
        span.extensions_mut().insert(host);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(host) = span.extensions().get::<HostSpan>() {
            fields.apply(host);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(host) = span.extensions().get::<HostSpan>()
        {
            host.enter();
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(host) = span.extensions().get::<HostSpan>()
        {
            host.leave();
        }
    }
    // On close the registry drops the span's extensions: the resource is
    // dropped and the host ends the span.
}
