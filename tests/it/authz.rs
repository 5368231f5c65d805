//! Inside Envoy (`[authz]`, DESIGN.md "Inside Envoy"): the real Envoy in front of an app,
//! trustgate as its external authorizer over gRPC and over Envoy's HTTP mode, and the same
//! table of requests through trustgate's own proxy. Every door gives the same status, the
//! same reason and the same identity headers at the app, as the app received them.
use std::net::SocketAddr;

use crate::support;
use support::envoy::{self, Envoy, Mode};
use support::raw::{exchange, spawn_raw_app, RawApp, RawResponse};
use support::{sign_as, Conf, Keys, Sidecar};

/// Which way a request reaches the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    Proxy,
    Envoy(Mode),
}

struct Tokens {
    orders: String,
    search: String,
    rogue: String,
    elsewhere: String,
}

/// One case: a name, the request's target and extra header lines.
struct Case {
    name: &'static str,
    target: &'static str,
    headers: Vec<String>,
}

/// What a door made of a case: status, the JSON reason, the challenge and `Retry-After`
/// present, and the identity and credential headers the app received (name as sent,
/// lower-cased by the door or not, and value), sorted.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    reason: String,
    challenge: bool,
    retry_after: bool,
    app_saw: Option<Vec<(String, String)>>,
}

fn cases(t: &Tokens) -> Vec<Case> {
    let bearer = |tok: &str| format!("Authorization: Bearer {tok}");
    vec![
        Case {
            name: "a valid caller",
            target: "/orders/1",
            headers: vec![bearer(&t.orders)],
        },
        Case {
            name: "identity spoofed in three spellings beside a valid token",
            target: "/orders/2",
            headers: vec![
                bearer(&t.orders),
                "X-Service-Caller: admin".into(),
                "X_Service_Caller: admin".into(),
                "x-service-caller-roles: root".into(),
                "X-Service-Caller-Anything: 1".into(),
            ],
        },
        Case {
            name: "no token",
            target: "/orders/3",
            headers: vec!["X-Service-Caller: admin".into()],
        },
        Case {
            name: "not a token",
            target: "/orders/4",
            headers: vec!["Authorization: Bearer not.a.token".into()],
        },
        Case {
            name: "a key nobody trusts",
            target: "/orders/5",
            headers: vec![bearer(&t.rogue)],
        },
        Case {
            name: "another service's audience",
            target: "/orders/6",
            headers: vec![bearer(&t.elsewhere)],
        },
        Case {
            name: "a deny rule",
            target: "/debug/vars",
            headers: vec![bearer(&t.orders)],
        },
        Case {
            name: "a public path keeps the token at the sidecar",
            target: "/healthz",
            headers: vec![bearer(&t.orders), "X-Service-Caller: admin".into()],
        },
        Case {
            name: "a limited caller's first request",
            target: "/orders/7",
            headers: vec![bearer(&t.search)],
        },
        Case {
            name: "a limited caller's second request",
            target: "/orders/8",
            headers: vec![bearer(&t.search)],
        },
    ]
}

/// The sidecar every door runs with — the proxy on `inbound.listen`, the authorizer on
/// both of its listeners — and the tokens the table sends.
fn setup(keys: &Keys, app: SocketAddr) -> (String, Tokens) {
    let billing = keys.make("billing");
    let orders = keys.make("orders");
    let search = keys.make("search");
    let rogue = keys.make("rogue");
    let trusted = keys.trust_dir("authorized_keys", &[&orders, &search]);
    let toml = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .set("inbound", "public_paths = [\"/healthz\"]")
        .extra(
            "[authz]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             [[inbound.deny]]\nname = \"no-debug\"\npaths = [\"/debug\", \"/debug/*\"]\n\
             [callers.orders]\nroles = [\"reader\"]\n\
             [callers.search]\nrate_limit = \"1/h\"\nburst = 1\n",
        )
        .toml();
    let tokens = Tokens {
        orders: sign_as(&orders, "orders", "billing"),
        search: sign_as(&search, "search", "billing"),
        rogue: sign_as(&rogue, "orders", "billing"),
        elsewhere: sign_as(&orders, "orders", "inventory"),
    };
    (toml, tokens)
}

/// The identity and credential headers among what the app received.
fn identity_headers(app: &RawApp) -> Option<Vec<(String, String)>> {
    let seen = app.requests();
    let last = seen.last()?;
    let mut h: Vec<(String, String)> = last
        .headers()
        .into_iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase().replace('_', "-");
            n.starts_with("x-service-caller") || n == "authorization" || n.starts_with("x-user")
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    h.sort();
    Some(h)
}

async fn send(addr: SocketAddr, case: &Case) -> RawResponse {
    let mut head = format!("GET {} HTTP/1.1\r\nHost: billing\r\n", case.target);
    for h in &case.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    exchange(addr, head.as_bytes())
        .await
        .unwrap_or_else(|| panic!("{}: no answer", case.name))
}

/// The table through one door, on a sidecar of its own (limits start full).
async fn through(door: Door) -> Vec<Outcome> {
    let keys = Keys::new();
    let app = spawn_raw_app().await;
    let (toml, t) = setup(&keys, app.addr);
    let sidecar = Sidecar::start(&toml).await;
    let envoy = match door {
        Door::Proxy => None,
        Door::Envoy(mode) => {
            let authz = match mode {
                Mode::Grpc => sidecar.addrs.authz.unwrap(),
                Mode::Http => sidecar.addrs.authz_http.unwrap(),
            };
            Some(Envoy::start(mode, app.addr, authz).await)
        }
    };
    let addr = envoy.as_ref().map_or(sidecar.inbound(), |e| e.listen);
    let mut outcomes = Vec::new();
    for case in cases(&t) {
        app.clear();
        let r = send(addr, &case).await;
        let reason = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|j| j["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        outcomes.push(Outcome {
            status: r.status,
            reason,
            challenge: r.header("www-authenticate").is_some(),
            retry_after: r.header("retry-after").is_some(),
            app_saw: identity_headers(&app),
        });
        if let Some(e) = &envoy {
            if r.status >= 500 {
                eprintln!("{}: envoy said {}\n{}", case.name, r.head, e.stderr());
            }
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_answers_through_trustgate_and_through_envoy_with_trustgate_as_its_authorizer() {
    if !envoy::available() {
        return;
    }
    let proxy = through(Door::Proxy).await;
    let expected = [
        (200, ""),
        (200, ""),
        (401, "missing"),
        (401, "malformed"),
        (401, "unknown_key"),
        (401, "wrong_audience"),
        (403, "policy"),
        (200, ""),
        (200, ""),
        (429, "rate_limited"),
    ];
    let keys = Keys::new();
    let (_, t) = setup(&keys, "127.0.0.1:1".parse().unwrap());
    let names: Vec<&str> = cases(&t).iter().map(|c| c.name).collect();
    for ((name, o), (status, reason)) in names.iter().zip(&proxy).zip(expected) {
        assert_eq!(
            (o.status, o.reason.as_str()),
            (status, reason),
            "proxy: {name}"
        );
    }
    let valid = proxy[1].app_saw.as_ref().unwrap();
    assert_eq!(
        valid,
        &[
            ("x-service-caller".to_owned(), "orders".to_owned()),
            ("x-service-caller-roles".to_owned(), "reader".to_owned())
        ],
        "the spoofed spellings are gone, the token too"
    );
    assert_eq!(
        proxy[7].app_saw.as_deref(),
        Some(&[][..]),
        "public: no token"
    );
    assert!(proxy[2].challenge && proxy[9].retry_after);
    for mode in [Mode::Grpc, Mode::Http] {
        let envoy = through(Door::Envoy(mode)).await;
        for ((name, p), e) in names.iter().zip(&proxy).zip(&envoy) {
            assert_eq!(p, e, "{name}: the proxy and Envoy ({mode:?}) differ");
        }
    }
}

/// Envoy's access log names the caller from the authorizer's dynamic metadata (gRPC) or
/// the headers it copies into it (HTTP mode); with trustgate gone, Envoy refuses (fail
/// closed: `failure_mode_allow: false`) and the app sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_logs_the_caller_and_refuses_when_its_authorizer_is_gone() {
    if !envoy::available() {
        return;
    }
    for mode in [Mode::Grpc, Mode::Http] {
        let keys = Keys::new();
        let app = spawn_raw_app().await;
        let (toml, t) = setup(&keys, app.addr);
        let sidecar = Sidecar::start(&toml).await;
        let authz = match mode {
            Mode::Grpc => sidecar.addrs.authz.unwrap(),
            Mode::Http => sidecar.addrs.authz_http.unwrap(),
        };
        let envoy = Envoy::start(mode, app.addr, authz).await;
        let valid = Case {
            name: "valid",
            target: "/orders/1",
            headers: vec![format!("Authorization: Bearer {}", t.orders)],
        };
        assert_eq!(send(envoy.listen, &valid).await.status, 200, "{mode:?}");
        let logged = support::eventually(std::time::Duration::from_secs(15), || {
            envoy
                .access_lines()
                .iter()
                .any(|l| l.starts_with("200 caller=orders ") && l.ends_with("path=/orders/1"))
        })
        .await;
        assert!(logged, "{mode:?}: {:?}", envoy.access_lines());
        sidecar.shutdown().await;
        app.clear();
        let r = send(envoy.listen, &valid).await;
        assert_eq!(
            r.status, 403,
            "{mode:?}: Envoy's answer when the check fails"
        );
        assert!(app.requests().is_empty(), "{mode:?}: the app was reached");
    }
}

/// One sidecar with `extra` configuration and the authorizer, Envoy in front of its app.
async fn behind_envoy(mode: Mode, toml: &str, app: SocketAddr) -> (Sidecar, Envoy) {
    let sidecar = Sidecar::start(toml).await;
    let authz = match mode {
        Mode::Grpc => sidecar.addrs.authz.unwrap(),
        Mode::Http => sidecar.addrs.authz_http.unwrap(),
    };
    let envoy = Envoy::start(mode, app, authz).await;
    (sidecar, envoy)
}

fn get_with(target: &'static str, headers: Vec<String>) -> Case {
    Case {
        name: target,
        target,
        headers,
    }
}

/// A single-use (request-bound) token is refused the second time through Envoy, as
/// through the proxy; audit mode lets a refused request through without identity and
/// still removes what was spoofed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_token_is_refused_and_audit_mode_forwards_without_identity() {
    if !envoy::available() {
        return;
    }
    for mode in [Mode::Grpc, Mode::Http] {
        let keys = Keys::new();
        let (orders, billing) = (keys.make("orders"), keys.make("billing"));
        let trusted = keys.trust_dir("trusted", &[&orders]);
        let app = spawn_raw_app().await;
        let authz = "[authz]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n";
        let toml = Conf::new("billing", &billing.private)
            .inbound(&trusted, app.addr)
            .set("inbound", "require_request_binding = true")
            .extra(authz)
            .toml();
        let (_side, envoy) = behind_envoy(mode, &toml, app.addr).await;
        let once = crate::fleet::bound(&orders, "orders", "/pay");
        let pay = get_with("/pay", vec![format!("Authorization: Bearer {once}")]);
        assert_eq!(send(envoy.listen, &pay).await.status, 200, "{mode:?}");
        let again = send(envoy.listen, &pay).await;
        assert_eq!(
            (again.status, crate::end_users::reason(&again).as_str()),
            (401, "replayed"),
            "{mode:?}"
        );

        let app = spawn_raw_app().await;
        let toml = Conf::new("billing", &billing.private)
            .inbound(&trusted, app.addr)
            .set("inbound", "mode = \"audit\"")
            .extra(authz)
            .toml();
        let (_side, envoy) = behind_envoy(mode, &toml, app.addr).await;
        let forged = get_with(
            "/x",
            vec![
                "Authorization: Bearer not.a.token".into(),
                "X_Service_Caller: admin".into(),
            ],
        );
        assert_eq!(send(envoy.listen, &forged).await.status, 200, "{mode:?}");
        assert_eq!(
            identity_headers(&app),
            Some(Vec::new()),
            "{mode:?}: no identity, no token, no spoof"
        );
    }
}

/// The person at the edge: web verifies a person's token from the Python OIDC provider
/// and mints a transaction token; through Envoy the app gets what it gets from web's own
/// proxy, and orders (the next hop) verifies the minted token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_token_at_an_edge_behind_envoy_mints_a_transaction_token_the_next_hop_takes() {
    if !envoy::available() {
        return;
    }
    let Some(issuer) = crate::platform::Issuer::start() else {
        return;
    };
    let c = crate::end_users::chain(&issuer).await;
    let web = std::fs::read_to_string(&c.web_config).unwrap()
        + "[authz]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n";
    let alice = crate::end_users::person(&issuer, "alice", serde_json::json!({}));
    let case = get_with(
        "/cart",
        vec![
            format!("X-User-Token: {alice}"),
            "X-User-Subject: mallory".into(),
            "X_User_Token: forged".into(),
        ],
    );
    let names = [
        "x-user-subject",
        "x-user-issuer",
        "x-tenant",
        "x-transaction-id",
    ];
    let seen = |app: &RawApp| -> Vec<Vec<String>> {
        let last = app.requests().pop().expect("the app got it");
        let mut all: Vec<Vec<String>> = names.iter().map(|n| last.values(n)).collect();
        all.push(last.values("x-user-token"));
        all.push(last.values("x_user_token"));
        all
    };
    let r = send(c.web.inbound(), &case).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let by_proxy = seen(&c.apps[0]);
    assert_eq!(by_proxy[0], ["alice"]);
    for mode in [Mode::Grpc, Mode::Http] {
        let (_web, envoy) = behind_envoy(mode, &web, c.apps[0].addr).await;
        let r = send(envoy.listen, &case).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body_text());
        let mut by_envoy = seen(&c.apps[0]);
        // Every call has a transaction id of its own.
        assert_ne!(by_envoy[3], by_proxy[3]);
        by_envoy[3] = by_proxy[3].clone();
        assert_eq!(by_envoy, by_proxy, "{mode:?}");
        let txn = crate::end_users::one(&c.apps[0], "txn-token");
        let web_token = sign_as(&c.web_key, "web", "orders");
        let next = get_with(
            "/orders",
            vec![
                format!("Authorization: Bearer {web_token}"),
                format!("Txn-Token: {txn}"),
            ],
        );
        let r = send(c.orders.inbound(), &next).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body_text());
        assert_eq!(crate::end_users::one(&c.apps[1], "x-user-subject"), "alice");
    }
}

/// The examples as shipped: Envoy's own validation of the bootstrap, and trustgate's
/// check of the authorizer's configuration (its key files aside).
#[test]
fn the_envoy_example_validates_and_its_trustgate_config_is_an_authorizer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("deploy/envoy/trustgate.toml")).unwrap();
    let cfg = trustgate::config::from_toml_str(&text, "trustgate.toml", Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let authz = cfg.authz.as_ref().unwrap();
    assert_eq!(authz.listen, Some("127.0.0.1:9191".parse().unwrap()));
    assert!(
        !cfg.inbound.as_ref().unwrap().enabled,
        "no inbound listener"
    );
    let yaml = std::fs::read_to_string(root.join("deploy/envoy/envoy.yaml")).unwrap();
    assert!(yaml.contains("port_value: 9191") && yaml.contains("failure_mode_allow: false"));
    if !envoy::available() {
        return;
    }
    let out = std::process::Command::new(envoy::binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(root.join("deploy/envoy/envoy.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The authorizer over TLS with client certificates (`authz.tls_cert`, `tls_key`,
/// `client_ca`): Envoy with the CA's client certificate is answered; Envoy without one
/// cannot reach it and refuses (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_envoy_needs_its_client_certificate() {
    if !envoy::available() {
        return;
    }
    let keys = Keys::new();
    let app = spawn_raw_app().await;
    let (toml, t) = setup(&keys, app.addr);
    let tls = |n: &str| support::tls_fixture(n).display().to_string();
    let toml = toml.replace(
        "[authz]\n",
        &format!(
            "[authz]\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
            tls("server.crt"),
            tls("server.key"),
            tls("ca.crt")
        ),
    );
    let sidecar = Sidecar::start(&toml).await;
    let authz = sidecar.addrs.authz.unwrap();
    let valid = get_with(
        "/orders/1",
        vec![format!("Authorization: Bearer {}", t.orders)],
    );
    let with_cert = Envoy::start_tls(Mode::Grpc, app.addr, authz, Some(true)).await;
    let r = send(with_cert.listen, &valid).await;
    assert_eq!(r.status, 200, "{}\n{}", r.head, with_cert.stderr());
    assert_eq!(
        identity_headers(&app).unwrap()[0],
        ("x-service-caller".to_owned(), "orders".to_owned())
    );
    app.clear();
    let without = Envoy::start_tls(Mode::Grpc, app.addr, authz, Some(false)).await;
    assert_eq!(send(without.listen, &valid).await.status, 403);
    assert!(app.requests().is_empty(), "the app was reached");
}

/// DPoP through the authorizer door: a bound person's token with its proof passes Envoy
/// (the proof removed before the app), the same token as `Bearer` is refused with the
/// DPoP challenge — the proxy's steps, the proxy's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_holds_through_envoy() {
    if !envoy::available() {
        return;
    }
    let Some(issuer) = crate::platform::Issuer::start() else {
        return;
    };
    use crate::dpop::{head, proof, ORIGIN};
    let dir = tempfile::tempdir().unwrap();
    let jkt = proof(dir.path(), serde_json::json!({"thumbprint": true}));
    let token =
        crate::end_users::person(&issuer, "alice", serde_json::json!({"cnf": {"jkt": jkt}}));
    let keys = Keys::new();
    let web = keys.make("web");
    let app = spawn_raw_app().await;
    let toml = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("t", &[]), app.addr)
        .set("inbound", "token_header = \"x-service-token\"")
        .extra(&format!(
            "{}[inbound.users]\ncallers = \"optional\"\ntoken_header = \"authorization\"\n\
             dpop_origins = [\"{ORIGIN}\"]\n\
             [authz]\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
            crate::end_users::people(&issuer)
        ))
        .toml();
    for mode in [Mode::Grpc, Mode::Http] {
        let (_side, envoy) = behind_envoy(mode, &toml, app.addr).await;
        let p = proof(
            dir.path(),
            serde_json::json!({"htm": "GET", "htu": format!("{ORIGIN}/orders"), "token": token}),
        );
        app.clear();
        let r = crate::end_users::send(envoy.listen, &head("DPoP", &token, &[&p])).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body_text());
        let seen = app.requests().pop().unwrap();
        assert_eq!(seen.values("x-user-subject"), ["alice"], "{mode:?}");
        assert!(
            seen.values("dpop").is_empty(),
            "{mode:?}: the proof reached the app"
        );
        assert!(seen.values("authorization").is_empty(), "{mode:?}");
        app.clear();
        let r = crate::end_users::send(envoy.listen, &head("Bearer", &token, &[])).await;
        assert_eq!(
            (r.status, crate::end_users::reason(&r).as_str()),
            (401, "user_dpop_bearer_scheme"),
            "{mode:?}"
        );
        assert!(r
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("DPoP error=\"invalid_dpop_proof\"")));
        assert!(app.requests().is_empty());
    }
}
