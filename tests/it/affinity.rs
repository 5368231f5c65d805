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
    if !have_tool("python3", &["--version"], "apt-get install python3") {
        return None;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/conn_app.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(mode)
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

/// One request per entry of `hosts` (its `Host` header), in order, on one keep-alive
/// connection; the app's answers.
async fn on_one_connection(sidecar: std::net::SocketAddr, hosts: &[&str]) -> Vec<String> {
    let stream = tokio::net::TcpStream::connect(sidecar).await.unwrap();
    let (mut sender, conn) = http1::handshake::<_, TestBody>(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
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
