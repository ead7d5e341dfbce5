//! Exponential backoff with jitter, and what an error from the API server
//! means for retrying.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Doubles from `initial` up to `max`; each delay is drawn from the upper
/// half of the current step so that many clients failing together spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(random_unit())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in [0, 1). std's `RandomState` is seeded from the OS (on WASI,
/// wasi:random), which is all the randomness jitter needs.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The HTTP status code of an API error, if the server answered at all.
pub fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// How long the server asked us to wait (`details.retryAfterSeconds`).
/// The `Retry-After` header is honoured by the transport for every request.
pub fn server_retry_after(error: &kube::Error) -> Option<Duration> {
    match error {
        kube::Error::Api(status) => status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)).min(Duration::from_secs(300))),
        _ => None,
    }
}

/// Logs an error from the API server once, with a clear line for the
/// cases an operator must act on.
pub fn log_api_error(what: &str, error: &kube::Error) {
    match error {
        kube::Error::Api(status) if status.code == 401 => tracing::error!(
            "the API server rejected the service-account token (401): {}; re-reading the token file and backing off ({what})",
            status.message
        ),
        kube::Error::Api(status) if status.code == 403 => tracing::error!(
            "the API server refused access (403): {}; the service account needs get/list/watch/patch on greetings, patch on greetings/status and get/list/watch/create/update/delete on configmaps (deploy/rbac.yaml) ({what})",
            status.message
        ),
        kube::Error::Api(status)
            if status.code == 404 && (what.starts_with("listing") || what.starts_with("watching")) =>
        {
            tracing::error!(
                "{what}: the API server does not serve this resource (404): {}; for Greetings, apply crd.yaml first",
                status.message
            )
        }
        _ => tracing::warn!(error = %short(error), "{what} failed"),
    }
}

/// An error in one line, without kube's Debug dump of the Status.
pub fn short(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "Failure"
            } else {
                &status.reason
            };
            format!("{} {reason}: {}", status.code, status.message)
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_jittered_and_capped() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let second = backoff.next_delay();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        for _ in 0..100 {
            let delay = backoff.next_delay();
            assert!(delay >= Duration::from_secs(15) || backoff.attempt < 10);
            assert!(delay <= Duration::from_secs(30));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_varies() {
        let draws: std::collections::HashSet<u64> = (0..20).map(|_| random_unit().to_bits()).collect();
        assert!(draws.len() > 1);
    }
}
