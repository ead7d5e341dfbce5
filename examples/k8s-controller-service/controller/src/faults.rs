//! Fault injection for the test suite: with `GREETER_FAULT_TRAP_AFTER_WRITES=N`
//! the process aborts (a trap, under wasm) right after its N-th successful
//! write to the API server, in every incarnation. That is "killed in the
//! middle of a reconcile", at a point the test does not have to guess:
//! the supervisor restarts it, and the next incarnation must converge
//! without duplicating anything the previous one created. Unset: nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const TRAP_AFTER_WRITES_ENV: &str = "GREETER_FAULT_TRAP_AFTER_WRITES";

static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Counts one successful write; aborts when the configured limit is reached.
pub fn wrote() {
    let limit = *LIMIT.get_or_init(|| std::env::var(TRAP_AFTER_WRITES_ENV).ok().and_then(|v| v.parse().ok()));
    let Some(limit) = limit else { return };
    if WRITES.fetch_add(1, Ordering::Relaxed) + 1 >= limit {
        eprintln!("greeter-controller: {TRAP_AFTER_WRITES_ENV}={limit} reached: aborting (fault injection)");
        std::process::abort();
    }
}
