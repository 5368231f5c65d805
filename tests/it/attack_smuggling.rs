//! Attacker suite, framing: request smuggling and desync. trustgate re-frames every
//! request it forwards, so the property is: the app receives exactly the requests
//! trustgate authorised, each framed once, and nothing an attacker tucked behind them.
//! Malformed bodies are the client's fault (400), never an upstream error (502).
use crate::support;

use std::time::Duration;

use support::attack::target;
use support::raw::{exchange, exchange_n, read_response};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// A request trustgate must never forward: no token, different path.
const SMUGGLED: &str = "GET /invoices/smuggled HTTP/1.1\r\nhost: billing\r\n\r\n";

fn never_smuggled(t: &support::attack::Target) {
    for seen in t.app.requests() {
        assert!(
            !seen.request_line().contains("smuggled"),
            "a smuggled request reached the app:\n{}",
            seen.head_text()
        );
    }
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together() {
    let t = target("", "").await;
    let token = t.token();
    for te in ["chunked", "Chunked", " chunked", "chunked "] {
        t.app.clear();
        let req = format!(
            "POST /invoices/1 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\ncontent-length: 6\r\ntransfer-encoding:{te}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        let answers = exchange_n(t.inbound(), req.as_bytes(), 2).await;
        assert!(!answers.is_empty(), "TE {te:?}: no answer");
        // Either refused outright or framed by chunked (RFC 9112 §6.3); a second request
        // behind it is then trustgate's to judge: no token, so 401.
        for a in &answers[1..] {
            assert_eq!(a.status, 401, "TE {te:?}");
        }
        never_smuggled(&t);
    }
}

#[tokio::test]
async fn transfer_encodings_other_than_chunked_last_are_refused() {
    let t = target("", "").await;
    let token = t.token();
    for te in [
        "identity",
        "chunked, identity",
        "gzip",
        "xchunked",
        "chunked;x=1",
        "\x0bchunked",
    ] {
        t.app.clear();
        let req = format!(
            "POST /invoices/1 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\ntransfer-encoding: {te}\r\ncontent-length: 5\r\n\r\nhello{SMUGGLED}"
        );
        if let Some(r) = exchange(t.inbound(), req.as_bytes()).await {
            assert!(
                r.status == 400 || r.status == 501,
                "TE {te:?}: {}",
                r.status
            );
        }
        never_smuggled(&t);
    }
}

#[tokio::test]
async fn two_different_content_lengths_are_refused() {
    let t = target("", "").await;
    let token = t.token();
    for cls in [
        "content-length: 5\r\ncontent-length: 40\r\n",
        "content-length: 5, 40\r\n",
        "content-length: +5\r\n",
        "content-length: -5\r\n",
        "content-length: 0x5\r\n",
        "content-length: 5 5\r\n",
        "content-length: 99999999999999999999999\r\n",
    ] {
        t.app.clear();
        let req = format!(
            "POST /invoices/1 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\n{cls}\r\nhello{SMUGGLED}"
        );
        if let Some(r) = exchange(t.inbound(), req.as_bytes()).await {
            assert_eq!(r.status, 400, "{cls:?}");
        }
        assert!(t.app.requests().is_empty(), "{cls:?} reached the app");
    }
}

#[tokio::test]
async fn malformed_chunked_bodies_are_400_not_502() {
    let t = target("", "").await;
    let token = t.token();
    let mut refused = 0;
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n",
        "ffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        "-1\r\nx\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhello\r\n1\r\n",
    ] {
        t.app.clear();
        let mut s = TcpStream::connect(t.inbound()).await.unwrap();
        let head = format!(
            "POST /invoices/1 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\n{body}"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // The last case is a body cut short: the client stops sending, then hangs up.
        if body.ends_with("1\r\n") {
            s.shutdown().await.unwrap();
        }
        let r = read_response(&mut s, &mut Vec::new()).await;
        if let Some(r) = r {
            assert!(
                r.status == 400 || r.status == 200,
                "{body:?}: {} {}",
                r.status,
                r.body_text()
            );
            if r.status == 400 {
                assert!(
                    r.body_text().contains("malformed_body"),
                    "{}",
                    r.body_text()
                );
                refused += 1;
            }
        }
        never_smuggled(&t);
    }
    assert!(
        refused >= 3,
        "bad chunk sizes must be answered 400 malformed_body ({refused})"
    );
    let m = support::get(format!("http://{}/metrics", t.side.admin()), &[]).await;
    assert!(
        !m.body.contains(r#"outcome="upstream_error"} 1"#),
        "a client's bad body was counted as an upstream error"
    );
}

#[tokio::test]
async fn bare_lf_requests_are_reframed_with_crlf() {
    let t = target("", "").await;
    let req = format!(
        "GET /invoices/1 HTTP/1.1\nhost: billing\nauthorization: Bearer {}\nx-a: 1\n\n",
        t.token()
    );
    if let Some(r) = exchange(t.inbound(), req.as_bytes()).await {
        if r.status == 200 {
            let seen = &t.app.requests()[0];
            let head = seen.head_text();
            assert!(
                !head.replace("\r\n", "").contains('\n'),
                "bare LF forwarded: {head:?}"
            );
        } else {
            assert_eq!(r.status, 400);
        }
    }
    never_smuggled(&t);
}

#[tokio::test]
async fn pipelining_behind_a_401_is_judged_request_by_request() {
    let t = target("", "").await;
    let token = t.token();
    // 1: no token, with a body; 2: valid; 3: no token; 4: valid.
    let req = format!(
        "POST /invoices/a HTTP/1.1\r\nhost: billing\r\ncontent-length: {}\r\n\r\n{SMUGGLED}\
         GET /invoices/b HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\n\r\n\
         {SMUGGLED}\
         GET /invoices/c HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\n\r\n",
        SMUGGLED.len()
    );
    let answers = exchange_n(t.inbound(), req.as_bytes(), 4).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![401, 200, 401, 200]);
    let lines: Vec<String> = t.app.requests().iter().map(|s| s.request_line()).collect();
    assert_eq!(
        lines,
        vec!["GET /invoices/b HTTP/1.1", "GET /invoices/c HTTP/1.1"]
    );
}

#[tokio::test]
async fn a_401_is_read_by_a_client_still_uploading() {
    let t = target("", "").await;
    // 4 MiB body without a token: refused at once, and the refusal must arrive intact
    // (not destroyed by a reset because the upload was not read).
    for _ in 0..5 {
        let mut s = TcpStream::connect(t.inbound()).await.unwrap();
        let size = 4 << 20;
        let head =
            format!("POST /invoices/1 HTTP/1.1\r\nhost: billing\r\ncontent-length: {size}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..(size / chunk.len()) {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let r = read_response(&mut rd, &mut Vec::new())
            .await
            .expect("the 401 arrives");
        assert_eq!(r.status, 401);
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    }
    assert!(t.app.requests().is_empty());
}

#[tokio::test]
async fn http_0_9_and_garbage_request_lines() {
    let t = target("", "").await;
    for req in [
        "GET /invoices/1\r\n\r\n",
        "GET /invoices/1 HTTP/1.1 extra\r\nhost: b\r\n\r\n",
        "GET  /invoices/1 HTTP/1.1\r\nhost: b\r\n\r\n",
        "GET /invoices/1 HTTP/2.0\r\nhost: b\r\n\r\n",
        "G\0T /invoices/1 HTTP/1.1\r\nhost: b\r\n\r\n",
        "GET http://evil/invoices/1@x HTTP/1.1\r\nhost: b\r\n\r\n",
    ] {
        t.app.clear();
        if let Some(r) = exchange(t.inbound(), req.as_bytes()).await {
            assert!(
                r.status == 400 || r.status == 401 || r.status == 505,
                "{req:?}: {}",
                r.status
            );
        }
        assert!(t.app.requests().is_empty(), "{req:?} reached the app");
    }
}
