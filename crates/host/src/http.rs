//! HTTP: the host's listener that routes requests to `wasi:http` components
//! (one fresh instance per request), and the outgoing-request hook that keeps
//! requests to 127.0.0.1 / localhost / a name of the workload's network (its
//! services) inside the workload's virtual network.

use crate::state::HostState;
use anyhow::Result;
use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use wasi_sockets_virt::{NameAnswer, Policy, Route, SocketUse, VirtualNetwork};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks, WasiHttpView};

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// Sends a component's outgoing requests: loopback, `localhost` and the
/// names of the workload's network (the same table `ip-name-lookup`
/// answers from) go to the virtual network; other hosts go to the real
/// network only if the socket policy allows the address.
pub struct LoopbackHttpHooks {
    network: VirtualNetwork,
    policy: Arc<Policy>,
}

impl LoopbackHttpHooks {
    pub fn new(network: VirtualNetwork, policy: Arc<Policy>) -> Self {
        LoopbackHttpHooks { network, policy }
    }
}

impl WasiHttpHooks for LoopbackHttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let (network, policy) = (self.network.clone(), self.policy.clone());
        Box::new(async move {
            let uri = request.uri();
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            let tls = uri.scheme() == Some(&Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let timeouts = Timeouts::from(options);
            // The addresses this request may go to, each checked by the
            // policy; the connection is made to exactly these.
            let (route, targets) = match destination(&network, &policy, &host).await? {
                Destination::Address(ip) => {
                    let addr = SocketAddr::new(ip, port);
                    (policy.route(SocketUse::TcpConnect, addr), vec![addr])
                }
                // A name goes out only if every address it resolves to is
                // allowed egress (a name is no way around the address rules).
                Destination::Resolved(ips) => {
                    let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect();
                    let all_real = !addrs.is_empty()
                        && addrs
                            .iter()
                            .all(|a| policy.route(SocketUse::TcpConnect, *a) == Route::Host);
                    let route = if all_real {
                        Route::Host
                    } else {
                        Route::Deny(wasi_sockets_virt::DenyReason::EgressNotAllowed)
                    };
                    (route, addrs)
                }
            };
            match route {
                Route::Virtual if tls => Err(HttpError::HttpProtocolError),
                Route::Virtual => {
                    let stream = tokio::time::timeout(timeouts.connect, network.connect(targets[0]))
                        .await
                        .map_err(|_| HttpError::ConnectionTimeout)?
                        .map_err(|code| {
                            tracing::debug!(addr = %targets[0], ?code, "virtual HTTP connect failed");
                            match code {
                                wasi_sockets_virt::ErrorCode::ConnectionRefused => HttpError::ConnectionRefused,
                                _ => HttpError::ConnectionTerminated,
                            }
                        })?;
                    send_over(stream, request, timeouts).await
                }
                Route::Host => {
                    let tcp = connect_real(&targets, timeouts.connect).await?;
                    if tls {
                        let tls = tls_handshake(tcp, &host, timeouts.connect).await?;
                        send_over(tls, request, timeouts).await
                    } else {
                        send_over(tcp, request, timeouts).await
                    }
                }
                Route::Deny(reason) => {
                    tracing::debug!(%host, port, %reason, "outgoing HTTP request denied");
                    if let (Some(observer), Some(addr)) = (network.observer(), targets.first()) {
                        observer.denied(SocketUse::TcpConnect, *addr, &reason);
                    }
                    Err(HttpError::HttpRequestDenied)
                }
            }
        })
    }
}

/// Where a request's host name points.
enum Destination {
    /// An address literal, `localhost`, or a name of the workload's network.
    Address(IpAddr),
    /// A real name the policy lets out, resolved once.
    Resolved(Vec<IpAddr>),
}

async fn destination(network: &VirtualNetwork, policy: &Policy, host: &str) -> Result<Destination, HttpError> {
    if host == "localhost" {
        return Ok(Destination::Address(IpAddr::from([127, 0, 0, 1])));
    }
    // As given: the policy sees `::ffff:127.0.0.1` as what it is.
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Destination::Address(ip));
    }
    match network.lookup_name(host) {
        NameAnswer::Addresses(addrs) => return addrs.first().copied().map(Destination::Address).ok_or_else(dns_error),
        NameAnswer::NoSuchName => return Err(dns_error()),
        NameAnswer::NotOurs => {}
    }
    if !policy.may_resolve(host) {
        tracing::debug!(%host, "outgoing HTTP: name lookup denied by policy");
        return Err(HttpError::HttpRequestDenied);
    }
    match network.resolve_real(host).await {
        Ok(ips) if !ips.is_empty() => Ok(Destination::Resolved(ips)),
        Ok(_) | Err(_) => Err(dns_error()),
    }
}

fn dns_error() -> HttpError {
    HttpError::DnsError {
        rcode: None,
        info_code: None,
    }
}

/// The guest's timeouts (same defaults as upstream).
#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl From<Option<RequestOptions>> for Timeouts {
    fn from(options: Option<RequestOptions>) -> Self {
        let or_default = |t: Option<Duration>| t.unwrap_or(Duration::from_secs(600));
        Timeouts {
            connect: or_default(options.and_then(|o| o.connect_timeout)),
            first_byte: or_default(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: or_default(options.and_then(|o| o.between_bytes_timeout)),
        }
    }
}

/// Connects to the first of `targets` that answers.
async fn connect_real(targets: &[SocketAddr], timeout: Duration) -> Result<tokio::net::TcpStream, HttpError> {
    let attempt = async {
        let mut last = None;
        for addr in targets {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(match last {
            Some(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
            Some(err) => HttpError::Connect(err),
            None => dns_error(),
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
}

/// TLS as wasmtime-wasi-http does it: the webpki roots, the host as server name.
async fn tls_handshake(
    tcp: tokio::net::TcpStream,
    host: &str,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, HttpError> {
    use rustls::pki_types::ServerName;
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|_| HttpError::TlsProtocolError)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|_| HttpError::HttpRequestUriInvalid)?,
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Tls)
}

/// HTTP/1.1 over an established connection (virtual or real).
async fn send_over<IO>(
    io: IO,
    mut request: http::Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = tokio::time::timeout(
        timeouts.connect,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    let driver = tokio::spawn(conn);
    // The request line carries only the path; the authority is in Host.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let between_bytes = timeouts.between_bytes;
    let response = response.map(|body| BetweenBytes::new(body, between_bytes).boxed_unsync());
    let io = async move {
        match driver.await {
            Ok(result) => result.map_err(HttpError::from),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    };
    Ok((response, Box::new(io)))
}

/// A response body that fails with `connection-read-timeout` when the next
/// frame takes longer than the guest's between-bytes timeout.
struct BetweenBytes {
    body: Incoming,
    limit: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl BetweenBytes {
    fn new(body: Incoming, limit: Duration) -> Self {
        BetweenBytes {
            body,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl http_body::Body for BetweenBytes {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let limit = self.limit;
                self.deadline.as_mut().reset(tokio::time::Instant::now() + limit);
                Poll::Ready(frame.map(|f| f.map_err(HttpError::from)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The request's deadline passed before the component answered.
#[derive(Debug)]
pub struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request deadline passed")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Aborts the guest's task when dropped: when the client goes away (hyper
/// drops the request's future) or the deadline passes, the instance stops.
struct AbortOnDrop(Option<tokio::task::JoinHandle<wasmtime::Result<()>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Serves one request with a fresh instance of `pre`, within `deadline`
/// (instantiation, the handler and its response body all count). `hold` is
/// kept until the instance is gone (e.g. a concurrency permit).
pub async fn handle(
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<HostState>,
    mut store: wasmtime::Store<HostState>,
    request: hyper::Request<Incoming>,
    deadline: Duration,
    hold: impl Send + 'static,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let until = tokio::time::Instant::now() + deadline;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let started = std::time::Instant::now();
    let proxy = tokio::time::timeout_at(until, pre.instantiate_async(&mut store))
        .await
        .map_err(|_| anyhow::Error::new(DeadlineExceeded))??;
    crate::metrics::instruments()
        .instantiation_duration
        .record(started.elapsed().as_secs_f64(), &[]);
    // The guest runs in its own task; it stays inside the caller's span so
    // its connects and log lines belong to this request's trace.
    // The deadline bounds the whole handler, response body included, so it
    // runs inside the guest's task: a body still streaming past it is cut.
    let task = tokio::spawn(
        async move {
            let _hold = hold;
            let call = proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out);
            let result = match tokio::time::timeout_at(until, call).await {
                Ok(result) => result,
                Err(_) => Err(wasmtime::Error::new(DeadlineExceeded)),
            };
            if let Err(err) = &result {
                store.data().sockets.abort_connections();
                // If the response had already started, nobody else sees this.
                tracing::warn!("component failed while handling a request: {err:#}");
            }
            result
        }
        .instrument(tracing::Span::current()),
    );
    let mut guard = AbortOnDrop(Some(task));
    match tokio::time::timeout_at(until, receiver).await {
        Err(_) => Err(anyhow::Error::new(DeadlineExceeded)),
        Ok(Ok(Ok(response))) => {
            // The guest goes on writing the body (bounded by the deadline in
            // its task); from now on its client is hyper's body, not us.
            drop(guard.0.take());
            Ok(response)
        }
        Ok(Ok(Err(code))) => anyhow::bail!("component returned an error: {code:?}"),
        // The guest never set a response: it trapped or returned early.
        Ok(Err(_)) => match guard.0.take() {
            Some(task) => match task.await {
                // The deadline hit inside the task first: still a 504.
                Ok(Err(err)) if err.downcast_ref::<DeadlineExceeded>().is_some() => {
                    Err(anyhow::Error::new(DeadlineExceeded))
                }
                Ok(Err(err)) => Err(anyhow::Error::from(err).context("component trapped")),
                Ok(Ok(())) => anyhow::bail!("component returned without setting a response"),
                Err(join) => anyhow::bail!("component task failed: {join}"),
            },
            None => anyhow::bail!("component task is gone"),
        },
    }
}

/// A plain-text response.
pub fn text(status: u16, body: impl Into<Bytes>) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(body.into()).map_err(|never| match never {}).boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    response
}
