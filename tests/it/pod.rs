//! Nobody around the sidecar: the app on a Unix socket (no TCP port at all), and the
//! exposure check that finds an app listening on a pod address. 127.0.0.2 stands for the
//! pod's address: an app bound to 127.0.0.1 does not answer there, one bound to 0.0.0.0
//! does.
use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::raw::{exchange, exchange_n, spawn_raw_unix_app};
use support::{get, run_binary, sign_as, Conf, Keys};

/// billing's sidecar in front of an app at `sock`, with `extra` inbound lines;
/// and a token orders signed for it.
async fn behind_socket(sock: &std::path::Path, extra: &[&str]) -> (support::Sidecar, String, Keys) {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let orders = keys.make("orders");
    let trusted = keys.trust_dir("ak", &[&orders]);
    let mut conf = Conf::new("billing", &billing.private)
        .inbound(&trusted, format!("unix://{}", sock.display()));
    for line in extra {
        conf = conf.set("inbound", *line);
    }
    (
        conf.start().await,
        sign_as(&orders, "orders", "billing"),
        keys,
    )
}

#[tokio::test]
async fn the_app_on_a_unix_socket_gets_verified_calls_over_one_kept_connection() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("app.sock");
    let app = spawn_raw_unix_app(&sock);
    let (side, token, _keys) = behind_socket(&sock, &[]).await;
    let one = format!(
        "GET /invoices/1 HTTP/1.1\r\nhost: billing.shop\r\nauthorization: Bearer {token}\r\n\
         x-service-caller: admin\r\n\r\n"
    );
    // Three requests on one downstream connection: one connection to the socket.
    let answers = exchange_n(side.inbound(), one.repeat(3).as_bytes(), 3).await;
    assert_eq!(answers.len(), 3);
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.body_text() == "ok"));
    let seen = app.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.request_line(), "GET /invoices/1 HTTP/1.1");
        assert_eq!(s.values("x-service-caller"), vec!["orders"]);
        assert_eq!(s.values("host"), vec!["billing.shop"], "the caller's Host");
        assert!(s.values("authorization").is_empty(), "never the token");
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 1, "affinity");
    // A forged call is refused before the socket.
    let forged = "GET /invoices/1 HTTP/1.1\r\nhost: b\r\nx-service-caller: admin\r\n\r\n";
    let r = exchange(side.inbound(), forged.as_bytes()).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(app.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn http2_to_an_app_on_a_unix_socket() {
    // A gRPC-style request goes to the app as HTTP/2 (the h2 pool over the socket).
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("h2.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let who = req
                            .headers()
                            .get("x-service-caller")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = format!("{:?} {who}", req.version());
                        Ok::<_, std::convert::Infallible>(http::Response::new(support::body(body)))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
            });
        }
    });
    let (side, token, _keys) = behind_socket(&sock, &["upstream_protocol = \"http2\""]).await;
    let a = get(
        format!("http://{}/x", side.inbound()),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "HTTP/2.0 orders");
}

#[tokio::test]
async fn a_missing_socket_is_upstream_unreachable() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("nobody.sock");
    let (side, token, _keys) = behind_socket(&sock, &[]).await;
    let a = get(
        format!("http://{}/x", side.inbound()),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.json()["error"], "upstream_unreachable");
}

/// A `trustgate run` in front of an app on `app_port`, checking 127.0.0.2 as its pod
/// address every 200 ms.
fn exposure_sidecar(
    dir: &std::path::Path,
    keys: &Keys,
    app_port: u16,
    mode: &str,
) -> support::Running {
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("ak", &[]);
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, format!("127.0.0.1:{app_port}"))
        .set("inbound", "pod_ips = [\"127.0.0.2\"]")
        .set("inbound", format!("app_exposure = \"{mode}\""))
        .set("inbound", "app_exposure_interval = \"200ms\"")
        .toml();
    run_binary(&text, dir)
}

async fn admin_get(admin: &str, path: &str) -> support::Answer {
    get(format!("http://{admin}{path}"), &[]).await
}

/// Polls `/readyz` until it answers 200 (true) or 5 s pass (false).
async fn becomes_ready(admin: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if admin_get(admin, "/readyz").await.status == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits for a JSON log line whose message contains `words`; returns its fields.
fn log_line(lines: &std::sync::mpsc::Receiver<String>, words: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line saying {words:?}"));
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(words))
        {
            return v;
        }
    }
}

#[tokio::test]
async fn an_app_on_all_addresses_is_found_exposed_and_refused_readiness() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    // The app binds every address: it answers on the "pod address" 127.0.0.2 too.
    let app = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let run = exposure_sidecar(dir.path(), &keys, port, "refuse");
    let line = log_line(&run.lines, "the app answers on a pod address");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["fields"]["address"], format!("127.0.0.2:{port}"));
    let m = admin_get(&run.admin, "/metrics").await.body;
    assert_eq!(gauge(&m, "trustgate_app_exposed"), Some(1), "{m}");
    // Readiness may still say "starting" for a moment after the check's first line (both
    // are 503): poll, with a deadline, for the exposure's own answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = admin_get(&run.admin, "/readyz").await;
        assert_eq!(r.status, 503, "{}", r.body);
        if !r.body.contains("starting") || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        r.body.contains("app_exposed") && r.body.contains(&format!("127.0.0.2:{port}")),
        "{}",
        r.body
    );
    // The app moves to loopback: the next round clears it and readiness comes back.
    drop(app);
    let _local = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert!(
        becomes_ready(&run.admin).await,
        "readiness back once the app binds loopback"
    );
    let m = admin_get(&run.admin, "/metrics").await.body;
    assert_eq!(gauge(&m, "trustgate_app_exposed"), Some(0));
}

#[tokio::test]
async fn an_app_on_loopback_is_not_exposed() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let run = exposure_sidecar(dir.path(), &keys, port, "refuse");
    log_line(&run.lines, "the app answers on loopback only");
    assert!(becomes_ready(&run.admin).await);
    let m = admin_get(&run.admin, "/metrics").await.body;
    assert_eq!(gauge(&m, "trustgate_app_exposed"), Some(0), "{m}");
    // Several rounds later, still silent: no error line was written.
    let mut errors = 0;
    let until = std::time::Instant::now() + Duration::from_millis(700);
    while let Ok(line) = run
        .lines
        .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
    {
        errors += usize::from(line.contains("\"ERROR\""));
    }
    assert_eq!(errors, 0);
}

#[tokio::test]
async fn warn_mode_reports_but_stays_ready() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let app = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let run = exposure_sidecar(dir.path(), &keys, port, "warn");
    log_line(&run.lines, "the app answers on a pod address");
    let m = admin_get(&run.admin, "/metrics").await.body;
    assert_eq!(gauge(&m, "trustgate_app_exposed"), Some(1));
    assert!(becomes_ready(&run.admin).await, "warn only reports");
    drop(app);
}

#[tokio::test]
async fn off_mode_checks_nothing() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let app = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = app.local_addr().unwrap().port();
    let run = exposure_sidecar(dir.path(), &keys, port, "off");
    assert!(becomes_ready(&run.admin).await);
    let m = admin_get(&run.admin, "/metrics").await.body;
    assert_eq!(gauge(&m, "trustgate_app_exposed"), Some(0));
    drop(app);
}
