//! Minimal blocking HTTP/1.1 server.
//!
//! ```text
//! http-server <listen-addr>
//! ```
//!
//! Prints `listening <local addr>`, then serves connections one at a time:
//! one request per connection (every response carries `Connection: close`).
//! Prints `request <method> <path>` per request. `GET /hello` answers 200
//! with `hello from http-server\n`; anything else is 404. A malformed request
//! gets a 400 and `error InvalidData <message>`; other connection failures
//! print `error <ErrorKind> <message>` and the server goes on. A failed bind
//! or accept prints the same and exits 1.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use guest_util::say;

/// Upper bound on a request body we are willing to read (and discard).
const MAX_BODY: u64 = 1 << 20;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), None) = (args.next(), args.next()) else {
        say!("error InvalidInput usage: http-server <listen-addr>");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => return fail(&format!("bind {addr}"), &e),
    };
    match listener.local_addr() {
        Ok(local) => say!("listening {local}"),
        Err(e) => return fail("local_addr", &e),
    }
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => return fail("accept", &e),
        };
        if let Err(e) = serve(stream) {
            say!("error {:?} connection from {peer}: {e}", e.kind());
        }
    }
}

fn fail(what: &str, e: &io::Error) -> ExitCode {
    say!("error {:?} {what}: {e}", e.kind());
    ExitCode::FAILURE
}

fn serve(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let (method, path) = match read_request(&mut reader) {
        Ok(request) => request,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            // Best effort: the client may already be gone.
            let _ = respond(reader.get_mut(), "400 Bad Request", "bad request\n");
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    say!("request {method} {path}");
    let stream = reader.get_mut();
    if method == "GET" && path == "/hello" {
        respond(stream, "200 OK", "hello from http-server\n")
    } else {
        respond(stream, "404 Not Found", "not found\n")
    }
}

/// Reads the request line, the headers and any `Content-Length` body (which
/// is discarded); returns the method and path.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<(String, String)> {
    let request_line = read_line(reader)?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("unsupported version {version:?}")));
    }
    let mut content_length = 0u64;
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("bad header {line:?}")));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
        }
    }
    if content_length > MAX_BODY {
        return Err(invalid(format!("body too large: {content_length} bytes")));
    }
    let copied = io::copy(&mut reader.take(content_length), &mut io::sink())?;
    if copied < content_length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok((method.to_string(), path.to_string()))
}

/// Reads one CRLF- (or LF-) terminated line, without the terminator.
fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if reader.by_ref().take(8192).read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before end of headers",
        ));
    }
    if !line.ends_with('\n') {
        return Err(invalid("header line too long".to_string()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
