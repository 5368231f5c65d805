//! The fleet as an attacker and an outage see it (DESIGN.md "Fleet"), against a real
//! `redis-server` frozen, killed and restarted by pid: refused requests leave nothing in
//! the shared store; a single-use token used during an outage is still single-use after
//! it; a replica idle across a restart serves its next request from the store; a store
//! that refuses trustgate's commands is down, and says why, until they succeed.
use crate::fleet::{bound, call, fleet_with, metric, redis_here, wait_fleet_up, Fleet};
use crate::support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::StatusCode;
use support::redis::Redis;
use support::*;

/// `n` replicas requiring request-bound tokens whose single use is fleet-wide
/// (`fleet_extra` in [fleet], `extra` after it), once every replica has reached the store.
async fn single_use_fleet(n: usize, redis: &Redis, fleet_extra: &str, extra: &str) -> Fleet {
    let f = fleet_with(
        n,
        redis,
        &["require_request_binding = true", "replay_scope = \"fleet\""],
        fleet_extra,
        extra,
    )
    .await;
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    f
}

/// A bound token for `GET path` from orders whose `jti` is `jti` (any size).
fn bound_with_jti(f: &Fleet, path: &str, jti: &str) -> String {
    let key = trustgate::keys::load_signing_key(&f.orders.private).unwrap();
    let now = trustgate::proxy::unix_now();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
    let claims = serde_json::json!({"iss": "orders", "sub": "orders", "aud": "billing",
        "iat": now, "exp": now + 60, "jti": jti, "htm": "GET", "htu": path});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Requests refused by policy (403), by a limit (429) or as a replay write no single-use key: the
/// store holds only what reached the app, each key a fixed-size digest however long the
/// token's `jti` (a 4 000-byte one here).
#[tokio::test]
async fn refused_requests_leave_nothing_in_the_store() {
    if !redis_here() {
        return;
    }
    let redis = Redis::start("s3cret-fleet");
    let f = single_use_fleet(
        1,
        &redis,
        "",
        "[[inbound.deny]]\nname = \"no-admin\"\npaths = [\"/admin/*\"]\n\
         [callers.orders]\nrate_limit = \"3/h\"\nburst = 3\n",
    )
    .await;
    let side = &f.replicas[0];
    for i in 0..20 {
        let path = format!("/admin/{i}");
        let a = call(side, &path, &bound(&f.orders, "orders", &path)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    }
    assert_eq!(redis.keys(), Vec::<String>::new(), "refused by policy");
    let long = "j".repeat(4000);
    let a = call(side, "/pay", &bound_with_jti(&f, "/pay", &long)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // Still single-use.
    let a = call(side, "/pay", &bound_with_jti(&f, "/pay", &long)).await;
    assert_eq!(
        (a.status, a.json()["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed")),
        "{}",
        a.body
    );
    let a = call(side, "/pay", &bound(&f.orders, "orders", "/pay")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for _ in 0..20 {
        let a = call(side, "/pay", &bound(&f.orders, "orders", "/pay")).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    }
    let keys = redis.keys();
    assert_eq!(keys.len(), 2, "the two that reached the app: {keys:?}");
    for k in &keys {
        assert_eq!(k.len(), "trustgate:billing:jti:".len() + 64, "{k}");
    }
}

/// `replay_on_error = "local"`: a token used at replica A while the store is frozen is
/// decided by A alone; once A says the store is back, replica B refuses it — A wrote what
/// it accepted alone before counting the store as back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_used_during_an_outage_is_still_single_use_after_it() {
    if !redis_here() {
        return;
    }
    let redis = Redis::start("s3cret-fleet");
    let f = single_use_fleet(2, &redis, "replay_on_error = \"local\"", "").await;
    let (a, b) = (&f.replicas[0], &f.replicas[1]);
    redis.pause(true);
    // The first request finds the store frozen (its command waits in the socket, and the
    // store runs it when it thaws); A then knows it is down and asks it nothing more.
    let first = call(a, "/pay", &bound(&f.orders, "orders", "/pay")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(metric(a, "trustgate_fleet_up").await, 0.0);
    let t = bound(&f.orders, "orders", "/pay");
    let used = call(a, "/pay", &t).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    // A refuses it again on its own meanwhile.
    let again = call(a, "/pay", &t).await;
    assert_eq!(again.json()["reason"], "replayed", "{}", again.body);
    redis.pause(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(a, "trustgate_fleet_up").await != 1.0 {
        assert!(Instant::now() < deadline, "A never saw the store back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    let replay = call(b, "/pay", &t).await;
    assert_eq!(
        (replay.status, replay.json()["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed")),
        "{}",
        replay.body
    );
}

/// Redis killed and restarted while a replica is idle (`on_error = "refuse"`, replay
/// checks refusing too): once the replica says the store is up, its next request is
/// served by the store — a dead connection is not the next request's problem. Three
/// rounds, each a limit and a replay check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_serves_its_first_request_after_a_restart() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("s3cret-fleet");
    let f = single_use_fleet(
        1,
        &redis,
        "on_error = \"refuse\"",
        "[callers.orders]\nrate_limit = \"100000/s\"\nrate_limit_scope = \"fleet\"\n",
    )
    .await;
    let side = &f.replicas[0];
    let a = call(side, "/pay", &bound(&f.orders, "orders", "/pay")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for round in 0..3 {
        redis.kill();
        redis.restart();
        wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
        let a = call(side, "/pay", &bound(&f.orders, "orders", "/pay")).await;
        assert_eq!(a.status, StatusCode::OK, "round {round}: {}", a.body);
    }
    // Each of the four asked the store for the limit and the replay check.
    for op in ["rate", "replay"] {
        let ok = format!("trustgate_fleet_operations_total{{op=\"{op}\",result=\"ok\"}}");
        assert!(metric(side, &ok).await >= 4.0, "{op}");
    }
}

/// An ACL user lacking the key prefix (`NOPERM`): the store is down — `trustgate_fleet_up`
/// stays 0 between requests, one line names the refusal, never "reachable again" — until
/// the permission is granted. Then the store restarted without the user: the line says
/// the password was refused. A refusal's access log line names the verified caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refusing_trustgate_is_down_and_says_why() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("admin-pw");
    let acl = |keys: &str| {
        redis.cmd(&[
            "ACL",
            "SETUSER",
            "billing",
            "reset",
            "on",
            ">billing-pw",
            keys,
            "+@all",
        ]);
    };
    acl("~other:*");
    let keys = Keys::new();
    let (orders, billing) = (keys.make("orders"), keys.make("billing"));
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let password_file = keys.path().join("redis-password");
    std::fs::write(&password_file, "billing-pw").unwrap();
    let app = spawn_app().await;
    let url = format!("{}?user=billing", redis.url);
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .set("inbound", "require_request_binding = true")
        .set("inbound", "replay_scope = \"fleet\"")
        .extra(&format!(
            "[fleet]\nredis = \"{url}\"\npassword_file = \"{}\"\non_error = \"refuse\"\n\
             [callers.orders]\nrate_limit = \"1000/s\"\nrate_limit_scope = \"fleet\"\n",
            password_file.display()
        ))
        .toml();
    let run = run_binary(&text, keys.path());
    let mut lines = Vec::new();
    let take = |lines: &mut Vec<String>| {
        while let Ok(l) = run.lines.try_recv() {
            lines.push(l);
        }
    };
    let ask = || {
        let u = format!("http://{}/pay", run.inbound);
        let t = bound(&orders, "orders", "/pay");
        async move { get(u, &[("authorization", &format!("Bearer {t}"))]).await }
    };
    let up = || {
        let u = format!("http://{}/metrics", run.admin);
        async move {
            let page = get(u, &[]).await.body;
            page.lines()
                .find_map(|l| l.strip_prefix("trustgate_fleet_up ")?.parse::<f64>().ok())
                .unwrap_or(-1.0)
        }
    };
    // Two seconds of requests and samples: refused every time, never up.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let a = ask().await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(a.json()["reason"], "fleet_unavailable");
        assert_eq!(up().await, 0.0, "a store refusing trustgate is down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    take(&mut lines);
    let count = |lines: &[String], m: &str| lines.iter().filter(|l| l.contains(m)).count();
    let fleet_lines = |lines: &[String]| -> String {
        lines
            .iter()
            .filter(|l| l.contains("fleet store"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        count(&lines, "fleet store refuses trustgate"),
        1,
        "{}",
        fleet_lines(&lines)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("fleet store refuses") && l.contains("NOPERM")),
        "{}",
        fleet_lines(&lines)
    );
    assert_eq!(count(&lines, "reachable"), 0, "{}", fleet_lines(&lines));
    // The access log names the caller the store's refusal concerned.
    let access = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["target"] == "trustgate::access" && v["fields"]["reason"] == "fleet_unavailable"
        })
        .expect("an access log line");
    assert_eq!(access["fields"]["caller"], "orders", "{access}");

    // Granted: back, once.
    acl("~trustgate:billing:*");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask().await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "never back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Restarted without its ACL user: the password is refused, and the line says so.
    redis.kill();
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        take(&mut lines);
        if lines
            .iter()
            .any(|l| l.contains("fleet store refuses") && l.contains("password was refused"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no line names the refused password:\n{}",
            fleet_lines(&lines)
        );
        let _ = ask().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up().await, 0.0);
    assert!(!lines.iter().any(|l| l.contains("billing-pw")));
}

/// Many tokens accepted alone during an outage reach the store when it is back, and the
/// store's keys stay few and fixed-size (no growth from refusals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_of_an_outage_reaches_the_store() {
    if !redis_here() {
        return;
    }
    let mut redis = Redis::start("s3cret-fleet");
    let f = single_use_fleet(1, &redis, "replay_on_error = \"local\"", "").await;
    let side = &f.replicas[0];
    redis.kill();
    let tokens: Vec<String> = (0..50)
        .map(|_| bound(&f.orders, "orders", "/pay"))
        .collect();
    for t in &tokens {
        let a = call(side, "/pay", t).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    redis.restart();
    wait_fleet_up(&f, 1.0, Duration::from_secs(10)).await;
    let keys = redis.keys();
    assert_eq!(keys.len(), 50, "{keys:?}");
    let ttl: i64 = ::redis::from_redis_value(redis.cmd(&["PTTL", &keys[0]])).unwrap();
    assert!((1..=90_000).contains(&ttl), "the lifetime left: {ttl}");
}
