//! The trust plane on tokio's paused clock, with a scripted fetcher in place of the
//! network (the integration tests fetch from real servers): single flight, the cooldown
//! and the deferred fetch, the unknown-kid memory, the backoff, stale keys dropped at
//! `max_stale`, and the data plane's one question ([`Trust::unknown_kid`]).
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

use super::fetch::{parse_jwks, FetchError, Fetched};
use super::sources::{FetchKeys, Sources, Timing};
use super::{FileTrust, KidRefusal, Loaded, Trust};
use crate::keys::{generate, KeyAlg, UrlSource, VerifyingKey};
use crate::metrics::Metrics;
use crate::token::Rejection;

const COOLDOWN: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_secs(300);
const MAX_STALE: Duration = Duration::from_secs(3600);

/// One scripted answer: the keys, or why the fetch failed.
type Answer = Result<Vec<VerifyingKey>, String>;

/// Answers fetches from a script (the last answer repeats), each after `delay`, and
/// records when each fetch started.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
    delay: Duration,
}

impl Script {
    fn then(&self, answer: Result<Vec<VerifyingKey>, &str>) {
        let answer = answer.map_err(str::to_owned);
        self.answers.lock().unwrap().push_back(answer);
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn started(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl FetchKeys for Script {
    fn fetch<'a>(
        &'a self,
        _: &'a Uri,
    ) -> Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(Instant::now());
            tokio::time::sleep(self.delay).await;
            let answer = {
                let mut answers = self.answers.lock().unwrap();
                match answers.len() {
                    0 => Err("no answer scripted".to_owned()),
                    1 => answers[0].clone(),
                    _ => answers.pop_front().unwrap(),
                }
            };
            answer
                .map(|keys| Fetched {
                    keys,
                    max_age: None,
                })
                .map_err(FetchError::Unreachable)
        })
    }
}

/// The public key of a fresh ES256 key, as a JWKS fetch would bring it.
fn key() -> VerifyingKey {
    let k = generate(KeyAlg::Es256).unwrap();
    let jwks = serde_json::json!({ "keys": [k.public_jwk().unwrap()] }).to_string();
    let url: Uri = "https://orders/jwks".parse().unwrap();
    parse_jwks(jwks.as_bytes(), &url).unwrap().remove(0)
}

struct Plane {
    trust: Arc<Trust>,
    script: Script,
    metrics: Metrics,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// A trust plane with one URL source for `orders`, its scheduler running.
fn plane(script: Script) -> Plane {
    let cfg = crate::config::from_toml_str(
        "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/keys\"\n[inbound]\n",
        "t.toml",
        std::iter::empty::<(String, String)>(),
    )
    .unwrap();
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let timing = Timing {
        interval: INTERVAL,
        cooldown: COOLDOWN,
        max_stale: MAX_STALE,
        timeout: Duration::from_secs(5),
    };
    let sources = Sources::with_fetcher(Box::new(script.clone()), timing);
    let files = FileTrust {
        sources: vec![UrlSource {
            identity: "orders".into(),
            url: "https://orders/jwks".parse().unwrap(),
            file: PathBuf::from("/keys/orders.url"),
        }],
        ..FileTrust::default()
    };
    let loaded = Loaded {
        files,
        signer: None,
    };
    let trust = Trust::with_sources(Arc::new(cfg), loaded, metrics.clone(), sources);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(super::sources::run(trust.clone(), rx));
    Plane {
        trust,
        script,
        metrics,
        _stop: stop,
    }
}

/// What a token claiming `iss` with `kid` shows before it is verified.
fn claimed(iss: &str, kid: &str) -> crate::token::Peeked {
    crate::token::Peeked {
        kid: kid.into(),
        iss: Some(iss.into()),
        sub: Some(iss.into()),
    }
}

impl Plane {
    /// The data plane's question, with "verify again" = is `kid` in the snapshot now.
    async fn ask(&self, kid: &str) -> Result<(), KidRefusal> {
        let trust = self.trust.clone();
        let again = || {
            let snapshot = trust.snapshot();
            let known = snapshot.keyring.keys().iter().any(|k| k.key.kid == kid);
            known.then_some(()).ok_or(Rejection::UnknownKey)
        };
        self.trust.unknown_kid(&claimed("orders", kid), again).await
    }

    async fn first_fetch(&self) {
        self.trust.first_fetches(Duration::from_secs(30)).await;
    }

    fn kids(&self) -> Vec<String> {
        let snapshot = self.trust.snapshot();
        snapshot
            .keyring
            .keys()
            .iter()
            .map(|k| k.key.kid.clone())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_key_is_fetched_once_and_a_flood_of_random_kids_costs_one_fetch_per_cooldown() {
    let (old, new) = (key(), key());
    let script = Script::default();
    script.then(Ok(vec![old.clone()]));
    script.then(Ok(vec![old.clone(), new.clone()]));
    let p = plane(script);
    p.first_fetch().await;
    assert_eq!((p.script.calls(), p.kids()), (1, vec![old.kid.clone()]));

    // Just after the first fetch, within the cooldown: the fetch is deferred to the
    // cooldown's end (10 s away, more than the 1 s a request waits), so this one is
    // refused...
    assert!(matches!(p.ask(&new.kid).await, Err(KidRefusal::Unknown)));
    assert_eq!(p.script.calls(), 1);
    // ...and the deferred fetch happens when the cooldown ends, not later.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    assert_eq!(p.script.calls(), 2);
    let started = p.script.started();
    let gap = started[1] - started[0];
    assert!(
        gap >= COOLDOWN && gap < COOLDOWN + Duration::from_secs(1),
        "{gap:?}"
    );
    assert!(
        p.kids().contains(&new.kid),
        "the deferred fetch brought the new key"
    );

    // A flood of random kids: the first may fetch (the cooldown has passed), the rest
    // join it or wait for the cooldown; each unknown after a fetch is remembered.
    tokio::time::sleep(COOLDOWN).await;
    let before = p.script.calls();
    for i in 0..200 {
        let _ = p.ask(&format!("random-{i}")).await;
    }
    assert!(
        p.script.calls() - before <= 1,
        "{} fetches",
        p.script.calls() - before
    );
    tokio::time::sleep(COOLDOWN * 3).await;
    // The deferred fetch for kids refused during the cooldown: at most one more.
    assert!(
        p.script.calls() - before <= 2,
        "{} fetches",
        p.script.calls() - before
    );
}

#[tokio::test(start_paused = true)]
async fn a_kid_still_unknown_after_a_fetch_is_remembered_until_the_next_refresh() {
    let k = key();
    let script = Script::default();
    script.then(Ok(vec![k.clone()]));
    let p = plane(script);
    p.first_fetch().await;
    tokio::time::sleep(COOLDOWN).await;
    // Fetched for, still unknown: remembered.
    assert!(matches!(p.ask("gone").await, Err(KidRefusal::Unknown)));
    assert_eq!(p.script.calls(), 2);
    // The cooldown has passed and no refresh is due (the interval is 300 s): the
    // remembered kid costs nothing, another one fetches.
    tokio::time::sleep(COOLDOWN).await;
    assert!(matches!(p.ask("gone").await, Err(KidRefusal::Unknown)));
    assert_eq!(p.script.calls(), 2, "a remembered kid fetches nothing");
    assert!(matches!(p.ask("other").await, Err(KidRefusal::Unknown)));
    assert_eq!(p.script.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let k = key();
    let script = Script {
        delay: Duration::from_secs(2),
        ..Script::default()
    };
    script.then(Ok(vec![]));
    script.then(Ok(vec![k.clone()]));
    let p = Arc::new(plane(script));
    p.first_fetch().await;
    tokio::time::sleep(COOLDOWN).await;
    let asks: Vec<_> = (0..16)
        .map(|_| {
            let (p, kid) = (p.clone(), k.kid.clone());
            tokio::spawn(async move { p.ask(&kid).await })
        })
        .collect();
    for a in asks {
        assert!(
            a.await.unwrap().is_ok(),
            "each waits for the one fetch and then knows the kid"
        );
    }
    assert_eq!(
        p.script.calls(),
        2,
        "the first fetch, then one for all sixteen"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_doubling_and_stale_keys_are_dropped_at_max_stale() {
    let k = key();
    let script = Script::default();
    script.then(Ok(vec![k.clone()]));
    script.then(Err("connection refused"));
    let p = plane(script);
    p.first_fetch().await;
    assert_eq!(p.kids(), vec![k.kid.clone()]);

    // The refresh fails from now on: retried after cooldown × 1, 2, 4, 8…, at most the
    // interval (each ±10 %).
    tokio::time::sleep(INTERVAL * 3).await;
    let started = p.script.started();
    let gaps: Vec<f64> = started
        .windows(2)
        .skip(1)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let mut want = COOLDOWN.as_secs_f64();
    for gap in &gaps {
        assert!(
            (gap / want - 1.0).abs() <= 0.11,
            "gap {gap} s, want {want} s ±10 % ({gaps:?})"
        );
        want = (want * 2.0).min(INTERVAL.as_secs_f64());
    }
    assert!(gaps.len() >= 5, "{gaps:?}");

    // Stale on error: the last good key serves until max_stale after its fetch...
    assert_eq!(p.kids(), vec![k.kid.clone()]);
    let dropped = || {
        p.metrics
            .trust_keys_dropped
            .with_label_values(&["orders"])
            .get()
    };
    assert_eq!(dropped(), 0);
    tokio::time::sleep(MAX_STALE).await;
    // ...then it is gone, counted, and the identity fails closed with 503.
    assert!(p.kids().is_empty());
    assert_eq!(dropped(), 1);
    assert!(matches!(p.ask(&k.kid).await, Err(KidRefusal::Unavailable)));
    let fetched_errors = p
        .metrics
        .trust_fetches
        .with_label_values(&["orders", "error"])
        .get();
    assert!(fetched_errors >= 5);
}

#[tokio::test(start_paused = true)]
async fn never_fetched_is_unavailable_and_another_identity_is_not_the_sources_business() {
    let script = Script::default();
    script.then(Err("timed out"));
    let p = plane(script);
    p.first_fetch().await;
    assert!(matches!(p.ask("any").await, Err(KidRefusal::Unavailable)));
    let trust = p.trust.clone();
    let other = trust
        .unknown_kid(&claimed("search", "kid"), || Ok::<_, Rejection>(()))
        .await;
    assert!(
        matches!(other, Err(KidRefusal::Unknown)),
        "no URL source for search"
    );
    let described = trust.describe();
    let source = &described["url_sources"][0];
    assert_eq!(source["usable"], false);
    assert!(source["last_error"].as_str().unwrap().contains("timed out"));
}
