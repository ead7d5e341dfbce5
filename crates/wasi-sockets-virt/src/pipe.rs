//! One direction of a virtual TCP connection: a bounded in-memory byte queue.
//!
//! The writer may queue at most `capacity` bytes; past that `check_write`
//! reports 0 and the writer's pollable waits until the reader drains. That
//! bound is the whole backpressure story: a peer that never reads stops the
//! writer, and host memory per connection stays at most two capacities.
//!
//! Written chunks are kept as `Bytes` (no copy on write; reads split them).

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Why a pipe operation cannot proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PipeClosed {
    /// The writer shut down cleanly and everything was read (EOF).
    Eof,
    /// The other side went away abruptly, or this side was shut down.
    Reset,
}

pub(crate) struct Pipe {
    state: Mutex<State>,
    /// Woken when data, EOF or reset arrives (the reader waits on it).
    readable: Notify,
    /// Woken when space frees up or the reader goes away (the writer waits on it).
    writable: Notify,
    /// Bytes queued across all pipes of one network, for observability.
    network_buffered: Arc<AtomicUsize>,
}

struct State {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    capacity: usize,
    /// The writer sent FIN: reads drain what is queued, then see EOF.
    write_closed: bool,
    /// The reader no longer accepts data (shutdown(receive) or closed socket).
    read_closed: bool,
    /// The connection was reset: both sides fail.
    reset: bool,
    /// Bytes accepted from the writer, for statistics.
    written: u64,
}

impl Pipe {
    pub(crate) fn new(capacity: usize, network_buffered: Arc<AtomicUsize>) -> Arc<Pipe> {
        Arc::new(Pipe {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                buffered: 0,
                capacity: capacity.max(1),
                write_closed: false,
                read_closed: false,
                reset: false,
                written: 0,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
            network_buffered,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the state itself
        // is always consistent between statements, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- reader side ----

    /// Takes up to `max` bytes. `Ok(empty)` means nothing is queued yet.
    pub(crate) fn read(&self, max: usize) -> Result<Bytes, PipeClosed> {
        let mut st = self.lock();
        if st.reset {
            return Err(PipeClosed::Reset);
        }
        if st.read_closed {
            return Err(PipeClosed::Eof);
        }
        if st.buffered == 0 {
            return if st.write_closed {
                Err(PipeClosed::Eof)
            } else {
                Ok(Bytes::new())
            };
        }
        if max == 0 {
            return Ok(Bytes::new());
        }
        let out = take_front(&mut st, max);
        let n = out.len();
        st.buffered -= n;
        drop(st);
        self.network_buffered.fetch_sub(n, Ordering::Relaxed);
        self.writable.notify_waiters();
        Ok(out)
    }

    /// True when `read` would return data or an error.
    fn read_ready(&self) -> bool {
        let st = self.lock();
        st.buffered > 0 || st.write_closed || st.read_closed || st.reset
    }

    pub(crate) async fn wait_readable(&self) {
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.read_ready() {
                return;
            }
            notified.await;
        }
    }

    /// This side stops reading: queued and future data is discarded, further
    /// reads see EOF. The writer is not told (like `shutdown(SHUT_RD)`).
    pub(crate) fn close_read(&self) {
        let mut st = self.lock();
        st.read_closed = true;
        let dropped = std::mem::take(&mut st.buffered);
        st.chunks.clear();
        drop(st);
        self.network_buffered.fetch_sub(dropped, Ordering::Relaxed);
        self.writable.notify_waiters();
        self.readable.notify_waiters();
    }

    // ---- writer side ----

    /// How many bytes may be written now.
    pub(crate) fn check_write(&self) -> Result<usize, PipeClosed> {
        let st = self.lock();
        if st.reset {
            return Err(PipeClosed::Reset);
        }
        if st.write_closed {
            return Err(PipeClosed::Eof);
        }
        if st.read_closed {
            // The reader discards everything; never block the writer.
            return Ok(st.capacity);
        }
        Ok(st.capacity - st.buffered.min(st.capacity))
    }

    /// Queues `bytes`. The caller has checked `check_write`; a writer that
    /// ignores it is still held to the capacity (the excess is refused).
    pub(crate) fn write(&self, bytes: Bytes) -> Result<(), PipeClosed> {
        let n = bytes.len();
        let mut st = self.lock();
        if st.reset {
            return Err(PipeClosed::Reset);
        }
        if st.write_closed {
            return Err(PipeClosed::Eof);
        }
        if st.read_closed || n == 0 {
            return Ok(());
        }
        if st.buffered + n > st.capacity {
            return Err(PipeClosed::Reset);
        }
        st.buffered += n;
        st.written += n as u64;
        st.chunks.push_back(bytes);
        // Counted while the lock is held, so a reader's decrement cannot come first.
        self.network_buffered.fetch_add(n, Ordering::Relaxed);
        drop(st);
        self.readable.notify_waiters();
        Ok(())
    }

    fn write_ready(&self) -> bool {
        let st = self.lock();
        st.buffered < st.capacity || st.reset || st.write_closed || st.read_closed
    }

    pub(crate) async fn wait_writable(&self) {
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.write_ready() {
                return;
            }
            notified.await;
        }
    }

    /// Sends FIN: the reader gets EOF after draining. Idempotent.
    pub(crate) fn close_write(&self) {
        self.lock().write_closed = true;
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }

    /// Aborts the pipe: both ends fail with `connection-reset`, unless the
    /// writer had already finished cleanly and the reader drained it.
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        if st.write_closed && st.buffered == 0 {
            return;
        }
        st.reset = true;
        let dropped = std::mem::take(&mut st.buffered);
        st.chunks.clear();
        drop(st);
        self.network_buffered.fetch_sub(dropped, Ordering::Relaxed);
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }
}

impl Pipe {
    /// Bytes the writer has put into this pipe so far.
    pub(crate) fn written(&self) -> u64 {
        self.lock().written
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.network_buffered.fetch_sub(st.buffered, Ordering::Relaxed);
    }
}

fn take_front(st: &mut State, max: usize) -> Bytes {
    let Some(front) = st.chunks.front_mut() else {
        return Bytes::new();
    };
    if front.len() > max {
        return front.split_to(max);
    }
    let first = st.chunks.pop_front().unwrap_or_default();
    if first.len() == max || st.chunks.is_empty() {
        return first;
    }
    // Coalesce small chunks so a large read is not limited by write sizes.
    let mut out = BytesMut::with_capacity(max.min(st.buffered));
    out.extend_from_slice(&first);
    while out.len() < max {
        let Some(next) = st.chunks.front_mut() else { break };
        let want = max - out.len();
        if next.len() > want {
            out.extend_from_slice(&next.split_to(want));
        } else {
            out.extend_from_slice(next);
            st.chunks.pop_front();
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(cap: usize) -> Arc<Pipe> {
        Pipe::new(cap, Arc::new(AtomicUsize::new(0)))
    }

    #[test]
    fn bounded_queue_with_eof() {
        let p = pipe(8);
        assert_eq!(p.check_write(), Ok(8));
        p.write(Bytes::from_static(b"hello")).expect("write");
        assert_eq!(p.check_write(), Ok(3));
        assert!(p.write(Bytes::from_static(b"toolong")).is_err());
        p.write(Bytes::from_static(b"!!!")).expect("write");
        assert_eq!(p.check_write(), Ok(0));
        assert_eq!(p.read(3).expect("read"), Bytes::from_static(b"hel"));
        assert_eq!(p.read(100).expect("read"), Bytes::from_static(b"lo!!!"));
        assert_eq!(p.read(100).expect("read"), Bytes::new());
        p.close_write();
        assert_eq!(p.read(100), Err(PipeClosed::Eof));
    }

    #[test]
    fn reset_fails_both_sides_but_not_after_clean_eof() {
        let p = pipe(8);
        p.write(Bytes::from_static(b"x")).expect("write");
        p.reset();
        assert_eq!(p.read(1), Err(PipeClosed::Reset));
        assert_eq!(p.check_write(), Err(PipeClosed::Reset));

        let q = pipe(8);
        q.close_write();
        q.reset();
        assert_eq!(q.read(1), Err(PipeClosed::Eof));
    }

    #[tokio::test]
    async fn writer_waits_for_reader() {
        let p = pipe(4);
        p.write(Bytes::from_static(b"full")).expect("write");
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.wait_writable().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        p.read(4).expect("read");
        waiter.await.expect("join");
    }
}
