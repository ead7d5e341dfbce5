//! A real OTLP receiver for the tests: a small collector that records what an
//! OpenTelemetry exporter sends and flattens it for assertions.
//!
//! One server speaks both OTLP transports on the same port: gRPC over HTTP/2
//! (tonic's generated `TraceService`/`LogsService`/`MetricsService` servers,
//! chosen by a `content-type: application/grpc*` request) and http/protobuf
//! (`POST /v1/traces|logs|metrics` with an `application/x-protobuf` body over
//! HTTP/1.1 or HTTP/2). [`OtlpReceiver::start_grpc`] and
//! [`OtlpReceiver::start_http`] only differ in the transport they are meant
//! for (and report in [`OtlpReceiver::protocol`]).
//!
//! The server runs on its own tokio runtime on a background thread, so sync
//! `#[test]`s can use it; it stops when the receiver is dropped.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tonic::codegen::Service as _;

/// Lowercase hex of `bytes` (`""` for none).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// One span, flattened from an `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, `""` for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SpanKind`: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// The attributes of the span's resource.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// Number of span events.
    pub events: usize,
    /// Names of the span events, in order.
    pub event_names: Vec<String>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
}

/// One log record, flattened from an `ExportLogsServiceRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The body, stringified like attribute values (`""` if absent).
    pub body: String,
    pub severity_text: String,
    /// `SeverityNumber`: 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-20 error, 21-24 fatal.
    pub severity_number: i32,
    /// Hex, `""` when the record has no trace context.
    pub trace_id: String,
    /// Hex, `""` when the record has no trace context.
    pub span_id: String,
    pub event_name: String,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name.
    pub scope: String,
}

/// The kind of data a [`Metric`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
    /// No data.
    None,
}

/// One data point of a [`Metric`].
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    pub attributes: BTreeMap<String, String>,
    /// Sums and gauges: the value (int or double) as f64. Histograms and
    /// summaries: the sum (0 when absent).
    pub value: f64,
    /// Histograms and summaries: the count; `None` for sums and gauges.
    pub count: Option<u64>,
    /// Histograms and summaries: the sum if recorded; `None` for sums and gauges.
    pub sum: Option<f64>,
}

/// One metric, flattened from an `ExportMetricsServiceRequest` (each export
/// request yields its own `Metric` entries: a periodic reader that exports
/// twice yields the metric twice).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub description: String,
    pub unit: String,
    pub kind: MetricKind,
    /// Sums only: whether the sum is monotonic.
    pub is_monotonic: bool,
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name.
    pub scope: String,
    pub points: Vec<DataPoint>,
}

/// Which signal an export request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

/// The transport an export request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// gRPC (HTTP/2, `application/grpc`).
    Grpc,
    /// http/protobuf (`application/x-protobuf`).
    HttpProtobuf,
}

/// One export request as received (for asserting on transport and headers).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub signal: Signal,
    pub protocol: Protocol,
    /// The request's headers (gRPC metadata for gRPC), lowercase names; values
    /// that are not UTF-8 are lossily converted.
    pub headers: BTreeMap<String, String>,
}

/// Export requests received, per signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub traces: usize,
    pub logs: usize,
    pub metrics: usize,
}

#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    requests: Vec<ExportRequest>,
    /// Requests that were refused (bad path, method, content type or body).
    rejected: Vec<String>,
}

#[derive(Default)]
struct Store(Mutex<Received>, std::sync::atomic::AtomicBool);

impl Store {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, signal: Signal, protocol: Protocol, headers: &hyper::HeaderMap) {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        self.lock().requests.push(ExportRequest {
            signal,
            protocol,
            headers,
        });
    }

    /// Discarding receivers count requests but neither decode nor keep them.
    fn discards(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn reject(&self, why: String) {
        self.lock().rejected.push(why);
    }
}

/// An OTLP collector on `127.0.0.1:<free port>`; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    protocol: Protocol,
    store: Arc<Store>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// gRPC receiver on 127.0.0.1:0 (TraceService/LogsService/MetricsService Export).
    /// It accepts http/protobuf requests too.
    pub fn start_grpc() -> OtlpReceiver {
        Self::start(Protocol::Grpc)
    }

    /// http/protobuf receiver on 127.0.0.1:0: `POST /v1/traces`, `/v1/logs`,
    /// `/v1/metrics` with `Content-Type: application/x-protobuf` bodies,
    /// answered 200 with an empty protobuf `Export*ServiceResponse`. It accepts
    /// gRPC requests too.
    pub fn start_http() -> OtlpReceiver {
        Self::start(Protocol::HttpProtobuf)
    }

    /// An http/protobuf receiver that only counts requests (for benchmarks:
    /// a collector's decoding should not compete with the host being measured).
    pub fn start_discarding_http() -> OtlpReceiver {
        let receiver = Self::start(Protocol::HttpProtobuf);
        receiver.store.1.store(true, std::sync::atomic::Ordering::Relaxed);
        receiver
    }

    fn start(protocol: Protocol) -> OtlpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener.set_nonblocking(true).expect("nonblocking OTLP listener");
        let addr = listener.local_addr().expect("OTLP receiver address");
        let store = Arc::new(Store::default());
        let (shutdown, stop) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn({
                let store = store.clone();
                move || serve(listener, store, stop)
            })
            .expect("spawn the OTLP receiver thread");
        OtlpReceiver {
            addr,
            protocol,
            store,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The endpoint to put in `OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. `http://127.0.0.1:4317`
    /// (for http/protobuf the exporter appends `/v1/traces` etc.).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the receiver listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The transport this receiver was started for.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        let received = self.store.lock();
        let mut out = Vec::new();
        for req in &received.traces {
            for rs in &req.resource_spans {
                let resource = resource_map(rs.resource.as_ref());
                for ss in &rs.scope_spans {
                    let scope = scope_name(ss.scope.as_ref());
                    for s in &ss.spans {
                        let status = s.status.clone().unwrap_or_default();
                        out.push(Span {
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent_span_id: id_or_empty(&s.parent_span_id),
                            name: s.name.clone(),
                            kind: s.kind,
                            attributes: attributes(&s.attributes),
                            resource: resource.clone(),
                            scope: scope.clone(),
                            events: s.events.len(),
                            event_names: s.events.iter().map(|e| e.name.clone()).collect(),
                            status_code: status.code,
                            status_message: status.message,
                            start_time_unix_nano: s.start_time_unix_nano,
                            end_time_unix_nano: s.end_time_unix_nano,
                        });
                    }
                }
            }
        }
        out
    }

    /// Every log record received so far, in arrival order.
    pub fn logs(&self) -> Vec<LogRecord> {
        let received = self.store.lock();
        let mut out = Vec::new();
        for req in &received.logs {
            for rl in &req.resource_logs {
                let resource = resource_map(rl.resource.as_ref());
                for sl in &rl.scope_logs {
                    let scope = scope_name(sl.scope.as_ref());
                    for r in &sl.log_records {
                        out.push(LogRecord {
                            body: r.body.as_ref().map(any_value_string).unwrap_or_default(),
                            severity_text: r.severity_text.clone(),
                            severity_number: r.severity_number,
                            trace_id: id_or_empty(&r.trace_id),
                            span_id: id_or_empty(&r.span_id),
                            event_name: r.event_name.clone(),
                            attributes: attributes(&r.attributes),
                            resource: resource.clone(),
                            scope: scope.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every metric received so far, in arrival order (one entry per metric
    /// per export request).
    pub fn metrics(&self) -> Vec<Metric> {
        let received = self.store.lock();
        let mut out = Vec::new();
        for req in &received.metrics {
            for rm in &req.resource_metrics {
                let resource = resource_map(rm.resource.as_ref());
                for sm in &rm.scope_metrics {
                    let scope = scope_name(sm.scope.as_ref());
                    for m in &sm.metrics {
                        let (kind, is_monotonic, points) = flatten_points(m.data.as_ref());
                        out.push(Metric {
                            name: m.name.clone(),
                            description: m.description.clone(),
                            unit: m.unit.clone(),
                            kind,
                            is_monotonic,
                            resource: resource.clone(),
                            scope: scope.clone(),
                            points,
                        });
                    }
                }
            }
        }
        out
    }

    /// The raw trace export requests received so far.
    pub fn trace_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.store.lock().traces.clone()
    }

    /// The raw logs export requests received so far.
    pub fn logs_requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.store.lock().logs.clone()
    }

    /// The raw metrics export requests received so far.
    pub fn metrics_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.store.lock().metrics.clone()
    }

    /// Waits (polling every 50 ms) until `pred(self)` is true or `timeout`
    /// passes; returns whether it became true.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&OtlpReceiver) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(deadline - now));
        }
    }

    /// Number of export requests received (all signals together; see
    /// [`OtlpReceiver::request_counts`] for each signal). 0 means nothing was
    /// exported to this receiver.
    pub fn request_count(&self) -> usize {
        self.store.lock().requests.len()
    }

    /// Number of export requests received for each signal.
    pub fn request_counts(&self) -> RequestCounts {
        let received = self.store.lock();
        let mut counts = RequestCounts::default();
        for r in &received.requests {
            match r.signal {
                Signal::Traces => counts.traces += 1,
                Signal::Logs => counts.logs += 1,
                Signal::Metrics => counts.metrics += 1,
            }
        }
        counts
    }

    /// Every export request received, with its transport and headers.
    pub fn requests(&self) -> Vec<ExportRequest> {
        self.store.lock().requests.clone()
    }

    /// Requests that were refused (unknown path, wrong method or content type,
    /// undecodable body), described one per entry.
    pub fn rejected(&self) -> Vec<String> {
        self.store.lock().rejected.clone()
    }
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("endpoint", &self.endpoint())
            .field("protocol", &self.protocol)
            .field("requests", &self.request_counts())
            .finish()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The receiver thread: accept until told to stop; dropping the runtime then
/// cancels the connections still open.
fn serve(listener: std::net::TcpListener, store: Arc<Store>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("OTLP receiver runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio OTLP listener");
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let store = store.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(store.clone(), req));
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    });
                }
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
}

type Body = tonic::body::Body;

async fn handle(store: Arc<Store>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/grpc") {
        return Ok(handle_grpc(store, req).await);
    }
    Ok(handle_http(store, req, &content_type).await)
}

async fn handle_grpc(store: Arc<Store>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let handler = Collector(store.clone());
    let result = if path.starts_with("/opentelemetry.proto.collector.logs.v1.LogsService/") {
        LogsServiceServer::new(handler).call(req).await
    } else if path.starts_with("/opentelemetry.proto.collector.metrics.v1.MetricsService/") {
        MetricsServiceServer::new(handler).call(req).await
    } else {
        if !path.starts_with("/opentelemetry.proto.collector.trace.v1.TraceService/") {
            store.reject(format!("grpc: unknown method {path}"));
        }
        // Answers UNIMPLEMENTED for anything but TraceService/Export.
        TraceServiceServer::new(handler).call(req).await
    };
    match result {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

async fn handle_http(store: Arc<Store>, req: Request<Incoming>, content_type: &str) -> Response<Body> {
    let signal = match req.uri().path() {
        "/v1/traces" => Signal::Traces,
        "/v1/logs" => Signal::Logs,
        "/v1/metrics" => Signal::Metrics,
        other => {
            store.reject(format!("http: unknown path {other}"));
            return plain(StatusCode::NOT_FOUND, "unknown OTLP path");
        }
    };
    if req.method() != Method::POST {
        store.reject(format!("http: {} {}", req.method(), req.uri().path()));
        return plain(StatusCode::METHOD_NOT_ALLOWED, "OTLP wants POST");
    }
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type != "application/x-protobuf" {
        store.reject(format!("http: content-type {content_type:?}"));
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only application/x-protobuf is supported",
        );
    }
    if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING)
        && encoding.as_bytes() != b"identity"
    {
        store.reject(format!("http: content-encoding {encoding:?}"));
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed bodies are not supported",
        );
    }
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            store.reject(format!("http: reading the body: {e}"));
            return plain(StatusCode::BAD_REQUEST, "unreadable body");
        }
    };
    if store.discards() {
        store.record(signal, Protocol::HttpProtobuf, &headers);
        // An empty Export*ServiceResponse encodes to zero bytes.
        return Response::new(Body::new(Full::new(Bytes::new())));
    }
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(body).map(|r| {
            store.lock().traces.push(r);
            ExportTraceServiceResponse::default().encode_to_vec()
        }),
        Signal::Logs => ExportLogsServiceRequest::decode(body).map(|r| {
            store.lock().logs.push(r);
            ExportLogsServiceResponse::default().encode_to_vec()
        }),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(|r| {
            store.lock().metrics.push(r);
            ExportMetricsServiceResponse::default().encode_to_vec()
        }),
    };
    match decoded {
        Ok(response) => {
            store.record(signal, Protocol::HttpProtobuf, &headers);
            let mut res = Response::new(Body::new(Full::new(Bytes::from(response))));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-protobuf"),
            );
            res
        }
        Err(e) => {
            store.reject(format!("http: decoding {signal:?}: {e}"));
            plain(StatusCode::BAD_REQUEST, "undecodable protobuf body")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::new(Full::new(Bytes::from_static(text.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    res
}

/// The gRPC services' implementation: record and answer an empty (full
/// success) response.
struct Collector(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.record(
            Signal::Traces,
            Protocol::Grpc,
            &request.metadata().clone().into_headers(),
        );
        self.0.lock().traces.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0
            .record(Signal::Logs, Protocol::Grpc, &request.metadata().clone().into_headers());
        self.0.lock().logs.push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.record(
            Signal::Metrics,
            Protocol::Grpc,
            &request.metadata().clone().into_headers(),
        );
        self.0.lock().metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Hex of an id, `""` when it is absent or all zeros (the invalid id).
fn id_or_empty(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| *b == 0) {
        String::new()
    } else {
        hex(bytes)
    }
}

fn scope_name(scope: Option<&InstrumentationScope>) -> String {
    scope.map(|s| s.name.clone()).unwrap_or_default()
}

fn resource_map(resource: Option<&Resource>) -> BTreeMap<String, String> {
    resource.map(|r| attributes(&r.attributes)).unwrap_or_default()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(any_value_string).unwrap_or_default(),
            )
        })
        .collect()
}

/// A string for any `AnyValue`: strings as they are, ints in decimal, bools as
/// `true`/`false`, doubles with `{}`, bytes in hex, arrays as `[a, b]`, maps as
/// `{k=v, ...}`.
fn any_value_string(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(any_value_string).collect();
            format!("[{}]", items.join(", "))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().map(any_value_string).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(any_value::Value::StringValueStrindex(i)) => format!("strindex:{i}"),
    }
}

fn number_value(value: Option<&number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

fn flatten_points(data: Option<&metric::Data>) -> (MetricKind, bool, Vec<DataPoint>) {
    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| DataPoint {
        attributes: attributes(&p.attributes),
        value: number_value(p.value.as_ref()),
        count: None,
        sum: None,
    };
    let counted = |attrs: &[KeyValue], count: u64, sum: Option<f64>| DataPoint {
        attributes: attributes(attrs),
        value: sum.unwrap_or(0.0),
        count: Some(count),
        sum,
    };
    match data {
        None => (MetricKind::None, false, Vec::new()),
        Some(metric::Data::Gauge(g)) => (MetricKind::Gauge, false, g.data_points.iter().map(number).collect()),
        Some(metric::Data::Sum(s)) => (
            MetricKind::Sum,
            s.is_monotonic,
            s.data_points.iter().map(number).collect(),
        ),
        Some(metric::Data::Histogram(h)) => (
            MetricKind::Histogram,
            false,
            h.data_points
                .iter()
                .map(|p| counted(&p.attributes, p.count, p.sum))
                .collect(),
        ),
        Some(metric::Data::ExponentialHistogram(h)) => (
            MetricKind::ExponentialHistogram,
            false,
            h.data_points
                .iter()
                .map(|p| counted(&p.attributes, p.count, p.sum))
                .collect(),
        ),
        Some(metric::Data::Summary(s)) => (
            MetricKind::Summary,
            false,
            s.data_points
                .iter()
                .map(|p| counted(&p.attributes, p.count, Some(p.sum)))
                .collect(),
        ),
    }
}
