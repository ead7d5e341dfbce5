//! The work queue: keys (Greeting names) from the watches, at most one
//! reconcile per key at a time, a few keys at once, failures retried with
//! per-key backoff, everything again at each resync.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::backoff::{Backoff, MAX_BACKOFF};
use crate::reconcile::{self, Ctx, Failure, FailureKind};

const MAX_CONCURRENT: usize = 4;
const RESYNC: Duration = Duration::from_secs(300);
/// Bounds a reconcile whose API calls hang on a half-dead connection.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of the last reconcile of each Greeting, for `/greetings`.
#[derive(Clone, Debug)]
pub struct Report {
    /// "ok" or the error.
    pub result: String,
    /// RFC 3339.
    pub at: String,
    pub copies: Option<i64>,
}

#[derive(Clone, Default)]
pub struct Reports(Arc<Mutex<HashMap<String, Report>>>);

impl Reports {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Report>> {
        // Whole values are inserted: a panicking holder cannot tear one.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, name: &str) -> Option<Report> {
        self.lock().get(name).cloned()
    }

    fn set(&self, name: &str, report: Option<Report>) {
        match report {
            Some(report) => self.lock().insert(name.to_string(), report),
            None => self.lock().remove(name),
        };
    }
}

pub async fn run(ctx: Arc<Ctx>, namespace: String, reports: Reports, mut keys: UnboundedReceiver<String>) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut running: HashMap<Id, String> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    // Keys whose object changed while they were being reconciled.
    let mut again: HashSet<String> = HashSet::new();
    let mut failures: HashMap<String, Backoff> = HashMap::new();
    let mut tasks: JoinSet<Result<reconcile::Done, Failure>> = JoinSet::new();
    let mut resync = tokio::time::interval_at(Instant::now() + RESYNC, RESYNC);

    loop {
        let now = Instant::now();
        // Until the first list of Greetings, a missing Greeting proves
        // nothing: hold the queue (the watches are filling it).
        if !ctx.greeting_store.synced() {
            tokio::select! {
                key = keys.recv() => match key {
                    Some(key) => { due.insert(key, now); }
                    None => return,
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let mut ready: Vec<String> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        ready.sort();
        for key in ready {
            if running.len() >= MAX_CONCURRENT {
                break;
            }
            due.remove(&key);
            busy.insert(key.clone());
            let handle = tasks.spawn(reconcile_one(ctx.clone(), format!("{namespace}/{key}"), key.clone()));
            running.insert(handle.id(), key);
        }
        let next = if running.len() < MAX_CONCURRENT {
            due.values().min().copied()
        } else {
            None
        };

        tokio::select! {
            key = keys.recv() => {
                // The watches never stop; a closed channel means shutdown.
                let Some(key) = key else { return };
                if busy.contains(&key) {
                    again.insert(key);
                } else {
                    due.insert(key, Instant::now());
                }
            }
            Some(joined) = tasks.join_next_with_id() => {
                let (id, result) = match joined {
                    Ok((id, result)) => (id, result),
                    Err(e) => {
                        tracing::error!(error = %e, "a reconcile panicked");
                        (e.id(), Err(Failure {
                            message: format!("panicked: {e}"),
                            kind: FailureKind::Transient,
                            retry_after: None,
                            copies: None,
                        }))
                    }
                };
                let Some(key) = running.remove(&id) else { continue };
                busy.remove(&key);
                let at = now_rfc3339();
                let rerun = again.remove(&key);
                match result {
                    Ok(done) => {
                        failures.remove(&key);
                        let report = done.copies.map(|copies| Report { result: "ok".into(), at, copies: Some(copies) });
                        reports.set(&key, report);
                        if rerun {
                            due.insert(key, Instant::now());
                        }
                    }
                    Err(failure) => {
                        let backoff = failures
                            .entry(key.clone())
                            .or_insert_with(|| Backoff::new(Duration::from_millis(500), MAX_BACKOFF));
                        let mut delay = backoff.next_delay();
                        if let Some(server) = failure.retry_after {
                            delay = delay.max(server);
                        }
                        reports.set(&key, Some(Report { result: failure.message, at, copies: failure.copies }));
                        // An event during the reconcile does not skip the
                        // backoff: it was most likely our own write.
                        let at = Instant::now() + delay;
                        let slot = due.entry(key).or_insert(at);
                        *slot = (*slot).min(at);
                    }
                }
            }
            () = sleep_until(next) => {}
            _ = resync.tick() => {
                for greeting in ctx.greeting_store.list() {
                    let Some(name) = greeting.metadata.name.clone() else { continue };
                    if busy.contains(&name) {
                        again.insert(name);
                    } else {
                        due.entry(name).or_insert_with(Instant::now);
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond).unwrap_or(now).to_string()
}

async fn reconcile_one(ctx: Arc<Ctx>, object: String, key: String) -> Result<reconcile::Done, Failure> {
    let span = tracing::info_span!("reconcile", object = %object, result = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty, "otel.status_message" = tracing::field::Empty);
    async move {
        let started = Instant::now();
        let result = match tokio::time::timeout(RECONCILE_TIMEOUT, reconcile::reconcile(&ctx, &key)).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                message: format!("timed out after {} s", RECONCILE_TIMEOUT.as_secs()),
                kind: FailureKind::Transient,
                retry_after: None,
                copies: None,
            }),
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(_) => "error",
        };
        let span = tracing::Span::current();
        span.record("result", outcome);
        if let Err(failure) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", failure.message.as_str());
        }
        match &result {
            // The span carries object and result.
            Ok(done) => tracing::info!(
                duration_ms = format_args!("{duration_ms:.1}"),
                copies = done.copies,
                "reconciled"
            ),
            Err(failure) => tracing::warn!(
                duration_ms = format_args!("{duration_ms:.1}"),
                error = %failure.message,
                "reconcile failed"
            ),
        }
        result
    }
    .instrument(span)
    .await
}
