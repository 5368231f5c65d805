//! Attacker suite, identity: every spelling of a protected header, in every position
//! (verified call, public path, audit mode, HTTP/1.1 and HTTP/2), and hop-by-hop tricks.
//! Assertions are on the request head as the app received it, byte for byte.
use crate::support;

use support::attack::target;
use support::raw::{exchange, Seen};

/// Header names an app could read as one trustgate sets (CGI/WSGI/Rack/PHP fold `-`,
/// `_`, case; Apache folds any punctuation).
const SPOOFED: &[&str] = &[
    "x-service-caller",
    "X-Service-Caller",
    "x_service_caller",
    "X_Service_Caller",
    "X_SERVICE_CALLER",
    "x-service_caller",
    "x_service-caller",
    "x.service.caller",
    "x-service-caller-roles",
    "x_service_caller_roles",
    "X_Service_Caller_Roles",
    "x-service-caller-anything",
    "x_service_caller_x",
    "x-user-id",
    "x_user_id",
    "X_User_Id",
    "X-USER_ID",
    "x.user.id",
];

/// Folded as an app server would: lower case, every non-alphanumeric a '-'.
fn folded(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                b.to_ascii_lowercase() as char
            } else {
                '-'
            }
        })
        .collect()
}

/// The app saw exactly the identity trustgate set (or none), under no other spelling.
fn assert_identity(seen: &Seen, caller: Option<&str>, user: Option<&str>) {
    let mut callers = Vec::new();
    let mut users = Vec::new();
    for (name, value) in seen.headers() {
        let f = folded(&name);
        if f.starts_with("x-service-caller") {
            callers.push((name.clone(), value.clone()));
        }
        if f == "x-user-id" {
            users.push((name, value));
        }
    }
    let head = seen.head_text();
    match caller {
        Some(c) => {
            assert_eq!(
                callers
                    .iter()
                    .filter(|(n, _)| n == "x-service-caller")
                    .count(),
                1,
                "{head}"
            );
            for (n, v) in &callers {
                assert!(
                    n == "x-service-caller" && v == c || n == "x-service-caller-roles",
                    "spoofed {n}: {v} reached the app:\n{head}"
                );
                assert_ne!(v, "admin", "{head}");
            }
        }
        None => assert!(
            callers.is_empty(),
            "identity headers reached the app:\n{head}"
        ),
    }
    match user {
        Some(u) => assert_eq!(
            users,
            vec![("x-user-id".to_owned(), u.to_owned())],
            "{head}"
        ),
        None => assert!(
            users.is_empty(),
            "unsigned x-user-id reached the app:\n{head}"
        ),
    }
}

#[tokio::test]
async fn spoofed_spellings_never_reach_the_app_on_a_verified_call() {
    let t = target("", "").await;
    for name in SPOOFED {
        t.app.clear();
        let req = t.get("/invoices/1", &format!("{name}: admin\r\n"));
        let r = exchange(t.inbound(), &req).await.expect("answer");
        assert_eq!(r.status, 200, "{name}: {}", r.body_text());
        let seen = t.app.requests();
        assert_eq!(seen.len(), 1);
        assert_identity(&seen[0], Some("orders"), None);
    }
}

#[tokio::test]
async fn every_spelling_at_once_and_repeated() {
    let t = target("", "").await;
    let extra: String = SPOOFED
        .iter()
        .flat_map(|n| [format!("{n}: admin\r\n"), format!("{n}: root\r\n")])
        .collect();
    let token = t.token_with_ctx(Some(&[("x-user-id", "42")]));
    let req = format!(
        "GET /invoices/2 HTTP/1.1\r\nhost: billing\r\n{extra}authorization: Bearer {token}\r\n{extra}\r\n"
    );
    let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_identity(&t.app.requests()[0], Some("orders"), Some("42"));
}

#[tokio::test]
async fn spoofed_spellings_are_removed_on_public_paths() {
    let t = target("", "").await;
    for name in SPOOFED {
        t.app.clear();
        let req = format!("GET /healthz HTTP/1.1\r\nhost: billing\r\n{name}: admin\r\n\r\n");
        let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
        assert_eq!(r.status, 200, "{name}");
        assert_identity(&t.app.requests()[0], None, None);
    }
}

#[tokio::test]
async fn spoofed_spellings_are_removed_in_audit_mode() {
    let t = target(r#"mode = "audit""#, "").await;
    for name in SPOOFED {
        t.app.clear();
        // No token: audit forwards it anonymously.
        let req = format!("GET /invoices/1 HTTP/1.1\r\nhost: billing\r\n{name}: admin\r\n\r\n");
        let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
        assert_eq!(r.status, 200, "{name}");
        assert_identity(&t.app.requests()[0], None, None);
        // A bad token, same.
        t.app.clear();
        let req = format!(
            "GET /invoices/1 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer x.y.z\r\n{name}: admin\r\n\r\n"
        );
        let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
        assert_eq!(r.status, 200, "{name}");
        let seen = &t.app.requests()[0];
        assert_identity(seen, None, None);
        assert!(
            seen.values("authorization").is_empty(),
            "token reached the app"
        );
    }
}

#[tokio::test]
async fn spoofed_spellings_are_removed_over_http2() {
    let t = target("", "").await;
    let client = support::h2_client();
    for name in SPOOFED {
        t.app.clear();
        // HTTP/2 names are lower case on the wire.
        let lower = name.to_ascii_lowercase();
        let req = http::Request::get(format!("http://{}/invoices/3", t.inbound()))
            .header("authorization", format!("Bearer {}", t.token()))
            .header(lower.as_str(), "admin")
            .body(support::body(bytes::Bytes::new()))
            .unwrap();
        let a = support::send(&client, req).await;
        assert_eq!(a.status, 200, "{lower}: {}", a.body);
        let seen = t.app.requests();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].request_line().ends_with("HTTP/1.1"),
            "the app speaks HTTP/1.1"
        );
        assert_identity(&seen[0], Some("orders"), None);
    }
}

#[tokio::test]
async fn signed_context_replaces_every_unsigned_spelling() {
    let t = target("", "").await;
    let token = t.token_with_ctx(Some(&[("x-user-id", "7")]));
    for name in ["x-user-id", "x_user_id", "X-User_Id", "x.user.id"] {
        t.app.clear();
        let req = format!(
            "GET /invoices/1 HTTP/1.1\r\nhost: billing\r\n{name}: 999\r\nauthorization: Bearer {token}\r\n\r\n"
        );
        let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
        assert_eq!(r.status, 200);
        assert_identity(&t.app.requests()[0], Some("orders"), Some("7"));
    }
}

#[tokio::test]
async fn connection_naming_a_protected_header_is_refused() {
    let t = target("", "").await;
    for nominated in [
        "x-service-caller",
        "X-Service-Caller-Roles",
        "x_service_caller",
        "keep-alive, x-service-caller",
        "x-user-id",
        "x_user_id",
        "close, X_USER_ID",
    ] {
        t.app.clear();
        let req = t.get("/invoices/1", &format!("connection: {nominated}\r\n"));
        let r = exchange(t.inbound(), &req).await.expect("answer");
        assert_eq!(r.status, 400, "Connection: {nominated}");
        assert!(r.body_text().contains("connection_names_protected_header"));
        assert!(t.app.requests().is_empty(), "nothing reaches the app");
        // Also on a public path, and split over two Connection headers.
        let req = format!(
            "GET /healthz HTTP/1.1\r\nhost: b\r\nconnection: keep-alive\r\nconnection: {nominated}\r\n\r\n"
        );
        let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
        assert_eq!(r.status, 400, "Connection: {nominated} on a public path");
        assert!(t.app.requests().is_empty());
    }
}

#[tokio::test]
async fn connection_can_only_remove_what_the_client_sent() {
    let t = target("", "").await;
    let req = t.get(
        "/invoices/1",
        "connection: x-private, x-forwarded-for, forwarded\r\nx-private: secret\r\nx-forwarded-for: 6.6.6.6\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n",
    );
    let r = exchange(t.inbound(), &req).await.expect("answer");
    assert_eq!(r.status, 200);
    let seen = &t.app.requests()[0];
    assert!(
        seen.values("x-private").is_empty(),
        "nominated header removed"
    );
    assert_eq!(
        seen.values("x-forwarded-for"),
        vec!["127.0.0.1"],
        "trustgate's own value"
    );
    assert!(seen.values("keep-alive").is_empty());
    assert!(seen.values("proxy-connection").is_empty());
    assert_identity(seen, Some("orders"), None);
}

#[tokio::test]
async fn connection_naming_the_token_header_cannot_smuggle_it_past_verification() {
    let t = target("", "").await;
    let req = t.get("/invoices/1", "connection: authorization\r\n");
    let r = exchange(t.inbound(), &req).await.expect("answer");
    // The hop-by-hop pass runs first: the token is gone before verification.
    assert_eq!(r.status, 401);
    assert!(t.app.requests().is_empty());
}

#[tokio::test]
async fn header_name_tricks_are_refused_by_the_parser() {
    let t = target("", "").await;
    for extra in [
        "x-service-caller : admin\r\n",
        " x-service-caller: admin\r\n",
        "x-other: a\r\n x-service-caller: admin\r\n",
        "x-service-caller\t: admin\r\n",
        "x-service-caller\0: admin\r\n",
        "x-other: a\0b\r\n",
    ] {
        t.app.clear();
        let req = t.get("/invoices/1", extra);
        match exchange(t.inbound(), &req).await {
            Some(r) => {
                if r.status == 200 {
                    assert_identity(&t.app.requests()[0], Some("orders"), None);
                } else {
                    assert_eq!(r.status, 400, "{extra:?}");
                    assert!(t.app.requests().is_empty());
                }
            }
            None => assert!(t.app.requests().is_empty(), "{extra:?}"),
        }
    }
}

/// The app saw the trailer it was meant to (so trailers do cross), and no trailer an app
/// could read as an identity header (some servers merge trailers into headers).
fn assert_trailers_clean(seen: &Seen) {
    let fields = seen.trailer_fields();
    assert!(
        fields
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("x-checksum") && v == "abc"),
        "the innocent trailer did not arrive: {fields:?}"
    );
    for (name, value) in &fields {
        let f = folded(name);
        assert!(
            !f.starts_with("x-service-caller") && f != "x-user-id",
            "spoofed trailer {name}: {value} reached the app"
        );
    }
}

#[tokio::test]
async fn spoofed_trailers_never_reach_the_app() {
    let t = target("", "").await;
    let declared: Vec<&str> = SPOOFED.iter().copied().chain(["x-checksum"]).collect();
    let fields: String = declared
        .iter()
        .map(|n| {
            let v = if *n == "x-checksum" { "abc" } else { "admin" };
            format!("{n}: {v}\r\n")
        })
        .collect();
    // On a verified call and on a public path.
    for path in ["/invoices/1", "/healthz"] {
        t.app.clear();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {}\r\n\
             transfer-encoding: chunked\r\ntrailer: {}\r\n\r\n4\r\nbody\r\n0\r\n{fields}\r\n",
            t.token(),
            declared.join(", ")
        );
        let r = exchange(t.inbound(), req.as_bytes()).await.expect("answer");
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        let seen = t.app.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, b"body");
        assert_trailers_clean(&seen[0]);
    }
}

#[tokio::test]
async fn spoofed_trailers_are_removed_over_http2() {
    use http_body_util::BodyExt as _;
    let t = target("", "").await;
    let client = support::h2_client();
    let mut trailers = http::HeaderMap::new();
    let mut declared = vec!["x-checksum".to_owned()];
    trailers.insert("x-checksum", "abc".parse().unwrap());
    for name in SPOOFED {
        let lower = name.to_ascii_lowercase();
        trailers.append(
            http::HeaderName::from_bytes(lower.as_bytes()).unwrap(),
            "admin".parse().unwrap(),
        );
        declared.push(lower);
    }
    let frames = vec![
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from_static(
            b"body",
        ))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let req = http::Request::post(format!("http://{}/invoices/3", t.inbound()))
        .header("authorization", format!("Bearer {}", t.token()))
        .header("trailer", declared.join(", "))
        .body(body)
        .unwrap();
    let a = support::send(&client, req).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = t.app.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"body");
    assert_trailers_clean(&seen[0]);
}
