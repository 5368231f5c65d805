//! Connection affinity: a downstream HTTP/1.1 connection keeps one upstream connection
//! to the app for all its requests (no pool checkout per request), and a kept
//! connection the app has closed is replaced without the client seeing an error. The
//! app is Python's standard-library HTTP server, which answers with the port its client
//! connected from (`tests/it/support/conn_app.py`).
use crate::support;

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use http_body_util::BodyExt as _;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use support::*;

/// The Python app (killed on drop) and its address; `None` (skipped loudly) without
/// python3, unless `TRUSTGATE_REQUIRE_INTEROP=1`.
fn python_app(mode: &str) -> Option<(Process, String)> {
    python_app_logging(mode, None)
}

/// As [`python_app`], the app writing one line per request it receives to `log`.
fn python_app_logging(mode: &str, log: Option<&std::path::Path>) -> Option<(Process, String)> {
    if !have_tool("python3", &["--version"], "apt-get install python3") {
        return None;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/conn_app.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .args(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the app prints its port");
    Some((Process { child }, format!("127.0.0.1:{port}")))
}

/// `n` requests, one after another, on one keep-alive connection to the sidecar's
/// public path; the app's answers (the upstream connection's port for each).
async fn sequential(sidecar: std::net::SocketAddr, n: usize) -> Vec<String> {
    let hosts = vec!["billing"; n];
    on_one_connection(sidecar, &hosts).await
}

/// One HTTP/1.1 keep-alive connection to the sidecar (hyper's client connection).
async fn connection(sidecar: std::net::SocketAddr) -> http1::SendRequest<TestBody> {
    let stream = tokio::net::TcpStream::connect(sidecar).await.unwrap();
    let (sender, conn) = http1::handshake::<_, TestBody>(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One request per entry of `hosts` (its `Host` header), in order, on one keep-alive
/// connection; the app's answers.
async fn on_one_connection(sidecar: std::net::SocketAddr, hosts: &[&str]) -> Vec<String> {
    let mut sender = connection(sidecar).await;
    let mut ports = Vec::new();
    for host in hosts {
        sender.ready().await.unwrap();
        let req = http::Request::get("/pub")
            .header("host", *host)
            .body(body(bytes::Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        ports.push(String::from_utf8(b.to_vec()).unwrap());
    }
    ports
}

async fn sidecar_for(app: &str) -> Sidecar {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[]);
    Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .set("inbound", "public_paths = [\"/pub\"]")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_connection_keeps_one_upstream_connection() {
    let Some((_app, addr)) = python_app("keep") else {
        return;
    };
    let sidecar = sidecar_for(&addr).await;
    let a = sequential(sidecar.inbound(), 20).await;
    assert!(
        a.iter().all(|p| *p == a[0]),
        "one upstream connection: {a:?}"
    );
    // Another downstream connection gets its own.
    let b = sequential(sidecar.inbound(), 5).await;
    assert!(b.iter().all(|p| *p == b[0]), "{b:?}");
    assert_ne!(
        a[0], b[0],
        "each downstream connection has its own upstream one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_app_closed_is_replaced_unseen() {
    let Some((_app, addr)) = python_app("close") else {
        return;
    };
    let sidecar = sidecar_for(&addr).await;
    // Every answer comes on a new upstream connection, and every request succeeds.
    let ports = sequential(sidecar.inbound(), 30).await;
    let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
    assert_eq!(distinct.len(), 30, "{ports:?}");
}

/// Each request of `(method, body)` on one keep-alive connection to the sidecar's
/// public path; the status of each.
async fn statuses(sidecar: std::net::SocketAddr, requests: &[(&str, &'static [u8])]) -> Vec<u16> {
    let mut sender = connection(sidecar).await;
    let mut out = Vec::new();
    for (method, b) in requests {
        if sender.ready().await.is_err() {
            break;
        }
        let req = http::Request::builder()
            .method(*method)
            .uri("/pub")
            .header("host", "billing")
            .body(body(bytes::Bytes::from_static(b)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        out.push(resp.status().as_u16());
        let _ = resp.into_body().collect().await;
    }
    out
}

/// What the app received, one line per request (`METHOD PATH PORT`), once `n` arrived.
async fn received(log: &std::path::Path, n: usize) -> Vec<String> {
    let lines = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    eventually(std::time::Duration::from_secs(5), || lines().len() >= n).await;
    lines()
}

/// The keep-alive race, both ways (RFC 9112 §9.3.1): a request that reached a kept
/// connection which then closed without an answer is sent again on a new connection if
/// it is idempotent and has no body — the app receives it twice and the client sees one
/// 200 — and a POST is not: the app receives it once and the client gets the 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_dying_kept_connection_is_sent_again_and_a_post_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("get.log");
    let Some((_app, addr)) = python_app_logging("drop", Some(&log)) else {
        return;
    };
    let sidecar = sidecar_for(&addr).await;
    let got = statuses(sidecar.inbound(), &[("GET", b""), ("GET", b"")]).await;
    assert_eq!(
        got,
        [200, 200],
        "the second GET is answered after the re-send"
    );
    let lines = received(&log, 3).await;
    assert_eq!(lines.len(), 3, "sent again exactly once: {lines:?}");
    let port = |l: &str| l.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(
        port(&lines[0]),
        port(&lines[1]),
        "the second went on the kept connection"
    );
    assert_ne!(
        port(&lines[1]),
        port(&lines[2]),
        "and again on a new one: {lines:?}"
    );

    let log = dir.path().join("post.log");
    let Some((_app, addr)) = python_app_logging("drop", Some(&log)) else {
        return;
    };
    let sidecar = sidecar_for(&addr).await;
    let got = statuses(sidecar.inbound(), &[("POST", b"one"), ("POST", b"two")]).await;
    assert_eq!(
        got,
        [200, 502],
        "a POST that may have been processed is not replayed"
    );
    // The 502 is the exchange's end: a re-send would have come before it (and answered
    // it with a 200), so what arrived by now is all that will.
    let lines = received(&log, 2).await;
    assert_eq!(lines.len(), 2, "each POST arrived once: {lines:?}");
}

/// An app calling two services through one connection to its outbound sidecar (as
/// through `HTTP_PROXY`): the first destination keeps its connection, the other goes
/// through the pool — not a new connection per request as the destinations alternate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_destinations_keep_the_first_and_pool_the_other() {
    let (Some((_a, a)), Some((_b, b))) = (python_app("keep"), python_app("keep")) else {
        return;
    };
    let keys = Keys::new();
    let orders = keys.make("orders");
    let sidecar = Conf::new("orders", &orders.private)
        .route("alpha", format!("http://{a}"))
        .route("beta", format!("http://{b}"))
        .start()
        .await;
    let hosts: Vec<&str> = (0..12)
        .map(|i| if i % 2 == 0 { "alpha" } else { "beta" })
        .collect();
    let ports = on_one_connection(sidecar.outbound(), &hosts).await;
    let alpha: Vec<_> = ports.iter().step_by(2).collect();
    assert!(
        alpha.iter().all(|p| *p == alpha[0]),
        "alpha kept: {ports:?}"
    );
    let beta: std::collections::BTreeSet<_> = ports.iter().skip(1).step_by(2).collect();
    assert!(
        beta.len() <= 2,
        "beta pooled, not one connection per request: {ports:?}"
    );
}

/// An HTTP/2 client's streams share pooled upstream connections (issue 43): 1 000
/// requests, 10 at a time, over one downstream connection, reach the app over about 10
/// connections — no new one per request, none closed under another stream. (hyper-util's
/// pool races a checkout against a new connection while all are busy, so the ramp-up may
/// open a few more; from then on the ones open serve every request.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_share_pooled_upstream_connections() {
    let Some((_app, addr)) = python_app("keep") else {
        return;
    };
    let sidecar = sidecar_for(&addr).await;
    let stream = tokio::net::TcpStream::connect(sidecar.inbound())
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake::<_, _, TestBody>(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let mut send = send.clone();
        tasks.spawn(async move {
            let mut ports = Vec::new();
            for _ in 0..100 {
                send.ready().await.unwrap();
                let req = http::Request::get("http://billing/pub")
                    .body(body(bytes::Bytes::new()))
                    .unwrap();
                let resp = send.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                let b = resp.into_body().collect().await.unwrap().to_bytes();
                ports.push(String::from_utf8(b.to_vec()).unwrap());
            }
            ports
        });
    }
    let mut distinct = std::collections::BTreeSet::new();
    while let Some(ports) = tasks.join_next().await {
        distinct.extend(ports.unwrap());
    }
    assert!(
        distinct.len() <= 20,
        "1 000 requests, 10 at a time, opened {} upstream connections",
        distinct.len()
    );
}
