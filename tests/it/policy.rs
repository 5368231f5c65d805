//! Policy (DESIGN.md "Policy"): claim rules by JSON Pointer, deny rules first, audit
//! rules, claim headers (protected like identity headers, asserted on the bytes the app
//! received), per-caller limits with two callers at once, and `trustgate explain`.
use crate::support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::attack::target;
use support::raw::exchange;
use support::*;
use trustgate::keys::GeneratedFiles;

/// billing in front of the counting echo app, trusting orders and search.
struct World {
    side: Sidecar,
    orders: GeneratedFiles,
    search: GeneratedFiles,
    in_app: Arc<AtomicUsize>,
    _keys: Keys,
}

async fn world(extra: &str) -> World {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let search = keys.make("search");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[&orders, &search]);
    let in_app = Arc::new(AtomicUsize::new(0));
    let app = spawn_app_counting(in_app.clone()).await;
    let side = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .extra(extra)
        .start()
        .await;
    World {
        side,
        orders,
        search,
        in_app,
        _keys: keys,
    }
}

/// A token of `key` for billing, its signed context `ctx`.
pub(crate) fn token(key: &GeneratedFiles, iss: &str, ctx: &[(&str, &str)]) -> String {
    let k = Arc::new(trustgate::keys::load_signing_key(&key.private).unwrap());
    let ctx: std::collections::BTreeMap<_, _> = ctx
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    trustgate::token::TokenSigner::new(iss.into(), k, Duration::from_secs(60))
        .sign(
            "billing",
            (!ctx.is_empty()).then_some(&ctx),
            None,
            trustgate::proxy::unix_now(),
        )
        .unwrap()
}

async fn call(side: &Sidecar, method: &str, path: &str, token: &str) -> Answer {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", side.inbound()))
        .header("authorization", format!("Bearer {token}"))
        .body(body(bytes::Bytes::new()))
        .unwrap();
    send(&client(), req).await
}

pub(crate) const RULES: &str = r#"
[[inbound.deny]]
name = "no-admin"
paths = ["/admin/*"]
[[inbound.deny]]
name = "no-evil-tenant"
issuers = ["self"]
claims = { "/ctx/x-tenant" = ["evil"] }
[[inbound.deny]]
name = "dry-run-no-delete"
audit = true
methods = ["DELETE"]
[[inbound.allow]]
name = "acme"
issuers = ["self"]
claims = { "/ctx/x-tenant" = ["acme", "globex"] }
paths = ["/invoices/*"]
[[inbound.allow]]
callers = ["search"]
methods = ["GET"]
[[inbound.allow]]
name = "would-allow-admin"
audit = true
paths = ["/admin/*"]
[[inbound.deny]]
name = "no-internal"
hosts = ["*.internal"]
"#;

#[tokio::test]
async fn deny_rules_win_claims_match_by_pointer_and_audit_rules_only_count() {
    let w = world(RULES).await;
    let acme = token(&w.orders, "orders", &[("x-tenant", "acme")]);
    let evil = token(&w.orders, "orders", &[("x-tenant", "evil")]);
    let none = token(&w.orders, "orders", &[]);
    let search = token(&w.search, "search", &[]);
    let cases = [
        ("GET", "/invoices/1", &acme, 200, "claim rule"),
        (
            "DELETE",
            "/invoices/1",
            &acme,
            200,
            "the audit deny rule decides nothing",
        ),
        ("GET", "/invoices/1", &evil, 403, "deny by claim"),
        (
            "GET",
            "/invoices/1",
            &none,
            403,
            "no claim, no allow rule matches",
        ),
        ("GET", "/admin/users", &acme, 403, "deny first (no-admin)"),
        (
            "GET",
            "/admin/users",
            &search,
            403,
            "deny wins over a matching allow rule",
        ),
        (
            "GET",
            "/anything",
            &search,
            200,
            "allow by caller and method",
        ),
        ("POST", "/anything", &search, 403, "method not allowed"),
    ];
    for (method, path, t, status, why) in cases {
        let a = call(&w.side, method, path, t).await;
        assert_eq!(
            a.status.as_u16(),
            status,
            "{method} {path}: {why}: {}",
            a.body
        );
        if status == 403 {
            assert_eq!(a.json()["reason"], "policy", "{why}");
        }
    }
    let m = &w.side.state.metrics.policy_audit;
    let count = |rule: &str, result: &str| m.with_label_values(&[rule, result]).get();
    // Audit rules are evaluated on every request that reaches the rules (8 here).
    assert_eq!(count("dry-run-no-delete", "match"), 1);
    assert_eq!(count("dry-run-no-delete", "no_match"), 7);
    assert_eq!(count("would-allow-admin", "match"), 2);
    assert_eq!(count("would-allow-admin", "no_match"), 6);
    let metrics = get(format!("http://{}/metrics", w.side.admin()), &[])
        .await
        .body;
    assert!(
        metrics.contains(
            "trustgate_policy_audit_total{result=\"match\",rule=\"dry-run-no-delete\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn claim_headers_reach_the_app_and_no_spelling_of_them_from_the_network() {
    let t = target(
        r#"claim_headers = { "x-caller-tenant" = { pointer = "/ctx/x-tenant", issuers = ["self"] }, "x-caller-iss" = { pointer = "/iss", issuers = ["self"] } }"#,
        "",
    )
    .await;
    let token = t.token_with_ctx(Some(&[("x-tenant", "acme")]));
    let spoofed = [
        "x-caller-tenant",
        "X-Caller-Tenant",
        "x_caller_tenant",
        "X_CALLER-TENANT",
        "x.caller.tenant",
        "x-caller-iss",
        "x_caller_iss",
    ];
    let extra: String = spoofed.iter().map(|n| format!("{n}: evil\r\n")).collect();
    let req = format!(
        "GET /invoices/1 HTTP/1.1\r\nhost: billing\r\n{extra}authorization: Bearer {token}\r\n\r\n"
    );
    let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let seen = &t.app.requests()[0];
    let folded = |n: &str| n.to_ascii_lowercase().replace(['_', '.'], "-");
    let claims: Vec<_> = seen
        .headers()
        .into_iter()
        .filter(|(n, _)| folded(n).starts_with("x-caller-"))
        .collect();
    assert_eq!(
        claims,
        [
            ("x-caller-iss".to_owned(), "orders".to_owned()),
            ("x-caller-tenant".to_owned(), "acme".to_owned())
        ],
        "exactly the claims, under trustgate's spelling:\n{}",
        seen.head_text()
    );

    // A token without the claim: no header at all; on a public path: none either.
    t.app.clear();
    let r = exchange(t.inbound(), &t.get("/invoices/2", &extra))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = &t.app.requests()[0];
    assert_eq!(seen.values("x-caller-tenant"), Vec::<String>::new());
    assert_eq!(seen.values("x-caller-iss"), ["orders"]);
    t.app.clear();
    let req = format!("GET /healthz HTTP/1.1\r\nhost: billing\r\n{extra}\r\n");
    let r = exchange(t.inbound(), req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200);
    let seen = &t.app.requests()[0];
    assert!(
        !seen
            .headers()
            .iter()
            .any(|(n, _)| folded(n).starts_with("x-caller-")),
        "{}",
        seen.head_text()
    );

    // And not from trailers.
    t.app.clear();
    let fields: String = spoofed.iter().map(|n| format!("{n}: evil\r\n")).collect();
    let req = format!(
        "POST /invoices/3 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {}\r\n\
         transfer-encoding: chunked\r\ntrailer: {}, x-checksum\r\n\r\n4\r\nbody\r\n0\r\n{fields}x-checksum: abc\r\n\r\n",
        t.token(),
        spoofed.join(", ")
    );
    let r = exchange(t.inbound(), req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let trailers = t.app.requests()[0].trailer_fields();
    assert!(
        trailers.iter().any(|(n, _)| n == "x-checksum"),
        "{trailers:?}"
    );
    assert!(
        !trailers
            .iter()
            .any(|(n, _)| folded(n).starts_with("x-caller-")),
        "{trailers:?}"
    );
}

/// A noisy caller over its rate gets 429 with Retry-After while a calm caller, at the
/// same moment, is never refused.
#[tokio::test]
async fn a_rate_limit_throttles_one_caller_and_not_another() {
    let w = world(
        "[callers.orders]\nrate_limit = \"5/s\"\nburst = 5\n[callers.search]\nrate_limit = \"1000/s\"\n",
    )
    .await;
    let noisy = token(&w.orders, "orders", &[]);
    let calm = token(&w.search, "search", &[]);
    let noisy_calls = (0..60).map(|_| call(&w.side, "GET", "/x", &noisy));
    let calm_calls = (0..30).map(|_| call(&w.side, "GET", "/y", &calm));
    let (noisy, calm) = tokio::join!(
        futures_util::future::join_all(noisy_calls),
        futures_util::future::join_all(calm_calls)
    );
    let ok = noisy.iter().filter(|a| a.status == StatusCode::OK).count();
    assert!(
        (5..=7).contains(&ok),
        "{ok} of the noisy caller's 60 got through"
    );
    for a in noisy.iter().filter(|a| a.status != StatusCode::OK) {
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert_eq!(a.json()["reason"], "rate_limited");
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    assert!(
        calm.iter().all(|a| a.status == StatusCode::OK),
        "the calm caller was refused"
    );
    let m = &w.side.state.metrics;
    let limited = m
        .caller_limited
        .with_label_values(&["orders", "rate_limited"])
        .get();
    assert_eq!(limited as usize, 60 - ok);
    assert_eq!(
        m.caller_limited
            .with_label_values(&["search", "rate_limited"])
            .get(),
        0
    );
    assert_eq!(
        m.inbound_rejections
            .with_label_values(&["rate_limited"])
            .get() as usize,
        60 - ok
    );
}

/// A caller at its concurrency limit is refused while another caller's request, at the
/// same moment, is answered at once; the slots free when the answers end.
#[tokio::test]
async fn a_concurrency_limit_refuses_one_caller_and_lets_another_through() {
    let w = world("[callers.orders]\nmax_concurrent = 2\n").await;
    let orders = token(&w.orders, "orders", &[]);
    let search = token(&w.search, "search", &[]);
    let slow = || call(&w.side, "GET", "/slow/1500", &orders);
    let held = async { tokio::join!(slow(), slow()) };
    let meanwhile = async {
        assert!(
            eventually(Duration::from_secs(5), || w.in_app.load(Ordering::SeqCst)
                == 2)
            .await
        );
        let third = call(&w.side, "GET", "/x", &orders).await;
        let start = Instant::now();
        let other = call(&w.side, "GET", "/x", &search).await;
        let still_held = w.in_app.load(Ordering::SeqCst) == 2;
        (third, other, start.elapsed(), still_held)
    };
    let ((a, b), (third, other, took, still_held)) = tokio::join!(held, meanwhile);
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.body
    );
    assert_eq!(third.json()["reason"], "concurrency_limited");
    assert_eq!(third.headers["retry-after"], "1");
    assert_eq!(other.status, StatusCode::OK);
    assert!(
        still_held && took < Duration::from_millis(1000),
        "search waited on orders' limit ({took:?})"
    );
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    let again = call(&w.side, "GET", "/x", &orders).await;
    assert_eq!(again.status, StatusCode::OK, "the slots are free again");
}

pub(crate) fn explain(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TRUSTGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn explain_says_every_step_and_the_verdict() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let search = keys.make("search");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[&orders, &search]);
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, "127.0.0.1:9")
        .set("inbound", r#"public_paths = ["/healthz"]"#)
        .set(
            "inbound",
            r#"claim_headers = { "x-caller-tenant" = { pointer = "/ctx/x-tenant", issuers = ["self"] } }"#,
        )
        .extra(RULES)
        .extra("[callers.orders]\nroles = [\"reader\"]\nrate_limit = \"100/s\"\n")
        .toml();
    let config = keys.path().join("billing.toml");
    std::fs::write(&config, text).unwrap();
    let acme = token(&orders, "orders", &[("x-tenant", "acme")]);

    let (code, out, err) = explain(
        &config,
        &[
            "--token",
            &acme,
            "GET",
            "/invoices/7",
            "-H",
            "X_Service_Caller: admin",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "request: GET /invoices/7 (host billing)",
        "scrub: removed x_service_caller",
        "canonical path: /invoices/7 — yes",
        "public path: no",
        "token: valid — caller orders",
        "deny rule \"no-admin\": no match — path /invoices/7 matches none of the rule's paths",
        "deny rule \"no-evil-tenant\": no match — claim /ctx/x-tenant is \"acme\" — none of [\"evil\"]",
        "deny rule \"dry-run-no-delete\": no match — method GET is not in [\"DELETE\"] (audit = true",
        "allow rule \"acme\": match",
        "allow rule \"allow[1]\": no match — caller orders is not in [\"search\"]",
        "limits: rate_limit 100/s, burst 100",
        "to the app: x-service-caller: orders, x-service-caller-roles: reader, x-caller-tenant: acme",
        "answer: forwarded to http://127.0.0.1:9/ as orders",
    ] {
        assert!(out.contains(line), "missing «{line}» in:\n{out}");
    }

    let (code, out, _) = explain(&config, &["--token", &acme, "DELETE", "/admin/x"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deny rule \"no-admin\": match"), "{out}");
    assert!(out.contains("answer: refused — 403 policy"), "{out}");
    assert!(out.contains("deny rule no-admin"), "{out}");

    let (code, out, _) = explain(
        &config,
        &["--token", &format!("{acme}x"), "GET", "/invoices/1"],
    );
    assert_eq!(code, 1);
    assert!(out.contains("token: refused — bad_signature"), "{out}");
    let (code, out, _) = explain(&config, &["--caller", "orders", "GET", "/a/%2e%2e/b"]);
    assert_eq!(code, 1);
    assert!(out.contains("400 non_canonical_path"), "{out}");
    let (code, out, _) = explain(&config, &["--caller", "search", "GET", "/healthz"]);
    assert_eq!(code, 0);
    assert!(out.contains("public path: yes"), "{out}");
    let (code, out, _) = explain(&config, &["--caller", "search", "GET", "/x"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("token: not checked (--caller search"), "{out}");

    // Neither a token nor a caller: a public path needs none, another path is refused
    // 401 missing, and the answer says how to ask.
    let (code, out, err) = explain(&config, &["GET", "/healthz"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("public path: yes"), "{out}");
    let (code, out, _) = explain(&config, &["GET", "/x"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("token: none given")
            && out.contains("--caller NAME")
            && out.contains("401 missing"),
        "{out}"
    );
    // A caller nobody trusts is not "forwarded as" it.
    let (code, out, _) = explain(&config, &["--caller", "shipping", "GET", "/x"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nobody by that name is trusted here") && out.contains("401 unknown_key"),
        "{out}"
    );

    // Bad usage: both, a bad header.
    let (code, _, err) = explain(&config, &["--token", "t", "--caller", "c", "GET", "/"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = explain(&config, &["--caller", "c", "GET", "/", "-H", "nocolon"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_reports_every_bad_rule_with_its_key() {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[]);
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, "127.0.0.1:9")
        .set(
            "inbound",
            r#"claim_headers = { "x-service-caller-ns" = "/ns", "content-length" = "/n", "Host" = "/h", "x-caller-ns" = "/ns", "x_caller_ns" = "/ns", "x-caller-t" = { pointer = "/t", issuers = ["nobody"] } }"#,
        )
        .extra(
            "[[inbound.allow]]\nmethodz = [\"GET\"]\nclaims = { \"kubernetes.io/namespace\" = [\"shop\"] }\n\
             [[inbound.deny]]\nname = \"x\"\npaths = [\"/a\"]\nclaims = { \"/a~2\" = [\"b\"] }\n\
             [[inbound.deny]]\nname = \"x\"\npaths = [\"/b\"]\n\
             [callers.orders]\nrate_limit = \"fast\"\n[callers.search]\nburst = 0\nmax_concurrent = 0\n",
        )
        .toml();
    let config = keys.path().join("billing.toml");
    std::fs::write(&config, text).unwrap();
    let (code, err) = check_config(&config);
    assert_eq!(code, Some(1), "{err}");
    let file = config.display().to_string();
    for expected in [
        "inbound.allow[0].methodz: unknown key",
        "inbound.allow[0].claims: \"kubernetes.io/namespace\" is not a JSON Pointer",
        "inbound.deny[0].claims: \"/a~2\": '~' must be written ~0",
        "inbound.deny[1].name: \"x\" names two rules",
        "callers.orders.rate_limit: \"fast\" is not a rate",
        "callers.search.burst: must be at least 1",
        "callers.search.burst: needs a rate_limit",
        "callers.search.max_concurrent: must be at least 1",
        "inbound.claim_headers.\"x-service-caller-ns\": is reserved",
        "inbound.claim_headers.\"content-length\": \"content-length\" frames, routes or is hop-by-hop",
        "inbound.claim_headers.\"host\": \"host\" frames, routes or is hop-by-hop",
        "inbound.claim_headers.\"x_caller_ns\": app servers read it as \"x-caller-ns\"",
        "inbound.claim_headers.\"x-caller-t\".issuers: \"nobody\" is neither a [[trust.issuers]] name nor \"self\"",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&file) && l.contains(expected)),
            "missing «{expected}» (with the file) in:\n{err}"
        );
    }
}

const HOST_RULES: &str = r#"
[[inbound.deny]]
name = "no-internal"
hosts = ["*.internal", "admin"]
[[inbound.allow]]
name = "shop-host"
hosts = ["billing.shop"]
paths = ["/shop/*"]
"#;

/// `hosts` matches the host the app will read — the one Host field, else HTTP/2's
/// :authority — in any spelling an app server folds together; a request with two Host
/// fields or one that is not a host is refused 400 before any rule, and one naming no host
/// is refused by a deny rule naming hosts and matched by no allow rule. Raw bytes in, what the app received asserted.
#[tokio::test]
async fn hosts_match_the_host_the_app_reads() {
    let t = target("", HOST_RULES).await;
    let token = t.token();
    let auth = format!("authorization: Bearer {token}\r\n");
    let cases: [(&str, String, u16, &str); 11] = [
        (
            "GET /invoices/1 HTTP/1.1",
            "host: billing\r\n".into(),
            200,
            "a host no rule names",
        ),
        (
            "GET /invoices/1 HTTP/1.1",
            "host: db.internal\r\n".into(),
            403,
            "denied by *.internal",
        ),
        (
            "GET /invoices/1 HTTP/1.1",
            "host: DB.Internal.:8080\r\n".into(),
            403,
            "case, trailing dot, port",
        ),
        (
            "GET /invoices/1 HTTP/1.1",
            "host: ADMIN\r\n".into(),
            403,
            "denied by name",
        ),
        (
            "GET /invoices/1 HTTP/1.1",
            "host: billing\r\nhost: admin\r\n".into(),
            400,
            "two Host fields: refused before any rule (RFC 9112 §3.2)",
        ),
        (
            "GET /invoices/1 HTTP/1.1",
            "host: billing, admin\r\n".into(),
            400,
            "a list: not a host, refused before any rule",
        ),
        (
            "GET http://billing/invoices/1 HTTP/1.1",
            "host: admin\r\n".into(),
            403,
            "the app reads Host, not the target",
        ),
        (
            "GET /shop/x HTTP/1.1",
            "host: Billing.Shop\r\n".into(),
            200,
            "allowed by host",
        ),
        (
            "GET /shop/x HTTP/1.1",
            "host: billing\r\n".into(),
            403,
            "no allow rule for this host",
        ),
        (
            "GET /shop/x HTTP/1.1",
            "host: billing.shop\r\nhost: billing.shop\r\n".into(),
            400,
            "two Host fields: refused before any rule (RFC 9112 §3.2)",
        ),
        (
            "GET /invoices/1 HTTP/1.0",
            String::new(),
            403,
            "no host at all: unclear, denied",
        ),
    ];
    for (line, host, status, what) in cases {
        t.app.clear();
        let req = format!("{line}\r\n{host}{auth}connection: close\r\n\r\n");
        let r = exchange(t.inbound(), req.as_bytes()).await.expect(what);
        assert_eq!(r.status, status, "{what}: {}", r.body_text());
        let seen = t.app.requests();
        assert_eq!(seen.len(), usize::from(status == 200), "{what}");
        if let Some(seen) = seen.first() {
            let sent: Vec<&str> = host
                .split("\r\n")
                .filter_map(|l| l.split_once(": ").map(|(_, v)| v))
                .collect();
            assert_eq!(
                seen.values("host"),
                sent,
                "{what}: the app reads the Host sent"
            );
        }
    }

    // HTTP/2: the :authority, and a host field beside it.
    let h2 = |authority: &'static str, host: Option<&'static str>| {
        let token = token.clone();
        let addr = t.inbound();
        async move {
            let io =
                hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::get(format!("http://{authority}/invoices/1"))
                .header("authorization", format!("Bearer {token}"));
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let resp = send
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    t.app.clear();
    assert_eq!(h2("billing", None).await, 200);
    assert_eq!(
        t.app.requests()[0].values("host"),
        ["billing"],
        "the authority becomes Host"
    );
    t.app.clear();
    assert_eq!(h2("db.internal", None).await, 403, ":authority denied");
    assert_eq!(
        h2("billing", Some("admin")).await,
        403,
        "a host field beside :authority is what the app reads"
    );
    assert!(t.app.requests().is_empty());
}
