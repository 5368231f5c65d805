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
//!
//! - **Issuers** (`[[trust.issuers]]`, [`super::issuer`]) are sources too, labelled
//!   `issuer:<name>`: the same machine, refresh, refetch, staleness and 503. What an
//!   unknown kid selects them by is the token's claimed `iss` (the issuer's exact one),
//!   or for a SPIFFE issuer that checks no `iss`, a `sub` in its trust domain.
//!
//! Each source is a small state machine ([`Held`] × [`Fetching`]); the scheduler
//! ([`run`]) and unknown kids ([`Sources::unknown_kid`]) move it, fetches finish it.
//! Time is tokio's clock, so that the unit tests drive it (`start_paused`).
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::fetch::{FetchError, Fetched, Fetcher};
use super::issuer::IssuerSource;
use super::source::{Fetching, Held, Source};
use super::Trust;
use crate::config::Config;
use crate::keys::{Speaks, TrustedKey, UrlSource, Vouch};
use crate::metrics::Metrics;
use crate::tls::TlsSetupError;
use crate::token::Peeked;

/// Unknown kids remembered per source, at most (then every unknown kid is refused
/// without a fetch until the next refresh).
const MAX_UNKNOWN_KIDS: usize = 10_000;

/// A request blocked by the cooldown waits for the deferred fetch only if it starts
/// within this long (bounded wait: a flood of random kids cannot hold requests longer).
const DEFERRED_WAIT: Duration = Duration::from_secs(1);

/// How the keys of a URL are fetched: [`Fetcher`] over the network; the unit tests give
/// their own.
pub trait FetchKeys: Send + Sync + 'static {
    fn fetch<'a>(
        &'a self,
        url: &'a Uri,
    ) -> Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>>;
}

impl FetchKeys for Fetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a Uri,
    ) -> Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>> {
        Box::pin(Fetcher::fetch(self, url))
    }
}

/// The timing rules of every source (from `[trust]`).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub interval: Duration,
    pub cooldown: Duration,
    pub max_stale: Duration,
    pub timeout: Duration,
}

/// Every URL source, and how they are fetched.
pub struct Sources {
    fetcher: Box<dyn FetchKeys>,
    timing: Timing,
    /// `[[trust.issuers]]`: fixed at start.
    issuers: Vec<Arc<Source>>,
    /// `<identity>.url` entries: the set the directory names now.
    list: Mutex<Vec<Arc<Source>>>,
    /// The scheduler's doorbell: the set changed, or a fetch finished.
    wake: Notify,
    /// Bumped after every fetch attempt of any source.
    attempts: watch::Sender<u64>,
}

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
        let fetcher = Fetcher::new(
            t.fetch_ca_file.as_deref(),
            t.allow_http_fetch,
            t.fetch_timeout,
        )?;
        let env = |k: &str| std::env::var(k).ok();
        let issuers = t
            .issuers
            .iter()
            .map(|i| IssuerSource::new(i, t, &env))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sources::with_fetcher(
            Box::new(fetcher),
            Timing {
                interval: t.fetch_interval,
                cooldown: t.fetch_cooldown,
                max_stale: t.max_stale,
                timeout: t.fetch_timeout,
            },
        )
        .with_issuers(issuers))
    }

    pub fn with_fetcher(fetcher: Box<dyn FetchKeys>, timing: Timing) -> Self {
        Sources {
            fetcher,
            timing,
            issuers: Vec::new(),
            list: Mutex::new(Vec::new()),
            wake: Notify::new(),
            attempts: watch::channel(0).0,
        }
    }

    /// The issuers, fetched from the start like every source.
    pub fn with_issuers(mut self, issuers: Vec<IssuerSource>) -> Self {
        let now = Instant::now();
        self.issuers = issuers
            .into_iter()
            .map(|i| Arc::new(Source::issuer(i, now)))
            .collect();
        self
    }

    /// Every source: the issuers, then the URL entries.
    fn list(&self) -> Vec<Arc<Source>> {
        let mut all = self.issuers.clone();
        all.extend(
            self.list
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        all
    }

    /// The sources a token's (unverified) claims select.
    fn of(&self, claimed: &Peeked) -> Vec<Arc<Source>> {
        let mut list = self.list();
        list.retain(|s| s.selects(claimed));
        list
    }

    /// Installs the set the directory names now: sources still named keep their state,
    /// new ones are fetched at once, gone ones (file deleted) take their keys with them.
    /// `true` if the set changed.
    pub fn set(&self, found: &[UrlSource]) -> bool {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let same_as = |s: &Source, f: &UrlSource| {
            s.identity == f.identity && s.url == f.url && s.file == f.file
        };
        if list.len() == found.len() && list.iter().zip(found).all(|(s, f)| same_as(s, f)) {
            return false;
        }
        let now = Instant::now();
        let next: Vec<Arc<Source>> = found
            .iter()
            .map(|f| {
                list.iter()
                    .find(|s| same_as(s, f))
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
        self.issuers.is_empty()
            && self
                .list
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// The keys every source holds now, each trusted for its identity only.
    pub fn keys(&self) -> Vec<TrustedKey> {
        let mut out = Vec::new();
        for s in self.list() {
            let st = s.status();
            let speaks = match &st.vouch {
                Some(v) => Speaks::Issuer(v.clone()),
                None => Speaks::Identity(s.identity.clone()),
            };
            out.extend(st.keys().iter().map(|k| TrustedKey {
                speaks: speaks.clone(),
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
            st.last_attempt.is_some() && !st.in_flight()
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

    /// An unknown `kid` in a token claiming what `claimed` says (not yet verified: it only
    /// picks among the sources configured). May fetch (see the module comment) and waits
    /// at most `trust.fetch_timeout` for it.
    pub async fn unknown_kid(&self, trust: &Arc<Trust>, claimed: &Peeked) -> KidOutcome {
        let kid = claimed.kid.as_str();
        let sources = self.of(claimed);
        if sources.is_empty() {
            return KidOutcome::NotUrl;
        }
        let had_keys = sources.iter().any(|s| s.status().usable());
        if had_keys
            && sources
                .iter()
                .all(|s| s.status().unknown_kids.contains(kid))
        {
            return KidOutcome::Unknown;
        }
        let now = Instant::now();
        let (waits, deferred) = self.claim_for_kid(trust, &sources, now);
        if deferred {
            self.wake.notify_one();
        }
        let deadline = now + DEFERRED_WAIT + self.timing.timeout;
        let mut completed = false;
        for (s, before) in &waits {
            let mut rx = s.attempts.subscribe();
            let waited = tokio::time::timeout_at(deadline, rx.wait_for(|n| *n != *before)).await;
            completed |= waited.is_ok();
        }
        if !sources.iter().any(|s| s.status().usable()) {
            return KidOutcome::Unavailable;
        }
        if completed {
            KidOutcome::Retry
        } else {
            // Not remembered: the deferred fetch will look for it.
            KidOutcome::Unknown
        }
    }

    /// For each source: join the fetch in flight, start one (cooldown permitting), or —
    /// within the cooldown — have the scheduler fetch as soon as it ends, and wait for
    /// that only if it is close. The sources to wait for (with their attempt count now),
    /// and whether a fetch was deferred.
    fn claim_for_kid(
        &self,
        trust: &Arc<Trust>,
        sources: &[Arc<Source>],
        now: Instant,
    ) -> (Vec<(Arc<Source>, u64)>, bool) {
        let mut waits = Vec::new();
        let mut deferred = false;
        for s in sources {
            let before = *s.attempts.borrow();
            let action = {
                let mut st = s.status();
                match st.last_attempt {
                    _ if st.in_flight() => Some(Action::Join),
                    Some(t) if now < t + self.timing.cooldown => {
                        let at = t + self.timing.cooldown;
                        st.fetch_by(at);
                        deferred = true;
                        (at <= now + DEFERRED_WAIT).then_some(Action::Join)
                    }
                    _ => {
                        st.claim(now);
                        Some(Action::Start)
                    }
                }
            };
            match action {
                Some(Action::Start) => {
                    // Spawned: a caller that gives up does not cancel the fetch.
                    let (trust, s2) = (trust.clone(), s.clone());
                    tokio::spawn(async move { fetch_claimed(&trust, &s2).await });
                    waits.push((s.clone(), before));
                }
                Some(Action::Join) => waits.push((s.clone(), before)),
                None => {}
            }
        }
        (waits, deferred)
    }

    /// The kid was still unknown after a fetch: no more fetches for it until the next
    /// successful refresh.
    pub fn remember_unknown(&self, claimed: &Peeked) {
        let kid = &claimed.kid;
        for s in self.of(claimed) {
            let mut st = s.status();
            if st.unknown_kids.len() < MAX_UNKNOWN_KIDS {
                st.unknown_kids.insert(kid.to_owned());
            }
        }
    }

    /// Whether the claims select sources, none with usable keys.
    pub fn unavailable(&self, claimed: &Peeked) -> bool {
        let sources = self.of(claimed);
        !sources.is_empty() && !sources.iter().any(|s| s.status().usable())
    }

    /// `/trust`: each source, its last success, last error, next fetch and kids.
    pub fn describe(&self) -> Vec<serde_json::Value> {
        let now = Instant::now();
        self.list()
            .iter()
            .map(|s| {
                let st = s.status();
                let next = match st.fetching {
                    Fetching::Idle { next } => next.saturating_duration_since(now),
                    Fetching::InFlight => Duration::ZERO,
                };
                let success = st.last_success();
                let issuer = s.issuer.as_ref().map(|i| {
                    serde_json::json!({
                        "name": i.cfg.name,
                        "kind": i.cfg.kind.as_str(),
                        "iss": st.iss,
                        "jwks_uri": st.jwks_uri,
                        "audiences": i.cfg.audiences,
                        "callers": i.cfg.callers,
                    })
                });
                serde_json::json!({
                    "issuer": issuer,
                    "identity": s.identity,
                    "url": s.url.to_string(),
                    "file": s.file,
                    "kids": st.keys().iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
                    "usable": st.usable(),
                    "last_success": success.map(|(t, _)| unix(t)),
                    "age_seconds": success.map(|(_, i)| i.elapsed().as_secs()),
                    "last_error": st.last_error,
                    "next_fetch": unix(SystemTime::now() + next),
                    "fetching": st.in_flight(),
                })
            })
            .collect()
    }

    /// At scrape time: `trustgate_trust_source_age_seconds{identity}`, seconds since the
    /// oldest of an identity's sources last succeeded (since it was configured if it
    /// never has), and each source's counters created at 0.
    pub fn update_age_metrics(&self, metrics: &Metrics) {
        let gauge = &metrics.trust_source_age;
        gauge.reset();
        for s in self.list() {
            // Never fetched: as old as the source, so that an alert on the age sees a
            // URL that has never worked too.
            let since = s.status().last_success().map_or(s.added, |(_, at)| at);
            let g = gauge.with_label_values(&[&s.identity]);
            g.set(g.get().max(since.elapsed().as_secs_f64()));
            // Each source's counters exist from the start at 0, so that the first
            // error or drop is an increase a rule can see.
            metrics.trust_keys_dropped.with_label_values(&[&s.identity]);
            for result in ["ok", "error"] {
                metrics
                    .trust_fetches
                    .with_label_values(&[&s.identity, result]);
            }
        }
    }

    /// Drops a source's keys once its last success is older than `max_stale`; returns
    /// when that will be, while it is still in the future.
    fn drop_if_stale(&self, trust: &Trust, s: &Source) -> Option<Instant> {
        let mut st = s.status();
        let Held::Keys { at, .. } = st.held else {
            return None;
        };
        let stale_at = at.1 + self.timing.max_stale;
        if Instant::now() < stale_at {
            return Some(stale_at);
        }
        st.held = Held::Dropped { at };
        drop(st);
        tracing::error!(
            identity = %s.identity, url = %s.url, max_stale = ?self.timing.max_stale,
            "KEYS DROPPED: no successful fetch within trust.max_stale; this identity fails closed"
        );
        trust
            .metrics
            .trust_keys_dropped
            .with_label_values(&[&s.identity])
            .inc();
        trust.republish();
        None
    }
}

/// The scheduler: fetches every source when due and drops keys gone stale, until `stop`
/// turns true.
pub async fn run(trust: Arc<Trust>, mut stop: watch::Receiver<bool>) {
    let sources = &trust.sources;
    loop {
        let now = Instant::now();
        let mut wake_at = now + sources.timing.interval;
        for s in sources.list() {
            let next = {
                let mut st = s.status();
                match st.fetching {
                    Fetching::Idle { next } if next <= now => {
                        st.claim(now);
                        None
                    }
                    Fetching::Idle { next } => Some(next),
                    Fetching::InFlight => Some(wake_at),
                }
            };
            match next {
                None => {
                    let (trust, s) = (trust.clone(), s.clone());
                    tokio::spawn(async move { fetch_claimed(&trust, &s).await });
                }
                Some(next) => wake_at = wake_at.min(next),
            }
            if let Some(stale_at) = sources.drop_if_stale(&trust, &s) {
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

/// One fetch of a source already marked in flight; records the result, republishes the
/// keyring when the keys changed, and wakes whoever waits.
async fn fetch_claimed(trust: &Arc<Trust>, s: &Arc<Source>) {
    let sources = &trust.sources;
    let result = match &s.issuer {
        None => sources.fetcher.fetch(&s.url).await.map(|f| (f, None)),
        Some(issuer) => issuer.fetch().await.map(|r| {
            let extra = IssuerFetched {
                vouch: r.vouch,
                jwks_uri: r.jwks_uri.to_string(),
            };
            (r.fetched, Some(extra))
        }),
    };
    let changed = match result {
        Ok((fetched, issuer)) => succeeded(sources, &trust.metrics, s, fetched, issuer),
        Err(e) => {
            failed(sources, &trust.metrics, s, &e);
            false
        }
    };
    if changed {
        trust.republish();
    }
    s.attempts.send_modify(|n| *n += 1);
    sources.attempts.send_modify(|n| *n += 1);
    sources.wake.notify_one();
}

/// What an issuer's fetch brings besides keys.
struct IssuerFetched {
    vouch: Arc<Vouch>,
    jwks_uri: String,
}

/// Records a successful fetch; `true` if the keys a request can see changed.
fn succeeded(
    sources: &Sources,
    metrics: &Metrics,
    s: &Source,
    fetched: Fetched,
    issuer: Option<IssuerFetched>,
) -> bool {
    let now = Instant::now();
    let t = &sources.timing;
    let mut st = s.status();
    let old: Vec<&str> = st.keys().iter().map(|k| k.kid.as_str()).collect();
    let new: Vec<&str> = fetched.keys.iter().map(|k| k.kid.as_str()).collect();
    let mut changed = old != new || !st.usable();
    if let Some(i) = issuer {
        changed |= st.vouch.as_deref() != Some(&*i.vouch);
        st.iss = i.vouch.issuer.clone();
        st.vouch = Some(i.vouch);
        st.jwks_uri = Some(i.jwks_uri);
    }
    let wait = fetched
        .max_age
        .unwrap_or(t.interval)
        .clamp(t.cooldown, t.interval);
    st.fetching = Fetching::Idle {
        next: now + jitter(wait),
    };
    let count = fetched.keys.len();
    st.held = Held::Keys {
        keys: fetched.keys,
        at: (SystemTime::now(), now),
    };
    st.last_error = None;
    st.failures = 0;
    st.unknown_kids.clear();
    metrics
        .trust_fetches
        .with_label_values(&[&s.identity, "ok"])
        .inc();
    if changed {
        tracing::info!(identity = %s.identity, url = %s.url, keys = count, "keys fetched");
    }
    changed
}

/// Records a failed fetch: the next one after a doubling backoff (from the cooldown, at
/// most the interval); the last good keys keep serving until `trust.max_stale`.
fn failed(sources: &Sources, metrics: &Metrics, s: &Source, e: &FetchError) {
    let t = &sources.timing;
    let mut st = s.status();
    st.failures = st.failures.saturating_add(1);
    let backoff = t
        .cooldown
        .saturating_mul(1 << st.failures.min(16).saturating_sub(1))
        .min(t.interval);
    st.fetching = Fetching::Idle {
        next: Instant::now() + jitter(backoff),
    };
    st.last_error = Some(e.to_string());
    metrics
        .trust_fetches
        .with_label_values(&[&s.identity, "error"])
        .inc();
    metrics
        .trust_fetch_errors
        .with_label_values(&[&s.identity, e.kind()])
        .inc();
    let age = match st.last_success() {
        Some((_, at)) => {
            humantime::format_duration(Duration::from_secs(at.elapsed().as_secs())).to_string()
        }
        None => "none: no fetch has succeeded yet".to_owned(),
    };
    tracing::error!(
        identity = %s.identity, url = %s.url, error = %e,
        serving_keys_aged = %age,
        "key URL fetch failed{}",
        if st.usable() { "; keeping the last good keys until trust.max_stale" } else { "" }
    );
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
