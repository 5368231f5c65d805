//! The real binary: `trustgate run` as a process, signals and memory as the OS sees them.
use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use support::*;

fn billing_config(
    keys: &Keys,
    app: std::net::SocketAddr,
) -> (String, trustgate::keys::GeneratedFiles) {
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let text = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .extra("[limits]\nshutdown_grace = \"10s\"")
        .toml();
    (text, orders)
}

fn token(orders: &trustgate::keys::GeneratedFiles) -> String {
    format!("Bearer {}", sign_as(orders, "orders", "billing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    drains_on_sigterm("").await;
}

/// The same with `limits.worker_threads = 1`: the single-threaded runtime a sidecar gets
/// on one CPU serves, drains and exits the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_threaded_sidecar_serves_and_drains() {
    drains_on_sigterm("worker_threads = 1\n").await;
}

async fn drains_on_sigterm(limits: &str) {
    let keys = Keys::new();
    let at_app = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = spawn_app_counting(at_app.clone()).await;
    let (text, orders) = billing_config(&keys, app);
    let text = text.replace("[limits]\n", &format!("[limits]\n{limits}"));
    let mut running = run_binary(&text, keys.path());
    let auth = token(&orders);
    let url = format!("http://{}/slow/800", running.inbound);
    let mut inflight = Vec::new();
    for _ in 0..8 {
        let (url, auth) = (url.clone(), auth.clone());
        inflight.push(tokio::spawn(async move {
            get(url, &[("authorization", &auth)]).await
        }));
    }
    // Wait until all eight are at the app (truly in flight), then SIGTERM.
    let mut seen = false;
    for _ in 0..500 {
        if at_app.load(std::sync::atomic::Ordering::SeqCst) == 8 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "requests never reached the app");
    let pid = running.process.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // Readiness turns 503 while the drain is on (the signal is handled asynchronously:
    // poll with a deadline).
    let mut not_ready = false;
    for _ in 0..300 {
        if get(format!("http://{}/readyz", running.admin), &[])
            .await
            .status
            == StatusCode::SERVICE_UNAVAILABLE
        {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(not_ready, "readiness never turned 503 during the drain");
    for r in inflight {
        let a = r.await.unwrap();
        assert_eq!(
            a.status,
            StatusCode::OK,
            "in-flight request dropped: {}",
            a.body
        );
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = running.process.child.wait().unwrap();
        let rest: Vec<String> = running.lines.try_iter().collect();
        (status, rest)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "{:?}", status.1);
    assert!(
        status.1.iter().any(|l| l.contains("shutdown complete")),
        "{:?}",
        status.1
    );
    // New connections are refused once it has exited.
    assert!(tokio::net::TcpStream::connect(
        url.trim_start_matches("http://").split('/').next().unwrap()
    )
    .await
    .is_err());
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Bodies stream: 50 MiB up and 50 MiB down through the real process raise its peak
/// resident memory by far less than the body (the target of 10 MiB is measured by the
/// load benchmark; this test guards against buffering whole bodies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_bodies_stream_with_bounded_memory() {
    let keys = Keys::new();
    let app = spawn_app().await;
    let (text, orders) = billing_config(&keys, app);
    let running = run_binary(&text, keys.path());
    let auth = token(&orders);
    let pid = running.process.child.id();
    // Warm up (first connection, TLS-free pools, allocator arenas).
    let a = get(
        format!("http://{}/stream/65536", running.inbound),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let before = vm_hwm_kib(pid);

    const SIZE: usize = 50 * 1024 * 1024;
    let chunks = futures_util::stream::iter((0..SIZE / (256 * 1024)).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![
            1u8;
            256 * 1024
        ])))
    }));
    let req = Request::post(format!("http://{}/count", running.inbound))
        .header("authorization", &auth)
        .body(http_body_util::BodyExt::boxed(
            http_body_util::StreamBody::new(chunks),
        ))
        .unwrap();
    let up = send(&client(), req).await;
    assert_eq!(up.status, StatusCode::OK);
    assert_eq!(up.body, SIZE.to_string());

    let resp = client()
        .request(
            Request::get(format!("http://{}/stream/{SIZE}", running.inbound))
                .header("authorization", &auth)
                .body(body(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut b = resp.into_body();
    let mut n = 0;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut b).await {
        n += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(n, SIZE);
    let growth_mib = (vm_hwm_kib(pid).saturating_sub(before)) as f64 / 1024.0;
    eprintln!("peak RSS growth streaming 2 × 50 MiB: {growth_mib:.1} MiB");
    assert!(
        growth_mib < 25.0,
        "peak RSS grew {growth_mib:.1} MiB: a body is being buffered"
    );
}

/// What `trustgate run` writes to stderr when it warns and then cannot bind its port
/// (a port held by another socket): the warning is a tracing line, the error the
/// binary's own; run with stderr as a pipe, or as a terminal through `script(1)`.
fn run_stderr(under_terminal: bool, no_color: Option<&str>) -> String {
    let keys = Keys::new();
    let me = keys.make("billing");
    let dir = keys.path().join("ak");
    std::fs::create_dir_all(&dir).unwrap();
    // An http:// key URL without trust.allow_http_fetch: warned about at start.
    std::fs::write(dir.join("orders.url"), "http://127.0.0.1:1/jwks.json\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = Conf::new("billing", &me.private)
        .inbound(&dir, "127.0.0.1:1")
        .toml();
    // The inbound listener on the taken port (the admin listener keeps port 0).
    let at = text.find("[inbound]").unwrap();
    let text = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen("127.0.0.1:0", &taken.local_addr().unwrap().to_string(), 1)
    );
    let config = keys.path().join("t.toml");
    std::fs::write(&config, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_trustgate");
    let mut cmd = if under_terminal {
        let mut c = Command::new("script");
        // -q quiet, -e child's exit code, -c command; the typescript goes nowhere.
        c.args([
            "-qec",
            &format!("{bin} run --config {}", config.display()),
            "/dev/null",
        ]);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(["run", "--config"]).arg(&config);
        c
    };
    cmd.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "cannot bind: exit 1");
    // Under script(1) the terminal's output (stdout and stderr) arrives on stdout.
    let mut all = String::from_utf8_lossy(&out.stderr).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stdout));
    all
}

#[test]
fn logs_have_colour_only_on_a_terminal_and_say_each_cause_once() {
    let piped = run_stderr(false, None);
    assert!(
        piped.contains("allow_http_fetch"),
        "the warning is logged: {piped}"
    );
    assert!(
        !piped.contains('\u{1b}'),
        "no ANSI codes into a pipe: {piped:?}"
    );
    // The cause once, not "…(os error 98): Address already in use (os error 98)".
    assert_eq!(
        piped.matches("Address already in use").count(),
        1,
        "{piped}"
    );
    assert!(piped.contains("cannot listen on"), "{piped}");

    if Command::new("script").arg("--version").output().is_err() {
        panic!("script(1) (util-linux) is needed to run trustgate under a terminal");
    }
    let tty = run_stderr(true, None);
    assert!(tty.contains("allow_http_fetch"), "{tty}");
    assert!(tty.contains("\u{1b}["), "colour on a terminal: {tty:?}");
    let tty_no_color = run_stderr(true, Some("1"));
    assert!(tty_no_color.contains("allow_http_fetch"), "{tty_no_color}");
    assert!(
        !tty_no_color.contains('\u{1b}'),
        "NO_COLOR honoured: {tty_no_color:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(run_stderr(true, Some("")).contains("\u{1b}["));
}

/// W3C Trace Context crosses a whole chain (app → orders' outbound → billing's inbound →
/// app) untouched, and both sidecars' access-log lines carry the trace id, so a log
/// search for it finds every hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_passes_both_sidecars_and_is_in_their_access_logs() {
    let keys = Keys::new();
    let app = spawn_app().await;
    let (text, orders) = billing_config(&keys, app);
    let billing = run_binary(&text, keys.path());
    let orders_dir = tempfile::tempdir().unwrap();
    let orders_text = Conf::new("orders", &orders.private)
        .route("billing", format!("http://{}", billing.inbound))
        .toml();
    let orders_side = run_binary(&orders_text, orders_dir.path());

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let a = get(
        format!("http://{}/orders/1", orders_side.outbound),
        &[
            ("host", "billing"),
            ("traceparent", traceparent),
            ("tracestate", tracestate),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let h = &a.json()["headers"];
    assert_eq!(h["x-service-caller"], "orders");
    assert_eq!(h["traceparent"], traceparent, "untouched through both");
    assert_eq!(h["tracestate"], tracestate, "untouched through both");

    let out = access_line(&orders_side.lines, "outbound");
    let inb = access_line(&billing.lines, "inbound");
    assert_eq!(out["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{out}");
    assert_eq!(inb["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{inb}");
    assert_eq!(inb["caller"], "orders");
    assert_eq!(inb["issuer"], "-", "its own key: no issuer vouched");
    assert_eq!(out["path"], "/orders/1", "{out}");
    assert_eq!(inb["path"], "/orders/1", "{inb}");
    assert_eq!(inb["method"], "GET");

    // Without (or with a malformed) traceparent the field says "-".
    let a = get(
        format!("http://{}/orders/2", orders_side.outbound),
        &[("host", "billing"), ("traceparent", "garbage")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.json()["headers"]["traceparent"],
        "garbage",
        "still untouched"
    );
    assert_eq!(access_line(&orders_side.lines, "outbound")["trace_id"], "-");
    assert_eq!(access_line(&billing.lines, "inbound")["trace_id"], "-");
}
