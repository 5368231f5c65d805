//! The fleet (DESIGN.md "Fleet"): what the sidecars of one service's replicas share in
//! Redis (or Valkey) — callers' rate limits and the single-use tokens already seen.
//!
//! - One multiplexed connection per sidecar ([`link`]: redis-rs's `ConnectionManager`,
//!   reconnecting with backoff; TLS through rustls; the password re-read when its file
//!   changes), never one per request.
//! - A fleet-wide GCRA in one atomic server-side step per request: a Lua script, loaded
//!   once and called by its hash (re-loaded by the client if the store lost it), reading
//!   the store's own clock so that replicas' clocks do not matter.
//! - A replay check in one atomic `SET NX PX` per single-use token, expiring with it.
//! - Every operation bounded by `fleet.timeout`. When the store does not answer, the
//!   fleet is *down*: operations are not even tried (no request waits for a store known to
//!   be gone) and the caller decides by `fleet.on_error` / `fleet.replay_on_error`; the
//!   upkeep task probes it and marks it up again. One log line when it goes, one when it
//!   is back; `trustgate_fleet_up` says which.
mod link;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::{Histogram, IntCounter, IntGauge, Registry};

use crate::config::{self, OnError};
use link::Link;

/// A fleet-wide GCRA step. `KEYS[1]`: the caller's theoretical arrival time (µs, the
/// store's clock). `ARGV[1]`: the emission interval (µs), `ARGV[2]`: the burst. Returns 0
/// when the request conforms (and records it), else the µs until one would.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - interval * tonumber(ARGV[2]) - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
";

/// Which operation: the label `op` of the fleet metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Rate = 0,
    Replay = 1,
}

const OPS: [&str; 2] = ["rate", "replay"];
const RESULTS: [&str; 3] = ["ok", "error", "timeout"];

/// The store did not answer (an error, the timeout, or it is known to be down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A fleet limit's quota: the emission interval and the burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub interval_us: u64,
    pub burst: u32,
}

impl Quota {
    pub fn of(rate: config::Rate, burst: Option<u32>) -> Option<Quota> {
        let interval = rate.per.checked_div(rate.count)?;
        Some(Quota {
            interval_us: (interval.as_micros() as u64).max(1),
            burst: burst.unwrap_or_else(|| rate.default_burst()).max(1),
        })
    }
}

/// What `[fleet]`'s files say (the password file, the CA): for `trustgate check` and
/// start-up, which refuse to go on without them.
pub fn file_problems(cfg: &config::Config) -> Vec<String> {
    let Some(f) = &cfg.fleet else {
        return Vec::new();
    };
    match link::Settings::new(f).and_then(|s| s.password().map(drop)) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e],
    }
}

pub struct Fleet {
    link: ArcSwap<Link>,
    settings: link::Settings,
    prefix: String,
    timeout: Duration,
    pub on_error: OnError,
    pub replay_on_error: OnError,
    state: AtomicU8,
    /// When the store went away (for the line saying it is back).
    down_since: Mutex<Option<Instant>>,
    gcra: redis::Script,
    metrics: FleetMetrics,
}

struct FleetMetrics {
    /// By op, then result.
    operations: [[IntCounter; 3]; 2],
    seconds: [Histogram; 2],
    up: IntGauge,
}

impl FleetMetrics {
    fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let operations = prometheus::register_int_counter_vec_with_registry!(
            "trustgate_fleet_operations_total",
            "Operations on the fleet's store, by op (rate, replay) and result (ok, error, timeout)",
            &["op", "result"],
            r
        )?;
        let seconds = prometheus::register_histogram_vec_with_registry!(
            "trustgate_fleet_operation_seconds",
            "Time of the fleet's store operations that were tried, by op",
            &["op"],
            vec![0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
            r
        )?;
        let up = prometheus::register_int_gauge_with_registry!(
            "trustgate_fleet_up",
            "1 while the fleet's store answers, 0 while limits and replay checks fall back",
            r
        )?;
        let by = |op: &str| RESULTS.map(|res| operations.with_label_values(&[op, res]));
        Ok(FleetMetrics {
            operations: OPS.map(by),
            seconds: OPS.map(|op| seconds.with_label_values(&[op])),
            up,
        })
    }
}

impl Fleet {
    /// The fleet of a checked `[fleet]`: its files read (the password, the CA), its
    /// connection made lazily — nothing is dialled until [`Fleet::start`] or a request.
    pub fn new(cfg: &config::Fleet, registry: &Registry) -> Result<Arc<Fleet>, String> {
        let settings = link::Settings::new(cfg)?;
        let link = Link::new(&settings, settings.password()?)?;
        Ok(Arc::new(Fleet {
            link: ArcSwap::from_pointee(link),
            settings,
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            on_error: cfg.on_error,
            replay_on_error: cfg.replay_on_error,
            state: AtomicU8::new(UNKNOWN),
            down_since: Mutex::new(None),
            gcra: redis::Script::new(GCRA),
            metrics: FleetMetrics::new(registry).map_err(|e| format!("metrics: {e}"))?,
        }))
    }

    /// Starts the upkeep: the first probe now, then one while the store is down, and the
    /// password file re-read, twice a second. Ends when the fleet is dropped.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(link::upkeep(Arc::downgrade(self)));
    }

    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// One request of `caller` against its fleet-wide bucket: `Ok(None)` admitted,
    /// `Ok(Some(s))` over the limit (retry after `s` whole seconds).
    pub async fn rate(&self, caller: &str, q: Quota) -> Result<Option<u64>, Unavailable> {
        let key = format!("{}rate:{caller}", self.prefix);
        let mut call = self.gcra.key(key);
        call.arg(q.interval_us).arg(q.burst);
        let wait: u64 = self
            .run(
                Op::Rate,
                |mut c| async move { call.invoke_async(&mut c).await },
            )
            .await?;
        // Whole seconds, rounded up, as the local bucket says it.
        Ok((wait > 0).then(|| wait.div_ceil(1_000_000)))
    }

    /// Records the first use of `caller`'s token `jti`, for `ttl`: `Ok(false)` if some
    /// replica saw it before.
    pub async fn first_use(
        &self,
        caller: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        // The caller in the key, its length first: one caller's jti never locks out
        // another's, whatever either contains.
        let key = format!("{}jti:{}:{caller}:{jti}", self.prefix, caller.len());
        let ms = (ttl.as_millis() as u64).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX").arg("PX").arg(ms);
        let set: Option<String> = self
            .run(
                Op::Replay,
                |mut c| async move { cmd.query_async(&mut c).await },
            )
            .await?;
        Ok(set.is_some())
    }

    /// One operation within the timeout, counted and timed; the fleet marked up or down.
    async fn run<T, F, Fut>(&self, op: Op, f: F) -> Result<T, Unavailable>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let counts = &self.metrics.operations[op as usize];
        if self.state.load(Ordering::Acquire) == DOWN {
            counts[1].inc();
            return Err(Unavailable);
        }
        let conn = self.link.load().conn.clone();
        let start = Instant::now();
        let result = tokio::time::timeout(self.timeout, f(conn)).await;
        self.metrics.seconds[op as usize].observe(start.elapsed().as_secs_f64());
        match result {
            Ok(Ok(v)) => {
                counts[0].inc();
                self.mark_up();
                Ok(v)
            }
            Ok(Err(e)) => {
                counts[1].inc();
                self.mark_down(&link::describe(&e));
                Err(Unavailable)
            }
            Err(_) => {
                counts[2].inc();
                self.mark_down(&format!(
                    "no answer within fleet.timeout ({})",
                    humantime::format_duration(self.timeout)
                ));
                Err(Unavailable)
            }
        }
    }

    fn mark_up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) == UP {
            return;
        }
        self.metrics.up.set(1);
        let since = self.lock_down_since().take();
        match since {
            Some(t) => tracing::info!(
                down_for = %humantime::format_duration(Duration::from_millis(t.elapsed().as_millis() as u64)),
                "fleet store reachable again: limits and replay checks are fleet-wide again"
            ),
            None => tracing::info!("fleet store reachable"),
        }
    }

    fn mark_down(&self, why: &str) {
        if self.state.swap(DOWN, Ordering::AcqRel) == DOWN {
            return;
        }
        self.metrics.up.set(0);
        *self.lock_down_since() = Some(Instant::now());
        let word = |e: OnError| match e {
            OnError::Local => "decided by this sidecar alone",
            OnError::Refuse => "refused (503 fleet_unavailable)",
        };
        tracing::warn!(
            error = why,
            limits = word(self.on_error),
            replay_checks = word(self.replay_on_error),
            "fleet store unreachable: until it is back, fleet-scoped limits and replay checks are"
        );
    }

    fn lock_down_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.down_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}
