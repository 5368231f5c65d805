//! Attacker suite, paths: with a rule allowing `/invoices/*` to orders, no request path
//! reaches the app that an app server would route outside `/invoices` (servlet
//! `;params`, percent-decoding once or twice, overlong UTF-8, backslashes, trailing dots
//! and spaces, NUL). Those are refused with 400 before policy, on public paths too.
use crate::support;

use support::attack::target;
use support::raw::exchange;
use trustgate::http::path;

const CONFUSED: &[&str] = &[
    "/invoices/../admin",
    "/invoices/..;/admin",
    "/invoices/..;jsessionid=x/admin",
    "/invoices/.;/..;/admin",
    "/invoices;x=1/../admin",
    "/invoices/%2e%2e/admin",
    "/invoices/%2E%2E/admin",
    "/invoices/.%2e/admin",
    "/invoices/%2e./admin",
    "/invoices/%252e%252e/admin",
    "/invoices/%25252e%25252e/admin",
    "/invoices/..%3b/admin",
    "/invoices/..%3Bjsessionid=1/admin",
    "/invoices/%2e%2e%3b/admin",
    "/invoices/..%2fadmin",
    "/invoices%2f..%2fadmin",
    "/invoices/..%5cadmin",
    "/invoices/..%255cadmin",
    "/invoices/..\\admin",
    "/invoices/%c0%ae%c0%ae/admin",
    "/invoices/%c0%ae%c0%ae%c0%afadmin",
    "/invoices/%e0%80%ae%e0%80%ae/admin",
    "/invoices/%c1%9c",
    "/invoices/%ef%bc%8e%ef%bc%8e/admin",
    "/invoices/%ef%bc%8fadmin",
    "/invoices/.../admin",
    "/invoices/.. /admin",
    "/invoices/..%20/admin",
    "/invoices/..%09/admin",
    "/invoices/%00/../admin",
    "/invoices/7%00.json",
    "/invoices/%zz",
    "/invoices/%",
    "/invoices/./7",
    "/invoices/7/.",
    "/invoices/7/..",
    "/./invoices/7",
    "/healthz/..",
    "/healthz/..;/admin",
];

#[tokio::test]
async fn confusable_paths_never_reach_the_app() {
    let t = target("", "").await;
    for p in CONFUSED {
        t.app.clear();
        let req = t.get(p, "");
        let r = exchange(t.inbound(), &req).await;
        // No answer: the parser closed the connection, nothing forwarded either.
        if let Some(r) = r {
            assert_eq!(r.status, 400, "{p}: {}", r.body_text());
            // Either our refusal or hyper's own (a request target it cannot parse).
            if !r.body_text().is_empty() {
                assert!(r.body_text().contains("non_canonical_path"), "{p}");
            }
        }
        assert!(t.app.requests().is_empty(), "{p} reached the app");
    }
}

#[tokio::test]
async fn confusable_paths_are_refused_without_a_token_and_in_audit_mode() {
    let t = target(r#"mode = "audit""#, "").await;
    for p in CONFUSED {
        t.app.clear();
        let req = format!("GET {p} HTTP/1.1\r\nhost: billing\r\n\r\n");
        if let Some(r) = exchange(t.inbound(), req.as_bytes()).await {
            assert_eq!(r.status, 400, "{p}");
        }
        assert!(
            t.app.requests().is_empty(),
            "{p} reached the app in audit mode"
        );
    }
}

#[tokio::test]
async fn canonical_paths_arrive_byte_for_byte() {
    let t = target("", "").await;
    for p in [
        "/invoices/7",
        "/invoices/7;jsessionid=abc",
        "/invoices/a.b/c..d",
        "/invoices/%20x?q=%2e%2e/../&a=;b",
        "/invoices/caf%C3%A9",
        "/invoices/.hidden",
    ] {
        t.app.clear();
        let r = exchange(t.inbound(), &t.get(p, "")).await.expect("answer");
        assert_eq!(r.status, 200, "{p}: {}", r.body_text());
        assert_eq!(
            t.app.requests()[0].request_line(),
            format!("GET {p} HTTP/1.1")
        );
    }
}

#[tokio::test]
async fn policy_denies_outside_the_prefix() {
    let t = target("", "").await;
    for p in ["/admin", "/invoicesX", "/invoices.", "/INVOICES/1", "/"] {
        t.app.clear();
        let r = exchange(t.inbound(), &t.get(p, "")).await.expect("answer");
        assert_eq!(r.status, 403, "{p}");
        assert!(t.app.requests().is_empty());
    }
}

/// The property of the fuzz target `path_policy`, on a deterministic sample: a path that
/// passes the check and a prefix rule still matches that rule after every normalisation
/// an app server applies.
#[test]
fn accepted_paths_stay_inside_their_prefix_after_normalisation() {
    let prefix = "/invoices";
    let pieces = [
        "..",
        ".",
        ";",
        "%2e",
        "%2E",
        "%25",
        "2e",
        "%3b",
        "/",
        "a",
        "%c0",
        "%ae",
        "\\",
        " ",
        "%20",
        "%2f",
        "%5c",
        "x=1",
        "%00",
        "%ef%bc%8e",
    ];
    let mut n = 0;
    for a in pieces {
        for b in pieces {
            for c in pieces {
                let p = format!("{prefix}/{a}{b}/{c}");
                if path::check(&p).is_err() {
                    continue;
                }
                n += 1;
                for normal in path::normalisations(&p) {
                    let normal = normal.split(';').next().unwrap();
                    assert!(
                        normal == prefix || normal.starts_with("/invoices/"),
                        "{p} is accepted but an app server routes it to {normal}"
                    );
                }
            }
        }
    }
    assert!(n > 100, "the sample must exercise accepted paths ({n})");
}

/// What the differential probe found (issue 39), as plain regressions: with a deny rule on
/// `/debug/*` and one on `DELETE`, no spelling of them reaches the app, and what is
/// forwarded arrives in its canonical form. Raw bytes in, the app's request line out.
const DENY_DEBUG: &str = "[[inbound.deny]]\nname = \"no-debug\"\npaths = [\"/debug/*\"]\n\
                          [[inbound.deny]]\nname = \"no-delete\"\nmethods = [\"DELETE\"]\n\
                          [[inbound.allow]]\ncallers = [\"orders\"]\npaths = [\"/debug/*\"]";

#[tokio::test]
async fn spellings_of_a_denied_path_or_method_never_reach_the_app() {
    let t = target("", DENY_DEBUG).await;
    let token = t.token();
    let cases: &[(&str, u16, &str)] = &[
        ("GET /debug/vars", 403, "policy"),
        ("GET //debug/vars", 400, "non_canonical_path"),
        ("GET /debug//vars", 400, "non_canonical_path"),
        ("GET /%64ebug/vars", 403, "policy"),
        ("GET /%64%65%62%75%67/vars", 403, "policy"),
        ("GET /debug;x=1/vars", 403, "policy"),
        ("GET /de%62ug;jsessionid=1/vars", 403, "policy"),
        ("GET /%2564ebug/vars", 400, "non_canonical_path"),
        ("DELETE /invoices/7", 403, "policy"),
        ("delete /invoices/7", 400, "bad_method"),
        ("Delete /invoices/7", 400, "bad_method"),
        ("CONNECT billing:443", 405, "method_not_allowed"),
        ("GET *", 400, "non_canonical_path"),
        ("GET /invoices/caf\u{e9}", 400, "non_canonical_path"),
        ("GET /invoices/7?q=\u{e9}", 400, "non_canonical_path"),
    ];
    for (line, status, reason) in cases {
        t.app.clear();
        let req =
            format!("{line} HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\n\r\n");
        let r = exchange(t.inbound(), req.as_bytes()).await;
        assert!(t.app.requests().is_empty(), "{line} reached the app");
        // hyper's own parser may refuse raw bytes first (a 400 without our body).
        let Some(r) = r else { continue };
        assert_eq!(r.status, *status, "{line}: {}", r.body_text());
        if !r.body_text().is_empty() {
            let reason_word = r.body_text().contains(reason)
                || (*status == 400
                    && *reason == "bad_method"
                    && r.body_text().contains("lower-case"))
                || (*status == 405 && r.body_text().contains("CONNECT"));
            assert!(reason_word, "{line}: {}", r.body_text());
        }
    }
    // Two Host fields: the app servers take the first, the last, or both.
    t.app.clear();
    let req = format!(
        "GET /invoices/7 HTTP/1.1\r\nhost: billing\r\nhost: admin\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(t.app.requests().is_empty());
}

#[tokio::test]
async fn forwarded_paths_arrive_canonical() {
    let t = target("", DENY_DEBUG).await;
    for (sent, arrived) in [
        ("/%69nvoices/%37", "/invoices/7"),
        ("/invoices/%7euser%2D%5f", "/invoices/~user-_"),
        ("/invoices/caf%c3%a9?q=%64", "/invoices/caf%C3%A9?q=%64"),
        ("/invoices/7;v=1", "/invoices/7;v=1"),
    ] {
        t.app.clear();
        let r = exchange(t.inbound(), &t.get(sent, ""))
            .await
            .expect("answer");
        assert_eq!(r.status, 200, "{sent}: {}", r.body_text());
        assert_eq!(
            t.app.requests()[0].request_line(),
            format!("GET {arrived} HTTP/1.1"),
            "{sent}"
        );
    }
    // `;parameters` are read both ways: `/invoices;v=1/7` is `/invoices/7` to Tomcat but a
    // segment `invoices;v=1` to Node — outside the rule's prefix, so refused.
    let r = exchange(t.inbound(), &t.get("/invoices;v=1/7", ""))
        .await
        .expect("answer");
    assert_eq!(r.status, 403, "{}", r.body_text());
    // OPTIONS * reaches the rules (and no path rule matches it).
    let options = [b"OPTIONS".as_slice(), &t.get("*", "")[3..]].concat();
    let r = exchange(t.inbound(), &options).await.expect("answer");
    assert_eq!(r.status, 403, "{}", r.body_text());
}

#[tokio::test]
async fn merge_slashes_merges_for_the_rules_and_the_app() {
    let t = target("merge_slashes = true", DENY_DEBUG).await;
    let r = exchange(t.inbound(), &t.get("//debug/vars", ""))
        .await
        .expect("answer");
    assert_eq!(r.status, 403, "{}", r.body_text());
    let r = exchange(t.inbound(), &t.get("//invoices///7", ""))
        .await
        .expect("answer");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        t.app.requests()[0].request_line(),
        "GET /invoices/7 HTTP/1.1"
    );
}

/// Where nothing verified the credentials — a public path, audit mode forwarding a refusal —
/// the caller's token and a transaction token stay at the sidecar.
#[tokio::test]
async fn credentials_never_reach_the_app_on_public_paths_or_in_audit_mode() {
    for (inbound, path) in [("", "/healthz"), (r#"mode = "audit""#, "/admin")] {
        let t = target(inbound, "").await;
        let r = exchange(t.inbound(), &t.get(path, "txn-token: t\r\n"))
            .await
            .expect("answer");
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        let seen = &t.app.requests()[0];
        assert!(
            seen.values("authorization").is_empty(),
            "{path}: the token reached the app"
        );
        assert!(
            seen.values("txn-token").is_empty(),
            "{path}: txn-token reached the app"
        );
    }
}
