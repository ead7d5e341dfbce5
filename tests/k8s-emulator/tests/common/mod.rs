//! A small synchronous HTTPS client for the tests: real TLS (verifying the
//! emulator's CA), HTTP/1.1, bearer token, JSON in and out, and watch
//! streams read line by line on a background task.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct Client {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    pub token: String,
    tls: TlsConnector,
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str, token: &str) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        Client {
            runtime,
            addr,
            token: token.to_string(),
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    pub fn for_emulator(emu: &k8s_emulator::Emulator) -> Client {
        Client::new(emu.addr(), emu.ca_pem(), &emu.token())
    }

    async fn send(
        addr: SocketAddr,
        tls: TlsConnector,
        req: Request<Full<Bytes>>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = TcpStream::connect(addr).await?;
        let stream = tls.connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(sender.send_request(req).await?)
    }

    fn build(&self, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> Request<Full<Bytes>> {
        let data = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(data))
            .expect("request")
    }

    /// One request; `Err` only for transport failures.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let req = self.build(method, path, content_type, body);
        let (addr, tls) = (self.addr, self.tls.clone());
        self.runtime.block_on(async move {
            let resp = tokio::time::timeout(Duration::from_secs(10), Client::send(addr, tls, req)).await??;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            Ok(Reply { status, headers, body })
        })
    }

    pub fn request(&self, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> Reply {
        self.try_request(method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, "application/json", None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, "application/json", Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Reply {
        self.request("PUT", path, "application/json", Some(body))
    }

    pub fn patch(&self, path: &str, content_type: &str, body: &Value) -> Reply {
        self.request("PATCH", path, content_type, Some(body))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, "application/json", None)
    }

    /// Starts a watch; events arrive on the returned stream as parsed lines.
    pub fn watch(&self, path: &str) -> Watch {
        let req = self.build("GET", path, "application/json", None);
        let (addr, tls) = (self.addr, self.tls.clone());
        let (tx, rx) = mpsc::channel();
        let (status_tx, status_rx) = mpsc::channel();
        self.runtime.spawn(async move {
            let resp = match Client::send(addr, tls, req).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = status_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = status_tx.send(Ok(resp.status().as_u16()));
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    let _ = tx.send(WatchItem::Broken);
                    return;
                };
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let v = serde_json::from_slice(&line).expect("watch line is JSON");
                        if tx.send(WatchItem::Event(v)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(WatchItem::Ended);
        });
        let status = status_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("watch response")
            .expect("watch connect");
        Watch { status, rx }
    }
}

pub enum WatchItem {
    Event(Value),
    /// The stream ended cleanly (timeout, dropped watch).
    Ended,
    /// The connection broke mid-stream.
    Broken,
}

pub struct Watch {
    pub status: u16,
    rx: mpsc::Receiver<WatchItem>,
}

impl Watch {
    pub fn next(&self, timeout: Duration) -> Option<WatchItem> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event, panicking on timeout or end.
    pub fn event(&self) -> Value {
        match self.next(Duration::from_secs(10)) {
            Some(WatchItem::Event(v)) => v,
            Some(WatchItem::Ended) => panic!("watch ended"),
            Some(WatchItem::Broken) => panic!("watch broke"),
            None => panic!("no watch event within 10s"),
        }
    }

    /// Next non-BOOKMARK event.
    pub fn change(&self) -> Value {
        loop {
            let e = self.event();
            if e["type"] != "BOOKMARK" {
                return e;
            }
        }
    }

    /// Waits for the end of the stream, skipping events.
    pub fn ended(&self, within: Duration) -> Option<&'static str> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next(left) {
                Some(WatchItem::Event(_)) => continue,
                Some(WatchItem::Ended) => return Some("ended"),
                Some(WatchItem::Broken) => return Some("broken"),
                None => return None,
            }
        }
    }
}

pub fn configmap(name: &str, data: Value) -> Value {
    serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": data })
}

pub fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

pub const GREETING_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": { "name": "greetings.demo.loophost.dev" },
  "spec": {
    "group": "demo.loophost.dev",
    "scope": "Namespaced",
    "names": { "plural": "greetings", "singular": "greeting", "kind": "Greeting", "shortNames": ["gr"] },
    "versions": [{
      "name": "v1", "served": true, "storage": true,
      "subresources": { "status": {} },
      "additionalPrinterColumns": [
        { "name": "Message", "type": "string", "jsonPath": ".spec.message" },
        { "name": "Copies", "type": "integer", "jsonPath": ".spec.copies" },
        { "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" }
      ],
      "schema": { "openAPIV3Schema": {
        "type": "object",
        "properties": {
          "spec": { "type": "object", "required": ["message"], "properties": {
            "message": { "type": "string" },
            "copies": { "type": "integer", "default": 1, "minimum": 0 }
          }},
          "status": { "type": "object", "properties": {
            "observedGeneration": { "type": "integer" },
            "ready": { "type": "boolean" }
          }}
        }
      }}
    }]
  }
}"#;

pub fn greeting_crd() -> Value {
    serde_json::from_str(GREETING_CRD).expect("CRD JSON")
}

pub const GREETINGS: &str = "/apis/demo.loophost.dev/v1/namespaces/default/greetings";
pub const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

impl Client {
    /// GET with a specific `Accept` header; returns the parsed body.
    pub fn request_with_accept(&self, path: &str, accept: &str) -> Value {
        let mut req = self.build("GET", path, "application/json", None);
        req.headers_mut()
            .insert("accept", accept.parse().expect("accept header"));
        let (addr, tls) = (self.addr, self.tls.clone());
        self.runtime.block_on(async move {
            let resp = Client::send(addr, tls, req).await.expect("request");
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            serde_json::from_slice(&bytes).expect("JSON body")
        })
    }
}
