//! Shared helpers of the integration tests: a test app, sidecars started in-process on
//! `127.0.0.1:0`, the real binary for process-level tests, and small HTTP clients.

pub mod attack;
pub mod envoy;
pub mod raw;
pub mod redis;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use trustgate::keys::{self, GeneratedFiles, KeyAlg, OutputFormat};
use trustgate::proxy::State;
use trustgate::proxy::{Addrs, Proxy};

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// A directory of keys for a test: `<name>.key`/`<name>.pub` per identity.
pub struct Keys {
    pub dir: tempfile::TempDir,
}

impl Keys {
    pub fn new() -> Self {
        Keys {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn make(&self, name: &str) -> GeneratedFiles {
        keys::write_keypair(
            name,
            KeyAlg::Es256,
            &self.path().join("keys"),
            OutputFormat::Pem,
        )
        .unwrap()
    }

    /// An authorized_keys directory named `dir` trusting the public keys of `names`.
    pub fn trust_dir(&self, dir: &str, names: &[&GeneratedFiles]) -> PathBuf {
        let d = self.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        for f in names {
            std::fs::copy(&f.public, d.join(f.public.file_name().unwrap())).unwrap();
        }
        d
    }
}

/// The test app: echoes what it received as JSON, and a few behaviours by path.
///
/// - `/slow/<ms>`: answers after that many milliseconds;
/// - `/count` (any method): reads the whole body as a stream, answers its length;
/// - `/stream/<bytes>`: streams that many bytes in 64 KiB chunks;
/// - `/ws`: a WebSocket echo server;
/// - anything else: `{"method","path","query","version","headers":{...}}`.
pub async fn spawn_app() -> SocketAddr {
    spawn_app_counting(Arc::new(AtomicUsize::new(0))).await
}

/// The test app, counting the `/slow/` requests it is handling in `inflight` (so a test
/// can wait until requests have really reached the app).
pub async fn spawn_app_counting(inflight: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let inflight = inflight.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| app(req, inflight.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn app(
    mut req: Request<Incoming>,
    inflight: Arc<AtomicUsize>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        inflight.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        inflight.fetch_sub(1, Ordering::SeqCst);
        return Ok(Response::new(body("slow done")));
    }
    if path == "/count" {
        let mut n = 0usize;
        let mut b = req.into_body();
        while let Some(frame) = b.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
                Err(_) => break,
            }
        }
        return Ok(Response::new(body(n.to_string())));
    }
    if let Some(n) = path.strip_prefix("/stream/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len());
                Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n))
            }
        });
        return Ok(Response::new(StreamBody::new(stream).boxed()));
    }
    if path == "/ws" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or(http::HeaderValue::from_static(""));
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            use futures_util::{SinkExt as _, StreamExt as _};
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let mut resp = Response::new(body(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", http::HeaderValue::from_static("websocket"));
        resp.headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        resp.headers_mut()
            .insert("sec-websocket-accept", accept.parse().unwrap());
        return Ok(resp);
    }
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<_> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    let echo = serde_json::json!({
        "method": req.method().as_str(),
        "path": path,
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    Ok(Response::new(body(echo.to_string())))
}

/// A sidecar running in this process.
pub struct Sidecar {
    pub addrs: Addrs,
    pub state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _config_dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts a sidecar from configuration text (listeners should use port 0).
    pub async fn start(toml: &str) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trustgate.toml");
        std::fs::write(&path, toml).unwrap();
        let cfg = trustgate::config::load(&path, Vec::new())
            .unwrap_or_else(|e| panic!("test configuration: {e}\n{toml}"));
        let proxy = Proxy::bind(cfg, prometheus::Registry::new()).await.unwrap();
        let addrs = proxy.addrs();
        let state = proxy.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(proxy.serve(async move {
            let _ = rx.await;
        }));
        Sidecar {
            addrs,
            state,
            stop: Some(tx),
            task: Some(task),
            _config_dir: dir,
        }
    }

    pub fn inbound(&self) -> SocketAddr {
        self.addrs.inbound.unwrap()
    }

    pub fn outbound(&self) -> SocketAddr {
        self.addrs.outbound.unwrap()
    }

    pub fn admin(&self) -> SocketAddr {
        self.addrs.admin
    }

    /// Begins graceful shutdown and waits for it to complete.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn send(client: &Client<HttpConnector, TestBody>, req: Request<TestBody>) -> Answer {
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(url: String, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(body(Bytes::new())).unwrap()).await
}

/// `true` if `cmd args` runs and succeeds. Otherwise the calling test skips, saying so
/// on stderr — or fails under `TRUSTGATE_REQUIRE_INTEROP=1` (CI), with `hint` saying
/// how to install what is missing.
pub fn have_tool(cmd: &str, args: &[&str], hint: &str) -> bool {
    let ok = std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("TRUSTGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "TRUSTGATE_REQUIRE_INTEROP=1 but `{cmd} {}` does not run ({hint})",
            args.join(" ")
        );
        eprintln!("SKIPPED: `{cmd} {}` does not run ({hint})", args.join(" "));
    }
    ok
}

/// Runs `cmd` to its end and asserts it succeeded, showing its output if not.
pub fn assert_runs(cmd: &mut std::process::Command) -> std::process::Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `trustgate check --config FILE`, as a user runs it: its exit code and everything it
/// printed (stdout, then stderr).
pub fn check_config(config: &Path) -> (Option<i32>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("TRUSTGATE_CONFIG")
        .env_remove("TRUSTGATE_LOG_LEVEL")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// The trustgate binary with `args`, `stdin` written to its standard input.
pub fn trustgate_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(args)
        .env_remove("TRUSTGATE_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A `trustgate run` process and what it logged.
pub struct Running {
    pub process: Process,
    pub inbound: String,
    pub outbound: String,
    pub admin: String,
    pub lines: std::sync::mpsc::Receiver<String>,
    /// The "listening" line's fields.
    pub listening: serde_json::Value,
}

/// Starts `trustgate run` with a config whose listeners use port 0, and learns the bound
/// addresses from its JSON "listening" log line.
pub fn run_binary(config_text: &str, dir: &std::path::Path) -> Running {
    let config = dir.join("trustgate.toml");
    std::fs::write(&config, config_text).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"));
    cmd.arg("run").arg("--config").arg(&config);
    spawn_run(cmd)
}

/// Starts a `trustgate run` command as given (its working directory, arguments and
/// environment), logging JSON, and learns the bound addresses from its "listening" line.
pub fn spawn_run(mut cmd: std::process::Command) -> Running {
    let mut child = cmd
        .env("TRUSTGATE_LOG_FORMAT", "json")
        .env_remove("TRUSTGATE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let process = Process { child };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("trustgate logs its listening addresses");
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["fields"]["message"] == "listening" {
            return Running {
                process,
                inbound: v["fields"]["inbound"].as_str().unwrap().to_owned(),
                outbound: v["fields"]["outbound"].as_str().unwrap().to_owned(),
                admin: v["fields"]["admin"].as_str().unwrap().to_owned(),
                lines: rx,
                listening: v["fields"].clone(),
            };
        }
    }
}

/// Waits (with a deadline) for an access-log line of `direction` and returns its fields.
pub fn access_line(
    lines: &std::sync::mpsc::Receiver<String>,
    direction: &str,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).expect("an access-log line");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["target"] == "trustgate::access" && v["fields"]["direction"] == direction {
            return v["fields"].clone();
        }
    }
}

/// The real binary, running `trustgate run` on a config file; killed on drop.
pub struct Process {
    pub child: std::process::Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, for the real-binary tests that must name their ports in a config
/// file (the port is released just before the process binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sidecar configuration for tests: every listener on port 0, then only what a test
/// cares about. `Conf::new("billing", &key).inbound(&trusted, app).toml()`.
#[derive(Clone, Debug)]
pub struct Conf {
    identity: String,
    private_key: PathBuf,
    trust: Vec<String>,
    inbound: Option<Vec<String>>,
    outbound: Option<Vec<String>>,
    routes: Vec<String>,
    extra: String,
}

impl Conf {
    pub fn new(identity: &str, private_key: &Path) -> Conf {
        Conf {
            identity: identity.to_owned(),
            private_key: private_key.to_path_buf(),
            trust: Vec::new(),
            inbound: None,
            outbound: None,
            routes: Vec::new(),
            extra: String::new(),
        }
    }

    /// An inbound listener trusting the keys in `authorized_keys`, in front of `app`
    /// (`host:port`, or a URL such as `unix:///path`).
    pub fn inbound(mut self, authorized_keys: &Path, app: impl std::fmt::Display) -> Conf {
        self.trust.push(format!(
            "authorized_keys = \"{}\"",
            authorized_keys.display()
        ));
        let app = app.to_string();
        let upstream = if app.contains("://") {
            app
        } else {
            format!("http://{app}")
        };
        self.inbound = Some(vec![
            "listen = \"127.0.0.1:0\"".into(),
            format!("upstream = \"{upstream}\""),
        ]);
        self
    }

    /// An outbound listener (add routes with [`Conf::route`]).
    pub fn outbound(mut self) -> Conf {
        self.outbound = Some(vec!["listen = \"127.0.0.1:0\"".into()]);
        self
    }

    /// An outbound route: `host` as the app names it, `upstream` a URL.
    pub fn route(mut self, host: &str, upstream: impl std::fmt::Display) -> Conf {
        if self.outbound.is_none() {
            self = self.outbound();
        }
        self.routes
            .push(format!("host = \"{host}\"\nupstream = \"{upstream}\""));
        self
    }

    /// One more `key = value` line (value as TOML) in `[trust]`, `[inbound]` (after
    /// [`Conf::inbound`]) or `[outbound]` (which it opens, on port 0, if needed).
    pub fn set(mut self, section: &str, line: impl Into<String>) -> Conf {
        let line = line.into();
        match section {
            "trust" => self.trust.push(line),
            "inbound" => self
                .inbound
                .as_mut()
                .expect("Conf::set(\"inbound\") needs Conf::inbound first")
                .push(line),
            "outbound" => {
                if self.outbound.is_none() {
                    self = self.outbound();
                }
                self.outbound.get_or_insert_with(Vec::new).push(line)
            }
            other => panic!("Conf::set: no section {other}"),
        }
        self
    }

    /// `key = "<path>"` in `section`.
    pub fn path(self, section: &str, key: &str, path: &Path) -> Conf {
        self.set(section, format!("{key} = \"{}\"", path.display()))
    }

    /// TLS on the inbound listener with the fixture certificate (localhost, 127.0.0.1).
    pub fn inbound_tls(self) -> Conf {
        self.path("inbound", "tls_cert", &tls_fixture("server.crt"))
            .path("inbound", "tls_key", &tls_fixture("server.key"))
    }

    /// Text appended as is (`[[inbound.allow]]` rules, `[callers.x]`, `[limits]`).
    pub fn extra(mut self, text: &str) -> Conf {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    pub fn toml(&self) -> String {
        let mut t = format!(
            "[identity]\nname = \"{}\"\nprivate_key = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            self.identity,
            self.private_key.display()
        );
        let section = |t: &mut String, name: &str, lines: &[String]| {
            t.push_str(&format!("[{name}]\n"));
            for l in lines {
                t.push_str(l);
                t.push('\n');
            }
        };
        if !self.trust.is_empty() {
            section(&mut t, "trust", &self.trust);
        }
        if let Some(lines) = &self.inbound {
            section(&mut t, "inbound", lines);
        }
        if let Some(lines) = &self.outbound {
            section(&mut t, "outbound", lines);
        }
        for r in &self.routes {
            t.push_str(&format!("[[outbound.routes]]\n{r}\n"));
        }
        t.push_str(&self.extra);
        t
    }

    pub async fn start(&self) -> Sidecar {
        Sidecar::start(&self.toml()).await
    }
}

/// A file of `tests/fixtures/tls/` (CA, server and client certificates made by openssl).
pub fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A token signed with `key`, claiming `iss`, for `aud`, valid for 60 s from now.
pub fn sign_as(key: &GeneratedFiles, iss: &str, aud: &str) -> String {
    let k = Arc::new(keys::load_signing_key(&key.private).unwrap());
    trustgate::token::TokenSigner::new(iss.into(), k, Duration::from_secs(60))
        .sign(aud, None, None, trustgate::proxy::unix_now())
        .unwrap()
}
