//! The fleet (DESIGN.md "Fleet"): what the sidecars of one service's replicas share in
//! Redis (or Valkey) — callers' rate limits and the single-use tokens already seen.
//!
//! - One multiplexed connection per sidecar ([`link`]: redis-rs's `ConnectionManager`,
//!   reconnecting with backoff; TLS through rustls; the password re-read when its file
//!   changes), never one per request.
//! - A fleet-wide GCRA in one atomic server-side step per request: a Lua script, loaded
//!   once and called by its hash (re-loaded by the client if the store lost it), reading
//!   the store's own clock so that replicas' clocks do not matter.
//! - A replay check in one atomic step per single-use token (a script: set-if-absent,
//!   expiring with the token, keyed by a fixed-size digest of the caller and `jti`), whose
//!   value is this request's own nonce: an operation retried after a dropped connection
//!   recognises its own write instead of reading it as a replay.
//! - Every operation bounded by `fleet.timeout`, retried once (within it) on a connection
//!   found dropped — the store restarted while this sidecar was idle. When the store does
//!   not answer, or refuses trustgate (`NOPERM`, `WRONGPASS`, `NOAUTH`), the fleet is
//!   *down*: operations are not even tried (no request waits for a store known to be gone)
//!   and the caller decides by `fleet.on_error` / `fleet.replay_on_error`; the upkeep task
//!   ([`link::upkeep`]) probes it with the operations themselves and marks it up again only
//!   when they succeed, after writing the single-use tokens accepted locally meanwhile.
//!   One log line when it goes (another if the reason turns from unreachable to refused),
//!   one when it is back; `trustgate_fleet_up` says which.
mod link;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::{Histogram, IntCounter, IntGauge, Registry};
use redis::aio::ConnectionManager;

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

/// A single-use token's first use. `KEYS[1]`: its key; `ARGV[1]`: this request's nonce,
/// `ARGV[2]`: its lifetime (ms). 1 when it is the first use (or this request's own earlier
/// write, seen again by a retry), 0 when someone used it before.
const FIRST_USE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
";

/// Most single-use tokens remembered while the store is away (`replay_on_error =
/// "local"`), to write when it returns: about 100 bytes each.
const BACKLOG: usize = 100_000;

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

/// Why the store is down: it does not answer, or it answers and refuses trustgate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trouble {
    Unreachable,
    Refused,
}

impl Trouble {
    fn of(e: &redis::RedisError) -> Trouble {
        let refusal = matches!(e.code(), Some("NOPERM" | "WRONGPASS" | "NOAUTH"))
            || e.kind() == redis::ErrorKind::AuthenticationFailed;
        match refusal {
            true => Trouble::Refused,
            false => Trouble::Unreachable,
        }
    }
}

/// A connection dropped under an operation (the store restarted, a proxy closed it): the
/// connection manager is already dialling a new one, and the operation may be tried again.
fn dropped(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || (e.is_io_error() && !e.is_connection_refusal())
}

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
/// start-up, which refuse to go on without them. Each names the configuration file, as
/// its other problems do.
pub fn file_problems(cfg: &config::Config) -> Vec<String> {
    let Some(f) = &cfg.fleet else {
        return Vec::new();
    };
    match link::Settings::new(f).and_then(|s| s.password().map(drop)) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("{}: {e}", cfg.source.display())],
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
    /// When the store went away (for the line saying it is back), and why (a new line when
    /// the reason changes).
    down_since: Mutex<Option<(Instant, Trouble)>>,
    /// Single-use tokens accepted by this sidecar alone while the store was away: keys and
    /// when each expires, written to the store before it counts as back.
    backlog: Mutex<std::collections::VecDeque<(String, Instant)>>,
    gcra: redis::Script,
    first_use: redis::Script,
    /// This sidecar's mark on the backlog's keys (see [`FIRST_USE`]).
    nonce: String,
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
            backlog: Mutex::new(Default::default()),
            gcra: redis::Script::new(GCRA),
            first_use: redis::Script::new(FIRST_USE),
            nonce: nonce(),
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
        let wait: u64 = self.run(Op::Rate, |c| self.gcra_step(c, &key, q)).await?;
        // Whole seconds, rounded up, as the local bucket says it.
        Ok((wait > 0).then(|| wait.div_ceil(1_000_000)))
    }

    fn gcra_step(
        &self,
        mut c: ConnectionManager,
        key: &str,
        q: Quota,
    ) -> impl std::future::Future<Output = redis::RedisResult<u64>> + '_ {
        let mut call = self.gcra.key(key);
        call.arg(q.interval_us).arg(q.burst);
        async move { call.invoke_async(&mut c).await }
    }

    /// Records the first use of `caller`'s token `jti`, for `ttl`: `Ok(false)` if some
    /// replica saw it before.
    pub async fn first_use(
        &self,
        caller: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let key = self.jti_key(caller, jti);
        let nonce = nonce();
        let first: u8 = self
            .run(Op::Replay, |c| self.first_use_step(c, &key, &nonce, ttl))
            .await?;
        Ok(first == 1)
    }

    fn first_use_step(
        &self,
        mut c: ConnectionManager,
        key: &str,
        nonce: &str,
        ttl: Duration,
    ) -> impl std::future::Future<Output = redis::RedisResult<u8>> + '_ {
        let mut call = self.first_use.key(key);
        call.arg(nonce).arg((ttl.as_millis() as u64).max(1));
        async move { call.invoke_async(&mut c).await }
    }

    /// The key of `caller`'s single-use token `jti`: a fixed-size digest of both (the
    /// caller's length first: one caller's jti never locks out another's), whatever
    /// size the token's `jti` has.
    fn jti_key(&self, caller: &str, jti: &str) -> String {
        let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        d.update(format!("{}:{caller}:", caller.len()).as_bytes());
        d.update(jti.as_bytes());
        format!("{}jti:{}", self.prefix, hex::encode(d.finish()))
    }

    /// A single-use token accepted by this sidecar alone while the store was away
    /// (`replay_on_error = "local"`): written to the store when it is back, with the
    /// lifetime it has left then, so that a replay at another replica is still caught.
    pub fn accepted_alone(&self, caller: &str, jti: &str, ttl: Duration) {
        let entry = (self.jti_key(caller, jti), Instant::now() + ttl);
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        if backlog.len() == BACKLOG {
            let full = backlog.pop_front();
            if full.is_some() && backlog.len() == BACKLOG - 1 {
                tracing::warn!(
                    most = BACKLOG,
                    "fleet: too many single-use tokens accepted while the store is away; \
                     the oldest will not be shared when it returns"
                );
            }
        }
        backlog.push_back(entry);
    }

    /// Writes the backlog ([`Fleet::accepted_alone`]) to the store, entries that expired
    /// meanwhile skipped. A token some other replica had used too is logged (a replay
    /// the outage let through). Stops at the first failure, keeping what is left.
    async fn write_backlog(&self) -> Result<(), String> {
        loop {
            let batch: Vec<(String, Instant)> = {
                let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
                let n = backlog.len().min(256);
                backlog.drain(..n).collect()
            };
            if batch.is_empty() {
                return Ok(());
            }
            let conn = self.link.load().conn.clone();
            let now = Instant::now();
            let writes = batch
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(key, until)| {
                    let step = self.first_use_step(conn.clone(), key, &self.nonce, *until - now);
                    tokio::time::timeout(link::CONNECT_TIMEOUT, step)
                });
            let results = futures_util::future::join_all(writes).await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(Ok(1)) => {}
                    Ok(Ok(_)) => tracing::warn!(
                        "fleet: a single-use token this sidecar accepted while the store was away \
                         had been used at another replica too"
                    ),
                    Ok(Err(e)) => failed = Some(link::describe(&e)),
                    Err(_) => failed = Some("no answer while writing the backlog".to_owned()),
                }
            }
            if let Some(why) = failed {
                // The batch back, for the next probe: what was written already is
                // recognised then as this sidecar's own (the same nonce).
                let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
                for entry in batch.into_iter().rev() {
                    backlog.push_front(entry);
                }
                return Err(why);
            }
        }
    }

    /// One operation within the timeout — tried again once, within the same timeout, on a
    /// connection found dropped — counted and timed; the fleet marked up or down.
    async fn run<T, F, Fut>(&self, op: Op, f: F) -> Result<T, Unavailable>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let counts = &self.metrics.operations[op as usize];
        if self.state.load(Ordering::Acquire) == DOWN {
            counts[1].inc();
            return Err(Unavailable);
        }
        let start = Instant::now();
        let attempts = async {
            match f(self.link.load().conn.clone()).await {
                Err(e) if dropped(&e) => f(self.link.load().conn.clone()).await,
                other => other,
            }
        };
        let result = tokio::time::timeout(self.timeout, attempts).await;
        self.metrics.seconds[op as usize].observe(start.elapsed().as_secs_f64());
        match result {
            Ok(Ok(v)) => {
                counts[0].inc();
                if self.state.load(Ordering::Acquire) == UNKNOWN {
                    self.mark_up();
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                counts[1].inc();
                self.mark_down(&link::describe(&e), Trouble::of(&e));
                Err(Unavailable)
            }
            Err(_) => {
                counts[2].inc();
                let why = format!(
                    "no answer within fleet.timeout ({})",
                    humantime::format_duration(self.timeout)
                );
                self.mark_down(&why, Trouble::Unreachable);
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
            Some((t, _)) => tracing::info!(
                down_for = %humantime::format_duration(Duration::from_millis(t.elapsed().as_millis() as u64)),
                "fleet store reachable again: limits and replay checks are fleet-wide again"
            ),
            None => tracing::info!("fleet store reachable"),
        }
    }

    /// The store is down for `why`: one line when it goes, and one more when the reason
    /// turns from not answering to refusing trustgate (or back) — never one per request.
    fn mark_down(&self, why: &str, trouble: Trouble) {
        let was = self.state.swap(DOWN, Ordering::AcqRel);
        let mut since = self.lock_down_since();
        let changed = match &mut *since {
            Some((_, known)) if was == DOWN => std::mem::replace(known, trouble) != trouble,
            _ => {
                *since = Some((Instant::now(), trouble));
                true
            }
        };
        drop(since);
        if !changed {
            return;
        }
        self.metrics.up.set(0);
        let word = |e: OnError| match e {
            OnError::Local => "decided by this sidecar alone",
            OnError::Refuse => "refused (503 fleet_unavailable)",
        };
        let (limits, replay) = (word(self.on_error), word(self.replay_on_error));
        match trouble {
            Trouble::Unreachable => tracing::warn!(
                error = why, limits, replay_checks = replay,
                "fleet store unreachable: until it is back, fleet-scoped limits and replay checks are"
            ),
            Trouble::Refused => tracing::warn!(
                error = why, limits, replay_checks = replay,
                "fleet store refuses trustgate (its user's password or permissions on the \
                 key prefix): until it accepts, fleet-scoped limits and replay checks are"
            ),
        }
    }

    fn lock_down_since(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Trouble)>> {
        self.down_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 128 random bits, hex: one request's mark on the key it writes.
fn nonce() -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    // A failed draw leaves zeros: a retry could then take another's write for its own,
    // no worse than the store without nonces.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}
