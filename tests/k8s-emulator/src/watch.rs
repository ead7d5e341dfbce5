//! Watch streams: newline-delimited `{"type": ..., "object": ...}` JSON in a
//! chunked (HTTP/1.1) or streamed (h2) 200 response.
//!
//! Start semantics follow the API concepts docs:
//! - no `resourceVersion`, or `"0"`: synthetic ADDED events for the current
//!   objects, then changes (the real server serves "0" from its cache, which
//!   here is the current state too);
//! - `resourceVersion=R`: every change after R, replayed from the event log;
//!   R older than the compacted log → one ERROR event carrying a 410 Expired
//!   Status, then the stream ends (HTTP status stays 200);
//! - `sendInitialEvents=true` (streaming lists): ADDED for the current
//!   objects, then a BOOKMARK annotated `k8s.io/initial-events-end`.
//!
//! With selectors, a MODIFIED that makes an object match becomes ADDED and
//! one that makes it stop matching becomes DELETED, as in the real server.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::ops::{gr, output};
use crate::registry::ResourceType;
use crate::selectors::Selectors;
use crate::status::ApiError;
use crate::store::{EventType, WatchMsg};
use crate::table::{self, IncludeObject, Output};
use crate::{Shared, lock};

pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

pub struct WatchParams {
    pub rt: ResourceType,
    pub version: String,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub resource_version: Option<String>,
    pub timeout: Duration,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub output: Output,
    pub include: IncludeObject,
}

impl WatchParams {
    fn render(&self, kind: &str, obj: &Value) -> Bytes {
        let object = match self.output {
            Output::Object => output(&self.rt, &self.version, obj),
            Output::Metadata => table::partial_metadata(obj),
            Output::Table(tv) => {
                let meta =
                    json!({ "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or_default() });
                table::table(
                    &self.rt,
                    &self.version,
                    tv,
                    std::slice::from_ref(obj),
                    self.include,
                    meta,
                )
            }
        };
        line(json!({ "type": kind, "object": object }))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({ "resourceVersion": rv.to_string(), "creationTimestamp": null });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        line(json!({
            "type": "BOOKMARK",
            "object": { "kind": self.rt.kind, "apiVersion": self.rt.api_version(&self.version), "metadata": meta },
        }))
    }

    /// How an event looks through this watch's selectors, if at all.
    fn translate(&self, kind: EventType, obj: &Value, prev: Option<&Value>) -> Option<&'static str> {
        let now = self.selectors.matches(obj);
        let before = prev.is_some_and(|p| self.selectors.matches(p));
        match kind {
            EventType::Added => now.then_some("ADDED"),
            EventType::Deleted => (now || before).then_some("DELETED"),
            EventType::Modified => match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        }
    }
}

fn line(v: Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

pub(crate) fn start(shared: &Arc<Shared>, p: WatchParams) -> Result<ChannelBody, ApiError> {
    let group_resource = gr(&p.rt);
    let mut initial: Vec<Bytes> = Vec::new();
    let from_rv = match p.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(_) if p.send_initial_events => None,
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
        ),
    };
    let mut store = lock(&shared.store);
    let mut registration = None;
    let mut initial_end = None;
    match from_rv {
        Some(rv) => match store.events_since(&group_resource, p.namespace.as_deref(), rv) {
            Ok(events) => {
                for ev in events {
                    if let Some(kind) = p.translate(ev.kind, &ev.object, ev.prev.as_ref()) {
                        initial.push(p.render(kind, &ev.object));
                    }
                }
                registration = Some(store.add_watcher(group_resource, p.namespace.clone()));
            }
            Err(oldest) => {
                let status = ApiError::expired(format!("too old resource version: {rv} ({oldest})")).to_status();
                initial.push(line(json!({ "type": "ERROR", "object": status })));
            }
        },
        None => {
            for (_, obj) in store.list(&group_resource, p.namespace.as_deref()) {
                if p.selectors.matches(obj) {
                    initial.push(p.render("ADDED", obj));
                }
            }
            if p.send_initial_events && p.bookmarks {
                initial_end = Some(store.current_rv());
            }
            registration = Some(store.add_watcher(group_resource, p.namespace.clone()));
        }
    }
    drop(store);
    if let Some(rv) = initial_end {
        initial.push(p.bookmark(rv, true));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let shared = shared.clone();
    tokio::spawn(async move {
        for b in initial {
            if tx.send(b).await.is_err() {
                break;
            }
        }
        if let Some((id, events)) = registration {
            pump(&shared, &p, id, events, &tx).await;
            lock(&shared.store).remove_watcher(id);
        }
    });
    Ok(ChannelBody { rx })
}

async fn pump(
    shared: &Arc<Shared>,
    p: &WatchParams,
    id: u64,
    mut events: mpsc::UnboundedReceiver<WatchMsg>,
    tx: &mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + p.timeout;
    let period = shared.config.bookmark_interval.max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let out = tokio::select! {
            msg = events.recv() => match msg {
                Some(WatchMsg::Event(ev)) => match p.translate(ev.kind, &ev.object, ev.prev.as_ref()) {
                    Some(kind) => p.render(kind, &ev.object),
                    None => continue,
                },
                Some(WatchMsg::Bookmark(rv)) => p.bookmark(rv, false),
                Some(WatchMsg::Close) | None => return,
            },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = ticks.tick(), if p.bookmarks => {
                // Through the store, so the bookmark queues behind events
                // already delivered to this watch.
                lock(&shared.store).send_bookmark(id);
                continue;
            }
            _ = tx.closed() => return,
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}
