//! Plain-HTTP admin endpoint for driving faults from outside the process
//! (the binary's `--admin`):
//!
//! | request | effect |
//! | --- | --- |
//! | `POST /faults/drop-watches` | close every open watch |
//! | `POST /faults/compact` | compact the event log (older RVs → 410) |
//! | `POST /faults/fail?status=429&seconds=5` | fail every API request |
//! | `POST /faults/clear` | stop failing |
//! | `POST /faults/restart?down_ms=500` | restart, same port, state kept (answers when back up) |
//! | `POST /faults/rotate-token` | new token (body: the token) |
//! | `GET /stats` | counters as JSON |
//! | `GET /token`, `GET /ca.crt` | current token, CA PEM |

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::{Shared, lock};

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let num = |k: &str, default: u64| query.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(default);
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/faults/drop-watches") => {
            let n = lock(&shared.store).drop_watchers();
            reply(StatusCode::OK, format!("dropped {n} watches\n"))
        }
        (&Method::POST, "/faults/compact") => {
            let rv = lock(&shared.store).compact();
            reply(StatusCode::OK, format!("compacted at {rv}\n"))
        }
        (&Method::POST, "/faults/fail") => {
            let status = num("status", 500);
            let Ok(code) = u16::try_from(status) else {
                return reply(StatusCode::BAD_REQUEST, "bad status\n");
            };
            if !(400..600).contains(&code) {
                return reply(StatusCode::BAD_REQUEST, "status must be 4xx or 5xx\n");
            }
            let seconds = num("seconds", 5);
            *lock(&shared.fault) = Some((std::time::Instant::now() + Duration::from_secs(seconds), code));
            reply(StatusCode::OK, format!("failing with {code} for {seconds}s\n"))
        }
        (&Method::POST, "/faults/clear") => {
            *lock(&shared.fault) = None;
            reply(StatusCode::OK, "cleared\n")
        }
        (&Method::POST, "/faults/restart") => {
            let down = Duration::from_millis(num("down_ms", 500));
            match shared.restart(down).await {
                Ok(()) => reply(StatusCode::OK, format!("restarted after {}ms\n", down.as_millis())),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
            }
        }
        (&Method::POST, "/faults/rotate-token") => match shared.rotate_token() {
            Ok(t) => reply(StatusCode::OK, t),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
        },
        (&Method::GET, "/stats") => {
            let s = lock(&shared.stats).clone();
            let requests: Vec<_> = s
                .requests
                .iter()
                .map(|((verb, res), n)| json!({ "verb": verb, "resource": res, "count": n }))
                .collect();
            let body = json!({
                "requests": requests,
                "createCalls": s.create_calls,
                "createsSucceeded": s.creates_succeeded,
                "unauthorized": s.unauthorized,
                "injectedFailures": s.injected_failures,
                "resourceVersion": lock(&shared.store).current_rv().to_string(),
                "openWatches": lock(&shared.store).watcher_count(),
            });
            reply(StatusCode::OK, body.to_string())
        }
        (&Method::GET, "/token") => reply(StatusCode::OK, shared.token()),
        (&Method::GET, "/ca.crt") => reply(StatusCode::OK, shared.ca_pem.clone()),
        _ => reply(StatusCode::NOT_FOUND, "not found\n"),
    }
}
