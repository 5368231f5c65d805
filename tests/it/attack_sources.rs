//! Trust boundaries between sources, tried as an attacker who has read the code: a peer
//! asserting claims it does not own, a kid borrowed to lock its owner out (by a key URL
//! served by Python's `http.server`, by an OIDC issuer written in Python), WebSocket
//! tunnels past `max_concurrent`, loopback spelled otherwise, a discovery document
//! pointing the issuer's bearer token elsewhere, claim values the app reads otherwise than
//! the rules. Raw bytes in; what the app received checked as it arrived.
use crate::platform::{billing, call, fetches, refused, Issuer};
use crate::support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::StatusCode;
use support::attack::{target, Side};
use support::raw::exchange;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trustgate::keys::GeneratedFiles;

/// A token `key` really signs, with exactly these claims (beyond iss, sub, aud, iat, exp).
fn signed_with(key: &GeneratedFiles, iss: &str, extra: serde_json::Value) -> String {
    let k = trustgate::keys::load_signing_key(&key.private).unwrap();
    let now = trustgate::proxy::unix_now();
    let mut claims = serde_json::json!({"iss": iss, "sub": iss, "aud": "billing",
        "iat": now, "exp": now + 60});
    for (n, v) in extra.as_object().unwrap() {
        claims[n] = v.clone();
    }
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": k.kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = URL_SAFE_NO_PAD.encode(k.sign(input.as_bytes()).unwrap());
    format!("{input}.{sig}")
}

fn get_with(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

/// Item 1: orders, trusted by its own key only, signs a platform's claim into its token.
/// The contract's own example rule must not be met, and the app must not be told.
#[tokio::test]
async fn a_peer_cannot_assert_a_platforms_claims() {
    let t = target(
        r#"claim_headers = { "x-caller-namespace" = "/kubernetes.io/namespace", "x-caller-tenant" = { pointer = "/ctx/x-tenant", issuers = ["self"] } }"#,
        "[[inbound.allow]]\nname = \"shop\"\npaths = [\"/shop/*\"]\n\
         claims = { \"/kubernetes.io/namespace\" = [\"shop\"] }\n\
         [[inbound.allow]]\nname = \"acme\"\npaths = [\"/acme/*\"]\nissuers = [\"self\"]\n\
         claims = { \"/ctx/x-tenant\" = [\"acme\"] }\n",
    )
    .await;
    let asserted = signed_with(
        &t.orders,
        "orders",
        serde_json::json!({"kubernetes.io": {"namespace": "shop"}, "ctx": {"x-tenant": "acme"}}),
    );
    let r = exchange(t.inbound(), &get_with("/shop/1", &asserted))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert!(t.app.requests().is_empty(), "refused before the app");

    // Where orders may call anyway: the app hears of no namespace, and the signed
    // context it does own is read where "self" is named.
    let r = exchange(t.inbound(), &get_with("/invoices/1", &asserted))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let seen = &t.app.requests()[0];
    assert_eq!(
        seen.values("x-caller-namespace"),
        Vec::<String>::new(),
        "{}",
        seen.head_text()
    );
    assert_eq!(seen.values("x-caller-tenant"), ["acme"]);
    let r = exchange(t.inbound(), &get_with("/acme/1", &asserted))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "a self rule reads self's ctx: {}",
        r.body_text()
    );
    // The same over HTTP/2 (prior knowledge): the same answers, the same silence.
    let h2 = h2_client();
    for (path, status) in [("/shop/2", 403), ("/invoices/2", 200)] {
        let req = http::Request::get(format!("http://{}{path}", t.inbound()))
            .header("authorization", format!("Bearer {asserted}"))
            .body(body(bytes::Bytes::new()))
            .unwrap();
        let a = send(&h2, req).await;
        assert_eq!(a.status.as_u16(), status, "h2 {path}: {}", a.body);
    }
    let seen = t.app.requests().pop().unwrap();
    assert!(
        seen.request_line().contains("/invoices/2"),
        "{}",
        seen.head_text()
    );
    assert_eq!(seen.values("x-caller-namespace"), Vec::<String>::new());
}

/// Python's `http.server` serving one directory over plain HTTP (key URLs with
/// `trust.allow_http_fetch`): another stack's server, not ours.
struct PyFiles {
    child: Child,
    port: u16,
}

impl Drop for PyFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyFiles {
    fn serve(dir: &std::path::Path) -> PyFiles {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PyFiles { child, port }
    }

    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }
}

fn jwks_of(key: &GeneratedFiles) -> String {
    let jwk = trustgate::keys::load_signing_key(&key.private)
        .unwrap()
        .public_jwk()
        .cloned()
        .unwrap();
    serde_json::json!({ "keys": [jwk] }).to_string()
}

/// Item 2: evil's key URL republishes orders' public key (public anyway). orders, trusted
/// by its file or by its own URL, keeps working; evil keeps its own trust; the shared kid
/// is reported.
#[tokio::test]
async fn a_borrowed_kid_never_locks_out_its_owner() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing_key = keys.make("billing");
    let served = keys.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("evil.json"), jwks_of(&orders)).unwrap();
    std::fs::write(served.join("orders.json"), jwks_of(&orders)).unwrap();
    let py = PyFiles::serve(&served);
    let app = spawn_app().await;

    // orders by its key file, evil by a URL serving orders' key; then orders by a URL too.
    for orders_by_url in [false, true] {
        let dir = keys.path().join(format!("trusted-{orders_by_url}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("evil.url"), py.url("evil.json")).unwrap();
        if orders_by_url {
            std::fs::write(dir.join("orders.url"), py.url("orders.json")).unwrap();
        } else {
            std::fs::copy(&orders.public, dir.join("orders.pub")).unwrap();
        }
        let side = Conf::new("billing", &billing_key.private)
            .inbound(&dir, app)
            .set("trust", "allow_http_fetch = true")
            .start()
            .await;
        let a = get(
            format!("http://{}/orders/1", side.inbound()),
            &[(
                "authorization",
                &format!("Bearer {}", sign_as(&orders, "orders", "billing")),
            )],
        )
        .await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "orders by url: {orders_by_url}: {}",
            a.body
        );
        assert_eq!(a.json()["headers"]["x-service-caller"], "orders");
        // What evil's URL says is evil's: a token of that key claiming evil is evil's.
        let a = get(
            format!("http://{}/orders/1", side.inbound()),
            &[(
                "authorization",
                &format!("Bearer {}", sign_as(&orders, "evil", "billing")),
            )],
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.json()["headers"]["x-service-caller"], "evil");
        // A third identity with that kid is neither's.
        let a = get(
            format!("http://{}/orders/1", side.inbound()),
            &[(
                "authorization",
                &format!("Bearer {}", sign_as(&orders, "search", "billing")),
            )],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        let trust = side.state.trust.describe();
        assert_eq!(
            trust["shared_kids"][0]["kid"],
            orders.kid.as_str(),
            "{trust}"
        );
        side.shutdown().await;
    }
}

/// Item 2, issuers: an OIDC issuer publishes the cluster issuer's kid. Every
/// Kubernetes-mapped caller keeps working, and so does the OIDC issuer's own.
#[tokio::test]
async fn an_issuer_publishing_another_issuers_kid_locks_nobody_out() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let k8s = issuer.mint("k8s", "k8s", serde_json::json!({}));
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(k8s.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    assert_eq!(issuer.ask(&format!("kid oidc {kid}")), "ok");
    let oidc = format!(
        "[[trust.issuers]]\nname = \"idp\"\nkind = \"oidc\"\nissuer = \"{}/oidc\"\nca_file = \"{}\"\n\
         callers = {{ \"client-123\" = \"reports\" }}\n",
        issuer.url(),
        tls_fixture("ca.crt").display()
    );
    let (side, _keys) = billing(&format!("{}{oidc}", issuer.kubernetes("")), "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "cluster", "ok")
            >= 1
            && fetches(&side, "idp", "ok") >= 1)
        .await
    );
    let a = call(&side, &k8s).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "orders");
    let a = call(&side, &issuer.mint("oidc", "oidc", serde_json::json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "reports");
    // The OIDC key claiming the cluster's iss: the cluster's key (RS256) is the one
    // looked up, and an ES256 token does not fit it.
    let forged = issuer.mint(
        "oidc",
        "oidc",
        serde_json::json!({"iss": issuer.url(), "sub": "system:serviceaccount:shop:orders"}),
    );
    assert_eq!(refused(&call(&side, &forged).await), "unsupported_alg");
}

/// The status of a response head, read byte by byte up to its blank line (a `101` is
/// followed by the tunnel, not by another response).
async fn status_of_head(s: &mut tokio::net::TcpStream) -> u16 {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
        match read {
            Ok(Ok(1)) => head.push(b[0]),
            other => panic!("no response head ({other:?}): {head:?}"),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Item 3: with `max_concurrent = 1`, one WebSocket tunnel open is one request in flight
/// until it closes.
#[tokio::test]
async fn an_open_tunnel_holds_its_concurrency_slot_until_it_closes() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing_key = keys.make("billing");
    let dir = keys.trust_dir("trusted", &[&orders]);
    let side = Conf::new("billing", &billing_key.private)
        .inbound(&dir, spawn_app().await)
        .extra("[callers.orders]\nmax_concurrent = 1\n")
        .start()
        .await;
    let token = sign_as(&orders, "orders", "billing");
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {token}\r\n\
         connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let open = || async {
        let mut s = tokio::net::TcpStream::connect(side.inbound())
            .await
            .unwrap();
        s.write_all(upgrade.as_bytes()).await.unwrap();
        (status_of_head(&mut s).await, s)
    };
    let (status, first) = open().await;
    assert_eq!(status, 101);
    for _ in 0..4 {
        let (status, _s) = open().await;
        assert_eq!(status, 429, "a second tunnel while the first is open");
    }
    drop(first);
    let mut reopened = false;
    for _ in 0..100 {
        let (status, _s) = open().await;
        if status == 101 {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "the slot frees when the tunnel closes");
}

/// Item 4: the app on 0.0.0.0, named `127.1`, `2130706433` or `[::ffff:127.0.0.1]`: the
/// exposure check still runs and finds it.
#[tokio::test]
async fn the_exposure_check_is_not_turned_off_by_spelling_loopback_otherwise() {
    let keys = Keys::new();
    let billing_key = keys.make("billing");
    let dir = keys.trust_dir("trusted", &[]);
    let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = any.local_addr().unwrap().port();
    for spelling in ["127.1", "2130706433", "[::ffff:127.0.0.1]", "0.0.0.0"] {
        let side = Conf::new("billing", &billing_key.private)
            .inbound(&dir, format!("{spelling}:{port}"))
            .set("inbound", "app_exposure = \"refuse\"")
            .set("inbound", "pod_ips = [\"127.0.0.2\"]")
            .start()
            .await;
        let exposed = || side.state.metrics.app_exposed.get() == 1;
        assert!(
            eventually(Duration::from_secs(5), exposed).await,
            "{spelling}"
        );
        let r = get(format!("http://{}/readyz", side.admin()), &[]).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{spelling}: {}",
            r.body
        );
        assert!(r.body.contains("app_exposed"), "{}", r.body);
        side.shutdown().await;
    }
    // `check` refuses "refuse" for an app it could never check, and says so of a socket.
    let config = keys.path().join("far.toml");
    let far = Conf::new("billing", &billing_key.private)
        .inbound(&dir, "192.0.2.1:8080")
        .set("inbound", "app_exposure = \"refuse\"")
        .toml();
    std::fs::write(&config, far).unwrap();
    let (code, err) = check_config(&config);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("inbound.app_exposure: \"refuse\" cannot be checked"),
        "{err}"
    );
    let sock = Conf::new("billing", &billing_key.private)
        .inbound(&dir, "unix:///run/app/app.sock")
        .set("inbound", "app_exposure = \"refuse\"")
        .toml();
    std::fs::write(&config, sock).unwrap();
    let (code, err) = check_config(&config);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("an app on a Unix socket has no TCP port"),
        "{err}"
    );
}

/// Item 5: a discovery document naming a jwks_uri on another origin gets no bearer token
/// unless the issuer's own CA verifies that host.
#[tokio::test]
async fn the_issuers_bearer_token_goes_only_where_the_issuer_is() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let away = |ca: &str| {
        format!(
            "[[trust.issuers]]\nname = \"away\"\nkind = \"oidc\"\nissuer = \"{}/away\"\n{ca}\
             bearer_token_file = \"{}\"\ncallers = {{ \"client-123\" = \"reports\" }}\n",
            issuer.url(),
            issuer.reader_file().display()
        )
    };
    let token = issuer.mint(
        "oidc",
        "oidc",
        serde_json::json!({"iss": format!("{}/away", issuer.url())}),
    );
    // Verified by public roots only (here the fetch CA of every source stands for them):
    // fetched, without the token.
    let fetch_ca = format!("fetch_ca_file = \"{}\"", tls_fixture("ca.crt").display());
    let keys = Keys::new();
    let billing_key = keys.make("billing");
    let dir = keys.trust_dir("trusted", &[]);
    let side = Conf::new("billing", &billing_key.private)
        .inbound(&dir, spawn_app().await)
        .set("trust", fetch_ca)
        .extra(&away(""))
        .start()
        .await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "away", "ok")
            >= 1)
        .await
    );
    assert_eq!(call(&side, &token).await.status, StatusCode::OK);
    assert_eq!(
        (issuer.stat("away"), issuer.stat("away_bearer")),
        (1, 0),
        "the token never left for another origin"
    );
    side.shutdown().await;
    // The issuer's own CA verifies that host: the token goes.
    let (side, _keys) = billing(
        &away(&format!(
            "ca_file = \"{}\"\n",
            tls_fixture("ca.crt").display()
        )),
        "",
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "away", "ok")
            >= 1)
        .await
    );
    assert_eq!(call(&side, &token).await.status, StatusCode::OK);
    assert_eq!((issuer.stat("away"), issuer.stat("away_bearer")), (2, 1));
}

/// Item 7: a value the app would read otherwise than the rule compared it (a trailing
/// space the app's parser strips; a comma that makes one string a list) reaches the app
/// as no header at all, and is counted.
#[tokio::test]
async fn what_the_app_reads_is_what_the_rules_matched() {
    let t = target(
        r#"claim_headers = { "x-caller-group" = { pointer = "/ctx/x-group", issuers = ["self"] } }"#,
        "[[inbound.deny]]\nname = \"no-evil\"\nissuers = [\"self\"]\n\
         claims = { \"/ctx/x-group\" = [\"evil\", \"banned\"] }\n",
    )
    .await;
    let cases = [
        ("evil", 403, None),
        ("evil ", 200, None),
        (" evil", 200, None),
        ("x,banned", 200, None),
        ("acme", 200, Some("acme")),
        ("acme corp", 200, Some("acme corp")),
    ];
    let mut withheld = 0;
    for (group, status, header) in cases {
        t.app.clear();
        let token = t.token_with_ctx(Some(&[("x-group", group)]));
        // A copy from the network is scrubbed first, whatever the claim gives.
        let req = format!(
            "GET /invoices/1 HTTP/1.1\r\nhost: billing\r\nx_caller_group: acme\r\n\
             authorization: Bearer {token}\r\n\r\n"
        );
        let r = exchange(t.inbound(), req.as_bytes()).await.unwrap();
        assert_eq!(r.status, status, "{group:?}: {}", r.body_text());
        if status == 200 {
            let seen = t.app.requests().pop().unwrap();
            let got = seen.values("x-caller-group");
            assert_eq!(
                got,
                header.into_iter().collect::<Vec<_>>(),
                "{group:?}:\n{}",
                seen.head_text()
            );
            withheld += u64::from(header.is_none());
        }
    }
    let Side::InProcess(side) = &t.side else {
        unreachable!()
    };
    assert_eq!(
        side.state
            .metrics
            .claim_headers_withheld
            .with_label_values(&["x-caller-group"])
            .get(),
        withheld
    );
}

/// Item 8: one caller from two clusters' issuers and its own key file is allowed; `check`
/// warns, naming each source; a subject's caller is still one.
#[test]
fn one_caller_from_several_sources_is_allowed_and_warned_about() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing_key = keys.make("billing");
    let dir = keys.trust_dir("trusted", &[&orders]);
    let issuer = |name: &str| {
        format!(
            "[[trust.issuers]]\nname = \"{name}\"\nkind = \"oidc\"\nissuer = \"https://{name}.example\"\n\
             callers = {{ \"system:serviceaccount:shop:orders\" = \"orders\" }}\n"
        )
    };
    let text = Conf::new("billing", &billing_key.private)
        .inbound(&dir, "127.0.0.1:9")
        .extra(&issuer("east"))
        .extra(&issuer("west"))
        .extra("[[inbound.allow]]\ncallers = [\"orders\"]\nissuers = [\"east\"]\n")
        .toml();
    let config = keys.path().join("billing.toml");
    std::fs::write(&config, text).unwrap();
    let (code, err) = check_config(&config);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("caller \"orders\" is reachable from 3 sources")
            && err.contains("issuer \"east\"")
            && err.contains("issuer \"west\"")
            && err.contains("its own key"),
        "{err}"
    );
}
