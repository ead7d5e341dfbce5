//! The HTTP stack under `kube::Client`, built by hand because kube's own
//! (hyper-rustls, native roots, hyper's DNS resolver) needs threads or OS
//! certificate stores that wasm32-wasip2 does not have:
//!
//! - connector: a tokio `TcpStream` over wasi:sockets, connected to an
//!   address resolved synchronously (a name lookup through tokio would spawn
//!   a blocking thread), then rustls (ring) trusting only the mounted
//!   `ca.crt`;
//! - hyper-util's pooled HTTP/1.1 client over it;
//! - [`ApiService`]: the API server's scheme and authority, the bearer
//!   token (re-read as the kubelet rotates it), `Retry-After`, a deadline
//!   on the response head.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower::BoxError;
use tracing::Instrument as _;

use crate::config::Config;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Watches answer their head at once and stream the body, so this bounds
/// every request without cutting watches short.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Projected tokens rotate; checking more often than this buys nothing.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);
/// A server asking for more than this is more likely confused than loaded.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds the `kube::Client` for `config`.
pub fn client(config: &Config) -> Result<kube::Client, BoxError> {
    let tls = tls_config(&config.ca_pem, &config.ca_path.display().to_string())?;
    let connector = Connector {
        endpoint: Arc::new(Endpoint {
            host: config.host.clone(),
            port: config.port,
            server_name: config.server_name.clone(),
        }),
        tls: TlsConnector::from(Arc::new(tls)),
    };
    let http = HyperClient::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let service = ApiService {
        http,
        shared: Arc::new(Shared {
            authority: config.authority.clone(),
            token: TokenFile::new(config.token_path.clone()),
            not_before: Mutex::new(None),
        }),
    };
    Ok(kube::Client::new(service, config.namespace.clone()))
}

fn tls_config(ca_pem: &[u8], ca_name: &str) -> Result<rustls::ClientConfig, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("{ca_name}: not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{ca_name}: unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{ca_name}: no certificate in it").into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // hyper speaks HTTP/1.1 here; offering h2 would let the server pick a
    // protocol the client then cannot speak.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

struct Endpoint {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

/// Connects to the API server, whatever the request's URI says (it is
/// always the API server's: [`ApiService`] sets it).
#[derive(Clone)]
struct Connector {
    endpoint: Arc<Endpoint>,
    tls: TlsConnector,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TlsConn>;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<TokioIo<TlsConn>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let endpoint = self.endpoint.clone();
        let tls = self.tls.clone();
        // hyper's pool finishes a connect in a background task when another
        // connection frees up first: the connect still belongs to the
        // request that started it, not to whatever runs that task.
        let requester = tracing::Span::current();
        Box::pin(
            async move {
                let tcp = connect_tcp(&endpoint.host, endpoint.port).await?;
                let handshake = tracing::info_span!("tls handshake", "server.address" = %endpoint.host,
                "server.port" = endpoint.port);
                let stream = tokio::time::timeout(TLS_TIMEOUT, tls.connect(endpoint.server_name.clone(), tcp))
                    .instrument(handshake)
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("TLS handshake with {}:{} timed out", endpoint.host, endpoint.port),
                        )
                    })??;
                Ok(TokioIo::new(TlsConn(stream)))
            }
            .instrument(requester),
        )
    }
}

/// Resolves with std (wasi-libc's getaddrinfo over wasi:sockets, no thread;
/// an IP literal is parsed without a lookup) and tries each address.
async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} resolved to no address"));
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Small request/response exchanges: don't wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = io::Error::new(e.kind(), format!("connect to {addr}: {e}")),
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out")),
        }
    }
    Err(last)
}

/// The TLS stream, given the `Connection` trait hyper-util's pool wants.
pub struct TlsConn(TlsStream<TcpStream>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The service-account token, re-read at most once a second (the kubelet
/// rotates projected tokens by swapping the file) and at once after a 401.
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    header: Option<HeaderValue>,
    checked: Option<Instant>,
    stale: bool,
}

impl TokenFile {
    pub fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            state: Mutex::new(TokenState::default()),
        }
    }

    pub fn header(&self) -> io::Result<HeaderValue> {
        let mut state = lock(&self.state);
        if let (Some(header), Some(checked)) = (&state.header, state.checked)
            && !state.stale
            && checked.elapsed() < TOKEN_RECHECK
        {
            return Ok(header.clone());
        }
        state.checked = Some(Instant::now());
        let read = std::fs::read_to_string(&self.path).and_then(|text| {
            let token = text.trim();
            let mut header = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the token has bytes a header cannot carry"))?;
            header.set_sensitive(true);
            if token.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "the token file is empty"));
            }
            Ok(header)
        });
        match read {
            Ok(header) => {
                if state.header.as_ref().is_some_and(|old| old != header) {
                    tracing::info!(path = %self.path.display(), "service-account token changed; using the new one");
                }
                state.stale = false;
                state.header = Some(header.clone());
                Ok(header)
            }
            // Mid-rotation the file can be briefly absent: keep using the
            // token we have until a readable one appears.
            Err(e) => match &state.header {
                Some(header) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot re-read the service-account token; keeping the previous one");
                    Ok(header.clone())
                }
                None => Err(io::Error::new(
                    e.kind(),
                    format!("cannot read the service-account token {}: {e}", self.path.display()),
                )),
            },
        }
    }

    pub fn mark_stale(&self) {
        lock(&self.state).stale = true;
    }
}

struct Shared {
    authority: String,
    token: TokenFile,
    /// Set from a `Retry-After`: no request leaves before then.
    not_before: Mutex<Option<Instant>>,
}

#[derive(Clone)]
struct ApiService {
    http: HyperClient<Connector, kube::client::Body>,
    shared: Arc<Shared>,
}

impl tower::Service<Request<kube::client::Body>> for ApiService {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Incoming>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let http = self.http.clone();
        let shared = self.shared.clone();
        let span = tracing::info_span!("api request", "http.request.method" = %request.method(),
            "url.path" = request.uri().path(), "http.response.status_code" = tracing::field::Empty);
        let write = !matches!(*request.method(), Method::GET | Method::HEAD);
        Box::pin(
            async move {
                let not_before = *lock(&shared.not_before);
                if let Some(at) = not_before {
                    tokio::time::sleep_until(at).await;
                }
                let (mut parts, body) = request.into_parts();
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                parts.uri = Uri::builder()
                    .scheme(Scheme::HTTPS)
                    .authority(shared.authority.as_str())
                    .path_and_query(path)
                    .build()?;
                parts.headers.insert(AUTHORIZATION, shared.token.header()?);
                parts.headers.insert(
                    USER_AGENT,
                    HeaderValue::from_static(concat!("greeter-controller/", env!("CARGO_PKG_VERSION"))),
                );
                let response = tokio::time::timeout(HEAD_TIMEOUT, http.request(Request::from_parts(parts, body)))
                    .await
                    .map_err(|_| format!("the API server did not answer within {} s", HEAD_TIMEOUT.as_secs()))??;
                tracing::Span::current().record("http.response.status_code", response.status().as_u16());
                if write && response.status().is_success() {
                    crate::faults::wrote();
                }
                match response.status() {
                    StatusCode::UNAUTHORIZED => shared.token.mark_stale(),
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        if let Some(wait) = retry_after(response.headers().get(RETRY_AFTER)) {
                            tracing::info!(
                                seconds = wait.as_secs(),
                                "the API server asked to retry later (Retry-After)"
                            );
                            let mut not_before = lock(&shared.not_before);
                            let at = Instant::now() + wait;
                            if not_before.is_none_or(|old| old < at) {
                                *not_before = Some(at);
                            }
                        }
                    }
                    _ => {}
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// `Retry-After` in seconds (the form API servers send; an HTTP date is
/// ignored and ordinary backoff applies).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_only() {
        let header = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(retry_after(Some(&header("3"))), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(&header("100000"))), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some(&header("Wed, 21 Oct 2015 07:28:00 GMT"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn ca_without_certificates_is_refused() {
        assert!(tls_config(b"not a pem", "ca.crt").is_err());
    }

    #[test]
    fn token_is_reread_after_a_401() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("greeter-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("token");
        std::fs::write(&path, "one\n")?;
        let token = TokenFile::new(path.clone());
        assert_eq!(token.header()?, "Bearer one");
        std::fs::write(&path, "two")?;
        // Within the recheck interval the cached value stands...
        assert_eq!(token.header()?, "Bearer one");
        // ...unless the server refused it.
        token.mark_stale();
        assert_eq!(token.header()?, "Bearer two");
        std::fs::remove_file(&path)?;
        token.mark_stale();
        assert_eq!(token.header()?, "Bearer two", "a vanished file keeps the last token");
        std::fs::remove_dir_all(&dir)
    }
}
