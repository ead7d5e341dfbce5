//! One direction of a virtual TCP connection: a bounded in-memory byte queue.
//!
//! The writer may queue at most `capacity` bytes; past that `check_write`
//! reports 0 and the writer's pollable waits until the reader drains. That
//! bound is the whole backpressure story: a peer that never reads stops the
//! writer, and host memory per connection stays at most two capacities.
//!
//! Large writes are kept as the `Bytes` they came in (no copy); small ones
//! are copied into one growing tail buffer, so a guest writing a byte at a
//! time costs a byte a byte, not an allocation each. Every pipe of a network
//! also draws on the network's [`BufferBudget`]: when a workload's
//! connections hold the network's whole budget, its writers wait too.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use tokio::sync::Notify;

/// Writes smaller than this are copied into the tail buffer.
const COALESCE_BELOW: usize = 4096;
/// The tail becomes a chunk of its own once it holds this much.
const TAIL_LIMIT: usize = 16 * 1024;

/// Bytes buffered by all the pipes of one network, and the cap on them.
pub(crate) struct BufferBudget {
    used: AtomicUsize,
    limit: usize,
    /// Woken when bytes are released while the budget was exhausted.
    freed: Notify,
}

impl BufferBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(BufferBudget {
            used: AtomicUsize::new(0),
            limit: limit.max(1),
            freed: Notify::new(),
        })
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn space(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    pub(crate) fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, Ordering::Relaxed);
        if before >= self.limit {
            self.freed.notify_waiters();
        }
    }
}

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
    /// The network-wide cap every pipe of the network draws on.
    budget: Arc<BufferBudget>,
}

struct State {
    chunks: VecDeque<Bytes>,
    /// Small writes, after `chunks` in stream order.
    tail: BytesMut,
    /// Payload bytes queued (`chunks` and `tail`).
    buffered: usize,
    /// At most 4 GiB per direction (u32: this struct is per idle pipe).
    capacity: u32,
    /// The writer sent FIN: reads drain what is queued, then see EOF.
    write_closed: bool,
    /// The reader no longer accepts data (shutdown(receive) or closed socket).
    read_closed: bool,
    /// The connection was reset: both sides fail.
    reset: bool,
    /// Bytes accepted from the writer, for statistics.
    written: u64,
    /// Woken when data, EOF or reset arrives (the reader's tasks). Kept
    /// under the state's lock, which every change takes anyway: a write
    /// wakes the reader without a second lock (a `Notify` has its own).
    readers: Wakers,
    /// Woken when space frees up or the reader goes away (the writer's).
    writers: Wakers,
}

/// Tasks waiting on one side of a pipe. Usually one (the store's task;
/// a task registers once however often it polls), so no allocation after
/// the first wait.
#[derive(Default)]
struct Wakers(Vec<Waker>);

impl Wakers {
    fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    /// Wakes everyone. Under the pipe's lock: waking only schedules the
    /// task, and the buffer is kept for the next wait.
    fn wake_all(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

impl Pipe {
    pub(crate) fn new(capacity: usize, budget: Arc<BufferBudget>) -> Pipe {
        Pipe {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                tail: BytesMut::new(),
                buffered: 0,
                capacity: u32::try_from(capacity).unwrap_or(u32::MAX).max(1),
                write_closed: false,
                read_closed: false,
                reset: false,
                written: 0,
                readers: Wakers::default(),
                writers: Wakers::default(),
            }),
            budget,
        }
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
        // The tail comes after every chunk: queue it so one read can take
        // chunks and tail together.
        if !st.tail.is_empty() {
            let tail = st.tail.split().freeze();
            st.chunks.push_back(tail);
        }
        let out = take_front(&mut st, max);
        let n = out.len();
        st.buffered -= n;
        st.writers.wake_all();
        drop(st);
        self.budget.release(n);
        Ok(out)
    }

    pub(crate) async fn wait_readable(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.lock();
            if st.buffered > 0 || st.write_closed || st.read_closed || st.reset {
                return Poll::Ready(());
            }
            st.readers.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// This side stops reading: queued and future data is discarded, further
    /// reads see EOF. The writer is not told (like `shutdown(SHUT_RD)`).
    pub(crate) fn close_read(&self) {
        let mut st = self.lock();
        st.read_closed = true;
        let dropped = st.discard();
        st.wake_both();
        drop(st);
        self.budget.release(dropped);
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
            return Ok(st.capacity as usize);
        }
        let capacity = st.capacity as usize;
        Ok((capacity - st.buffered.min(capacity)).min(self.budget.space()))
    }

    /// Queues `bytes`. The caller has checked `check_write`; a writer that
    /// ignores it is still held to the capacity (the excess is refused). The
    /// network budget is not re-checked here: another pipe may have drawn on
    /// it since this writer's `check_write`, and a permit once given holds.
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
        if st.buffered + n > st.capacity as usize {
            return Err(PipeClosed::Reset);
        }
        st.buffered += n;
        st.written += n as u64;
        if st.buffered == n {
            // Nothing queued: keep the writer's buffer as it is (no copy, no
            // allocation). Request/response traffic always takes this path.
            st.chunks.push_back(bytes);
        } else if n < COALESCE_BELOW {
            if st.tail.len() + n > TAIL_LIMIT {
                let full = st.tail.split().freeze();
                st.chunks.push_back(full);
            }
            st.tail.extend_from_slice(&bytes);
        } else {
            if !st.tail.is_empty() {
                let tail = st.tail.split().freeze();
                st.chunks.push_back(tail);
            }
            st.chunks.push_back(bytes);
        }
        // Counted while the lock is held, so a reader's release cannot come first.
        self.budget.take(n);
        st.readers.wake_all();
        Ok(())
    }

    pub(crate) async fn wait_writable(&self) {
        loop {
            // The network's budget has its own waiters: a pipe with room
            // may still wait for other pipes to drain.
            let network = self.budget.freed.notified();
            tokio::pin!(network);
            network.as_mut().enable();
            let own_ready = std::future::poll_fn(|cx| {
                let mut st = self.lock();
                let capacity = st.capacity as usize;
                if st.reset || st.write_closed || st.read_closed || (st.buffered < capacity && self.budget.space() > 0)
                {
                    return Poll::Ready(true);
                }
                st.writers.register(cx.waker());
                drop(st);
                network.as_mut().poll(cx).map(|()| false)
            })
            .await;
            if own_ready {
                return;
            }
        }
    }

    /// Sends FIN: the reader gets EOF after draining. Idempotent.
    pub(crate) fn close_write(&self) {
        let mut st = self.lock();
        st.write_closed = true;
        st.wake_both();
    }

    /// Aborts the pipe: both ends fail with `connection-reset`, unless the
    /// writer had already finished cleanly and the reader drained it.
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        if st.write_closed && st.buffered == 0 {
            return;
        }
        st.reset = true;
        let dropped = st.discard();
        st.wake_both();
        drop(st);
        self.budget.release(dropped);
    }
}

impl Pipe {
    /// Bytes the writer has put into this pipe so far.
    pub(crate) fn written(&self) -> u64 {
        self.lock().written
    }

    /// Separate allocations holding queued data (for tests of the memory
    /// cost of small writes).
    #[cfg(test)]
    fn allocations(&self) -> usize {
        let st = self.lock();
        st.chunks.len() + usize::from(!st.tail.is_empty())
    }
}

impl State {
    fn wake_both(&mut self) {
        self.readers.wake_all();
        self.writers.wake_all();
    }

    /// Drops everything queued; returns how many bytes that was.
    fn discard(&mut self) -> usize {
        self.chunks.clear();
        self.tail = BytesMut::new();
        std::mem::take(&mut self.buffered)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget.release(st.buffered);
    }
}

/// The next read's bytes, copying as little as possible: wasmtime turns the
/// `Bytes` a read returns into the guest's list, and that is free only for a
/// whole chunk as the writer produced it. So a read returns the front chunk
/// as it is, even when more would fit (a short read is normal for a
/// stream); only small chunks are gathered into one, so a trickle of small
/// writes does not cost a host call each. A chunk larger than the read is
/// split, which the conversion pays for with a copy of that part.
fn take_front(st: &mut State, max: usize) -> Bytes {
    let Some(front) = st.chunks.front_mut() else {
        return Bytes::new();
    };
    if front.len() > max {
        return front.split_to(max);
    }
    let first = st.chunks.pop_front().unwrap_or_default();
    let small = |len: usize| len < COALESCE_BELOW;
    let gathers = |next: Option<&Bytes>, so_far: usize| next.is_some_and(|n| small(n.len()) && so_far + n.len() <= max);
    if !small(first.len()) || !gathers(st.chunks.front(), first.len()) {
        return first;
    }
    let mut out = BytesMut::with_capacity(COALESCE_BELOW.min(max));
    out.extend_from_slice(&first);
    while gathers(st.chunks.front(), out.len()) {
        if let Some(next) = st.chunks.pop_front() {
            out.extend_from_slice(&next);
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(cap: usize) -> Arc<Pipe> {
        Arc::new(Pipe::new(cap, BufferBudget::new(usize::MAX)))
    }

    #[test]
    fn byte_at_a_time_writes_cost_bytes_not_allocations() {
        let cap = 64 * 1024;
        let p = pipe(cap);
        let mut written = 0;
        while p.check_write().expect("open") > 0 {
            p.write(Bytes::from_static(b"x")).expect("write");
            written += 1;
        }
        assert_eq!(written, cap);
        // 65536 one-byte writes, held in a handful of buffers of up to 16 KiB
        // (the first write, into an empty pipe, is kept as it came).
        assert!(
            p.allocations() <= cap / TAIL_LIMIT + 2,
            "{} allocations",
            p.allocations()
        );
        let mut read = 0;
        while let Ok(chunk) = p.read(10_000) {
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.iter().all(|&b| b == b'x'));
            read += chunk.len();
        }
        assert_eq!(read, cap, "every byte comes back, in order");
    }

    #[test]
    fn small_and_large_writes_keep_their_order() {
        let p = pipe(1 << 20);
        let big = Bytes::from(vec![b'B'; 8192]);
        p.write(Bytes::from_static(b"ab")).expect("write");
        p.write(big.clone()).expect("write");
        p.write(Bytes::from_static(b"cd")).expect("write");
        let mut all = Vec::new();
        while let Ok(chunk) = p.read(3000) {
            if chunk.is_empty() {
                break;
            }
            all.extend_from_slice(&chunk);
        }
        let mut want = b"ab".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"cd");
        assert_eq!(all, want);
    }

    #[test]
    fn reads_hand_out_large_writes_as_they_came() {
        // The shape of a request with a small header and a large body, or
        // of a stream one byte out of step with its writes.
        let p = pipe(1 << 20);
        let body = Bytes::from(vec![b'B'; 64 * 1024]);
        let body_at = body.as_ptr();
        p.write(Bytes::from_static(b"h")).expect("write");
        p.write(Bytes::from_static(b"ead")).expect("write");
        p.write(body).expect("write");
        let head = p.read(1 << 20).expect("read");
        assert_eq!(head, Bytes::from_static(b"head"), "small writes are gathered");
        let next = p.read(1 << 20).expect("read");
        assert_eq!(next.len(), 64 * 1024);
        assert_eq!(next.as_ptr(), body_at, "the large write is not copied");
    }

    #[tokio::test]
    async fn the_network_budget_stops_every_writer_until_someone_reads() {
        let budget = BufferBudget::new(10);
        let (a, b) = (
            Arc::new(Pipe::new(100, budget.clone())),
            Arc::new(Pipe::new(100, budget.clone())),
        );
        a.write(Bytes::from_static(b"12345678")).expect("write");
        assert_eq!(b.check_write(), Ok(2), "b may use only what is left of the budget");
        b.write(Bytes::from_static(b"90")).expect("write");
        assert_eq!(a.check_write(), Ok(0));
        assert_eq!(b.check_write(), Ok(0));
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.wait_writable().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "b waits for the network, not for its own reader");
        a.read(4).expect("read");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("b woke up")
            .expect("join");
        assert_eq!(b.check_write(), Ok(4));
        assert_eq!(budget.used(), 6);
        drop((a, b));
        assert_eq!(budget.used(), 0, "dropped pipes give their bytes back");
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
