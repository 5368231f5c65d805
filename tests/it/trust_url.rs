//! Trust by URL (`authorized_keys/<identity>.url`): a callee fetches a caller's published
//! JWKS over HTTPS. Peers are real HTTPS servers on loopback: trustgate itself (its
//! inbound listener publishes `/.well-known/jwks.json`), a scriptable fault server for
//! every failure the fetcher must survive, and — in `interop.rs`'s style — a Python TLS
//! server serving a JWKS made by jwcrypto.
use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use trustgate::keys::{self, GeneratedFiles};

fn tls(name: &str) -> PathBuf {
    tls_fixture(name)
}

fn token(key: &GeneratedFiles, iss: &str) -> String {
    sign_as(key, iss, "billing")
}

fn jwks_of(keys: &[&GeneratedFiles]) -> String {
    let jwks: Vec<_> = keys
        .iter()
        .map(|k| {
            keys::load_signing_key(&k.private)
                .unwrap()
                .public_jwk()
                .cloned()
                .unwrap()
        })
        .collect();
    serde_json::json!({ "keys": jwks }).to_string()
}

/// What the fault server does with the next request.
#[derive(Clone, Debug)]
enum Mode {
    /// 200 with this body (and `Cache-Control` if given).
    Serve(String),
    /// Accepts the connection and closes it without a word.
    Down,
    /// Answers after this long.
    Slow(Duration),
    /// 302 to this location.
    Redirect(String),
    /// This status, empty body.
    Status(u16),
}

/// A JWKS server over TLS (the fixtures' localhost certificate), scriptable.
struct FaultServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
}

impl FaultServer {
    async fn start(mode: Mode) -> FaultServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let certs = trustgate::tls::load_certs(&tls("server.crt")).unwrap();
        let key = trustgate::tls::load_private_key(&tls("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(trustgate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mode = Arc::new(Mutex::new(mode));
        let hits = Arc::new(AtomicUsize::new(0));
        let (m, h) = (mode.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, m, h) = (acceptor.clone(), m.clone(), h.clone());
                tokio::spawn(async move {
                    if matches!(*m.lock().unwrap(), Mode::Down) {
                        h.fetch_add(1, Ordering::SeqCst);
                        drop(tcp);
                        return;
                    }
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                            let (m, h) = (m.clone(), h.clone());
                            async move {
                                h.fetch_add(1, Ordering::SeqCst);
                                let mode = m.lock().unwrap().clone();
                                let resp = match mode {
                                    Mode::Serve(body) => Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body))),
                                    Mode::Slow(d) => {
                                        tokio::time::sleep(d).await;
                                        Response::builder().body(Full::new(Bytes::from("{}")))
                                    }
                                    Mode::Redirect(to) => Response::builder()
                                        .status(302)
                                        .header("location", to)
                                        .body(Full::new(Bytes::new())),
                                    Mode::Status(s) => {
                                        Response::builder().status(s).body(Full::new(Bytes::new()))
                                    }
                                    // Went down while this connection was open: drop it.
                                    Mode::Down => return Err(std::io::Error::other("down")),
                                };
                                Ok::<_, std::io::Error>(resp.unwrap())
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultServer { addr, mode, hits }
    }

    fn url(&self) -> String {
        format!(
            "https://localhost:{}/.well-known/jwks.json",
            self.addr.port()
        )
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// billing, trusting `orders` by the URL in `authorized_keys/orders.url`.
async fn billing_trusting_by_url(keys: &Keys, url: &str, trust: &[&str]) -> Sidecar {
    let private = keys.path().join("keys/billing.key");
    if !private.exists() {
        keys.make("billing");
    }
    let dir = keys.path().join("billing-trusts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("orders.url"),
        format!("# orders publishes its keys\n{url}\n"),
    )
    .unwrap();
    let app = spawn_app().await;
    let mut conf = Conf::new("billing", &private).inbound(&dir, app).set(
        "trust",
        format!("fetch_ca_file = \"{}\"", tls("ca.crt").display()),
    );
    for line in trust {
        conf = conf.set("trust", *line);
    }
    conf.start().await
}

async fn call(side: &Sidecar, token: &str) -> Answer {
    get(
        format!("http://{}/orders/1", side.inbound()),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// Fetches of orders' source: `ok`, `error`, `dropped` (keys dropped as stale), or the
/// reason of a failure (`timeout`, `invalid`, ...).
fn fetches(side: &Sidecar, what: &str) -> u64 {
    let m = &side.state.metrics;
    match what {
        "ok" | "error" => m.trust_fetches.with_label_values(&["orders", what]).get(),
        "dropped" => m.trust_keys_dropped.with_label_values(&["orders"]).get(),
        reason => m
            .trust_fetch_errors
            .with_label_values(&["orders", reason])
            .get(),
    }
}

fn trust_listing(side: &Sidecar) -> serde_json::Value {
    side.state.trust.describe()["url_sources"][0].clone()
}

/// trustgate as the peer: orders publishes its JWKS on its TLS inbound listener; billing
/// fetches it through `orders.url` and trusts orders' key for `orders` only.
#[tokio::test]
async fn trustgate_peers_publish_and_fetch_over_tls() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let nobody = keys.trust_dir("orders-trusts", &[]);
    let orders_side = Conf::new("orders", &orders.private)
        .inbound(&nobody, "127.0.0.1:9")
        .inbound_tls()
        .start()
        .await;
    let url = format!(
        "https://localhost:{}/.well-known/jwks.json",
        orders_side.inbound().port()
    );
    let billing = billing_trusting_by_url(&keys, &url, &[]).await;
    assert!(
        eventually(Duration::from_secs(5), || billing.state.is_ready()).await,
        "ready once the first fetch is done"
    );
    let a = call(&billing, &token(&orders, "orders")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "orders");
    // The fetched key speaks for orders only.
    let a = call(&billing, &token(&orders, "search")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("issuer_mismatch"), "{}", a.body);
    let listing = trust_listing(&billing);
    assert_eq!(listing["identity"], "orders");
    assert_eq!(listing["kids"][0], orders.kid.as_str());
    assert!(listing["last_success"].as_u64().is_some());
    assert!(listing["last_error"].is_null());
    assert!(fetches(&billing, "ok") >= 1);
    let metrics = get(format!("http://{}/metrics", billing.admin()), &[])
        .await
        .body;
    assert!(
        metrics.contains("trustgate_trust_source_age_seconds{identity=\"orders\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trustgate_trust_fetches_total{identity=\"orders\",result=\"ok\"}"),
        "{metrics}"
    );
    // Deleting the file revokes, as for key files.
    std::fs::remove_file(keys.path().join("billing-trusts/orders.url")).unwrap();
    let revoked = eventually(Duration::from_secs(5), || {
        billing
            .state
            .trust
            .snapshot()
            .keyring
            .get(&orders.kid)
            .is_empty()
    })
    .await;
    assert!(revoked, "deleting orders.url removes the fetched keys");
    assert_eq!(
        call(&billing, &token(&orders, "orders")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Down at start: 503 keys_unavailable (not 401); once the server is back (and the
/// cooldown has passed), a call fetches and succeeds.
#[tokio::test]
async fn keys_unreachable_at_start_are_503_then_recover() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let server = FaultServer::start(Mode::Down).await;
    let billing =
        billing_trusting_by_url(&keys, &server.url(), &["fetch_cooldown = \"300ms\""]).await;
    let t = token(&orders, "orders");
    let a = call(&billing, &t).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.contains("keys_unavailable"), "{}", a.body);
    assert!(fetches(&billing, "unreachable") >= 1);
    assert!(trust_listing(&billing)["last_error"].as_str().is_some());
    server.set(Mode::Serve(jwks_of(&[&orders])));
    assert!(
        until_ok(&billing, &t, Duration::from_secs(5)).await,
        "calls succeed once the keys are fetched"
    );
}

/// Polls with a deadline until a call with `token` is answered 200.
async fn until_ok(side: &Sidecar, token: &str, deadline: Duration) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < end {
        if call(side, token).await.status == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Down after the first fetch: the last good keys keep serving, then are dropped at
/// trust.max_stale and the identity fails closed (503).
#[tokio::test]
async fn stale_keys_serve_until_max_stale_then_fail_closed() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let server = FaultServer::start(Mode::Serve(jwks_of(&[&orders]))).await;
    let billing = billing_trusting_by_url(
        &keys,
        &server.url(),
        &[
            "fetch_cooldown = \"100ms\"",
            "fetch_interval = \"200ms\"",
            "max_stale = \"2s\"",
        ],
    )
    .await;
    let t = token(&orders, "orders");
    assert!(eventually(Duration::from_secs(5), || fetches(&billing, "ok") >= 1).await);
    assert_eq!(call(&billing, &t).await.status, StatusCode::OK);
    server.set(Mode::Down);
    assert!(
        eventually(Duration::from_secs(5), || fetches(&billing, "unreachable")
            >= 2)
        .await,
        "refreshes keep trying"
    );
    assert_eq!(
        call(&billing, &t).await.status,
        StatusCode::OK,
        "stale keys still serve"
    );
    assert!(
        eventually(Duration::from_secs(6), || fetches(&billing, "dropped") >= 1).await,
        "keys dropped at max_stale"
    );
    let a = call(&billing, &t).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.contains("keys_unavailable"));
}

/// Every way a fetch can go wrong is refused with its own kind, logged in /trust, and
/// leaves the identity without keys (503), never with half-checked ones.
#[tokio::test]
async fn bad_answers_are_refused() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let other = keys.make("other");
    let mut wrong_kid: serde_json::Value = serde_json::from_str(&jwks_of(&[&orders])).unwrap();
    wrong_kid["keys"][0]["kid"] = other.kid.as_str().into();
    let cases: Vec<(&str, Mode, &str)> = vec![
        ("slow", Mode::Slow(Duration::from_secs(3)), "timeout"),
        (
            "oversized",
            Mode::Serve(format!(
                "{{\"keys\":[],\"pad\":\"{}\"}}",
                "x".repeat(300_000)
            )),
            "too_large",
        ),
        (
            "redirect to another origin",
            Mode::Redirect("https://127.0.0.2:1/jwks.json".into()),
            "redirect",
        ),
        (
            "non-JSON",
            Mode::Serve("<html>hello</html>".into()),
            "invalid",
        ),
        (
            "kid is not the thumbprint",
            Mode::Serve(wrong_kid.to_string()),
            "invalid",
        ),
        ("HTTP 500", Mode::Status(500), "http_status"),
    ];
    for (name, mode, kind) in cases {
        let server = FaultServer::start(mode).await;
        let billing =
            billing_trusting_by_url(&keys, &server.url(), &["fetch_timeout = \"500ms\""]).await;
        assert!(
            eventually(Duration::from_secs(5), || fetches(&billing, kind) >= 1).await,
            "{name}: expected a fetch failure of kind {kind}: {}",
            trust_listing(&billing)
        );
        assert_eq!(fetches(&billing, "ok"), 0, "{name}");
        let a = call(&billing, &token(&orders, "orders")).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: {}",
            a.body
        );
        assert!(
            trust_listing(&billing)["last_error"].as_str().is_some(),
            "{name}"
        );
        billing.shutdown().await;
    }
}

/// A certificate the configured CA did not sign is refused (here: no fetch_ca_file, so
/// the system roots, which do not know the test CA).
#[tokio::test]
async fn untrusted_certificates_are_refused() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let server = FaultServer::start(Mode::Serve(jwks_of(&[&orders]))).await;
    let dir = keys.path().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("orders.url"), server.url()).unwrap();
    let side = Conf::new("billing", &billing.private)
        .inbound(&dir, "127.0.0.1:9")
        .start()
        .await;
    assert!(
        eventually(Duration::from_secs(5), || {
            side.state
                .metrics
                .trust_fetch_errors
                .with_label_values(&["orders", "unreachable"])
                .get()
                >= 1
        })
        .await
    );
    let err = side.state.trust.describe()["url_sources"][0]["last_error"].to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(
        server.hits(),
        0,
        "no HTTP request over an untrusted connection"
    );
}

/// http:// is refused unless trust.allow_http_fetch says otherwise.
#[tokio::test]
async fn plain_http_urls_are_refused_by_default() {
    let keys = Keys::new();
    let billing = billing_trusting_by_url(&keys, "http://127.0.0.1:9/jwks.json", &[]).await;
    assert!(eventually(Duration::from_secs(5), || fetches(&billing, "refused") >= 1).await);
    let err = trust_listing(&billing)["last_error"].to_string();
    assert!(err.contains("allow_http_fetch"), "{err}");
}

/// A token with a random kid claiming `iss` (its signature is never looked at: an unknown
/// kid is refused before any signature work).
fn random_kid_token(iss: &str, n: u64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let now = trustgate::proxy::unix_now();
    let header =
        serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": format!("random-{n}-{now}")});
    let claims =
        serde_json::json!({"iss": iss, "sub": iss, "aud": "billing", "iat": now, "exp": now + 60});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

/// A flood of tokens with random kids claiming a URL identity costs at most one fetch
/// per cooldown; each gets 401 unknown_key, and legitimate calls are unaffected.
#[tokio::test]
async fn a_flood_of_random_kids_is_bounded() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let server = FaultServer::start(Mode::Serve(jwks_of(&[&orders]))).await;
    let cooldown = Duration::from_millis(500);
    let billing =
        billing_trusting_by_url(&keys, &server.url(), &["fetch_cooldown = \"500ms\""]).await;
    assert!(eventually(Duration::from_secs(5), || fetches(&billing, "ok") >= 1).await);
    let before = server.hits();
    let start = std::time::Instant::now();
    let inbound = billing.inbound();
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while start.elapsed() < Duration::from_secs(2) {
                let n = counter.fetch_add(1, Ordering::SeqCst) as u64;
                let t = random_kid_token("orders", n);
                let a = get(
                    format!("http://{inbound}/orders/1"),
                    &[("authorization", &format!("Bearer {t}"))],
                )
                .await;
                statuses.push((a.status, a.body.contains("unknown_key")));
            }
            statuses
        }));
    }
    let mut flood = 0;
    for t in tasks {
        for (status, unknown) in t.await.unwrap() {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(unknown);
            flood += 1;
        }
    }
    let elapsed = start.elapsed();
    let fetched = server.hits() - before;
    let bound = (elapsed.as_secs_f64() / cooldown.as_secs_f64()).ceil() as usize + 1;
    eprintln!(
        "{flood} tokens with random kids in {elapsed:?} caused {fetched} fetch(es) (bound {bound})"
    );
    // Each random-kid request may wait (at most a second) for the fetch the cooldown
    // deferred: the flood is slowed, the fetches stay bounded.
    assert!(flood >= 32, "the flood ran ({flood})");
    assert!(fetched <= bound, "{fetched} fetches > {bound}");
    assert_eq!(
        call(&billing, &token(&orders, "orders")).await.status,
        StatusCode::OK
    );
}

/// The caller rotates its key under load; the callee's directory is never touched: the
/// unknown new kid triggers one refetch of the caller's published JWKS. Zero failures.
#[tokio::test]
async fn rotation_by_url_under_load_has_no_failed_requests() {
    let keys = Keys::new();
    let old = keys.make("orders");
    let new = keys.make("orders-next");
    let identity = keys.path().join("identity");
    std::fs::create_dir_all(&identity).unwrap();
    std::fs::copy(&old.private, identity.join("orders.key")).unwrap();
    let nobody = keys.trust_dir("orders-trusts", &[]);
    let billing_app = spawn_app().await;
    // The publisher: orders' inbound listener (TLS), serving its JWKS.
    let orders_side = Conf::new("orders", &identity.join("orders.key"))
        .inbound(&nobody, "127.0.0.1:9")
        .inbound_tls()
        .start()
        .await;
    // billing trusts orders by that URL; its directory is never touched again.
    let billing_key = keys.make("billing");
    let dir = keys.path().join("billing-trusts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("orders.url"),
        format!(
            "https://localhost:{}/.well-known/jwks.json",
            orders_side.inbound().port()
        ),
    )
    .unwrap();
    let billing_side = Conf::new("billing", &billing_key.private)
        .inbound(&dir, billing_app)
        .set(
            "trust",
            format!("fetch_ca_file = \"{}\"", tls("ca.crt").display()),
        )
        .set("trust", "fetch_cooldown = \"200ms\"")
        .start()
        .await;
    assert!(eventually(Duration::from_secs(5), || billing_side.state.is_ready()).await);
    // The caller: orders' outbound side. In a pod it is the publisher's own process, where
    // signing with a new key and publishing it is one swap; here it is a second sidecar with
    // its own copy of the key file, rotated once the publisher has rotated (publish, then use).
    let caller_identity = keys.path().join("caller-identity");
    std::fs::create_dir_all(&caller_identity).unwrap();
    std::fs::copy(&old.private, caller_identity.join("orders.key")).unwrap();
    let caller = Conf::new("orders", &caller_identity.join("orders.key"))
        .route("billing", format!("http://{}", billing_side.inbound()))
        .start()
        .await;
    let out = caller.outbound();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let a = get(format!("http://{out}/orders"), &[("host", "billing")]).await;
                if a.status == StatusCode::OK {
                    ok += 1;
                } else {
                    failed.push(format!("{} {}", a.status, a.body));
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Rotate: orders swaps its private key (atomically, as a Secret update does): the
    // publisher first, then — once it publishes the new key — the caller.
    let swap = |dir: &std::path::Path| {
        let staged = dir.join(".orders.key.new");
        std::fs::copy(&new.private, &staged).unwrap();
        std::fs::rename(&staged, dir.join("orders.key")).unwrap();
    };
    swap(&identity);
    let published = eventually(Duration::from_secs(5), || {
        orders_side
            .state
            .trust
            .signer()
            .is_some_and(|s| s.kid() == new.kid)
    })
    .await;
    assert!(published, "the publisher picked up the new key");
    swap(&caller_identity);
    let rotated = eventually(Duration::from_secs(5), || {
        caller
            .state
            .trust
            .signer()
            .is_some_and(|s| s.kid() == new.kid)
            && orders_side
                .state
                .trust
                .signer()
                .is_some_and(|s| s.kid() == new.kid)
    })
    .await;
    assert!(rotated, "both orders sidecars picked up the new key");
    let fetched_new = eventually(Duration::from_secs(5), || {
        billing_side
            .state
            .trust
            .snapshot()
            .keyring
            .get(&new.kid)
            .len()
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "rotation under load: {ok} requests ok, {} failed",
        failed.len()
    );
    assert!(fetched_new, "billing fetched the new key");
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok > 50, "the load ran ({ok} requests)");
}

/// A JWKS server we did not write: Python's `http.server` over `ssl`, serving a JWKS made
/// by jwcrypto; the token is jwcrypto's too. Skipped (loudly) without python3 and
/// jwcrypto, unless `TRUSTGATE_REQUIRE_INTEROP=1` (CI), which makes it fail.
#[tokio::test]
async fn a_jwks_served_by_python_and_jwcrypto_is_trusted() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/jwks_server.py");
    let spawned = Command::new("python3")
        .arg(&script)
        .args([tls("server.crt"), tls("server.key")])
        .args(["orders", "billing"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("TRUSTGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "TRUSTGATE_REQUIRE_INTEROP=1 but python3 cannot run: {e}"
            );
            eprintln!("SKIPPED: python3 not found ({e})");
            return;
        }
    };
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let mut words = line.split_whitespace();
    let (Some(port), Some(token)) = (words.next(), words.next()) else {
        let _ = child.kill();
        assert!(
            std::env::var("TRUSTGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "TRUSTGATE_REQUIRE_INTEROP=1 but the jwcrypto JWKS server did not start"
        );
        eprintln!("SKIPPED: python3 with jwcrypto not available");
        return;
    };
    let keys = Keys::new();
    let url = format!("https://localhost:{port}/jwks.json");
    let billing = billing_trusting_by_url(&keys, &url, &[]).await;
    assert!(eventually(Duration::from_secs(5), || fetches(&billing, "ok") >= 1).await);
    let a = call(&billing, token).await;
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "orders");
}

/// `trustgate keys DIR` lists URL sources; `--fetch` fetches each once and lists what it
/// got, a failed fetch being a problem (exit 1).
#[tokio::test]
async fn the_keys_command_lists_and_fetches_url_sources() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let server = FaultServer::start(Mode::Serve(jwks_of(&[&orders]))).await;
    let dir = keys.path().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("orders.url"), server.url()).unwrap();
    std::fs::write(dir.join("search.url"), "http://127.0.0.1:9/jwks.json").unwrap();
    let run = |args: &[&str]| {
        let dir = dir.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
                .arg("keys")
                .arg(&dir)
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let listed = run(&["--json"]).await.unwrap();
    assert!(listed.status.success());
    let out: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(out["url_sources"][0]["identity"], "orders");
    assert_eq!(out["url_sources"][0]["url"], server.url().as_str());
    assert_eq!(
        out["keys"].as_array().unwrap().len(),
        0,
        "nothing fetched yet"
    );
    let before = server.hits();
    let ca = tls("ca.crt").display().to_string();
    let fetched = run(&["--json", "--fetch", "--fetch-ca-file", &ca])
        .await
        .unwrap();
    assert_eq!(server.hits(), before + 1);
    let out: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
    assert_eq!(out["keys"][0]["identity"], "orders");
    assert_eq!(out["keys"][0]["kid"], orders.kid.as_str());
    let problem = out["problems"][0]["reason"].as_str().unwrap();
    assert!(problem.contains("allow_http_fetch"), "{problem}");
    assert_eq!(
        fetched.status.code(),
        Some(1),
        "a failed fetch is a problem"
    );
}

/// A key published just after a fetch (within the cooldown) is not locked out until the
/// next refresh: the cooldown only defers the refetch to its end.
#[tokio::test]
async fn a_new_kid_within_the_cooldown_is_fetched_when_it_ends() {
    let keys = Keys::new();
    let old = keys.make("orders");
    let new = keys.make("orders-next");
    let server = FaultServer::start(Mode::Serve(jwks_of(&[&old]))).await;
    let billing = billing_trusting_by_url(&keys, &server.url(), &["fetch_cooldown = \"2s\""]).await;
    assert!(eventually(Duration::from_secs(5), || fetches(&billing, "ok") >= 1).await);
    server.set(Mode::Serve(jwks_of(&[&old, &new])));
    let t = token(&new, "orders");
    // Refused at first (inside the cooldown), accepted once it ends — not after
    // fetch_interval (5 min).
    assert!(until_ok(&billing, &t, Duration::from_secs(5)).await);
    assert!(fetches(&billing, "ok") <= 3, "{}", fetches(&billing, "ok"));
}

/// Readiness waits for the first fetch of every key URL — bounded: a source that does not
/// answer makes the sidecar ready (failing closed for that identity) after
/// `fetch_timeout` + 1 s, not never.
#[tokio::test]
async fn readiness_waits_for_first_fetches_within_a_bound() {
    let keys = Keys::new();
    let server = FaultServer::start(Mode::Slow(Duration::from_secs(30))).await;
    let billing =
        billing_trusting_by_url(&keys, &server.url(), &["fetch_timeout = \"1500ms\""]).await;
    let started = std::time::Instant::now();
    assert!(
        !billing.state.is_ready(),
        "not ready while the first fetch runs"
    );
    assert!(eventually(Duration::from_secs(5), || billing.state.is_ready()).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "ready only after the fetch timed out ({waited:?})"
    );
    assert!(fetches(&billing, "timeout") >= 1);
}
