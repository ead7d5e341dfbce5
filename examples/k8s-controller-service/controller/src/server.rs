//! The controller's own HTTP/1.1 endpoint (127.0.0.1:9090 by default):
//! `GET /greetings` (what it manages and how the last reconciles went) and
//! `GET /healthz`. Under loophost the address is on the workload's virtual
//! loopback, where the greetings-http component reaches it.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;

use crate::controller::Reports;
use crate::greeting::{CONDITION_READY, Greeting};
use crate::watcher::Store;

pub struct State {
    pub greetings: Store<Greeting>,
    pub reports: Reports,
}

// tokio's own listener cannot accept on wasm32-wasip2 (see the
// tokio-listener crate); natively it is the obvious choice.
#[cfg(target_os = "wasi")]
pub type Listener = tokio_listener::TcpListener;
#[cfg(not(target_os = "wasi"))]
pub type Listener = tokio::net::TcpListener;

/// Binds now, so that the port is open (loophost's readiness) before the
/// first contact with the API server. Call inside the runtime.
pub fn bind(addr: &str) -> io::Result<Listener> {
    #[cfg(target_os = "wasi")]
    {
        tokio_listener::TcpListener::bind(addr)
    }
    #[cfg(not(target_os = "wasi"))]
    {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }
}

pub async fn serve(listener: Listener, state: Arc<State>) {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // E.g. out of descriptors: retrying at once would spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&request, &state)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

fn handle(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/greetings") => {
            let body = greetings_json(state);
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        (_, "/healthz" | "/greetings") => text(StatusCode::METHOD_NOT_ALLOWED, "only GET here"),
        _ => text(StatusCode::NOT_FOUND, "not found: try GET /greetings or /healthz"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn greetings_json(state: &State) -> Vec<u8> {
    let items: Vec<serde_json::Value> = state
        .greetings
        .list()
        .iter()
        .map(|greeting| {
            let name = greeting.metadata.name.clone().unwrap_or_default();
            let report = state.reports.get(&name);
            let status = greeting.status.as_ref();
            let copies = report
                .as_ref()
                .and_then(|r| r.copies)
                .or_else(|| status.map(|s| s.copies))
                .unwrap_or(0);
            let ready = status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
                .map(|c| c.status.clone());
            json!({
                "name": name,
                "generation": greeting.metadata.generation,
                "observedGeneration": status.and_then(|s| s.observed_generation),
                "message": greeting.spec.message,
                "desiredCopies": greeting.spec.copies,
                "copies": copies,
                "ready": ready,
                "deleting": greeting.metadata.deletion_timestamp.is_some(),
                "lastReconcile": report.map(|r| json!({ "result": r.result, "at": r.at })),
            })
        })
        .collect();
    // Serialising plain JSON values cannot fail; an empty array is the
    // honest answer if it ever did.
    serde_json::to_vec(&items).unwrap_or_else(|_| b"[]".to_vec())
}
