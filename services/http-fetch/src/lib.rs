//! Fetches a URL with an outgoing `wasi:http` request: a
//! `wasi:http/incoming-handler` component that proves where the host routes
//! `wasi:http/outgoing-handler` traffic (e.g. `127.0.0.1` into the virtual
//! network).
//!
//! ```text
//! GET /<m>?url=<percent-encoded absolute http(s) URL>
//!     200 "status <upstream status>\n<upstream body>"
//!     502 "fetch error: <wasi:http error-code, Debug>"
//! ```
//!
//! The first path segment (`<m>`, the mount point) is ignored; `/<m>/`
//! works too. A missing or unusable `url` is 400, another path 404,
//! another method 405. Every body is text/plain.

use std::io::Write as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(HttpFetch);

/// Largest upstream body passed on.
const MAX_BODY_LEN: u64 = 64 * 1024 * 1024;
/// Bytes asked for per read of the upstream body.
const READ_CHUNK: u64 = 64 * 1024;

struct HttpFetch;

impl wasip2::exports::http::incoming_handler::Guest for HttpFetch {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = handle(&request);
        send(response_out, status, &body);
    }
}

fn handle(request: &IncomingRequest) -> (u16, Vec<u8>) {
    let target = request.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    if !matches!(segments.as_slice(), [_] | [_, ""]) {
        return (404, format!("no such route: {path}").into_bytes());
    }
    if !matches!(request.method(), Method::Get) {
        return (405, b"only GET is allowed".to_vec());
    }
    let url = match query_param(query, "url") {
        Some(Some(url)) => url,
        Some(None) => return (400, b"bad request: bad percent-encoding in url".to_vec()),
        None => return (400, b"bad request: missing ?url=<percent-encoded http url>".to_vec()),
    };
    let target = match Target::parse(&url) {
        Ok(target) => target,
        Err(message) => return (400, format!("bad request: {message}").into_bytes()),
    };
    match fetch(&target) {
        Ok((status, mut body)) => {
            let mut out = format!("status {status}\n").into_bytes();
            out.append(&mut body);
            (200, out)
        }
        Err(e) => (502, format!("fetch error: {e}").into_bytes()),
    }
}

/// Why a fetch failed: the host's error code, or something else.
enum FetchError {
    Code(ErrorCode),
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Code(code) => write!(f, "{code:?}"),
            FetchError::Other(message) => f.write_str(message),
        }
    }
}

impl From<ErrorCode> for FetchError {
    fn from(code: ErrorCode) -> Self {
        FetchError::Code(code)
    }
}

/// An absolute `http://` or `https://` URL, split for `wasi:http`.
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            _ => return Err(format!("not an absolute http URL: {url:?}")),
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_with_query) = rest.split_at(split);
        if authority.is_empty() {
            return Err(format!("no host in URL: {url:?}"));
        }
        let path_with_query = match path_with_query {
            "" => "/".to_string(),
            pq if pq.starts_with('?') => format!("/{pq}"),
            pq => pq.to_string(),
        };
        Ok(Target {
            scheme,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}

/// GETs `target`; returns the upstream status and body.
fn fetch(target: &Target) -> Result<(u16, Vec<u8>), FetchError> {
    let request = OutgoingRequest::new(Fields::new());
    let invalid = |what: &str| FetchError::Other(format!("the host rejected the {what}"));
    request.set_method(&Method::Get).map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| invalid("path"))?;
    let request_body = request.body().map_err(|()| invalid("request body"))?;
    let future = outgoing_handler::handle(request, None)?;
    OutgoingBody::finish(request_body, None)?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(code.into()),
        Some(Err(())) => return Err(FetchError::Other("response already taken".to_string())),
        None => return Err(FetchError::Other("response not ready after waiting".to_string())),
    };
    let status = response.status();
    let body = read_body(&response)?;
    Ok((status, body))
}

fn read_body(response: &IncomingResponse) -> Result<Vec<u8>, FetchError> {
    let body = response
        .consume()
        .map_err(|()| FetchError::Other("response body already taken".to_string()))?;
    let stream = body
        .stream()
        .map_err(|()| FetchError::Other("response body stream unavailable".to_string()))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                out.extend_from_slice(&chunk);
                if out.len() as u64 > MAX_BODY_LEN {
                    return Err(FetchError::Other(format!(
                        "upstream body larger than {MAX_BODY_LEN} bytes"
                    )));
                }
            }
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(match wasip2::http::types::http_error_code(&e) {
                    Some(code) => FetchError::Code(code),
                    None => FetchError::Other(format!("reading upstream body: {}", e.to_debug_string())),
                });
            }
        }
    }
    drop(stream);
    drop(wasip2::http::types::IncomingBody::finish(body));
    Ok(out)
}

/// `Some(Some(value))` for `name=value` in the query (percent-decoded, UTF-8),
/// `Some(None)` when it is there but undecodable, `None` when absent.
fn query_param(query: &str, name: &str) -> Option<Option<String>> {
    let value = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })?;
    Some(percent_decode(value).and_then(|bytes| String::from_utf8(bytes).ok()))
}

/// Decodes `%XX` escapes (`+` stays `+`); `None` for a malformed escape.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Sends a text/plain response. Once the head is out, a failure can only cut
/// the body short: there is nobody left to tell.
fn send(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let _ = headers.set("content-length", &[body.len().to_string().into_bytes()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing_body = response.body();
    ResponseOutparam::set(out, Ok(response));
    let Ok(outgoing_body) = outgoing_body else {
        return;
    };
    if let Ok(mut stream) = outgoing_body.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing_body, None);
}
