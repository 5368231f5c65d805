//! DPoP at the edge (RFC 9449, DESIGN.md "Sender-constrained tokens"): a person's token
//! from the Python OIDC provider bound to a client key (`cnf.jkt`), proofs made by
//! jwcrypto (never by trustgate), raw bytes in, what the app received asserted as it
//! arrived. A bound token is worth nothing without a fresh proof of its key, and the
//! RFC's negative cases are each refused with their reason.
use crate::end_users::{people, person, reason, send};
use crate::platform::Issuer;
use crate::support;

use support::raw::{spawn_raw_app, RawApp};
use support::*;

pub(crate) const ORIGIN: &str = "https://api.example.com";

/// A proof made by `tests/it/support/dpop_proof.py` (jwcrypto) from `spec`.
pub(crate) fn proof(dir: &std::path::Path, spec: serde_json::Value) -> String {
    let mut spec = spec;
    spec["dir"] = dir.display().to_string().into();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/dpop_proof.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(spec.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Edge {
    side: Sidecar,
    app: RawApp,
    _keys: Keys,
}

/// web: people's tokens in `Authorization` (callers optional), DPoP origins set; `users`
/// lines added to `[inbound.users]`.
async fn edge(issuer: &Issuer, users: &str, inbound: &[&str]) -> Edge {
    let keys = Keys::new();
    let web = keys.make("web");
    let app = spawn_raw_app().await;
    let mut conf = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("web-trusts", &[]), app.addr)
        .set("inbound", "token_header = \"x-service-token\"");
    for line in inbound {
        conf = conf.set("inbound", *line);
    }
    let side = conf
        .extra(&format!(
            "{}[inbound.users]\ncallers = \"optional\"\ntoken_header = \"authorization\"\n\
             dpop_origins = [\"{ORIGIN}\"]\n{users}",
            people(issuer)
        ))
        .start()
        .await;
    Edge {
        side,
        app,
        _keys: keys,
    }
}

pub(crate) fn head(scheme: &str, token: &str, proofs: &[&str]) -> String {
    let mut h =
        format!("GET /orders?page=2 HTTP/1.1\r\nhost: web\r\nauthorization: {scheme} {token}\r\n");
    for p in proofs {
        h.push_str(&format!("DPoP: {p}\r\n"));
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_passes_only_with_a_fresh_proof_of_its_key() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jkt = proof(d, serde_json::json!({"thumbprint": true}));
    let token = person(&issuer, "alice", serde_json::json!({"cnf": {"jkt": jkt}}));
    let edge = edge(&issuer, "", &[]).await;
    let now = trustgate::proxy::unix_now();
    let htu = format!("{ORIGIN}/orders");
    let good = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"htm": "GET", "htu": htu, "token": token});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        proof(d, spec)
    };

    // The proof of its key, with the DPoP scheme: the app gets the person, and neither the
    // token nor the proof.
    let r = send(
        edge.side.inbound(),
        &head("DPoP", &token, &[&good(serde_json::json!({}))]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let seen = edge.app.requests().pop().unwrap();
    assert_eq!(seen.values("x-user-subject"), ["alice"]);
    assert!(seen.values("dpop").is_empty() && seen.values("authorization").is_empty());
    // A query in htu (and a fragment) is ignored; the origin is compared normalised.
    let q = good(serde_json::json!({"htu": "HTTPS://API.example.com:443/orders?page=9#x"}));
    assert_eq!(
        send(edge.side.inbound(), &head("DPoP", &token, &[&q]))
            .await
            .status,
        200
    );

    let replayed = good(serde_json::json!({"jti": "once"}));
    assert_eq!(
        send(edge.side.inbound(), &head("DPoP", &token, &[&replayed]))
            .await
            .status,
        200
    );
    let other_key = {
        proof(d, serde_json::json!({"key": "other", "thumbprint": true}));
        good(serde_json::json!({"key": "other"}))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("no proof", head("DPoP", &token, &[]), "user_dpop_missing"),
        (
            "two proofs",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({})), &good(serde_json::json!({}))],
            ),
            "user_dpop_malformed",
        ),
        (
            "typ JWT",
            head("DPoP", &token, &[&good(serde_json::json!({"typ": "JWT"}))]),
            "user_dpop_malformed",
        ),
        (
            "alg none",
            head("DPoP", &token, &[&good(serde_json::json!({"alg": "none"}))]),
            "user_dpop_malformed",
        ),
        (
            "HS256",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"alg": "HS256"}))],
            ),
            "user_dpop_malformed",
        ),
        (
            "a private key in jwk",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"private_jwk": true}))],
            ),
            "user_dpop_malformed",
        ),
        (
            "signed by another key than its jwk",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"jwk_key": "other"}))],
            ),
            "user_dpop_bad_signature",
        ),
        (
            "another method",
            head("DPoP", &token, &[&good(serde_json::json!({"htm": "POST"}))]),
            "user_dpop_wrong_method",
        ),
        (
            "another origin",
            head(
                "DPoP",
                &token,
                &[&good(
                    serde_json::json!({"htu": "https://evil.example.com/orders"}),
                )],
            ),
            "user_dpop_wrong_uri",
        ),
        (
            "another path",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"htu": format!("{ORIGIN}/admin")}))],
            ),
            "user_dpop_wrong_uri",
        ),
        (
            "stale iat",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"iat": now - 300}))],
            ),
            "user_dpop_stale",
        ),
        (
            "future iat",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"iat": now + 300}))],
            ),
            "user_dpop_stale",
        ),
        (
            "a replayed jti",
            head("DPoP", &token, &[&replayed]),
            "user_dpop_replayed",
        ),
        (
            "another token's ath",
            head(
                "DPoP",
                &token,
                &[&good(serde_json::json!({"token": "another.token.here"}))],
            ),
            "user_dpop_token_mismatch",
        ),
        (
            "another key's proof",
            head("DPoP", &token, &[&other_key]),
            "user_dpop_key_mismatch",
        ),
        (
            "a bound token as Bearer, with its proof",
            head("Bearer", &token, &[&good(serde_json::json!({}))]),
            "user_dpop_bearer_scheme",
        ),
        (
            "a bound token as Bearer, stolen (no proof)",
            head("Bearer", &token, &[]),
            "user_dpop_bearer_scheme",
        ),
    ];
    edge.app.clear();
    for (name, head, want) in cases {
        let r = send(edge.side.inbound(), &head).await;
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (401, want),
            "{name}: {}",
            r.body_text()
        );
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("DPoP error=\"invalid_dpop_proof\", algs=\"ES256"),
            "{name}: {challenge}"
        );
    }
    assert!(
        edge.app.requests().is_empty(),
        "a refused request reached the app"
    );
    let metrics = get(format!("http://{}/metrics", edge.side.admin()), &[])
        .await
        .body;
    for line in [
        "trustgate_dpop_proofs_total{result=\"valid\"} 3",
        "trustgate_dpop_proofs_total{result=\"bearer_scheme\"} 2",
        "trustgate_dpop_proofs_total{result=\"replayed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

/// `dpop = "required"`: an unbound token is refused; under the default an unbound token
/// passes as a bearer token, but not with the DPoP scheme; and an edge without
/// `dpop_origins` refuses a bound token rather than passing it unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_tokens_and_edges_without_origins() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jkt = proof(dir.path(), serde_json::json!({"thumbprint": true}));
    let unbound = person(&issuer, "bob", serde_json::json!({}));
    let bound = person(&issuer, "alice", serde_json::json!({"cnf": {"jkt": jkt}}));
    let open = edge(&issuer, "", &[]).await;
    let r = send(open.side.inbound(), &head("Bearer", &unbound, &[])).await;
    assert_eq!(
        r.status,
        200,
        "an unbound token is a bearer token: {}",
        r.body_text()
    );
    let r = send(open.side.inbound(), &head("DPoP", &unbound, &[])).await;
    assert_eq!(reason(&r), "user_dpop_unbound");
    let strict = edge(&issuer, "dpop = \"required\"\n", &[]).await;
    let r = send(strict.side.inbound(), &head("Bearer", &unbound, &[])).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "user_dpop_unbound"));

    // No origins: the bound token is refused, never passed unchecked.
    let keys = Keys::new();
    let web = keys.make("web");
    let app = spawn_raw_app().await;
    let bare = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("t", &[]), app.addr)
        .set("inbound", "token_header = \"x-service-token\"")
        .extra(&format!(
            "{}[inbound.users]\ncallers = \"optional\"\ntoken_header = \"authorization\"\n",
            people(&issuer)
        ))
        .start()
        .await;
    let p = proof(
        dir.path(),
        serde_json::json!({"htm": "GET", "htu": format!("{ORIGIN}/orders"), "token": bound}),
    );
    let r = send(bare.inbound(), &head("DPoP", &bound, &[&p])).await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "user_dpop_unconfigured")
    );
    assert!(app.requests().is_empty());
}

/// npm's oidc-provider (with `features.dPoP`) and npm's `dpop` client, started by
/// `tests/it/support/node/dpop_provider.mjs`: the client's token and proofs.
struct RealClient {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    issuer: String,
    jwks_url: String,
    token: String,
}

impl Drop for RealClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealClient {
    fn start() -> Option<RealClient> {
        use std::io::BufRead;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/node");
        let installed = dir.join("node_modules/oidc-provider").exists()
            && dir.join("node_modules/dpop").exists();
        if !installed {
            assert!(
                std::env::var("TRUSTGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "TRUSTGATE_REQUIRE_INTEROP=1 but {} has no node_modules (npm install there)",
                dir.display()
            );
            eprintln!("SKIPPED: npm install in {} first", dir.display());
            return None;
        }
        let mut child = std::process::Command::new("node")
            .arg(dir.join("dpop_provider.mjs"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node runs");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // oidc-provider prints notices on stdout too: the client's line is the JSON one.
        let first = lines
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.starts_with('{'))
            .expect("the provider's token");
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["token_type"], "DPoP", "{first}");
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        Some(RealClient {
            issuer: s("issuer"),
            jwks_url: s("jwks_url"),
            token: s("access_token"),
            child,
            lines,
        })
    }

    /// The client's proof for `htm htu`.
    fn proof(&mut self, htm: &str, htu: &str) -> String {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{htm} {htu}").unwrap();
        stdin.flush().unwrap();
        self.lines.next().unwrap().unwrap()
    }
}

/// The Done-when of DPoP: a real OpenID provider's DPoP-bound token, with a real client's
/// proofs, works through trustgate; the same token stolen (as `Bearer`, or replaying a
/// proof already used, or a proof for another request) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_providers_bound_token_works_with_a_real_clients_proofs_and_not_stolen() {
    let Some(mut client) = RealClient::start() else {
        return;
    };
    let keys = Keys::new();
    let web = keys.make("web");
    let app = spawn_raw_app().await;
    let side = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("t", &[]), app.addr)
        .set("inbound", "token_header = \"x-service-token\"")
        .set("trust", "allow_http_fetch = true")
        .extra(&format!(
            "[[trust.issuers]]\nname = \"shop-idp\"\nkind = \"oidc\"\nusers = true\n\
             issuer = \"{}\"\njwks_url = \"{}\"\naudiences = [\"web\"]\n\
             [inbound.users]\ncallers = \"optional\"\ntoken_header = \"authorization\"\n\
             dpop_origins = [\"{ORIGIN}\"]\n",
            client.issuer, client.jwks_url
        ))
        .start()
        .await;
    let token = client.token.clone();
    let htu = format!("{ORIGIN}/orders");
    let ask = |proofs: Vec<String>, scheme: &'static str| {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        head(scheme, &token, &refs)
    };
    let p = client.proof("GET", &htu);
    let r = send(side.inbound(), &ask(vec![p.clone()], "DPoP")).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let seen = app.requests().pop().unwrap();
    assert_eq!(seen.values("x-user-subject"), ["shop"]);
    assert!(seen.values("dpop").is_empty() && seen.values("authorization").is_empty());
    for _ in 0..3 {
        let p = client.proof("GET", &htu);
        assert_eq!(
            send(side.inbound(), &ask(vec![p], "DPoP")).await.status,
            200
        );
    }
    app.clear();
    let stolen = [
        (ask(vec![], "Bearer"), "user_dpop_bearer_scheme"),
        (ask(vec![], "DPoP"), "user_dpop_missing"),
        (ask(vec![p], "DPoP"), "user_dpop_replayed"),
        (
            ask(vec![client.proof("POST", &htu)], "DPoP"),
            "user_dpop_wrong_method",
        ),
        (
            ask(
                vec![client.proof("GET", &format!("{ORIGIN}/admin"))],
                "DPoP",
            ),
            "user_dpop_wrong_uri",
        ),
    ];
    for (head, want) in stolen {
        let r = send(side.inbound(), &head).await;
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (401, want),
            "{}",
            r.body_text()
        );
    }
    assert!(app.requests().is_empty());
}

/// Under `replay_scope = "fleet"` a proof used at one replica is refused at another that
/// shares the store (a real redis-server): the replay cache is the fleet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_used_at_one_replica_is_refused_at_another() {
    if !support::redis::available() {
        return;
    }
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let redis = support::redis::Redis::start("pw-dpop");
    let password = redis.dir.path().join("password");
    std::fs::write(&password, &redis.password).unwrap();
    let fleet = format!(
        "[fleet]\nredis = \"{}\"\npassword_file = \"{}\"\ntimeout = \"500ms\"\n",
        redis.url,
        password.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let jkt = proof(dir.path(), serde_json::json!({"thumbprint": true}));
    let token = person(&issuer, "alice", serde_json::json!({"cnf": {"jkt": jkt}}));
    let a = edge(&issuer, &fleet, &["replay_scope = \"fleet\""]).await;
    let b = edge(&issuer, &fleet, &["replay_scope = \"fleet\""]).await;
    for e in [&a, &b] {
        let metrics = format!("http://{}/metrics", e.side.admin());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !get(metrics.clone(), &[])
            .await
            .body
            .contains("trustgate_fleet_up 1")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the fleet never came up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let p = proof(
        dir.path(),
        serde_json::json!({"htm": "GET", "htu": format!("{ORIGIN}/orders"), "token": token}),
    );
    let r = send(a.side.inbound(), &head("DPoP", &token, &[&p])).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let r = send(b.side.inbound(), &head("DPoP", &token, &[&p])).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "user_dpop_replayed"));
    assert!(b.app.requests().is_empty());
}

/// `trustgate explain --user-token T --dpop PROOF` runs the same DPoP step: the proof
/// passes; without it the bound token goes as `Bearer` and is refused with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_checks_the_proof() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jkt = proof(dir.path(), serde_json::json!({"thumbprint": true}));
    let token = person(&issuer, "alice", serde_json::json!({"cnf": {"jkt": jkt}}));
    let keys = Keys::new();
    let web = keys.make("web");
    let text = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("t", &[]), "127.0.0.1:1")
        .set("inbound", "token_header = \"x-service-token\"")
        .extra(&format!(
            "{}[inbound.users]\ncallers = \"optional\"\ntoken_header = \"authorization\"\n\
             dpop_origins = [\"{ORIGIN}\"]\n",
            people(&issuer)
        ))
        .toml();
    let config = keys.path().join("web.toml");
    std::fs::write(&config, text).unwrap();
    let p = proof(
        dir.path(),
        serde_json::json!({"htm": "GET", "htu": format!("{ORIGIN}/orders"), "token": token}),
    );
    let (code, out, err) = crate::policy::explain(
        &config,
        &["--user-token", &token, "--dpop", &p, "GET", "/orders"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("alice"), "{out}");
    let (code, out, err) =
        crate::policy::explain(&config, &["--user-token", &token, "GET", "/orders"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("user_dpop_bearer_scheme"), "{out}");
}

/// A caller's token from an issuer, bound to a key (`cnf.jkt`): the same rule as a
/// person's — with the `DPoP` scheme and its proof it is the caller; as `Bearer` (stolen)
/// it is refused `dpop_bearer_scheme`; an unbound caller's token as `Bearer` is as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_bound_token_needs_its_proof_too() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jkt = proof(dir.path(), serde_json::json!({"thumbprint": true}));
    let keys = Keys::new();
    let billing = keys.make("billing");
    let app = spawn_raw_app().await;
    let side = Conf::new("billing", &billing.private)
        .inbound(&keys.trust_dir("t", &[]), app.addr)
        .extra(&format!(
            "[[trust.issuers]]\nname = \"idp\"\nkind = \"oidc\"\nissuer = \"{}/oidc\"\n\
             ca_file = \"{}\"\nmax_token_ttl = \"15m\"\ncallers = {{ \"client-123\" = \"reports\" }}\n\
             [inbound.users]\ndpop_origins = [\"{ORIGIN}\"]\n",
            issuer.url(),
            tls_fixture("ca.crt").display(),
        ))
        .start()
        .await;
    let bound = issuer.mint("oidc", "oidc", serde_json::json!({"cnf": {"jkt": jkt}}));
    let plain = issuer.mint("oidc", "oidc", serde_json::json!({}));
    let p = proof(
        dir.path(),
        serde_json::json!({"htm": "GET", "htu": format!("{ORIGIN}/orders"), "token": bound}),
    );
    let r = send(side.inbound(), &head("DPoP", &bound, &[&p])).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        app.requests().pop().unwrap().values("x-service-caller"),
        ["reports"]
    );
    app.clear();
    let r = send(side.inbound(), &head("Bearer", &bound, &[])).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "dpop_bearer_scheme"));
    assert!(r
        .header("www-authenticate")
        .is_some_and(|c| c.starts_with("DPoP ")));
    let r = send(side.inbound(), &head("Bearer", &plain, &[])).await;
    assert_eq!(
        r.status,
        200,
        "an unbound caller's token: {}",
        r.body_text()
    );
    let r = send(side.inbound(), &head("DPoP", &plain, &[])).await;
    assert_eq!(reason(&r), "dpop_unbound");
}

/// Crossed with the other modes: on a public path and in audit mode (a refused proof
/// forwarded without identity) neither the proof nor the bound token reaches the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proof_or_bound_token_reaches_the_app_on_a_public_path_or_in_audit_mode() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jkt = proof(dir.path(), serde_json::json!({"thumbprint": true}));
    let token = person(&issuer, "alice", serde_json::json!({"cnf": {"jkt": jkt}}));
    let p = proof(
        dir.path(),
        serde_json::json!({"htm": "GET", "htu": format!("{ORIGIN}/orders"), "token": token}),
    );
    let public = edge(&issuer, "", &["public_paths = [\"/orders\"]"]).await;
    let audit = edge(&issuer, "", &["mode = \"audit\""]).await;
    for (name, e, scheme) in [("public", &public, "DPoP"), ("audit", &audit, "Bearer")] {
        let r = send(e.side.inbound(), &head(scheme, &token, &[&p])).await;
        assert_eq!(r.status, 200, "{name}: {}", r.body_text());
        let seen = e.app.requests().pop().expect("forwarded");
        for header in ["dpop", "authorization", "x-user-subject"] {
            assert!(
                seen.values(header).is_empty(),
                "{name}: {header} reached the app"
            );
        }
    }
}
