//! The HTTP trigger: the host's listener that routes requests by path
//! prefix to `wasi:http` components, a fresh instance per request, and the
//! limits that keep one client or one component from starving the rest:
//!
//! - per listener ([`ListenerLimits`]): a header-read timeout, an idle
//!   keep-alive timeout, a cap on open connections, backoff on accept errors;
//! - per component ([`ComponentLimits`]): a request deadline (504), a
//!   concurrency limit (503 when full), a memory limit per instance, and the
//!   guest is stopped when its client goes away.

use crate::http;
use crate::output::{LogOutput, Origin, OutputLimiter};
use crate::state::HostState;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;
use wasi_sockets_virt::{Policy, VirtualNetwork};
use wasmtime::Engine;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Limits of the HTTP listener (flags of `loophost up`).
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// A client must send a request's headers within this.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Limits of one HTTP component (manifest fields).
#[derive(Clone, Copy, Debug)]
pub struct ComponentLimits {
    /// The whole request, from instantiation to the end of the body.
    pub timeout: Duration,
    /// Instances serving at once; a request beyond it is answered 503.
    pub max_concurrency: usize,
    /// Linear memory one instance may grow to, in bytes.
    pub memory: usize,
}

/// An HTTP component, compiled and linked once, instantiated per request.
pub struct HttpComponent {
    pub workload_id: String,
    pub workload_name: String,
    pub workload_namespace: String,
    pub network: VirtualNetwork,
    pub name: String,
    pub route: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<crate::mounts::Mount>,
    pub policy: Arc<Policy>,
    pub pre: ProxyPre<HostState>,
    pub limits: ComponentLimits,
    /// One permit per instance that may serve at once.
    pub slots: Arc<Semaphore>,
    /// The log-line rate limit shared by all its instances.
    pub output: Arc<OutputLimiter>,
}

/// Accepts HTTP connections until told to stop, then lets open connections
/// finish their in-flight requests.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    routes: Arc<Vec<Arc<HttpComponent>>>,
    status: Option<Arc<Vec<crate::status::WorkloadView>>>,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut warned_full = false;
    loop {
        // At the cap, stop accepting: new clients wait in the backlog.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stop.changed() => break,
        };
        if open.available_permits() == 0 && !warned_full {
            tracing::warn!(
                limit = limits.max_connections,
                "HTTP listener at its connection limit; new clients wait"
            );
            warned_full = true;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _peer)) => tcp,
                    Err(err) => {
                        // E.g. out of file descriptors: say so, and don't spin.
                        tracing::warn!("HTTP accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (engine, routes, status, stop) = (engine.clone(), routes.clone(), status.clone(), stop.clone());
                connections.spawn(async move {
                    serve_connection(tcp, engine, routes, status, limits, stop).await;
                    drop(permit);
                });
            }
            // Reap finished connections as we go.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
        if open.available_permits() > limits.max_connections / 2 {
            warned_full = false;
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    engine: Engine,
    routes: Arc<Vec<Arc<HttpComponent>>>,
    status: Option<Arc<Vec<crate::status::WorkloadView>>>,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let in_flight = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let (engine, routes, status) = (engine.clone(), routes.clone(), status.clone());
        let busy = in_flight.request();
        async move {
            let _busy = busy;
            if let Some(views) = status.as_deref()
                && req.uri().path() == crate::status::PATH
            {
                return Ok::<_, Infallible>(status_response(views));
            }
            Ok(dispatch(&engine, &routes, req).await)
        }
    });
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut idle_check = tokio::time::interval(limits.idle_timeout.max(Duration::from_millis(10)) / 2);
    idle_check.tick().await;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.changed() => break,
            _ = idle_check.tick() => {
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!("closing an idle HTTP connection");
                    break;
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// When a connection last moved a byte, and how many requests it has in
/// flight (a connection serving a slow request is not idle).
#[derive(Clone)]
struct Activity {
    in_flight: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<tokio::time::Instant>>,
}

impl Activity {
    /// Starts idle now (a client that never sends a byte is idle too).
    fn new() -> Self {
        Activity {
            in_flight: Arc::default(),
            last: Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }

    fn request(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records its activity.
struct Watched {
    inner: tokio::net::TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn status_response(views: &[crate::status::WorkloadView]) -> hyper::Response<HyperOutgoingBody> {
    match serde_json::to_vec_pretty(&crate::status::snapshot(views)) {
        Ok(json) => {
            let mut response = http::text(200, json);
            response.headers_mut().insert(
                ::http::header::CONTENT_TYPE,
                ::http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => http::text(500, format!("status: {err}\n")),
    }
}

/// Routes a request by path prefix to a fresh instance of its component.
async fn dispatch(
    engine: &Engine,
    routes: &[Arc<HttpComponent>],
    request: hyper::Request<Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let started = std::time::Instant::now();
    let path = request.uri().path().to_string();
    let method = request.method().as_str().to_string();
    let method_label = crate::metrics::http_method_label(request.method());
    let route = routes.iter().find(|c| route_matches(&c.route, &path));
    let span = tracing::info_span!("http request", "otel.name" = %format!("{method} {}", route.map_or("", |c| c.route.as_str())),
        "otel.kind" = "server", "http.request.method" = %method, "url.path" = %path,
        "http.route" = route.map(|c| c.route.as_str()), "server.address" = tracing::field::Empty,
        "http.response.status_code" = tracing::field::Empty, "workload.name" = route.map(|c| c.workload_name.as_str()),
        "workload.namespace" = route.map(|c| c.workload_namespace.as_str()),
        "component.name" = route.map(|c| c.name.as_str()));
    if let Some(host) = request
        .headers()
        .get(::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        span.record("server.address", host);
    }
    // An incoming W3C traceparent becomes the parent of the request's trace.
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);

    let response = async {
        let Some(c) = route else {
            return http::text(404, format!("no component serves {path}\n"));
        };
        // Full: answer at once rather than queue behind a flood.
        let Ok(slot) = c.slots.clone().try_acquire_owned() else {
            tracing::warn!(component = %c.name, limit = c.limits.max_concurrency, "component at its concurrency limit");
            return http::text(503, format!("{} is busy; retry later\n", c.name));
        };
        let origin = |stream| Origin {
            workload: c.workload_id.clone(),
            name: c.name.clone(),
            stream,
            limiter: c.output.clone(),
        };
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        wasi.envs(&c.env)
            .stdout(LogOutput::new(origin("stdout")))
            .stderr(LogOutput::new(origin("stderr")));
        if let Err(err) = crate::mounts::preopen(&mut wasi, &c.mounts) {
            let message = crate::run::one_line(&err);
            tracing::error!(workload = %c.workload_id, component = %c.name, %path, "{message}");
            return http::text(500, format!("{} cannot start; the host log has the details\n", c.name));
        }
        let state = HostState::new(wasi.build(), &c.network, c.policy.clone()).with_memory_limit(c.limits.memory);
        let invoke = tracing::info_span!("component invocation", "component.name" = %c.name,
            "workload.name" = %c.workload_name, "workload.namespace" = %c.workload_namespace);
        let mut store = crate::component::new_store(engine, state);
        store.limiter(|state| &mut state.limits);
        match http::handle(&c.pre, store, request, c.limits.timeout, slot)
            .instrument(invoke)
            .await
        {
            Ok(response) => response,
            Err(err) if err.is::<http::DeadlineExceeded>() => {
                crate::telemetry::in_span(&tracing::Span::current(), || {
                    tracing::warn!(workload = %c.workload_id, component = %c.name, %path,
                        timeout_ms = c.limits.timeout.as_millis() as u64, "request deadline exceeded; instance stopped")
                });
                http::text(504, format!("{} did not answer in time\n", c.name))
            }
            Err(err) => {
                let message = crate::run::one_line(&err);
                crate::telemetry::in_span(
                    &tracing::Span::current(),
                    || tracing::error!(workload = %c.workload_id, component = %c.name, %path, "{message}"),
                );
                // The details (trap messages, guest paths) are for the
                // operator's log, not for whoever sent the request.
                http::text(
                    500,
                    format!(
                        "{} failed to handle the request; the host log has the details\n",
                        c.name
                    ),
                )
            }
        }
    }
    .instrument(span.clone())
    .await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let attrs = [
        opentelemetry::KeyValue::new("http.request.method", method_label),
        opentelemetry::KeyValue::new("http.response.status_code", status as i64),
        opentelemetry::KeyValue::new("http.route", route.map(|c| c.route.clone()).unwrap_or_default()),
    ];
    crate::metrics::instruments()
        .http_request_duration
        .record(started.elapsed().as_secs_f64(), &attrs);
    response
}

/// Reads W3C trace-context headers from a request.
struct HeaderExtractor<'a>(&'a ::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

fn route_matches(route: &str, path: &str) -> bool {
    route == "/" || path == route || path.strip_prefix(route).is_some_and(|rest| rest.starts_with('/'))
}
