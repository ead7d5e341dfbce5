//! The "etcd" of the emulator: objects, the global resourceVersion counter,
//! the event log watches replay from, and the open watches themselves.
//!
//! Everything is behind one mutex held by the caller for a whole request, so
//! a write, its event and its delivery to watchers are atomic; a watch that
//! registers under the same lock sees every event exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::registry::Registry;

/// (group, plural).
pub type GroupResource = (String, String);
/// (namespace, or "" for cluster-scoped; name). Ordered like etcd keys.
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub gr: GroupResource,
    pub key: ObjKey,
    pub kind: EventType,
    /// The object after the change (for DELETED: its last state, carrying
    /// the deletion's resourceVersion, as the real server sends it).
    pub object: Value,
    /// The object before the change; lets watches with selectors turn a
    /// MODIFIED into ADDED/DELETED and lets lists rebuild old snapshots.
    pub prev: Option<Value>,
}

pub enum WatchMsg {
    Event(Arc<Event>),
    /// Everything up to this resourceVersion has been delivered.
    Bookmark(u64),
    /// The fault knob closed the watch.
    Close,
}

struct Watcher {
    id: u64,
    gr: GroupResource,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

pub struct Store {
    pub registry: Registry,
    rv: u64,
    objects: BTreeMap<GroupResource, BTreeMap<ObjKey, Value>>,
    log: VecDeque<Arc<Event>>,
    log_capacity: usize,
    /// Events with rv <= this are gone: watching or paging from an older
    /// resourceVersion answers 410 Expired.
    compacted_rv: u64,
    watchers: Vec<Watcher>,
    next_watcher: u64,
    /// Server-side apply: the configuration each field manager applied last,
    /// per object, so a field it stops applying can be removed.
    applied: BTreeMap<(GroupResource, ObjKey, String), Value>,
}

pub fn rv_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

impl Store {
    pub fn new(log_capacity: usize) -> Self {
        Store {
            registry: Registry::with_builtins(),
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_capacity: log_capacity.max(1),
            compacted_rv: 1,
            watchers: Vec::new(),
            next_watcher: 0,
            applied: BTreeMap::new(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    pub fn get(&self, gr: &GroupResource, key: &ObjKey) -> Option<&Value> {
        self.objects.get(gr)?.get(key)
    }

    /// Objects of a resource in key order, in one namespace or all.
    pub fn list<'a>(
        &'a self,
        gr: &GroupResource,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Value)> {
        self.objects
            .get(gr)
            .into_iter()
            .flatten()
            .filter(move |(k, _)| ns.is_none_or(|n| k.0 == n))
    }

    /// The resource's objects as they were at `rv`, rebuilt by undoing the
    /// logged events after it. `None` when the log no longer reaches back.
    pub fn snapshot(&self, gr: &GroupResource, rv: u64) -> Option<BTreeMap<ObjKey, Value>> {
        if rv < self.compacted_rv {
            return None;
        }
        let mut objs = self.objects.get(gr).cloned().unwrap_or_default();
        for ev in self.log.iter().rev().take_while(|e| e.rv > rv).filter(|e| e.gr == *gr) {
            match &ev.prev {
                Some(prev) => objs.insert(ev.key.clone(), prev.clone()),
                None => objs.remove(&ev.key),
            };
        }
        Some(objs)
    }

    /// Writes (or removes, with `object: None`) an object: bumps the global
    /// resourceVersion, stamps it on the object, logs the event and hands it
    /// to the watches of that resource.
    pub fn commit(&mut self, gr: &GroupResource, key: ObjKey, kind: EventType, object: Value) -> Value {
        self.rv += 1;
        let mut object = object;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        }
        let objs = self.objects.entry(gr.clone()).or_default();
        let prev = match kind {
            EventType::Deleted => {
                self.applied.retain(|(g, k, _), _| g != gr || *k != key);
                objs.remove(&key)
            }
            _ => objs.insert(key.clone(), object.clone()),
        };
        let ev = Arc::new(Event {
            rv: self.rv,
            gr: gr.clone(),
            key,
            kind,
            object: object.clone(),
            prev,
        });
        self.log.push_back(ev.clone());
        while self.log.len() > self.log_capacity {
            if let Some(old) = self.log.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        self.watchers.retain(|w| {
            if w.gr != ev.gr || w.namespace.as_ref().is_some_and(|n| *n != ev.key.0) {
                return true;
            }
            w.tx.send(WatchMsg::Event(ev.clone())).is_ok()
        });
        object
    }

    /// Logged events of a resource after `rv`, or `Err(oldest)` when `rv`
    /// predates the compacted part of the log.
    pub fn events_since(&self, gr: &GroupResource, ns: Option<&str>, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        if rv < self.compacted_rv {
            return Err(self.compacted_rv);
        }
        Ok(self
            .log
            .iter()
            .filter(|e| e.rv > rv && e.gr == *gr && ns.is_none_or(|n| e.key.0 == n))
            .cloned()
            .collect())
    }

    pub fn last_applied(&self, gr: &GroupResource, key: &ObjKey, manager: &str) -> Option<&Value> {
        self.applied.get(&(gr.clone(), key.clone(), manager.to_string()))
    }

    pub fn set_last_applied(&mut self, gr: &GroupResource, key: &ObjKey, manager: &str, config: Value) {
        self.applied
            .insert((gr.clone(), key.clone(), manager.to_string()), config);
    }

    pub fn compact(&mut self) -> u64 {
        self.log.clear();
        self.compacted_rv = self.rv;
        self.rv
    }

    pub fn add_watcher(
        &mut self,
        gr: GroupResource,
        namespace: Option<String>,
    ) -> (u64, mpsc::UnboundedReceiver<WatchMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.next_watcher += 1;
        let id = self.next_watcher;
        self.watchers.push(Watcher { id, gr, namespace, tx });
        (id, rx)
    }

    pub fn remove_watcher(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    /// Queued behind any event already sent to this watch, so a bookmark
    /// never overtakes an event with a lower resourceVersion.
    pub fn send_bookmark(&self, id: u64) {
        if let Some(w) = self.watchers.iter().find(|w| w.id == id) {
            let _ = w.tx.send(WatchMsg::Bookmark(self.rv));
        }
    }

    pub fn drop_watchers(&mut self) -> usize {
        let n = self.watchers.len();
        for w in self.watchers.drain(..) {
            let _ = w.tx.send(WatchMsg::Close);
        }
        n
    }

    pub fn watcher_count(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }
}
