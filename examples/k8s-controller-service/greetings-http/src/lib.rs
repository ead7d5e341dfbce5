//! `wasi:http/incoming-handler` component in front of the greeter
//! controller: `GET /greetings` asks the controller's own endpoint
//! (`http://127.0.0.1:9090/greetings`, over the workload's virtual
//! loopback, with a plain std `TcpStream`) and returns its JSON.
//!
//! `GREETER_ADDR` (`HOST:PORT`) points elsewhere. Controller unreachable or
//! answering nonsense: 502 with the reason. Other paths: 404; other
//! methods: 405.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(GreetingsHttp);

const DEFAULT_ADDR: &str = "127.0.0.1:9090";
/// The controller's answer is a small JSON list; more is a misbehaving peer.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

struct GreetingsHttp;

impl wasip2::exports::http::incoming_handler::Guest for GreetingsHttp {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let response = handle(&request);
        let target = request.path_with_query().unwrap_or_default();
        println!("greetings-http {target} -> {}", response.status);
        send(response_out, response);
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    let mut body = body.into().into_bytes();
    body.push(b'\n');
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    }
}

fn handle(request: &IncomingRequest) -> Response {
    let target = request.path_with_query().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    if path != "/greetings" && path != "/greetings/" {
        return text(404, format!("no such route: {path} (try GET /greetings)"));
    }
    if !matches!(request.method(), Method::Get) {
        return text(405, "only GET /greetings");
    }
    let addr = std::env::var("GREETER_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_string());
    match fetch(&addr) {
        Ok(body) => Response {
            status: 200,
            content_type: "application/json",
            body,
        },
        Err(reason) => text(502, format!("greeter controller at {addr} unreachable: {reason}")),
    }
}

/// `GET /greetings` on the controller; the JSON body, or why not.
fn fetch(addr: &str) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let request =
        format!("GET /greetings HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(format!("answer larger than {MAX_RESPONSE} bytes"));
    }
    parse_response(&raw)
}

/// The body of a complete HTTP/1.1 200 response (read until the peer
/// closed, as we asked), de-chunked if need be.
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no complete HTTP head")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "the HTTP head is not UTF-8")?;
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    if status != 200 {
        return Err(format!("it answered {status_line:?}"));
    }
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    if chunked {
        return dechunk(body);
    }
    match length {
        Some(length) if body.len() < length => Err(format!("answer cut short ({} of {length} bytes)", body.len())),
        Some(length) => Ok(body[..length].to_vec()),
        None => Ok(body.to_vec()),
    }
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body cut short")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("chunked body cut short")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("chunked body cut short")?;
    }
}

/// Once the head is out, a failure can only cut the body short: there is
/// nobody left to tell.
fn send(out: ResponseOutparam, response: Response) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[response.content_type.as_bytes().to_vec()]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(parse_response(raw), Ok(b"[]".to_vec()));
    }

    #[test]
    fn chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n1\r\n]\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw), Ok(b"[]".to_vec()));
    }

    #[test]
    fn errors_are_reported() {
        assert!(parse_response(b"HTTP/1.1 500 Internal\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n[]").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
