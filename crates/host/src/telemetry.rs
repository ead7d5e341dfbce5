//! Logging and OpenTelemetry.
//!
//! Two independent knobs:
//! - the console: `--log-level` or `RUST_LOG` (what is printed to stderr);
//! - export: the standard `OTEL_*` variables (what is sent where), with
//!   `LOOPHOST_EXPORT_LEVEL` (or `--export-level`) choosing which spans, events
//!   and guest lines are exported (default `info`).
//!
//! Export is on when an OTLP endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or a per-signal `..._TRACES_/_LOGS_/_METRICS_ENDPOINT`)
//! and `OTEL_SDK_DISABLED` is not `true`. Without it nothing is exported and
//! no exporter is built. The SDK itself reads `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`,
//! `http/protobuf`), `..._HEADERS`, `..._TIMEOUT`, `OTEL_TRACES_SAMPLER[_ARG]`
//! and `OTEL_METRIC_EXPORT_INTERVAL`.

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::{Resource, runtime};
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How long shutdown waits for the last telemetry to leave.
const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The exporters' providers; flushed and shut down by [`Telemetry::shutdown`].
#[derive(Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    logs: Option<SdkLoggerProvider>,
    metrics: Option<SdkMeterProvider>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn endpoint_configured(signal: &str) -> bool {
    env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).is_some()
}

/// Is OpenTelemetry export requested at all?
pub fn export_enabled() -> bool {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && ["TRACES", "LOGS", "METRICS"].iter().any(|s| endpoint_configured(s))
}

fn resource() -> Resource {
    // The builder applies OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES;
    // "loophost" is only the fallback service name.
    let mut builder = Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none()
        && !env("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")))
    {
        builder = builder.with_service_name("loophost");
    }
    builder.build()
}

/// Installs the global subscriber (console + optional export). Call inside a
/// tokio runtime: the exporters run on it.
///
/// `guest_lines_on_console`: whether guest output lines (target `guest`) are
/// printed as log lines (`up`), or are left to the terminal (`run` writes
/// them there verbatim, so the console must not repeat them).
pub fn init(
    console: Option<&str>,
    default_console: &str,
    export_level: Option<&str>,
    guest_lines_on_console: bool,
) -> Telemetry {
    let mut console_filter = match console {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_console)),
    };
    if !guest_lines_on_console && let Ok(off) = "guest=off".parse() {
        console_filter = console_filter.add_directive(off);
    }
    // Colors only for a terminal: logs piped to files or collectors stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let console_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(console_filter);

    if !export_enabled() {
        Registry::default().with(console_layer).init();
        return Telemetry::default();
    }

    let level = export_level
        .map(str::to_string)
        .or_else(|| env("LOOPHOST_EXPORT_LEVEL"))
        .unwrap_or_else(|| "info".into());
    let export_filter = || EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let resource = resource();
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![Box::new(
        TraceContextPropagator::new(),
    )]));

    let mut telemetry = Telemetry::default();
    let mut errors = Vec::new();
    let trace_layer = if endpoint_configured("TRACES") {
        match opentelemetry_otlp::SpanExporter::builder().build() {
            Ok(exporter) => {
                let processor =
                    opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                        exporter,
                        runtime::Tokio,
                    )
                    .build();
                let provider = SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource.clone())
                    .build();
                let tracer = provider.tracer("loophost");
                opentelemetry::global::set_tracer_provider(provider.clone());
                telemetry.traces = Some(provider);
                // Source locations, thread ids and busy/idle timing on every
                // span cost time on the request path (the idle tracking reads
                // the clock on every poll) and say little to a trace reader.
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false)
                    .with_tracked_inactivity(false)
                    // Entering a span does not make it the current OTel
                    // context (that costs allocations on every poll of every
                    // instrumented future); log lines attach their span's
                    // context themselves (see `attach_span_context`).
                    .with_context_activation(false);
                Some(layer.with_filter(export_filter()))
            }
            Err(err) => {
                errors.push(format!("traces: {err}"));
                None
            }
        }
    } else {
        None
    };
    let log_layer = if endpoint_configured("LOGS") {
        match opentelemetry_otlp::LogExporter::builder().build() {
            Ok(exporter) => {
                let processor = opentelemetry_sdk::logs::log_processor_with_async_runtime::BatchLogProcessor::builder(
                    exporter,
                    runtime::Tokio,
                )
                .build();
                let provider = SdkLoggerProvider::builder()
                    .with_log_processor(processor)
                    .with_resource(resource.clone())
                    .build();
                let layer = opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&provider);
                telemetry.logs = Some(provider);
                Some(layer.with_filter(export_filter()))
            }
            Err(err) => {
                errors.push(format!("logs: {err}"));
                None
            }
        }
    } else {
        None
    };
    if endpoint_configured("METRICS") {
        match opentelemetry_otlp::MetricExporter::builder().build() {
            Ok(exporter) => {
                let reader = opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
                    exporter,
                    runtime::Tokio,
                )
                .build();
                let provider = SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource)
                    .with_view(|_: &opentelemetry_sdk::metrics::Instrument| {
                        opentelemetry_sdk::metrics::Stream::builder()
                            .with_cardinality_limit(crate::metrics::SERIES_LIMIT)
                            .build()
                            .ok()
                    })
                    .build();
                opentelemetry::global::set_meter_provider(provider.clone());
                telemetry.metrics = Some(provider);
            }
            Err(err) => errors.push(format!("metrics: {err}")),
        }
    }
    Registry::default()
        .with(console_layer)
        .with(trace_layer)
        .with(log_layer)
        .init();
    for err in errors {
        tracing::warn!("OpenTelemetry export disabled for {err}");
    }
    telemetry
}

/// Runs `f` (which emits log events) inside `span`, with the span's
/// OpenTelemetry context current, so exported log records carry its trace
/// and span ids. (Entering spans does not do that by itself: see `init`.)
pub fn in_span<R>(span: &tracing::Span, f: impl FnOnce() -> R) -> R {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_disabled() {
        return f();
    }
    let _context = span.context().attach();
    span.in_scope(f)
}

impl Telemetry {
    /// Flushes and stops the exporters, waiting at most a few seconds: an
    /// unreachable collector must not hold the host.
    pub fn shutdown(self) {
        if self.traces.is_none() && self.logs.is_none() && self.metrics.is_none() {
            return;
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(p) = &self.metrics {
                let _ = p.shutdown();
            }
            if let Some(p) = &self.traces {
                let _ = p.shutdown();
            }
            if let Some(p) = &self.logs {
                let _ = p.shutdown();
            }
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(FLUSH_BOUND).is_err() {
            eprintln!("loophost: telemetry flush did not finish within {FLUSH_BOUND:?}; giving up");
        }
    }
}
