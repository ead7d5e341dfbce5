//! Trace context across virtual connections, with `tracing` spans only (the
//! embedder decides whether they become OpenTelemetry spans).
//!
//! A connect opens a "virtual connect" span under the store's current
//! context; the connection carries it, and the accepting side opens its
//! "virtual connection" span as a child. So the work a service does for a
//! connection hangs under the component that connected, with nothing
//! injected into the bytes.
//!
//! Which span is "current" for a store's connects:
//! 1. one the guest set explicitly (see [`SocketsCtx::set_connect_parent`](crate::SocketsCtx::set_connect_parent));
//! 2. else the accepted connection the store is serving: the only one open,
//!    or, with several open, the one the guest last read bytes from. A
//!    service that reads a request and then works on it (calls another
//!    service, logs, opens spans) is attributed exactly, however many
//!    clients are connected. A guest that reads from one connection and then
//!    works for another (an async server interleaving requests) must name the
//!    connection itself (rule 1); the host sees only reads, not intent;
//! 3. else the span the embedder runs the store in (e.g. the HTTP request).
//!
//! wasmtime 50's `TaskGroupHook` does not replace rule 2: it tells which
//! host→guest call a guest→host call belongs to, and a `wasi:cli/run`
//! service is one call for its whole life (see UPGRADE.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::Span;

/// Per-store trace state, shared by the store's sockets.
#[derive(Default)]
pub(crate) struct StoreTrace {
    /// Open accepted connections by id: peer address, span. A map, so
    /// closing one of 100 000 costs no scan.
    accepted: Mutex<HashMap<u64, (SocketAddr, Span)>>,
    explicit: Mutex<Option<Span>>,
    next_id: AtomicU64,
    /// Id of the accepted connection the guest last read bytes from (ids
    /// start at 1; 0 is none). An atomic so the read path takes no lock.
    last_read: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StoreTrace {
    /// The parent for a new outgoing connection of this store.
    pub(crate) fn connect_parent(&self) -> Span {
        if let Some(span) = lock(&self.explicit).clone() {
            return span;
        }
        self.serving().unwrap_or_else(Span::current)
    }

    /// The span of the accepted connection the store is serving: the only
    /// open one, else the open one the guest last read from.
    pub(crate) fn serving(&self) -> Option<Span> {
        let accepted = lock(&self.accepted);
        if accepted.len() == 1 {
            return accepted.values().next().map(|(_, span)| span.clone());
        }
        let last = self.last_read.load(Ordering::Relaxed);
        accepted.get(&last).map(|(_, span)| span.clone())
    }

    /// The span of the open accepted connection from `peer`.
    pub(crate) fn accepted_from(&self, peer: SocketAddr) -> Option<Span> {
        lock(&self.accepted)
            .values()
            .find(|(p, _)| *p == peer)
            .map(|(_, span)| span.clone())
    }

    pub(crate) fn set_explicit(&self, span: Option<Span>) {
        *lock(&self.explicit) = span;
    }

    /// Registers an accepted connection's span until the guard drops.
    pub(crate) fn register(self: &Arc<Self>, peer: SocketAddr, span: Span) -> AcceptedGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.accepted).insert(id, (peer, span));
        AcceptedGuard {
            trace: self.clone(),
            id,
        }
    }
}

/// Keeps an accepted connection registered with its store.
pub(crate) struct AcceptedGuard {
    trace: Arc<StoreTrace>,
    id: u64,
}

impl AcceptedGuard {
    /// The connection's span.
    pub(crate) fn span(&self) -> Span {
        lock(&self.trace.accepted)
            .get(&self.id)
            .map_or_else(Span::none, |(_, span)| span.clone())
    }

    /// What the connection's input stream uses to say "the guest read me".
    pub(crate) fn read_mark(&self) -> ReadMark {
        ReadMark {
            trace: self.trace.clone(),
            id: self.id,
        }
    }
}

/// Held by an accepted connection's input stream.
pub(crate) struct ReadMark {
    trace: Arc<StoreTrace>,
    id: u64,
}

impl ReadMark {
    pub(crate) fn mark(&self) {
        self.trace.last_read.store(self.id, Ordering::Relaxed);
    }
}

impl Drop for AcceptedGuard {
    fn drop(&mut self) {
        lock(&self.trace.accepted).remove(&self.id);
    }
}
