//! Attacker suite, paths: with a rule allowing `/invoices/*` to orders, no request path
//! reaches the app that an app server would route outside `/invoices` (servlet
//! `;params`, percent-decoding once or twice, overlong UTF-8, backslashes, trailing dots
//! and spaces, NUL). Those are refused with 400 before policy, on public paths too.
use crate::support;

use support::attack::target;
use support::raw::exchange;
use trustgate::proxy::inbound::path;

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
        "/invoices//double",
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
