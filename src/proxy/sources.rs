//! Trust by URL: the keys of `authorized_keys/<identity>.url` entries, fetched, refreshed
//! and held to account.
//!
//! - **Refresh**: every source is fetched at start, then every `trust.fetch_interval`
//!   (`Cache-Control: max-age` honoured between `fetch_cooldown` and the interval), with
//!   ±10 % jitter so that a fleet does not fetch in step. A failed fetch is retried
//!   sooner (doubling from `fetch_cooldown`, at most the interval).
//! - **Unknown kid**: a token whose kid nobody knows, claiming an identity that has a URL
//!   source, may trigger one refetch of that identity's sources — single-flight (callers
//!   wait for the fetch in flight), at most once per `fetch_cooldown` per source. Within
//!   the cooldown the fetch is deferred to the cooldown's end (and waited for if that is
//!   within a second), so a key rotated just after a fetch is still picked up at once. A
//!   kid that was still unknown after a fetch is remembered until the next successful
//!   one and causes no more fetches: a flood of random kids costs at most one fetch per
//!   cooldown. The claimed
//!   identity only *selects* among the sources the directory names; nothing in a token
//!   ever becomes a URL.
//! - **Stale on error**: when fetches fail, the last good keys keep serving for
//!   `trust.max_stale`, then they are dropped and the identity fails closed.
//! - **Never fetched** (or dropped): requests of that identity get 503
//!   `keys_unavailable`, not 401 — the caller did nothing wrong.
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::state::State;
use crate::config::Config;
use crate::fetch::Fetcher;
use crate::keys::{TrustedKey, UrlSource, VerifyingKey};
use crate::tls::TlsSetupError;

/// Unknown kids remembered per source, at most (then every unknown kid is refused
/// without a fetch until the next refresh).
const MAX_UNKNOWN_KIDS: usize = 10_000;

/// Every URL source, and how they are fetched.
pub struct Sources {
    fetcher: Fetcher,
    interval: Duration,
    cooldown: Duration,
    max_stale: Duration,
    timeout: Duration,
    list: Mutex<Vec<Arc<Source>>>,
    /// The scheduler's doorbell: the set changed, or a fetch finished.
    wake: Notify,
    /// Bumped after every fetch attempt of any source.
    attempts: watch::Sender<u64>,
}

/// One `<identity>.url` entry.
pub struct Source {
    pub identity: String,
    pub url: Uri,
    pub file: PathBuf,
    /// When this source was configured: a source never fetched is as old as this.
    added: Instant,
    status: Mutex<Status>,
    /// Bumped after every fetch attempt; waiters watch it.
    attempts: watch::Sender<u64>,
}

struct Status {
    /// The last good keys; empty when never fetched or dropped as stale.
    keys: Vec<VerifyingKey>,
    has_keys: bool,
    last_success: Option<(SystemTime, Instant)>,
    last_error: Option<String>,
    last_attempt: Option<Instant>,
    next_fetch: Instant,
    in_flight: bool,
    failures: u32,
    unknown_kids: HashSet<String>,
}

/// A request blocked by the cooldown waits for the deferred fetch only if it starts
/// within this long (bounded wait: a flood of random kids cannot hold requests longer).
const DEFERRED_WAIT: Duration = Duration::from_secs(1);

enum Action {
    Start,
    Join,
}

/// What an unknown kid should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidOutcome {
    /// The identity's keys changed meanwhile: verify again against the new snapshot.
    Retry,
    /// Still unknown: 401 `unknown_key`.
    Unknown,
    /// The identity has no usable keys (never fetched, or dropped as stale): 503.
    Unavailable,
    /// The identity has no URL source: this is not our business.
    NotUrl,
}

impl Sources {
    pub fn new(cfg: &Config) -> Result<Self, TlsSetupError> {
        let t = &cfg.trust;
        if t.allow_http_fetch {
            tracing::warn!("trust.allow_http_fetch is on: keys may be fetched over plain http://");
        }
        Ok(Sources {
            fetcher: Fetcher::new(
                t.fetch_ca_file.as_deref(),
                t.allow_http_fetch,
                t.fetch_timeout,
            )?,
            interval: t.fetch_interval,
            cooldown: t.fetch_cooldown,
            max_stale: t.max_stale,
            timeout: t.fetch_timeout,
            list: Mutex::new(Vec::new()),
            wake: Notify::new(),
            attempts: watch::channel(0).0,
        })
    }

    fn list(&self) -> Vec<Arc<Source>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Installs the set the directory names now: sources still named keep their state,
    /// new ones are fetched at once, gone ones (file deleted) take their keys with them.
    /// `true` if the set changed.
    pub fn set(&self, found: &[UrlSource]) -> bool {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let same = list.len() == found.len()
            && list
                .iter()
                .zip(found)
                .all(|(s, f)| s.identity == f.identity && s.url == f.url && s.file == f.file);
        if same {
            return false;
        }
        let now = Instant::now();
        let next: Vec<Arc<Source>> = found
            .iter()
            .map(|f| {
                list.iter()
                    .find(|s| s.identity == f.identity && s.url == f.url && s.file == f.file)
                    .cloned()
                    .unwrap_or_else(|| {
                        tracing::info!(identity = %f.identity, url = %f.url, "key URL source added");
                        Arc::new(Source::new(f, now))
                    })
            })
            .collect();
        for gone in list
            .iter()
            .filter(|s| !next.iter().any(|n| Arc::ptr_eq(n, s)))
        {
            tracing::info!(identity = %gone.identity, url = %gone.url, "key URL source removed");
        }
        *list = next;
        drop(list);
        self.wake.notify_one();
        true
    }

    pub fn is_empty(&self) -> bool {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The keys every source holds now, each trusted for its identity only.
    pub fn keys(&self) -> Vec<TrustedKey> {
        let mut out = Vec::new();
        for s in self.list() {
            let st = s.status();
            out.extend(st.keys.iter().map(|k| TrustedKey {
                identity: Some(s.identity.clone()),
                key: k.clone(),
                source: s.file.clone(),
            }));
        }
        out
    }

    /// Whether every source has had its first fetch attempt (readiness waits for this,
    /// bounded).
    pub fn all_attempted(&self) -> bool {
        self.list().iter().all(|s| {
            let st = s.status();
            st.last_attempt.is_some() && !st.in_flight
        })
    }

    /// Waits until every source has been tried once, or `bound` has passed.
    pub async fn wait_first_fetches(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut attempts = self.attempts.subscribe();
        while !self.all_attempted() {
            if tokio::time::timeout_at(deadline, attempts.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// An unknown `kid` in a token claiming `identity` (not yet verified: it only picks
    /// among the sources the directory names). May fetch (see the module comment) and
    /// waits at most `trust.fetch_timeout` for it.
    pub async fn unknown_kid(&self, state: &Arc<State>, identity: &str, kid: &str) -> KidOutcome {
        let sources: Vec<_> = self
            .list()
            .into_iter()
            .filter(|s| s.identity == identity)
            .collect();
        if sources.is_empty() {
            return KidOutcome::NotUrl;
        }
        let had_keys = sources.iter().any(|s| s.status().has_keys);
        if had_keys
            && sources
                .iter()
                .all(|s| s.status().unknown_kids.contains(kid))
        {
            return KidOutcome::Unknown;
        }
        // For each source: join the fetch in flight, start one (cooldown permitting), or
        // — within the cooldown — have the scheduler fetch as soon as it ends, and wait
        // for that only if it is close.
        let now = Instant::now();
        let mut waits = Vec::new();
        let mut deferred = false;
        for s in &sources {
            let before = *s.attempts.borrow();
            let action = {
                let mut st = s.status();
                match st.last_attempt {
                    _ if st.in_flight => Some(Action::Join),
                    Some(t) if now < t + self.cooldown => {
                        let at = t + self.cooldown;
                        st.next_fetch = st.next_fetch.min(at);
                        deferred = true;
                        (at <= now + DEFERRED_WAIT).then_some(Action::Join)
                    }
                    _ => {
                        st.in_flight = true;
                        st.last_attempt = Some(now);
                        Some(Action::Start)
                    }
                }
            };
            match action {
                Some(Action::Start) => {
                    // Spawned: a caller that gives up does not cancel the fetch.
                    let (state, s2) = (state.clone(), s.clone());
                    tokio::spawn(async move { fetch_claimed(&state, &s2).await });
                    waits.push((s.clone(), before));
                }
                Some(Action::Join) => waits.push((s.clone(), before)),
                None => {}
            }
        }
        if deferred {
            self.wake.notify_one();
        }
        let deadline = now + DEFERRED_WAIT + self.timeout;
        let mut completed = false;
        for (s, before) in &waits {
            let mut rx = s.attempts.subscribe();
            let waited = tokio::time::timeout_at(deadline, rx.wait_for(|n| *n != *before)).await;
            completed |= waited.is_ok();
        }
        if !sources.iter().any(|s| s.status().has_keys) {
            return KidOutcome::Unavailable;
        }
        if completed {
            KidOutcome::Retry
        } else {
            // Not remembered: the deferred fetch will look for it.
            KidOutcome::Unknown
        }
    }

    /// The kid was still unknown after a fetch: no more fetches for it until the next
    /// successful refresh.
    pub fn remember_unknown(&self, identity: &str, kid: &str) {
        for s in self.list().iter().filter(|s| s.identity == identity) {
            let mut st = s.status();
            if st.unknown_kids.len() < MAX_UNKNOWN_KIDS {
                st.unknown_kids.insert(kid.to_owned());
            }
        }
    }

    /// Whether `identity` has a URL source without usable keys.
    pub fn unavailable(&self, identity: &str) -> bool {
        let sources: Vec<_> = self
            .list()
            .into_iter()
            .filter(|s| s.identity == identity)
            .collect();
        !sources.is_empty() && !sources.iter().any(|s| s.status().has_keys)
    }

    /// `/trust`: each source, its last success, last error, next fetch and kids.
    pub fn describe(&self) -> Vec<serde_json::Value> {
        let now = Instant::now();
        self.list()
            .iter()
            .map(|s| {
                let st = s.status();
                let next = SystemTime::now() + st.next_fetch.saturating_duration_since(now);
                serde_json::json!({
                    "identity": s.identity,
                    "url": s.url.to_string(),
                    "file": s.file,
                    "kids": st.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
                    "usable": st.has_keys,
                    "last_success": st.last_success.map(|(t, _)| unix(t)),
                    "age_seconds": st.last_success.map(|(_, i)| i.elapsed().as_secs()),
                    "last_error": st.last_error,
                    "next_fetch": unix(next),
                    "fetching": st.in_flight,
                })
            })
            .collect()
    }

    /// At scrape time: `trustgate_trust_source_age_seconds{identity}`, seconds since the
    /// oldest of an identity's sources last succeeded (since it was configured if it
    /// never has), and each source's counters created at 0.
    pub fn update_age_metrics(&self, state: &State) {
        let gauge = &state.metrics.trust_source_age;
        gauge.reset();
        for s in self.list() {
            // Never fetched: as old as the source, so that an alert on the age sees a
            // URL that has never worked too.
            let since = s.status().last_success.map_or(s.added, |(_, at)| at);
            let g = gauge.with_label_values(&[&s.identity]);
            g.set(g.get().max(since.elapsed().as_secs_f64()));
            // Each source's counters exist from the start at 0, so that the first
            // error or drop is an increase a rule can see.
            let m = &state.metrics;
            m.trust_keys_dropped.with_label_values(&[&s.identity]);
            for result in ["ok", "error"] {
                m.trust_fetches.with_label_values(&[&s.identity, result]);
            }
        }
    }

    /// The scheduler: fetches every source when due and drops keys gone stale, until
    /// `stop` turns true.
    pub async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
        let sources = &state.sources;
        loop {
            let now = Instant::now();
            let mut wake_at = now + sources.interval;
            for s in sources.list() {
                let (due, next) = {
                    let mut st = s.status();
                    let due = !st.in_flight && st.next_fetch <= now;
                    if due {
                        st.in_flight = true;
                        st.last_attempt = Some(now);
                    }
                    (due, st.next_fetch)
                };
                if due {
                    let (state, s) = (state.clone(), s.clone());
                    tokio::spawn(async move { fetch_claimed(&state, &s).await });
                } else {
                    wake_at = wake_at.min(next);
                }
                if let Some(stale_at) = sources.drop_if_stale(&state, &s) {
                    wake_at = wake_at.min(stale_at);
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = sources.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at.max(now + Duration::from_millis(10))) => {}
            }
        }
    }

    /// Drops a source's keys once its last success is older than `max_stale`; returns
    /// when that will be, while it is still in the future.
    fn drop_if_stale(&self, state: &State, s: &Source) -> Option<Instant> {
        let mut st = s.status();
        let (_, at) = st.last_success?;
        if !st.has_keys {
            return None;
        }
        let stale_at = at + self.max_stale;
        if Instant::now() < stale_at {
            return Some(stale_at);
        }
        st.keys.clear();
        st.has_keys = false;
        drop(st);
        tracing::error!(
            identity = %s.identity, url = %s.url, max_stale = ?self.max_stale,
            "KEYS DROPPED: no successful fetch within trust.max_stale; this identity fails closed"
        );
        state
            .metrics
            .trust_keys_dropped
            .with_label_values(&[&s.identity])
            .inc();
        super::reload::republish(state);
        None
    }
}

impl Source {
    fn new(f: &UrlSource, now: Instant) -> Self {
        Source {
            identity: f.identity.clone(),
            url: f.url.clone(),
            file: f.file.clone(),
            added: now,
            status: Mutex::new(Status {
                keys: Vec::new(),
                has_keys: false,
                last_success: None,
                last_error: None,
                last_attempt: None,
                next_fetch: now,
                in_flight: false,
                failures: 0,
                unknown_kids: HashSet::new(),
            }),
            attempts: watch::channel(0).0,
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One fetch of a source already marked in flight; records the result, republishes the
/// keyring when the keys changed, and wakes whoever waits.
async fn fetch_claimed(state: &Arc<State>, s: &Arc<Source>) {
    let sources = &state.sources;
    let result = sources.fetcher.fetch(&s.url).await;
    let now = Instant::now();
    let changed = {
        let mut st = s.status();
        st.in_flight = false;
        match result {
            Ok(fetched) => {
                let old: Vec<&str> = st.keys.iter().map(|k| k.kid.as_str()).collect();
                let new: Vec<&str> = fetched.keys.iter().map(|k| k.kid.as_str()).collect();
                let changed = old != new || !st.has_keys;
                let wait = fetched
                    .max_age
                    .unwrap_or(sources.interval)
                    .clamp(sources.cooldown, sources.interval);
                st.next_fetch = now + jitter(wait);
                st.keys = fetched.keys;
                st.has_keys = true;
                st.last_success = Some((SystemTime::now(), now));
                st.last_error = None;
                st.failures = 0;
                st.unknown_kids.clear();
                state
                    .metrics
                    .trust_fetches
                    .with_label_values(&[&s.identity, "ok"])
                    .inc();
                if changed {
                    tracing::info!(
                        identity = %s.identity, url = %s.url, keys = st.keys.len(),
                        "keys fetched"
                    );
                }
                changed
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let backoff = sources
                    .cooldown
                    .saturating_mul(1 << st.failures.min(16).saturating_sub(1))
                    .min(sources.interval);
                st.next_fetch = now + jitter(backoff);
                st.last_error = Some(e.to_string());
                state
                    .metrics
                    .trust_fetches
                    .with_label_values(&[&s.identity, "error"])
                    .inc();
                state
                    .metrics
                    .trust_fetch_errors
                    .with_label_values(&[&s.identity, e.kind()])
                    .inc();
                let age = st.last_success.map(|(_, at)| at.elapsed());
                tracing::error!(
                    identity = %s.identity, url = %s.url, error = %e,
                    serving_keys_aged = ?age,
                    "key URL fetch failed{}",
                    if st.has_keys { "; keeping the last good keys until trust.max_stale" } else { "" }
                );
                false
            }
        }
    };
    if changed {
        super::reload::republish(state);
    }
    s.attempts.send_modify(|n| *n += 1);
    sources.attempts.send_modify(|n| *n += 1);
    sources.wake.notify_one();
}

/// ±10 %, from the clock's low bits (no need for a random generator here).
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.9 + f64::from(nanos % 1000) / 5000.0;
    d.mul_f64(f)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
