//! `trustgate explain` and the proxy are two observers of the same inbound steps: every
//! case is asked of `explain` (the binary) and sent, as raw bytes, through a running
//! proxy with the same configuration — in enforce mode and in audit mode — and the two
//! must agree on whether the app is reached, with which identity, and on the refusal's
//! status and reason.
use crate::policy::{explain, token, RULES};
use crate::support;

use std::collections::HashMap;

use support::raw::{exchange, spawn_raw_app};
use support::*;

/// What a request claims to be, for both.
enum Cred<'a> {
    Token(&'a str),
    Nobody,
}

struct Case<'a> {
    what: &'a str,
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    cred: Cred<'a>,
}

#[tokio::test]
async fn explain_and_the_proxy_agree_on_every_case_in_both_modes() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let search = keys.make("search");
    let billing = keys.make("billing");
    let ledger = keys.make("ledger");
    let shipping = keys.make("shipping");
    let trusted = keys.trust_dir("trusted", &[&orders, &search]);
    // ledger's keys are at a URL nobody answers: its callers get 503 keys_unavailable.
    let closed = free_port();
    std::fs::write(
        trusted.join("ledger.url"),
        format!("https://localhost:{closed}/.well-known/jwks.json\n"),
    )
    .unwrap();
    let acme = token(&orders, "orders", &[("x-tenant", "acme")]);
    let evil = token(&orders, "orders", &[("x-tenant", "evil")]);
    let search_t = token(&search, "search", &[]);
    let ledger_t = token(&ledger, "ledger", &[]);
    let shipping_t = token(&shipping, "shipping", &[]);
    let forged = format!("{acme}x");
    let cases = [
        Case {
            what: "allowed by claim",
            method: "GET",
            path: "/invoices/7",
            headers: &[("X_Service_Caller", "admin")],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "denied by a deny rule",
            method: "DELETE",
            path: "/admin/x",
            headers: &[],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "denied by claim",
            method: "GET",
            path: "/invoices/7",
            headers: &[],
            cred: Cred::Token(&evil),
        },
        Case {
            what: "allowed by caller",
            method: "GET",
            path: "/anything",
            headers: &[],
            cred: Cred::Token(&search_t),
        },
        Case {
            what: "no allow rule matches",
            method: "POST",
            path: "/anything",
            headers: &[],
            cred: Cred::Token(&search_t),
        },
        Case {
            what: "bad signature",
            method: "GET",
            path: "/invoices/1",
            headers: &[],
            cred: Cred::Token(&forged),
        },
        Case {
            what: "nobody trusts the key",
            method: "GET",
            path: "/x",
            headers: &[],
            cred: Cred::Token(&shipping_t),
        },
        Case {
            what: "keys unavailable",
            method: "GET",
            path: "/x",
            headers: &[],
            cred: Cred::Token(&ledger_t),
        },
        Case {
            what: "public path",
            method: "GET",
            path: "/healthz",
            headers: &[],
            cred: Cred::Nobody,
        },
        Case {
            what: "no token",
            method: "GET",
            path: "/x",
            headers: &[],
            cred: Cred::Nobody,
        },
        Case {
            what: "non-canonical path",
            method: "GET",
            path: "/a/%2e%2e/b",
            headers: &[],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "empty segment",
            method: "GET",
            path: "//invoices/7",
            headers: &[],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "lower-case method",
            method: "delete",
            path: "/invoices/7",
            headers: &[],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "encoded unreserved characters, decoded for the rules",
            method: "GET",
            path: "/%69nvoices/%37",
            headers: &[],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "connection names the identity",
            method: "GET",
            path: "/invoices/7",
            headers: &[("Connection", "x-service-caller")],
            cred: Cred::Token(&acme),
        },
        Case {
            what: "denied by host",
            method: "GET",
            path: "/anything",
            headers: &[("Host", "db.internal:8080")],
            cred: Cred::Token(&search_t),
        },
        Case {
            what: "two hosts",
            method: "GET",
            path: "/anything",
            headers: &[("Host", "billing"), ("Host", "billing")],
            cred: Cred::Token(&search_t),
        },
        Case {
            what: "allowed with its host",
            method: "GET",
            path: "/anything",
            headers: &[("Host", "Billing.")],
            cred: Cred::Token(&search_t),
        },
        Case {
            what: "the JWKS",
            method: "GET",
            path: "/.well-known/jwks.json",
            headers: &[],
            cred: Cred::Nobody,
        },
    ];

    // In enforce mode: status and reason of each refusal, to check audit mode's "would be".
    let mut enforced: HashMap<&str, (u16, String)> = HashMap::new();
    for mode in ["enforce", "audit"] {
        let app = spawn_raw_app().await;
        let text = Conf::new("billing", &billing.private)
            .inbound(&trusted, app.addr)
            .set("inbound", format!("mode = \"{mode}\""))
            .set("inbound", r#"public_paths = ["/healthz"]"#)
            .set("inbound", "publish_jwks = true")
            .set(
                "trust",
                format!("fetch_ca_file = \"{}\"", tls_fixture("ca.crt").display()),
            )
            .extra(RULES)
            .toml();
        let config = keys.path().join(format!("billing-{mode}.toml"));
        std::fs::write(&config, &text).unwrap();
        let side = Sidecar::start(&text).await;

        for case in &cases {
            app.clear();
            // explain asks as if called by this service's name, unless told otherwise.
            let mut head = format!("{} {} HTTP/1.1\r\n", case.method, case.path);
            if !case
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("host"))
            {
                head.push_str("Host: billing\r\n");
            }
            if let Cred::Token(t) = case.cred {
                head.push_str(&format!("Authorization: Bearer {t}\r\n"));
            }
            for (n, v) in case.headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("Connection: close\r\n\r\n");
            let args = arguments(case);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();

            let proxy = exchange(side.inbound(), head.as_bytes()).await.unwrap();
            let reached = app.requests();
            let (code, out, err) = explain(&config, &args);
            let said = |line: &str| out.contains(line);
            let ctx = format!(
                "{mode}: {}\nproxy: {}{}\nexplain:\n{out}{err}",
                case.what,
                proxy.head,
                proxy.body_text()
            );

            // Whether the app is reached, and as whom.
            assert_eq!(code == 0, reached.len() == 1, "{ctx}");
            assert!(reached.len() <= 1, "{ctx}");
            let caller = reached.first().map(|r| r.values("x-service-caller"));
            match caller.as_deref() {
                Some([name]) => assert!(said(&format!("as {name}")), "{ctx}"),
                Some([]) => assert!(!said("to the app: x-service-caller"), "{ctx}"),
                Some(more) => panic!("two identities {more:?}: {ctx}"),
                None => {}
            }
            if code == 0 {
                assert_eq!(proxy.status, 200, "{ctx}");
                continue;
            }
            // Answered here: the same status and reason.
            if case.path == "/.well-known/jwks.json" {
                assert_eq!(proxy.status, 200, "{ctx}");
                assert!(said("answer: by trustgate itself"), "{ctx}");
                continue;
            }
            let reason = reason_of(&proxy);
            let answer = format!("answer: refused — {} {reason} (", proxy.status);
            assert!(said(&answer), "«{answer}» — {ctx}");
            if mode == "enforce" {
                enforced.insert(case.what, (proxy.status, reason));
            }
        }
        side.shutdown().await;
    }
    // Audit mode forwarded what enforce mode refused for a token or the rules, and said
    // what enforce mode answers; a bad request stays refused in both.
    for case in &cases {
        let Some((status, reason)) = enforced.get(case.what) else {
            continue;
        };
        let config = keys.path().join("billing-audit.toml");
        let args = arguments(case);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, _) = explain(&config, &args);
        if *status == 400 {
            assert_eq!(code, 1, "{}: {out}", case.what);
        } else {
            let would = format!("answer: would be refused ({status} {reason})");
            assert!(
                code == 0 && out.contains(&would),
                "{}: «{would}» in {out}",
                case.what
            );
        }
    }
    // And the cases are the ones meant.
    let status = |what: &str| enforced.get(what).map(|(s, _)| *s);
    assert_eq!(status("keys unavailable"), Some(503));
    assert_eq!(status("denied by host"), Some(403));
    assert_eq!(status("two hosts"), Some(400));
    assert_eq!(status("empty segment"), Some(400));
    assert_eq!(status("lower-case method"), Some(400));
    assert_eq!(status("no token"), Some(401));
    assert_eq!(status("non-canonical path"), Some(400));
    for forwarded in [
        "allowed by claim",
        "allowed by caller",
        "allowed with its host",
        "public path",
    ] {
        assert_eq!(status(forwarded), None, "{forwarded}");
    }
}

/// The same request as `explain`'s arguments.
fn arguments(case: &Case) -> Vec<String> {
    let mut args = Vec::new();
    if let Cred::Token(t) = case.cred {
        args.extend(["--token".to_owned(), t.to_owned()]);
    }
    for (n, v) in case.headers {
        args.extend(["-H".to_owned(), format!("{n}: {v}")]);
    }
    args.extend([case.method.to_owned(), case.path.to_owned()]);
    args
}

/// The reason a refusal gives: the 401 challenge's description, or the JSON body's
/// `reason` of a short code (403 `policy`, 503 `keys_unavailable`, 400 codes).
fn reason_of(r: &support::raw::RawResponse) -> String {
    if let Some(c) = r.header("www-authenticate") {
        let d = c.split("error_description=\"").nth(1).unwrap();
        return d.trim_end_matches('"').to_owned();
    }
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let reason = json["reason"].as_str().unwrap();
    // A 400's body says in words what explain names by its reason word.
    use trustgate::proxy::rescue::BadRequest;
    match BadRequest::ALL.iter().find(|b| b.message() == reason) {
        Some(b) => b.code().to_owned(),
        None => reason.to_owned(),
    }
}
