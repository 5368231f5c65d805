//! The fleet (DESIGN.md "Fleet"): three replicas of one service sharing a real Redis
//! (Debian's `redis-server`, started here with a password, once over TLS). A caller's
//! fleet-wide limit holds across the three together; a single-use token used at one
//! replica is refused at another; the store killed, hung and restarted under load; its
//! password rotated.
use crate::support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::redis::Redis;
use support::*;
use trustgate::keys::GeneratedFiles;
use trustgate::token::TokenSigner;

/// Replicas of billing in front of one app, trusting orders and search, sharing `redis`.
pub(crate) struct Fleet {
    pub(crate) replicas: Vec<Sidecar>,
    pub(crate) orders: GeneratedFiles,
    search: GeneratedFiles,
    password_file: PathBuf,
    _keys: Keys,
}

pub(crate) async fn fleet(n: usize, redis: &Redis, fleet_extra: &str, extra: &str) -> Fleet {
    fleet_with(n, redis, &[], fleet_extra, extra).await
}

/// [`fleet`], with `inbound` lines in each replica's [inbound].
pub(crate) async fn fleet_with(
    n: usize,
    redis: &Redis,
    inbound: &[&str],
    fleet_extra: &str,
    extra: &str,
) -> Fleet {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let search = keys.make("search");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[&orders, &search]);
    let password_file = keys.path().join("redis-password");
    std::fs::write(&password_file, format!("{}\n", redis.password)).unwrap();
    let app = spawn_app().await;
    let mut replicas = Vec::new();
    for _ in 0..n {
        let mut conf = Conf::new("billing", &billing.private).inbound(&trusted, app);
        for line in inbound {
            conf = conf.set("inbound", *line);
        }
        let side = conf
            .extra(&format!(
                "[fleet]\nredis = \"{}\"\npassword_file = \"{}\"\n{fleet_extra}\n{extra}",
                redis.url,
                password_file.display()
            ))
            .start()
            .await;
        replicas.push(side);
    }
    Fleet {
        replicas,
        orders,
        search,
        password_file,
        _keys: keys,
    }
}

pub(crate) fn token(key: &GeneratedFiles, iss: &str) -> String {
    sign_as(key, iss, "billing")
}

/// A single-use token: bound to `GET path`, its own jti.
pub(crate) fn bound(key: &GeneratedFiles, iss: &str, path: &str) -> String {
    let k = Arc::new(trustgate::keys::load_signing_key(&key.private).unwrap());
    TokenSigner::new(iss.into(), k, Duration::from_secs(60))
        .sign(
            "billing",
            None,
            Some(("GET", path)),
            trustgate::proxy::unix_now(),
        )
        .unwrap()
}

pub(crate) async fn call(side: &Sidecar, path: &str, token: &str) -> Answer {
    get(
        format!("http://{}{path}", side.inbound()),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// A series of the sidecar's /metrics page (0 when absent).
pub(crate) async fn metric(side: &Sidecar, series: &str) -> f64 {
    let page = get(format!("http://{}/metrics", side.admin()), &[])
        .await
        .body;
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

pub(crate) async fn all_fleet_up(f: &Fleet, up: f64) -> bool {
    for side in &f.replicas {
        if metric(side, "trustgate_fleet_up").await != up {
            return false;
        }
    }
    true
}

/// Polls (with a deadline) until every replica's `trustgate_fleet_up` is `up`.
pub(crate) async fn wait_fleet_up(f: &Fleet, up: f64, within: Duration) -> Duration {
    let start = Instant::now();
    while !all_fleet_up(f, up).await {
        assert!(
            start.elapsed() < within,
            "trustgate_fleet_up did not become {up} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Three replicas, two callers with the same limit (30 an hour, a bucket of 30: nothing
/// refills during the test): orders' is fleet-wide, search's per sidecar. 90 requests of
/// each, spread over the replicas: orders gets 30 through in all, search 30 at each.
#[tokio::test]
async fn three_replicas_hold_one_fleet_limit_where_sidecar_limits_triple() {
    if !redis_here() {
        return;
    }
    let redis = Redis::start("s3cret-fleet");
    let f = fleet(
        3,
        &redis,
        "",
        "[callers.orders]\nrate_limit = \"30/h\"\nburst = 30\nrate_limit_scope = \"fleet\"\n\
         [callers.search]\nrate_limit = \"30/h\"\nburst = 30\nrate_limit_scope = \"sidecar\"\n",
    )
    .await;
    let (orders, search) = (token(&f.orders, "orders"), token(&f.search, "search"));
    let mut ok = [[0usize; 3]; 2];
    for i in 0..90 {
        let side = &f.replicas[i % 3];
        for (who, t) in [(0, &orders), (1, &search)] {
            let a = call(side, "/x", t).await;
            match a.status {
                StatusCode::OK => ok[who][i % 3] += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(a.json()["reason"], "rate_limited", "{}", a.body);
                    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
                    // The next request of 30 an hour: two minutes.
                    assert!((119..=120).contains(&retry), "Retry-After {retry}");
                }
                s => panic!("{s}: {}", a.body),
            }
        }
    }
    let total = |who: usize| ok[who].iter().sum::<usize>();
    eprintln!(
        "fleet scope: {:?} = {}; sidecar scope: {:?} = {}",
        ok[0],
        total(0),
        ok[1],
        total(1)
    );
    assert!((29..=31).contains(&total(0)), "fleet-wide: {:?}", ok[0]);
    assert!(
        ok[0].iter().all(|n| *n > 0),
        "every replica admitted some: {:?}",
        ok[0]
    );
    assert_eq!(
        ok[1],
        [30, 30, 30],
        "per sidecar: each replica's own bucket"
    );
    // One rate operation per request of the fleet-limited caller, none for the other.
    let mut ops = 0.0;
    for side in &f.replicas {
        ops += metric(
            side,
            "trustgate_fleet_operations_total{op=\"rate\",result=\"ok\"}",
        )
        .await;
        assert_eq!(metric(side, "trustgate_fleet_up").await, 1.0);
    }
    assert_eq!(ops, 90.0);
    // The same refusal counted as a local limit's: 429 rate_limited, by caller.
    let mut limited = 0.0;
    for side in &f.replicas {
        limited += metric(
            side,
            "trustgate_caller_limited_total{caller=\"orders\",reason=\"rate_limited\"}",
        )
        .await;
    }
    assert_eq!(limited as usize, 90 - total(0));
    // The store holds orders' bucket under the service's prefix, and nothing else.
    assert_eq!(redis.keys(), ["trustgate:billing:rate:orders"]);
}

/// A single-use (request-bound) token used at one replica is refused at the others; with
/// the replay cache per sidecar it is not — the replay this scope exists for.
#[tokio::test]
async fn a_single_use_token_is_refused_at_every_other_replica() {
    if !redis_here() {
        return;
    }
    let redis = Redis::start("s3cret-fleet");
    let shared = replicas_with_inbound(&redis, "replay_scope = \"fleet\"").await;
    let t = bound(&shared.orders, "orders", "/pay?id=1");
    let first = call(&shared.replicas[0], "/pay?id=1", &t).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    for side in &shared.replicas[1..] {
        let again = call(side, "/pay?id=1", &t).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
        assert_eq!(again.json()["reason"], "replayed");
    }
    // The same again at the first replica: its own cache says nothing new, the store does.
    let again = call(&shared.replicas[0], "/pay?id=1", &t).await;
    assert_eq!(again.json()["reason"], "replayed");
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    // A fixed-size digest of the caller and the jti, whatever the jti's size.
    let digest = keys[0]
        .strip_prefix("trustgate:billing:jti:")
        .unwrap_or_default();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{keys:?}"
    );
    // It expires with the token (60 s lifetime + 30 s leeway).
    let ttl: i64 = ::redis::from_redis_value(redis.cmd(&["PTTL", &keys[0]])).unwrap();
    assert!((85_000..=90_000).contains(&ttl), "PTTL {ttl}");

    // Per sidecar: the second replica takes the replay.
    let local = replicas_with_inbound(&redis, "replay_scope = \"sidecar\"").await;
    let t = bound(&local.orders, "orders", "/pay?id=2");
    assert_eq!(
        call(&local.replicas[0], "/pay?id=2", &t).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&local.replicas[1], "/pay?id=2", &t).await.status,
        StatusCode::OK
    );
}

/// Three replicas of billing requiring bound tokens, `inbound_line` in their [inbound].
async fn replicas_with_inbound(redis: &Redis, inbound_line: &str) -> Fleet {
    fleet_with(
        3,
        redis,
        &["require_request_binding = true", inbound_line],
        "",
        "",
    )
    .await
}

/// `redis-server` is here (required in CI: TRUSTGATE_REQUIRE_INTEROP).
pub(crate) fn redis_here() -> bool {
    support::redis::available()
}

/// Requests of `token` spread over the replicas by `workers` loops until `stop`: every
/// status seen, by code.
fn load(
    f: &Fleet,
    token: &str,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..workers)
        .map(|w| {
            let addrs: Vec<_> = f.replicas.iter().map(Sidecar::inbound).collect();
            let (token, stop) = (token.to_owned(), stop.clone());
            tokio::spawn(async move {
                let client = client();
                let mut seen = Vec::new();
                let mut i = w;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let req = http::Request::get(format!("http://{}/load", addrs[i % 3]))
                        .header("authorization", format!("Bearer {token}"))
                        .body(body(bytes::Bytes::new()))
                        .unwrap();
                    seen.push(send(&client, req).await.status.as_u16());
                    i += 1;
                }
                seen
            })
        })
        .collect()
}

/// A rate operation's series of `result`.
fn op(result: &str) -> String {
    format!("trustgate_fleet_operations_total{{op=\"rate\",result=\"{result}\"}}")
}

/// `series` summed over the replicas.
async fn sum(f: &Fleet, series: &str) -> f64 {
    let mut total = 0.0;
    for side in &f.replicas {
        total += metric(side, series).await;
    }
    total
}

/// Polls (with a deadline) until `series`, summed over the replicas, reaches `n`.
async fn reaches(f: &Fleet, series: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sum(f, series).await < n {
        assert!(Instant::now() < deadline, "{series} did not reach {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Redis killed, restarted, then hung (SIGSTOP) and let go, under load on three replicas
/// whose fallback is `local`: not one request gets anything but 200 (the limit is far
/// above the load), `trustgate_fleet_up` follows the store, operations are counted as
/// errors and timeouts, and the fleet is fleet-wide again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_killed_restarted_and_hung_under_load_costs_no_request() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("s3cret-fleet");
    let f = fleet(
        3,
        &redis,
        "",
        "[callers.orders]\nrate_limit = \"100000/s\"\nrate_limit_scope = \"fleet\"\n",
    )
    .await;
    let orders = token(&f.orders, "orders");
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = load(&f, &orders, 6, stop.clone());
    const OK: &str = "trustgate_fleet_operations_total{op=\"rate\",result=\"ok\"}";
    const SERVED: &str = "trustgate_requests_total{direction=\"inbound\",outcome=\"ok\"}";
    // Load reaches the store.
    let before = sum(&f, OK).await;
    reaches(&f, OK, before + 100.0).await;

    redis.kill();
    let down = wait_fleet_up(&f, 0.0, Duration::from_secs(10)).await;
    let errors = sum(&f, &op("error")).await;
    // Requests go on, decided by each sidecar's bucket.
    let served = sum(&f, SERVED).await;
    reaches(&f, SERVED, served + 200.0).await;
    redis.restart();
    let restarted = Instant::now();
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    let recovery = restarted.elapsed();
    // Fleet-wide again: the restarted store answers the replicas' operations (its bucket
    // key lives a millisecond at this rate, so the counter says it, not KEYS).
    let ok_again = sum(&f, OK).await;
    reaches(&f, OK, ok_again + 100.0).await;

    // Hung: connections open, no answer. Each replica's first operation times out.
    redis.pause(true);
    wait_fleet_up(&f, 0.0, Duration::from_secs(10)).await;
    let timeouts = sum(&f, &op("timeout")).await;
    redis.pause(false);
    let resumed = Instant::now();
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    let recovery_hung = resumed.elapsed();

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    let not_ok: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    eprintln!(
        "{} requests; down seen after {down:?}; back {recovery:?} after the restart, \
         {recovery_hung:?} after SIGCONT; errors {errors}, timeouts {timeouts}",
        statuses.len()
    );
    assert!(
        not_ok.is_empty(),
        "{} of {}: {:?}",
        not_ok.len(),
        statuses.len(),
        &not_ok[..not_ok.len().min(10)]
    );
    assert!(
        errors >= 1.0 && timeouts >= 1.0,
        "errors {errors}, timeouts {timeouts}"
    );
}

/// The real binary with `on_error = "refuse"`: while the store is gone the fleet-limited
/// caller's single-use tokens get 503 `fleet_unavailable` with Retry-After (replay checks
/// refuse by default), `/readyz` stays 200; one log
/// line when it goes and one when it is back, however many requests came between; the
/// password in no line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_while_the_store_is_gone_with_one_log_line_each_way() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("pw-never-logged");
    let keys = Keys::new();
    let (orders, billing) = (keys.make("orders"), keys.make("billing"));
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let password_file = keys.path().join("redis-password");
    std::fs::write(&password_file, &redis.password).unwrap();
    let app = spawn_app().await;
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .set("inbound", "require_request_binding = true")
        .set("inbound", "replay_scope = \"fleet\"")
        .extra(&format!(
            "[fleet]\nredis = \"{}\"\npassword_file = \"{}\"\non_error = \"refuse\"\n\
             [callers.orders]\nrate_limit = \"1000/s\"\nrate_limit_scope = \"fleet\"\n",
            redis.url,
            password_file.display()
        ))
        .toml();
    let run = run_binary(&text, keys.path());
    let mut lines = Vec::new();
    let take_lines = |lines: &mut Vec<String>| {
        while let Ok(l) = run.lines.try_recv() {
            lines.push(l);
        }
    };
    let url = |p: &str| format!("http://{}{p}", run.inbound);
    let ask = |path: &'static str, t: String| {
        let u = url(path);
        async move { get(u, &[("authorization", &format!("Bearer {t}"))]).await }
    };
    let a = ask("/pay", bound(&orders, "orders", "/pay")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    redis.kill();
    for i in 0..40 {
        let a = ask("/pay", bound(&orders, "orders", "/pay")).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{i}: {}", a.body);
        assert_eq!(a.json()["reason"], "fleet_unavailable");
        assert_eq!(a.headers["retry-after"], "1");
    }
    let ready = get(format!("http://{}/readyz", run.admin), &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);

    redis.restart();
    let back = Instant::now();
    let mut refused = 40;
    loop {
        let a = ask("/pay", bound(&orders, "orders", "/pay")).await;
        if a.status == StatusCode::OK {
            break;
        }
        assert_eq!(a.json()["reason"], "fleet_unavailable");
        refused += 1;
        assert!(back.elapsed() < Duration::from_secs(10), "{}", a.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The log lines come out with the answers; wait for the second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let count = |lines: &[String], m: &str| lines.iter().filter(|l| l.contains(m)).count();
    loop {
        take_lines(&mut lines);
        if count(&lines, "fleet store reachable again") >= 1 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fleet_lines: Vec<&String> = lines.iter().filter(|l| l.contains("fleet store")).collect();
    eprintln!(
        "{}",
        fleet_lines
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        count(&lines, "fleet store unreachable"),
        1,
        "{fleet_lines:?}"
    );
    assert_eq!(
        count(&lines, "fleet store reachable again"),
        1,
        "{fleet_lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("pw-never-logged")));
    let m = get(format!("http://{}/metrics", run.admin), &[]).await.body;
    assert!(m.contains("trustgate_fleet_up 1"), "{m}");
    assert!(
        m.contains(&format!(
            "trustgate_inbound_rejections_total{{reason=\"fleet_unavailable\"}} {refused}"
        )),
        "{m}"
    );
}

/// The password rotated both ways round: the store first (its connections dropped: the
/// sidecars' reconnections are refused, they fall back), then the file — back; the file
/// first (refused), then the store — back. No restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_rotated_either_way_round_without_a_restart() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("first-password");
    let f = fleet(
        2,
        &redis,
        "",
        "[callers.orders]\nrate_limit = \"100000/s\"\nrate_limit_scope = \"fleet\"\n",
    )
    .await;
    let orders = token(&f.orders, "orders");
    let spread = |n: usize| {
        let f = &f;
        let orders = &orders;
        async move {
            for i in 0..n {
                let a = call(&f.replicas[i % 2], "/x", orders).await;
                assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            }
        }
    };
    spread(4).await;
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;

    redis.change_password("second-password");
    spread(4).await; // the dropped connections found, reconnections refused
    wait_fleet_up(&f, 0.0, Duration::from_secs(10)).await;
    std::fs::write(&f.password_file, "second-password\n").unwrap();
    let t = wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    eprintln!("store first: back {t:?} after the file changed");

    std::fs::write(&f.password_file, "third-password").unwrap();
    wait_fleet_up(&f, 0.0, Duration::from_secs(10)).await;
    spread(4).await; // decided locally meanwhile
    redis.change_password("third-password");
    let t = wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    eprintln!("file first: back {t:?} after the store changed");
    let before = metric(
        &f.replicas[0],
        "trustgate_fleet_operations_total{op=\"rate\",result=\"ok\"}",
    )
    .await;
    spread(4).await;
    let after = metric(
        &f.replicas[0],
        "trustgate_fleet_operations_total{op=\"rate\",result=\"ok\"}",
    )
    .await;
    assert_eq!(after - before, 2.0, "fleet-wide again");
}

/// `rediss://` with the CA in `fleet.ca_file`: three replicas share a limit over TLS.
/// Without the CA (the system's roots do not know it), the store is never trusted: down,
/// each sidecar's own bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_ca_file_and_never_without_it() {
    if !redis_here() {
        return;
    }
    let redis = Redis::start_tls("tls-password");
    let limit = "[callers.orders]\nrate_limit = \"6/h\"\nburst = 6\nrate_limit_scope = \"fleet\"\n";
    let ca = format!("ca_file = \"{}\"", tls_fixture("ca.crt").display());
    let f = fleet(3, &redis, &ca, limit).await;
    // A TLS handshake may take longer than one operation's 25 ms: until a replica has
    // reached the store it decides alone (`on_error = "local"`), which is not what this
    // test counts.
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    let orders = token(&f.orders, "orders");
    let mut ok = 0;
    for i in 0..18 {
        if call(&f.replicas[i % 3], "/x", &orders).await.status == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 6, "6 of 18 across the three, over TLS");
    assert!(all_fleet_up(&f, 1.0).await);

    let untrusting = fleet(1, &redis, "", limit).await;
    let orders = token(&untrusting.orders, "orders");
    for _ in 0..6 {
        assert_eq!(
            call(&untrusting.replicas[0], "/x", &orders).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&untrusting.replicas[0], "/x", &orders).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        metric(&untrusting.replicas[0], "trustgate_fleet_up").await,
        0.0
    );
}

/// `explain` says each limit's scope, and asks the store nothing (a replay check there
/// would use a single-use token up).
#[test]
fn explain_says_the_scope_and_touches_no_store() {
    if !redis_here() {
        return;
    }
    let redis = Redis::start("explain-pw");
    let keys = Keys::new();
    let (orders, billing) = (keys.make("orders"), keys.make("billing"));
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let password_file = keys.path().join("pw");
    std::fs::write(&password_file, "explain-pw").unwrap();
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, "127.0.0.1:9")
        .set("inbound", "require_request_binding = true")
        .set("inbound", "replay_scope = \"fleet\"")
        .extra(&format!(
            "[fleet]\nredis = \"{}\"\npassword_file = \"{}\"\n\
             [callers.orders]\nrate_limit = \"100/s\"\nrate_limit_scope = \"fleet\"\nmax_concurrent = 4\n",
            redis.url,
            password_file.display()
        ))
        .toml();
    let config = keys.path().join("billing.toml");
    std::fs::write(&config, text).unwrap();
    let t = bound(&orders, "orders", "/pay");
    let (_, out, err) = crate::policy::explain(&config, &["--token", &t, "GET", "/pay"]);
    assert!(
        out.contains("limits: rate_limit 100/s, burst 100 (fleet-wide: every replica together), max_concurrent 4 (per sidecar)"),
        "{out}{err}"
    );
    assert!(out.contains("token: valid"), "{out}{err}");
    assert!(redis.keys().is_empty(), "explain wrote {:?}", redis.keys());
}

/// `on_error = "refuse"` for limits: while the store is gone the fleet-limited caller gets
/// 503 `fleet_unavailable` (Retry-After 1) and a caller limited per sidecar is untouched;
/// with the default (`local`) the same caller is served by the sidecar's own bucket.
#[tokio::test]
async fn a_fleet_limit_refuses_or_decides_locally_while_the_store_is_gone() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("s3cret-fleet");
    let limits = "[callers.orders]\nrate_limit = \"1000/s\"\nrate_limit_scope = \"fleet\"\n\
                  [callers.search]\nrate_limit = \"1000/s\"\n";
    let refusing = fleet(1, &redis, "on_error = \"refuse\"", limits).await;
    let local = fleet(1, &redis, "", limits).await;
    let (orders, search) = (
        token(&refusing.orders, "orders"),
        token(&refusing.search, "search"),
    );
    let orders_local = token(&local.orders, "orders");
    assert_eq!(
        call(&refusing.replicas[0], "/x", &orders).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&local.replicas[0], "/x", &orders_local).await.status,
        StatusCode::OK
    );
    redis.kill();
    for _ in 0..5 {
        let a = call(&refusing.replicas[0], "/x", &orders).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(a.json()["reason"], "fleet_unavailable");
        assert_eq!(a.headers["retry-after"], "1");
        let s = call(&refusing.replicas[0], "/x", &search).await;
        assert_eq!(
            s.status,
            StatusCode::OK,
            "a sidecar-scoped caller: {}",
            s.body
        );
        let l = call(&local.replicas[0], "/x", &orders_local).await;
        assert_eq!(l.status, StatusCode::OK, "on_error = local: {}", l.body);
    }
    let ready = get(
        format!("http://{}/readyz", refusing.replicas[0].admin()),
        &[],
    )
    .await;
    assert_eq!(ready.status, StatusCode::OK);
}
