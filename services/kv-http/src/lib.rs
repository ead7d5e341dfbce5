//! HTTP front end for the kv service: a `wasi:http/incoming-handler`
//! component that talks RESP to kv with the `redis` crate (sync API).
//!
//! kv is at `127.0.0.1:6379` unless the environment variable `KV_ADDR` says
//! otherwise (`HOST:PORT` or a `redis://` URL). Every request opens its own
//! connection. The host passes the full path; the first segment (`<m>`, the
//! mount point) is ignored. Keys are percent-decoded path segments.
//!
//! ```text
//! GET    /<m>/<key>          200 value | 404 "not found"
//! PUT    /<m>/<key>[?ex=S]   body = value; 200 "OK" (SET, with EX S if given)
//! POST   /<m>/<key>/incr     200 new value (INCR)
//! DELETE /<m>/<key>          200 number of keys deleted (DEL)
//! GET    /<m>  or  /<m>/     200 `KEYS *`, sorted, one per line
//! POST   /<m>/_crash         sends DEBUG SEGFAULT (kv crashes); 502
//! POST   /<m>/_panic         this component panics (a trap; the host answers 500)
//! GET    /<m>/_sleep/<ms>    sleeps, then 200 "slept <ms>" (no kv access)
//! ```
//!
//! kv unreachable or a kv error reply: 502 `kv error: <message>`. Bad input
//! (bad percent-encoding, bad `ex`, bad `<ms>`, unreadable body): 400;
//! other paths: 404; a known path with another method: 405. Every body is
//! text/plain.

use std::io::Read as _;
use std::io::Write as _;
use std::time::Duration;

use redis::{Connection, RedisResult};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(KvHttp);

const DEFAULT_KV_ADDR: &str = "127.0.0.1:6379";
/// Largest value accepted in a PUT body.
const MAX_VALUE_LEN: u64 = 64 * 1024 * 1024;
/// Longest `_sleep`.
const MAX_SLEEP_MS: u64 = 10 * 60 * 1000;

struct KvHttp;

impl wasip2::exports::http::incoming_handler::Guest for KvHttp {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let response = handle(&request);
        // One access-log line per request (the host turns it into a log record).
        let target = request.path_with_query().unwrap_or_default();
        println!("kv-http {:?} {target} -> {}", request.method(), response.status);
        send(response_out, response);
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Response {
    Response {
        status,
        body: body.into(),
    }
}

fn kv_error(e: &redis::RedisError) -> Response {
    reply(502, format!("kv error: {e}"))
}

enum Route {
    Keys,
    Get(Vec<u8>),
    Put(Vec<u8>),
    Delete(Vec<u8>),
    Incr(Vec<u8>),
    Crash,
    Panic,
    Sleep(u64),
}

fn handle(request: &IncomingRequest) -> Response {
    let method = request.method();
    let target = request.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let route = match route(&method, path) {
        Ok(route) => route,
        Err(response) => return response,
    };
    match route {
        Route::Sleep(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            reply(200, format!("slept {ms}"))
        }
        Route::Put(key) => {
            let ex = match parse_ex(query) {
                Ok(ex) => ex,
                Err(message) => return reply(400, message),
            };
            let value = match read_body(request) {
                Ok(value) => value,
                Err(message) => return reply(400, message),
            };
            with_kv(|kv| {
                let mut set = redis::cmd("SET");
                set.arg(&key).arg(value);
                if let Some(ex) = ex {
                    set.arg("EX").arg(ex);
                }
                set.query::<()>(kv)?;
                Ok(reply(200, "OK"))
            })
        }
        Route::Get(key) => with_kv(|kv| {
            Ok(match redis::cmd("GET").arg(&key).query::<Option<Vec<u8>>>(kv)? {
                Some(value) => reply(200, value),
                None => reply(404, "not found"),
            })
        }),
        Route::Delete(key) => with_kv(|kv| {
            let deleted: i64 = redis::cmd("DEL").arg(&key).query(kv)?;
            Ok(reply(200, deleted.to_string()))
        }),
        Route::Incr(key) => with_kv(|kv| {
            let value: i64 = redis::cmd("INCR").arg(&key).query(kv)?;
            Ok(reply(200, value.to_string()))
        }),
        Route::Keys => with_kv(|kv| {
            let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(kv)?;
            keys.sort();
            let mut body = Vec::new();
            for key in keys {
                body.extend_from_slice(&key);
                body.push(b'\n');
            }
            Ok(reply(200, body))
        }),
        Route::Panic => panic!("_panic: trapping on request (secret detail: hunter2)"),
        Route::Crash => with_kv(|kv| {
            // kv panics: the connection resets and this fails.
            Ok(match redis::cmd("DEBUG").arg("SEGFAULT").query::<redis::Value>(kv) {
                Ok(value) => reply(502, format!("kv error: DEBUG SEGFAULT answered {value:?}")),
                Err(e) => kv_error(&e),
            })
        }),
    }
}

/// Maps method and path to a route, or to the error response.
fn route(method: &Method, path: &str) -> Result<Route, Response> {
    let Some(path) = path.strip_prefix('/') else {
        return Err(reply(400, format!("bad request: path must start with '/': {path:?}")));
    };
    // Skip the mount point.
    let rest: Vec<&str> = path.split('/').skip(1).collect();
    let not_allowed = || Err(reply(405, format!("method {} not allowed here", method_name(method))));
    let key = |segment: &str| -> Result<Vec<u8>, Response> {
        match percent_decode(segment) {
            Some(key) if key.is_empty() => Err(reply(400, "bad request: empty key")),
            Some(key) => Ok(key),
            None => Err(reply(400, format!("bad request: bad percent-encoding in {segment:?}"))),
        }
    };
    match (rest.as_slice(), method) {
        ([] | [""], Method::Get) => Ok(Route::Keys),
        ([] | [""], _) => not_allowed(),
        (["_sleep", ms], Method::Get) => match ms.parse::<u64>() {
            Ok(ms) if ms <= MAX_SLEEP_MS => Ok(Route::Sleep(ms)),
            _ => Err(reply(
                400,
                format!("bad request: sleep wants 0..={MAX_SLEEP_MS} ms, got {ms:?}"),
            )),
        },
        (["_sleep", _], _) => not_allowed(),
        (["_crash"], Method::Post) => Ok(Route::Crash),
        (["_panic"], Method::Post) => Ok(Route::Panic),
        ([k], Method::Get) => Ok(Route::Get(key(k)?)),
        ([k], Method::Put) => Ok(Route::Put(key(k)?)),
        ([k], Method::Delete) => Ok(Route::Delete(key(k)?)),
        ([_], _) => not_allowed(),
        ([k, "incr"], Method::Post) => Ok(Route::Incr(key(k)?)),
        ([_, "incr"], _) => not_allowed(),
        _ => Err(reply(404, format!("no such route: /{path}"))),
    }
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(name) => name,
    }
}

/// The `ex` query parameter (seconds, > 0), if present.
fn parse_ex(query: &str) -> Result<Option<u64>, String> {
    let mut ex = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "ex" {
            match value.parse::<u64>() {
                Ok(seconds) if seconds > 0 => ex = Some(seconds),
                _ => {
                    return Err(format!(
                        "bad request: ex must be a positive number of seconds, got {value:?}"
                    ));
                }
            }
        }
    }
    Ok(ex)
}

/// Decodes `%XX` escapes; `None` for a malformed escape.
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

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request
        .consume()
        .map_err(|()| "bad request: body already consumed".to_string())?;
    let mut value = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| "bad request: body stream unavailable".to_string())?;
        stream
            .take(MAX_VALUE_LEN + 1)
            .read_to_end(&mut value)
            .map_err(|e| format!("bad request: reading body: {e}"))?;
    } // the stream must be gone before the body is finished
    drop(IncomingBody::finish(body));
    if value.len() as u64 > MAX_VALUE_LEN {
        return Err(format!("bad request: body larger than {MAX_VALUE_LEN} bytes"));
    }
    Ok(value)
}

/// Connects to kv and runs `f`; connection failures and error replies are 502.
fn with_kv(f: impl FnOnce(&mut Connection) -> RedisResult<Response>) -> Response {
    let addr = std::env::var("KV_ADDR").unwrap_or_else(|_| DEFAULT_KV_ADDR.to_string());
    let url = if addr.contains("://") {
        addr
    } else {
        format!("redis://{addr}/")
    };
    let result = redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection())
        .and_then(|mut kv| f(&mut kv));
    result.unwrap_or_else(|e| kv_error(&e))
}

/// Sends `response` as text/plain. Once the head is out, a failure can only
/// cut the body short: there is nobody left to tell.
fn send(out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let _ = headers.set("content-length", &[response.body.len().to_string().into_bytes()]);
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let body = outgoing.body();
    ResponseOutparam::set(out, Ok(outgoing));
    let Ok(body) = body else {
        return;
    };
    if let Ok(mut stream) = body.write() {
        let _ = stream.write_all(&response.body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}
