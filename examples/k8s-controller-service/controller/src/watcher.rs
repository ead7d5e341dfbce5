//! List+watch into a local store, written on `Api::list`/`Api::watch`
//! rather than kube-runtime (which does not build for wasm32-wasip2: it
//! wants `hostname` and `tokio::signal`).
//!
//! The loop: list (paginated) and replace the store, then watch from the
//! list's resourceVersion, advancing it with every event and BOOKMARK.
//! A watch that ends (server timeout, dropped connection, stall) resumes
//! from the last resourceVersion; `410 Gone`, as an HTTP status or as an
//! ERROR event, means that version is compacted away: list again. Other
//! failures back off (exponential, jittered, capped at 30 s).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::TryStreamExt;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::core::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::backoff::{self, Backoff, MAX_BACKOFF};

/// Below the API server's 295 s watch cap (kube refuses more).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// A watch silent for this long (no event, no bookmark, no end) is dead.
const WATCH_STALL: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 30);
const LIST_PAGE: u32 = 500;
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// Objects by name (the controller watches one namespace).
pub struct Store<K> {
    inner: Arc<Mutex<StoreInner<K>>>,
}

struct StoreInner<K> {
    objects: BTreeMap<String, Arc<K>>,
    synced: bool,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            inner: Arc::new(Mutex::new(StoreInner {
                objects: BTreeMap::new(),
                synced: false,
            })),
        }
    }
}

impl<K> Store<K> {
    fn lock(&self) -> MutexGuard<'_, StoreInner<K>> {
        // Every write leaves the map whole; a panicking holder cannot tear it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, name: &str) -> Option<Arc<K>> {
        self.lock().objects.get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.lock().objects.values().cloned().collect()
    }

    /// True once a full list has been loaded: only then does absence mean
    /// the object does not exist.
    pub fn synced(&self) -> bool {
        self.lock().synced
    }
}

fn name_of<K: Resource>(object: &K) -> Option<String> {
    object.meta().name.clone()
}

/// Keeps `store` in step with the API server and sends `keys(object)` of
/// every object that changes (and of every one at each list) to `queue`.
pub async fn run<K>(
    what: &'static str,
    api: Api<K>,
    selector: Option<String>,
    store: Store<K>,
    keys: impl Fn(&K) -> Vec<String>,
    queue: UnboundedSender<String>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    let enqueue = |object: &K| {
        for key in keys(object) {
            // The receiver lives as long as the process.
            let _ = queue.send(key);
        }
    };
    'relist: loop {
        let (items, mut version) = match tokio::time::timeout(LIST_TIMEOUT, list_all(&api, selector.as_deref())).await {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => {
                backoff::log_api_error(&format!("listing {what}"), &e);
                pause(&mut backoff, Some(&e)).await;
                continue 'relist;
            }
            Err(_) => {
                tracing::warn!("listing {what} timed out");
                pause(&mut backoff, None).await;
                continue 'relist;
            }
        };
        let fresh: BTreeMap<String, Arc<K>> = items
            .into_iter()
            .filter_map(|object| name_of(&object).map(|name| (name, Arc::new(object))))
            .collect();
        let old = {
            let mut inner = store.lock();
            inner.synced = true;
            std::mem::replace(&mut inner.objects, fresh.clone())
        };
        tracing::info!(count = fresh.len(), resource_version = %version, "listed {what}");
        // Objects deleted while we were not watching are noticed here.
        for (name, object) in &old {
            if !fresh.contains_key(name) {
                enqueue(object);
            }
        }
        for object in fresh.values() {
            enqueue(object);
        }
        backoff.reset();

        loop {
            let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
            let params = match &selector {
                Some(selector) => params.labels(selector),
                None => params,
            };
            let started = Instant::now();
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(e) if backoff::api_code(&e) == Some(410) => {
                    tracing::info!("{what}: resourceVersion {version} is gone (410); listing again");
                    continue 'relist;
                }
                Err(e) => {
                    backoff::log_api_error(&format!("watching {what}"), &e);
                    pause(&mut backoff, Some(&e)).await;
                    continue;
                }
            };
            let mut stream = pin!(stream);
            let mut events = 0u64;
            let failure = loop {
                let event = match tokio::time::timeout(WATCH_STALL, stream.try_next()).await {
                    Err(_) => {
                        tracing::warn!("{what}: watch silent for {} s; reconnecting", WATCH_STALL.as_secs());
                        break None;
                    }
                    Ok(Ok(None)) => break None,
                    Ok(Ok(Some(event))) => event,
                    Ok(Err(e)) => break Some(e),
                };
                events += 1;
                match event {
                    WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                        advance(&mut version, &object);
                        if let Some(name) = name_of(&object) {
                            let object = Arc::new(object);
                            enqueue(&object);
                            store.lock().objects.insert(name, object);
                        }
                    }
                    WatchEvent::Deleted(object) => {
                        advance(&mut version, &object);
                        if let Some(name) = name_of(&object) {
                            store.lock().objects.remove(&name);
                        }
                        enqueue(&object);
                    }
                    WatchEvent::Bookmark(bookmark) => {
                        if !bookmark.metadata.resource_version.is_empty() {
                            version = bookmark.metadata.resource_version;
                        }
                    }
                    WatchEvent::Error(status) => break Some(kube::Error::Api(status)),
                }
            };
            match failure {
                Some(e) if backoff::api_code(&e) == Some(410) => {
                    tracing::info!("{what}: watch expired (410 Gone); listing again");
                    continue 'relist;
                }
                Some(e) => {
                    backoff::log_api_error(&format!("watching {what}"), &e);
                    pause(&mut backoff, Some(&e)).await;
                }
                // A watch that ends at once, again and again, would spin.
                None if events == 0 && started.elapsed() < Duration::from_secs(1) => {
                    pause(&mut backoff, None).await;
                }
                None => {
                    tracing::debug!(events, resource_version = %version, "{what}: watch ended; resuming");
                    backoff.reset();
                }
            }
        }
    }
}

fn advance<K: Resource>(version: &mut String, object: &K) {
    if let Some(v) = &object.meta().resource_version
        && !v.is_empty()
    {
        version.clone_from(v);
    }
}

async fn pause(backoff: &mut Backoff, error: Option<&kube::Error>) {
    let mut delay = backoff.next_delay();
    // A refused token, a missing role or CRD is not fixed in milliseconds;
    // don't flood the log (or the server) while someone fixes it.
    if error
        .and_then(backoff::api_code)
        .is_some_and(|code| matches!(code, 401 | 403 | 404))
    {
        delay = delay.max(Duration::from_secs(1));
    }
    let delay = error
        .and_then(backoff::server_retry_after)
        .map_or(delay, |server| server.max(delay));
    tracing::debug!(delay_ms = delay.as_millis() as u64, "backing off");
    tokio::time::sleep(delay).await;
}

/// Lists every page; the version to watch from is the last page's.
async fn list_all<K>(api: &Api<K>, selector: Option<&str>) -> Result<(Vec<K>, String), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(LIST_PAGE);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok((items, page.metadata.resource_version.unwrap_or_default())),
        }
    }
}
