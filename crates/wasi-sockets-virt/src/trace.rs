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
//! 2. else, when the store has exactly one accepted connection open, that
//!    connection's span (a service calling another service while serving a
//!    request) — with several, it would be a guess, so we don't;
//! 3. else the span the embedder runs the store in (e.g. the HTTP request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::Span;

/// Per-store trace state, shared by the store's sockets.
#[derive(Default)]
pub(crate) struct StoreTrace {
    /// Open accepted connections: id, peer address, span.
    accepted: Mutex<Vec<(u64, SocketAddr, Span)>>,
    explicit: Mutex<Option<Span>>,
    next_id: AtomicU64,
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
        self.single_accepted().unwrap_or_else(Span::current)
    }

    /// The span of the store's only open accepted connection, if exactly one.
    pub(crate) fn single_accepted(&self) -> Option<Span> {
        match lock(&self.accepted).as_slice() {
            [(_, _, span)] => Some(span.clone()),
            _ => None,
        }
    }

    /// The span of the open accepted connection from `peer`.
    pub(crate) fn accepted_from(&self, peer: SocketAddr) -> Option<Span> {
        lock(&self.accepted)
            .iter()
            .find(|(_, p, _)| *p == peer)
            .map(|(_, _, span)| span.clone())
    }

    pub(crate) fn set_explicit(&self, span: Option<Span>) {
        *lock(&self.explicit) = span;
    }

    /// Registers an accepted connection's span until the guard drops.
    pub(crate) fn register(self: &Arc<Self>, peer: SocketAddr, span: Span) -> AcceptedGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.accepted).push((id, peer, span));
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

impl Drop for AcceptedGuard {
    fn drop(&mut self) {
        lock(&self.trace.accepted).retain(|(id, _, _)| *id != self.id);
    }
}
