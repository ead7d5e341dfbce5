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
            let ip: Option<IpAddr> = if host == "localhost" {
                Some(IpAddr::from([127, 0, 0, 1]))
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                Some(ip.to_canonical())
            } else {
                match network.lookup_name(&host) {
                    NameAnswer::Addresses(addrs) => match addrs.first() {
                        Some(ip) => Some(*ip),
                        None => return Err(dns_error()),
                    },
                    NameAnswer::NoSuchName => return Err(dns_error()),
                    NameAnswer::NotOurs => None,
                }
            };
            let route = match ip {
                Some(ip) => policy.route(SocketUse::TcpConnect, SocketAddr::new(ip, port)),
                // A name goes out only if it may be resolved AND every address
                // it resolves to is allowed egress (a name is no way around
                // the address rules).
                None if policy.may_resolve(&host) => match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(addrs) => {
                        let routes: Vec<Route> = addrs
                            .map(|a| policy.route(SocketUse::TcpConnect, SocketAddr::new(a.ip().to_canonical(), port)))
                            .collect();
                        if !routes.is_empty() && routes.iter().all(|r| *r == Route::Host) {
                            Route::Host
                        } else {
                            Route::Deny(wasi_sockets_virt::DenyReason::EgressNotAllowed)
                        }
                    }
                    Err(_) => return Err(dns_error()),
                },
                None => Route::Deny(wasi_sockets_virt::DenyReason::EgressNotAllowed),
            };
            match (route, ip) {
                (Route::Virtual, Some(ip)) if !tls => {
                    send_virtual(&network, SocketAddr::new(ip, port), request, options).await
                }
                (Route::Virtual, _) => Err(HttpError::HttpProtocolError),
                (Route::Host, _) => {
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = _> + Send>,
                    ))
                }
                (Route::Deny(reason), _) => {
                    tracing::debug!(%host, port, %reason, "outgoing HTTP request denied");
                    Err(HttpError::HttpRequestDenied)
                }
            }
        })
    }
}

fn dns_error() -> HttpError {
    HttpError::DnsError {
        rcode: None,
        info_code: None,
    }
}

/// HTTP/1.1 over a virtual connection.
async fn send_virtual(
    network: &VirtualNetwork,
    addr: SocketAddr,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    // The guest's timeouts apply as on the real network (same defaults as upstream).
    let limit = |t: Option<std::time::Duration>| t.unwrap_or(std::time::Duration::from_secs(600));
    let connect_timeout = limit(options.and_then(|o| o.connect_timeout));
    let first_byte_timeout = limit(options.and_then(|o| o.first_byte_timeout));
    let connect = async {
        let stream = network.connect(addr).await.map_err(|code| {
            tracing::debug!(%addr, ?code, "virtual HTTP connect failed");
            match code {
                wasi_sockets_virt::ErrorCode::ConnectionRefused => HttpError::ConnectionRefused,
                _ => HttpError::ConnectionTerminated,
            }
        })?;
        Ok::<_, HttpError>(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?)
    };
    let (mut sender, conn) = tokio::time::timeout(connect_timeout, connect)
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
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
    let io = async move {
        match driver.await {
            Ok(result) => result.map_err(HttpError::from),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    };
    Ok((response, Box::new(io)))
}

/// Serves one request with a fresh instance of `pre`.
pub async fn handle(
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<HostState>,
    mut store: wasmtime::Store<HostState>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let started = std::time::Instant::now();
    let proxy = pre.instantiate_async(&mut store).await?;
    crate::metrics::instruments()
        .instantiation_duration
        .record(started.elapsed().as_secs_f64(), &[]);
    // The guest runs in its own task; it stays inside the caller's span so
    // its connects and log lines belong to this request's trace.
    let task = tokio::spawn(
        async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            if let Err(err) = &result {
                store.data().sockets.abort_connections();
                // If the response had already started, nobody else sees this.
                tracing::warn!("component failed while handling a request: {err:#}");
            }
            result
        }
        .instrument(tracing::Span::current()),
    );
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => anyhow::bail!("component returned an error: {code:?}"),
        // The guest never set a response: it trapped or returned early.
        Err(_) => match task.await {
            Ok(Err(err)) => Err(anyhow::Error::from(err).context("component trapped")),
            Ok(Ok(())) => anyhow::bail!("component returned without setting a response"),
            Err(join) => anyhow::bail!("component task failed: {join}"),
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
