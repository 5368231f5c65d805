//! The proxy on loopback: app, sidecars and clients in one process, real sockets, real
//! keys. One test per behaviour of DESIGN.md "Inbound", "Outbound", "Protocols" and
//! "Admin listener".
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trustgate::keys;
use trustgate::token::TokenSigner;

/// orders (outbound) → billing (inbound) → app, with `extra_inbound` appended to billing's
/// [inbound] section and `extra_outbound` to orders' [outbound].
struct Pair {
    keys: Keys,
    orders: keys::GeneratedFiles,
    billing: keys::GeneratedFiles,
    orders_side: Sidecar,
    billing_side: Sidecar,
}

async fn pair(extra_inbound: &str, extra_outbound: &str, extra_billing: &str) -> Pair {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("billing-trusts", &[&orders]);
    let app = spawn_app().await;
    let billing_side = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .set("inbound", r#"public_paths = ["/healthz"]"#)
        .set("inbound", extra_inbound)
        .extra(&format!(
            "[limits]\nrequest_timeout = \"1s\"\nheader_read_timeout = \"1s\"\n{extra_billing}"
        ))
        .start()
        .await;
    let orders_trusts = keys.trust_dir("orders-trusts", &[&billing]);
    let orders_side = Conf::new("orders", &orders.private)
        .set(
            "trust",
            format!("authorized_keys = \"{}\"", orders_trusts.display()),
        )
        .set("outbound", extra_outbound)
        .route("billing", format!("http://{}", billing_side.inbound()))
        .start()
        .await;
    Pair {
        keys,
        orders,
        billing,
        orders_side,
        billing_side,
    }
}

fn token_as(key: &keys::GeneratedFiles, iss: &str, aud: &str) -> String {
    sign_as(key, iss, aud)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn two_sidecars_chained_end_to_end() {
    let p = pair("", "", "").await;
    let a = get(
        format!("http://{}/orders/7?x=1", p.orders_side.outbound()),
        &[
            ("host", "billing"),
            ("authorization", "Bearer app-set-this"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = a.json();
    assert_eq!(seen["path"], "/orders/7");
    assert_eq!(seen["query"], "x=1");
    let h = &seen["headers"];
    assert_eq!(h["x-service-caller"], "orders");
    assert!(
        h.get("x-service-caller-roles").is_none(),
        "a caller without roles gets no roles header, not an empty one"
    );
    assert!(
        h.get("authorization").is_none(),
        "the token never reaches the app"
    );
    assert!(h["x-forwarded-for"].as_str().unwrap().contains("127.0.0.1"));
    assert!(h["forwarded"].as_str().unwrap().contains("for=127.0.0.1"));

    // Absolute-form: the app uses trustgate as its HTTP proxy.
    let mut s = tokio::net::TcpStream::connect(p.orders_side.outbound())
        .await
        .unwrap();
    s.write_all(
        b"GET http://billing/proxy-style HTTP/1.1\r\nHost: billing\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"x-service-caller\":\"orders\""), "{out}");

    // Metrics on both sides.
    let m = get(format!("http://{}/metrics", p.orders_side.admin()), &[])
        .await
        .body;
    assert!(
        m.contains("trustgate_requests_total{direction=\"outbound\",outcome=\"ok\"} 2"),
        "{m}"
    );
    assert!(m.contains("trustgate_tokens_signed_total 1"), "{m}");
    assert!(m.contains("trustgate_token_cache_hits_total 1"), "{m}");
    let m = get(format!("http://{}/metrics", p.billing_side.admin()), &[])
        .await
        .body;
    assert!(
        m.contains("trustgate_requests_total{direction=\"inbound\",outcome=\"ok\"} 2"),
        "{m}"
    );
    assert!(m.contains("trustgate_verified_cache_hits_total 1"), "{m}");
    assert!(m.contains("trustgate_trusted_keys 1"), "{m}");
    assert!(
        m.contains("trustgate_request_duration_seconds_bucket{direction=\"inbound\""),
        "{m}"
    );
}

#[tokio::test]
async fn rejections_are_401_with_the_reason_and_never_echo_the_token() {
    let p = pair("", "", "").await;
    let url = format!("http://{}/orders", p.billing_side.inbound());
    let mallory = p.keys.make("mallory");
    // A token the sidecar has verified, so cached: its bytes inside a bad field still get
    // the field's answer (the cache is looked up before a token's bytes are checked).
    let good = token_as(&p.orders, "orders", "billing");
    let ok = send(
        &client(),
        Request::get(&url)
            .header("authorization", bearer(&good))
            .body(body(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("authorization", format!("Bearer {good}, Bearer {good}"))],
            "multiple_tokens",
        ),
        (
            vec![("authorization", format!("Bearer {good}\tx"))],
            "multiple_tokens",
        ),
        (
            vec![("authorization", format!("Bearer {good}\u{e9}"))],
            "malformed",
        ),
        (vec![], "missing"),
        (vec![("authorization", "Basic eDp5".into())], "missing"),
        (
            vec![(
                "authorization",
                bearer(&token_as(&mallory, "orders", "billing")),
            )],
            "unknown_key",
        ),
        (
            vec![(
                "authorization",
                bearer(&token_as(&p.orders, "orders", "payments")),
            )],
            "wrong_audience",
        ),
        (
            vec![(
                "authorization",
                bearer(&token_as(&p.orders, "search", "billing")),
            )],
            "issuer_mismatch",
        ),
        (vec![("authorization", "Bearer a.b.c".into())], "malformed"),
        (
            vec![("authorization", format!("Bearer {}", "a".repeat(9000)))],
            "too_large",
        ),
        (
            vec![
                (
                    "authorization",
                    bearer(&token_as(&p.orders, "orders", "billing")),
                ),
                (
                    "authorization",
                    bearer(&token_as(&p.orders, "orders", "billing")),
                ),
            ],
            "multiple_tokens",
        ),
    ];
    for (headers, reason) in cases {
        let mut req = Request::get(&url);
        for (k, v) in &headers {
            // As bytes: a value beyond ASCII is what a client may send.
            req = req.header(*k, http::HeaderValue::from_bytes(v.as_bytes()).unwrap());
        }
        let a = send(&client(), req.body(body(Bytes::new())).unwrap()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{reason}: {}", a.body);
        assert_eq!(
            a.headers["www-authenticate"],
            format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")
        );
        assert_eq!(
            a.json(),
            serde_json::json!({"error": "invalid_token", "reason": reason})
        );
        for (_, v) in &headers {
            assert!(!a.body.contains(v.trim_start_matches("Bearer ")) || v.len() < 12);
        }
    }
    let m = get(format!("http://{}/metrics", p.billing_side.admin()), &[])
        .await
        .body;
    assert!(
        m.contains("trustgate_inbound_rejections_total{reason=\"unknown_key\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("trustgate_inbound_rejections_total{reason=\"missing\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn signed_context_travels_in_the_token() {
    let p = pair(
        "signed_headers = [\"x-user-id\"]",
        "signed_headers = [\"x-user-id\"]",
        "",
    )
    .await;
    let a = get(
        format!("http://{}/orders", p.orders_side.outbound()),
        &[("host", "billing"), ("x-user-id", "alice")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-user-id"], "alice");
}

#[tokio::test]
async fn policy_roles_and_403() {
    let p = pair(
        r#"
[[inbound.allow]]
callers = ["orders"]
methods = ["GET"]
paths = ["/orders", "/orders/*"]
[[inbound.allow]]
roles = ["admin"]
paths = ["/admin/*"]
[callers.orders]
roles = ["reader", "admin"]
"#,
        "",
        "",
    )
    .await;
    let out = p.orders_side.outbound();
    let ok = get(format!("http://{out}/orders/1"), &[("host", "billing")]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.json()["headers"]["x-service-caller-roles"],
        "reader,admin"
    );
    let by_role = get(format!("http://{out}/admin/x"), &[("host", "billing")]).await;
    assert_eq!(by_role.status, StatusCode::OK);
    let req = Request::post(format!("http://{out}/orders/1"))
        .header("host", "billing")
        .body(body("x"))
        .unwrap();
    let denied = send(&client(), req).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.json(),
        serde_json::json!({"error": "forbidden", "reason": "policy"})
    );
    let denied = get(format!("http://{out}/other"), &[("host", "billing")]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn audit_mode_forwards_without_identity() {
    let p = pair("mode = \"audit\"", "", "").await;
    let a = get(
        format!("http://{}/orders", p.billing_side.inbound()),
        &[
            ("authorization", "Bearer not.a.token"),
            ("x-service-caller", "admin"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let h = &a.json()["headers"];
    assert!(h.get("x-service-caller").is_none());
    assert!(h.get("authorization").is_none());
    let m = get(format!("http://{}/metrics", p.billing_side.admin()), &[])
        .await
        .body;
    assert!(
        m.contains("trustgate_requests_total{direction=\"inbound\",outcome=\"audit\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("trustgate_inbound_rejections_total{reason=\"malformed\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn request_binding_and_replay() {
    let p = pair("require_request_binding = true", "bind_request = true", "").await;
    let out = p.orders_side.outbound();
    for _ in 0..3 {
        let a = get(format!("http://{out}/orders?id=1"), &[("host", "billing")]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // A replayed bound token, and one bound to another request.
    let k = Arc::new(keys::load_signing_key(&p.orders.private).unwrap());
    let signer = TokenSigner::new("orders".into(), k, Duration::from_secs(60));
    let now = trustgate::proxy::unix_now();
    let t = signer
        .sign("billing", None, Some(("GET", "/orders?id=1")), now)
        .unwrap();
    let url = format!("http://{}/orders?id=1", p.billing_side.inbound());
    assert_eq!(
        get(url.clone(), &[("authorization", &bearer(&t))])
            .await
            .status,
        StatusCode::OK
    );
    let again = get(url.clone(), &[("authorization", &bearer(&t))]).await;
    assert_eq!(again.json()["reason"], "replayed");
    let other = get(
        format!("http://{}/orders?id=2", p.billing_side.inbound()),
        &[(
            "authorization",
            &bearer(
                &signer
                    .sign("billing", None, Some(("GET", "/orders?id=1")), now)
                    .unwrap(),
            ),
        )],
    )
    .await;
    assert_eq!(other.json()["reason"], "binding_mismatch");
    let unbound = get(
        url,
        &[(
            "authorization",
            &bearer(&token_as(&p.orders, "orders", "billing")),
        )],
    )
    .await;
    assert_eq!(unbound.json()["reason"], "binding_missing");
    let m = get(format!("http://{}/metrics", p.orders_side.admin()), &[])
        .await
        .body;
    assert!(
        m.contains("trustgate_tokens_signed_total 3"),
        "one token per request: {m}"
    );
}

#[tokio::test]
async fn unknown_host_is_502_unless_passthrough() {
    let p = pair("", "", "").await;
    let a = get(
        format!("http://{}/x", p.orders_side.outbound()),
        &[("host", "nowhere.example")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.json()["error"], "no_route");
    assert!(a.json()["reason"]
        .as_str()
        .unwrap()
        .contains("nowhere.example"));

    let keys = Keys::new();
    let me = keys.make("me");
    let app = spawn_app().await;
    let side = Conf::new("me", &me.private)
        .set("outbound", "passthrough_unknown = true")
        .start()
        .await;
    let a = get(
        format!("http://{}/through", side.outbound()),
        &[("host", &app.to_string())],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.json()["headers"].get("authorization").is_none(),
        "passthrough carries no token"
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let p = pair("", "", "").await;
    let token = token_as(&p.orders, "orders", "billing");
    let slow = get(
        format!("http://{}/slow/3000", p.billing_side.inbound()),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT, "{}", slow.body);
    assert_eq!(slow.json()["error"], "upstream_timeout");

    // An upstream port nothing listens on.
    let dead = free_port();
    let keys = Keys::new();
    let b = keys.make("billing");
    let o = keys.make("orders");
    let trusted = keys.trust_dir("t", &[&o]);
    let side = Conf::new("billing", &b.private)
        .inbound(&trusted, format!("127.0.0.1:{dead}"))
        .start()
        .await;
    let down = get(
        format!("http://{}/x", side.inbound()),
        &[("authorization", &bearer(&token_as(&o, "orders", "billing")))],
    )
    .await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{}", down.body);
    assert_eq!(down.json()["error"], "upstream_unreachable");
}

/// An app that answers and then resets the connection before its body went out (Java's
/// `HttpServer` answering an upload early: the reset discards what it had not sent): the
/// client still gets the app's status line and head, then the cut — what a direct call
/// shows — not a bare reset before any byte.
#[tokio::test]
async fn an_answer_whose_body_the_app_reset_away_still_shows_its_status() {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = app.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 19\r\nconnection: close\r\n\r\n";
                conn.write_all(answer.as_bytes()).await.unwrap();
                // A close with linger 0 is a reset: the body never follows.
                conn.set_zero_linger().unwrap();
                drop(conn);
            });
        }
    });
    let keys = Keys::new();
    let b = keys.make("billing");
    let trusted = keys.trust_dir("t", &[]);
    let side = Conf::new("billing", &b.private)
        .inbound(&trusted, app_addr)
        .set("inbound", r#"public_paths = ["/early"]"#)
        .start()
        .await;
    for _ in 0..20 {
        let mut client = tokio::net::TcpStream::connect(side.inbound())
            .await
            .unwrap();
        client
            .write_all(b"GET /early HTTP/1.1\r\nhost: billing\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 413 "), "the client got {text:?}");
        assert!(
            text.to_ascii_lowercase().contains("content-length: 19"),
            "{text}"
        );
    }
}

/// On one keep-alive connection the request timeout's timer is reused from request to
/// request: each request still gets the whole timeout from its own start (two 700 ms
/// answers in a row under a 1 s timeout both arrive), a slow answer after them still
/// times out, and the timer that fired serves the next requests with a whole timeout
/// again.
#[tokio::test]
async fn the_request_timeout_restarts_for_each_request_on_a_kept_connection() {
    use http_body_util::BodyExt as _;
    let p = pair("", "", "").await;
    let token = bearer(&token_as(&p.orders, "orders", "billing"));
    let stream = tokio::net::TcpStream::connect(p.billing_side.inbound())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, TestBody>(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut call = |path: &'static str| {
        let req = Request::get(path)
            .header("host", "billing")
            .header("authorization", &token)
            .body(body(Bytes::new()))
            .unwrap();
        let sent = sender.send_request(req);
        async move {
            let resp = sent.await.expect("an answer on the kept connection");
            let status = resp.status();
            let text = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&text).into_owned())
        }
    };
    let (status, text) = call("/fast").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    for _ in 0..2 {
        let (status, text) = call("/slow/700").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a whole second for each request: {text}"
        );
    }
    let started = std::time::Instant::now();
    let (status, text) = call("/slow/3000").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before its own deadline: {:?}",
        started.elapsed()
    );
    let (status, text) = call("/fast").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same connection after a 504: {text}"
    );
    let (status, text) = call("/slow/700").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a whole second again after the timer fired: {text}"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_both_sides() {
    let p = pair("", "", "").await;
    let req = Request::get(format!("http://{}/orders", p.orders_side.outbound()))
        .header("host", "billing")
        .body(body(Bytes::new()))
        .unwrap();
    let a = send(&h2_client(), req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = a.json();
    // `upstream_protocol = "auto"`: the app gets HTTP/1.1 (what every app speaks) unless
    // the request is gRPC, whatever the client and the link spoke.
    assert_eq!(
        seen["version"], "HTTP/1.1",
        "the app speaks HTTP/1.1 by default"
    );
    assert_eq!(seen["headers"]["x-service-caller"], "orders");
    assert!(seen["headers"]["host"].is_string(), "HTTP/1.1 needs a Host");

    // An app that speaks HTTP/2 only says so.
    let p = pair(r#"upstream_protocol = "http2""#, "", "").await;
    let req = Request::get(format!("http://{}/orders", p.orders_side.outbound()))
        .header("host", "billing")
        .body(body(Bytes::new()))
        .unwrap();
    let a = send(&h2_client(), req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.json()["version"],
        "HTTP/2.0",
        "HTTP/2 end to end when configured"
    );
}

#[tokio::test]
async fn websocket_echo_through_both_sidecars() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let p = pair("", "", "").await;
    let stream = tokio::net::TcpStream::connect(p.orders_side.outbound())
        .await
        .unwrap();
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "ws://billing/ws",
    )
    .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn chunked_and_large_bodies_stream_both_ways() {
    let p = pair("", "", "").await;
    let out = p.orders_side.outbound();
    // 8 MiB up as a chunked stream, counted by the app.
    let chunks = futures_util::stream::iter((0..128).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![
            7u8;
            64 * 1024
        ])))
    }));
    let req = Request::post(format!("http://{out}/count"))
        .header("host", "billing")
        .body(http_body_util::BodyExt::boxed(
            http_body_util::StreamBody::new(chunks),
        ))
        .unwrap();
    let a = send(&client(), req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, (8 * 1024 * 1024).to_string());
    // 8 MiB down.
    let a = get(
        format!("http://{out}/stream/{}", 8 * 1024 * 1024),
        &[("host", "billing")],
    )
    .await;
    assert_eq!(a.body.len(), 8 * 1024 * 1024);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let p = pair("", "", "max_header_bytes = 8192").await;
    let big = "x".repeat(20_000);
    let mut s = tokio::net::TcpStream::connect(p.billing_side.inbound())
        .await
        .unwrap();
    s.write_all(format!("GET /orders HTTP/1.1\r\nHost: b\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    let p = pair("", "", "max_connections = 2").await;
    let addr = p.billing_side.inbound();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection is closed: {buf:?}"
    );
    drop(held);
    // Capacity comes back once connections close (polled: the server notices the close
    // asynchronously).
    let mut again = false;
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
        if buf.starts_with(b"HTTP/1.1 200") {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again);
}

#[tokio::test]
async fn admin_endpoints() {
    let p = pair("", "", "").await;
    let admin = p.billing_side.admin();
    assert_eq!(
        get(format!("http://{admin}/healthz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(format!("http://{admin}/readyz"), &[]).await.status,
        StatusCode::OK
    );
    let jwks = get(format!("http://{admin}/.well-known/jwks.json"), &[])
        .await
        .json();
    assert_eq!(jwks["keys"][0]["kid"], p.billing.kid.as_str());
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none());
    let trust = get(format!("http://{admin}/trust"), &[]).await.json();
    assert_eq!(trust["keys"][0]["identity"], "orders");
    assert_eq!(trust["keys"][0]["kid"], p.orders.kid.as_str());
    assert_eq!(trust["keys"][0]["revoked"], false);
    assert!(trust["keys"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("orders.pub"));
    assert_eq!(
        get(format!("http://{admin}/nope"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // The metrics page: the exposition format, readiness set when scraped, this
    // sidecar's sides only (billing has no outbound).
    let metrics = get(format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.body.lines().any(|l| l == "trustgate_ready 1"),
        "{}",
        metrics.body
    );
    assert!(metrics
        .body
        .contains("# TYPE trustgate_requests_total counter"));
    assert!(
        metrics
            .body
            .contains("trustgate_requests_total{direction=\"inbound\",outcome=\"ok\"} 0"),
        "{}",
        metrics.body
    );
    assert!(
        !metrics.body.contains("direction=\"outbound\""),
        "{}",
        metrics.body
    );
}

/// An accepted connection whose request arrives just as shutdown begins is answered, not
/// closed as "idle" (the HTTP/1.1 race a graceful shutdown has to settle).
#[tokio::test]
async fn a_request_arriving_as_shutdown_begins_is_answered() {
    let p = pair("", "", "").await;
    let state = p.billing_side.state.clone();
    let mut conn = tokio::net::TcpStream::connect(p.billing_side.inbound())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            state
                .metrics
                .open_connections
                .with_label_values(&["inbound"])
                .get()
                == 1
        })
        .await
    );
    let stopping = tokio::spawn(p.billing_side.shutdown());
    assert!(eventually(Duration::from_secs(5), || !state.is_ready()).await);
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: billing\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    drop(conn);
    stopping.await.unwrap();
}

/// A path the app could resolve differently from the allow rules is refused, not
/// matched: "/orders/../admin" must not pass a rule for "/orders/*".
#[tokio::test]
async fn dot_segments_cannot_slip_past_the_policy() {
    let p = pair(
        "[[inbound.allow]]\ncallers = [\"orders\"]\npaths = [\"/orders/*\"]\n",
        "",
        "",
    )
    .await;
    let auth = bearer(&token_as(&p.orders, "orders", "billing"));
    for path in [
        "/orders/../admin",
        "/orders/%2e%2e/admin",
        "/orders/..%2fadmin",
        "/orders/./x",
    ] {
        let mut s = tokio::net::TcpStream::connect(p.billing_side.inbound())
            .await
            .unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: billing\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
        assert!(out.contains("non_canonical_path"), "{path}: {out}");
    }
    let ok = get(
        format!("http://{}/orders/7", p.billing_side.inbound()),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}

/// The inbound listener publishes this service's JWKS itself (no token, never forwarded:
/// the app is not even running here), the same document as the admin endpoint;
/// `inbound.publish_jwks = false` hands the path back to the normal rules.
#[tokio::test]
async fn the_inbound_listener_publishes_the_jwks() {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let orders = keys.make("orders");
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let side = Conf::new("billing", &billing.private)
        .inbound(&trusted, dead)
        .start()
        .await;
    let url = format!("http://{}/.well-known/jwks.json", side.inbound());
    let a = get(url.clone(), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers["content-type"], "application/json");
    let kids: Vec<_> = a.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, vec![billing.kid.as_str()]);
    let admin = get(
        format!("http://{}/.well-known/jwks.json", side.admin()),
        &[],
    )
    .await;
    assert_eq!(admin.json(), a.json());
    let post = send(
        &client(),
        Request::post(url.clone()).body(body(Bytes::new())).unwrap(),
    )
    .await;
    assert_eq!(
        post.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "GET only, never forwarded"
    );
    side.shutdown().await;

    let side = Conf::new("billing", &billing.private)
        .inbound(&trusted, dead)
        .set("inbound", "publish_jwks = false")
        .start()
        .await;
    let url = format!("http://{}/.well-known/jwks.json", side.inbound());
    assert_eq!(get(url, &[]).await.status, StatusCode::UNAUTHORIZED);
    side.shutdown().await;
}
