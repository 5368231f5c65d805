//! Platform identity (`[[trust.issuers]]`): tokens the platform issues, from issuers we
//! did not write — `support/platform_issuer.py` (Python `http.server` over TLS, keys by
//! `cryptography`, tokens by PyJWT): a Kubernetes-like API server (discovery and JWKS
//! behind a bearer token, RS256, kids as the API server makes them, the claim layout of a
//! projected token), a SPIFFE bundle with mixed `use`, and a generic OIDC provider.
use crate::support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use support::*;

const READER: &str = "reader-secret-token";

/// The Python issuers, driven over stdin/stdout.
pub(crate) struct Issuer {
    port: u16,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Issuer {
    /// `None` (skipped loudly) without python3, PyJWT and cryptography, unless
    /// `TRUSTGATE_REQUIRE_INTEROP=1` (CI), which makes it fail.
    pub(crate) fn start() -> Option<Issuer> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/platform_issuer.py");
        let required = std::env::var("TRUSTGATE_REQUIRE_INTEROP").as_deref() == Ok("1");
        let spawned = Command::new("python3")
            .arg(&script)
            .args([tls_fixture("server.crt"), tls_fixture("server.key")])
            .arg(READER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    !required,
                    "TRUSTGATE_REQUIRE_INTEROP=1 but python3 cannot run: {e}"
                );
                eprintln!("SKIPPED: python3 not found ({e})");
                return None;
            }
        };
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            assert!(
                !required,
                "TRUSTGATE_REQUIRE_INTEROP=1 but the Python issuer did not start"
            );
            eprintln!("SKIPPED: python3 with PyJWT and cryptography not available");
            return None;
        };
        let stdin = child.stdin.take().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reader"), format!("{READER}\n")).unwrap();
        Some(Issuer {
            port,
            io: Mutex::new((stdin, out)),
            child,
            dir,
        })
    }

    pub(crate) fn ask(&self, command: &str) -> String {
        let mut io = self.io.lock().unwrap();
        writeln!(io.0, "{command}").unwrap();
        let mut line = String::new();
        io.1.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    /// A token of `kind` signed by `signer`, the usual claims overridden by `claims`.
    pub(crate) fn mint(&self, kind: &str, signer: &str, claims: serde_json::Value) -> String {
        self.ask(&format!("mint {kind} {signer} 600 {claims}"))
    }

    pub(crate) fn stat(&self, name: &str) -> u64 {
        let line = self.ask("stats");
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    }

    pub(crate) fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub(crate) fn reader_file(&self) -> PathBuf {
        self.dir.path().join("reader")
    }

    /// `[[trust.issuers]]` of kind kubernetes at this API server.
    pub(crate) fn kubernetes(&self, extra: &str) -> String {
        format!(
            "[[trust.issuers]]\nname = \"cluster\"\nkind = \"kubernetes\"\nissuer = \"{}\"\n\
             ca_file = \"{}\"\nbearer_token_file = \"{}\"\n{extra}\n\
             callers = {{ \"shop/orders\" = \"orders\", \"shop/reports\" = \"reports\" }}\n",
            self.url(),
            tls_fixture("ca.crt").display(),
            self.reader_file().display(),
        )
    }
}

/// billing's sidecar in front of the echo app, trusting only `issuers` (and an empty
/// authorized_keys directory).
pub(crate) async fn billing(issuers: &str, extra: &str) -> (Sidecar, Keys) {
    let keys = Keys::new();
    let billing = keys.make("billing");
    let dir = keys.trust_dir("trusted", &[]);
    let app = spawn_app().await;
    let side = Conf::new("billing", &billing.private)
        .inbound(&dir, app)
        .set("trust", "fetch_cooldown = \"1s\"")
        .extra(issuers)
        .extra(extra)
        .start()
        .await;
    (side, keys)
}

pub(crate) async fn call(side: &Sidecar, token: &str) -> Answer {
    get(
        format!("http://{}/orders/1", side.inbound()),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

pub(crate) fn fetches(side: &Sidecar, issuer: &str, result: &str) -> u64 {
    side.state
        .metrics
        .trust_fetches
        .with_label_values(&[&format!("issuer:{issuer}"), result])
        .get()
}

/// The 401's reason (from `WWW-Authenticate`'s description, as the body's).
pub(crate) fn refused(a: &Answer) -> String {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    a.json()["reason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_projected_service_account_token_is_a_caller() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    // The platform's claims are claims like any other: in rules and to the app.
    let rules = "[callers.orders]\nroles = [\"reader\"]\n\
                 [inbound.claim_headers]\n\"x-caller-namespace\" = \"/kubernetes.io/namespace\"\n\
                 \"x-caller-pod\" = \"/kubernetes.io/pod/name\"\n\
                 [[inbound.allow]]\ncallers = [\"orders\"]\npaths = [\"/orders/*\"]\n\
                 claims = { \"/kubernetes.io/namespace\" = [\"shop\"] }\n";
    let (side, _keys) = billing(&issuer.kubernetes(""), rules).await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "cluster", "ok")
            >= 1)
        .await
    );
    // Discovery, then the JWKS, both with the bearer token.
    assert_eq!((issuer.stat("discovery"), issuer.stat("jwks")), (1, 1));
    assert_eq!(issuer.stat("refused"), 0);

    let a = call(&side, &issuer.mint("k8s", "k8s", serde_json::json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = &a.json()["headers"];
    assert_eq!(seen["x-service-caller"], "orders", "the mapped caller");
    assert_eq!(seen["x-service-caller-roles"], "reader", "its roles");
    assert!(
        seen.get("authorization").is_none(),
        "the token never reaches the app"
    );
    assert_eq!(seen["x-caller-namespace"], "shop");
    assert_eq!(seen["x-caller-pod"], "orders-7d4b9c-x2x7q");

    // Mapped, but not allowed by the rules: a caller like any other.
    let reports = serde_json::json!({
        "sub": "system:serviceaccount:shop:reports",
        "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "reports"}},
    });
    let a = call(&side, &issuer.mint("k8s", "k8s", reports)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    let listing: serde_json::Value = serde_json::from_str(
        &get(format!("http://{}/trust", side.admin()), &[])
            .await
            .body,
    )
    .unwrap();
    let cluster = &listing["issuers"][0];
    assert_eq!(cluster["issuer"]["name"], "cluster");
    assert_eq!(cluster["issuer"]["iss"], issuer.url());
    assert_eq!(
        cluster["issuer"]["jwks_uri"],
        format!("{}/openid/v1/jwks", issuer.url())
    );
    assert_eq!(cluster["usable"], true);
    let metrics = get(format!("http://{}/metrics", side.admin()), &[])
        .await
        .body;
    assert!(
        metrics
            .contains("trustgate_trust_fetches_total{identity=\"issuer:cluster\",result=\"ok\"}"),
        "{metrics}"
    );
}

/// The real binary: its access log names the caller and the issuer that vouched for it.
#[tokio::test]
async fn the_access_log_names_the_issuer_of_a_platform_caller() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let keys = Keys::new();
    let billing = keys.make("billing");
    let dir = keys.trust_dir("trusted", &[]);
    let app = spawn_app().await;
    let conf = Conf::new("billing", &billing.private)
        .inbound(&dir, app)
        .extra(&issuer.kubernetes(""));
    let run_dir = keys.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let side = run_binary(&conf.toml(), &run_dir);
    let token = issuer.mint("k8s", "k8s", serde_json::json!({}));
    let a = get(
        format!("http://{}/orders/1", side.inbound),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let line = access_line(&side.lines, "inbound");
    assert_eq!(line["caller"], "orders", "{line}");
    assert_eq!(line["issuer"], "cluster", "{line}");
}

#[tokio::test]
async fn every_rule_of_a_kubernetes_issuer_has_its_answer() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let (side, _keys) = billing(&issuer.kubernetes(""), "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "cluster", "ok")
            >= 1)
        .await
    );
    let now = trustgate::proxy::unix_now();
    let cases = [
        (
            serde_json::json!({"iss": "https://other.example"}),
            "issuer_mismatch",
        ),
        (serde_json::json!({"iss": null}), "issuer_mismatch"),
        (serde_json::json!({"aud": ["ledger"]}), "wrong_audience"),
        (
            serde_json::json!({"aud": ["billing", "ledger"]}),
            "multiple_audiences",
        ),
        (serde_json::json!({"exp": null}), "malformed"),
        (
            serde_json::json!({"exp": now - 120, "iat": now - 700, "nbf": now - 700}),
            "expired",
        ),
        (
            serde_json::json!({"exp": now + 2 * 86400}),
            "lifetime_too_long",
        ),
        (
            serde_json::json!({"sub": "system:serviceaccount:shop:orders",
                "kubernetes.io": {"namespace": "admin", "serviceaccount": {"name": "orders"}}}),
            "subject_mismatch",
        ),
        (
            serde_json::json!({"kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "billing"}}}),
            "subject_mismatch",
        ),
        (
            serde_json::json!({"kubernetes.io": null}),
            "subject_mismatch",
        ),
        (serde_json::json!({"sub": "orders"}), "subject_mismatch"),
        (
            serde_json::json!({"sub": "system:serviceaccount:shop:intruder",
                "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "intruder"}}}),
            "unmapped_subject",
        ),
    ];
    for (claims, reason) in cases {
        let token = issuer.mint("k8s", "k8s", claims.clone());
        let a = call(&side, &token).await;
        assert_eq!(refused(&a), reason, "{claims}");
        let challenge = a.headers["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains(reason), "{challenge}");
    }
    // A key the issuer never published, and one kid not its own thumbprint kept exact.
    let a = call(
        &side,
        &issuer.mint("k8s", "unpublished", serde_json::json!({})),
    )
    .await;
    assert_eq!(refused(&a), "unknown_key");
}

#[tokio::test]
async fn unknown_kids_cost_at_most_one_fetch_per_cooldown_and_a_rotation_is_picked_up() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let (side, _keys) = billing(&issuer.kubernetes(""), "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "cluster", "ok")
            >= 1)
        .await
    );
    let before = issuer.stat("jwks");
    // A flood of random kids, signed by a key nobody published, claiming the issuer.
    let mut tokens = Vec::new();
    for n in 0..200 {
        issuer.ask(&format!("kid unpublished random-{n}"));
        tokens.push(issuer.mint("k8s", "unpublished", serde_json::json!({})));
    }
    let calls = tokens.iter().map(|t| call(&side, t));
    for a in futures_util::future::join_all(calls).await {
        assert_eq!(refused(&a), "unknown_key");
    }
    let flood = issuer.stat("jwks") - before;
    eprintln!("200 unknown kids: {flood} JWKS fetch(es)");
    assert!(flood <= 2, "{flood} fetches for 200 unknown kids");

    // The API server rotates: the new kid is fetched on first sight and trusted.
    let cooled = issuer.stat("jwks");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the 1 s cooldown
    issuer.ask("rotate");
    let a = call(&side, &issuer.mint("k8s", "k8s", serde_json::json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        issuer.stat("jwks") - cooled,
        1,
        "one fetch for the rotated key"
    );
}

#[tokio::test]
async fn without_the_bearer_token_the_keys_are_unavailable_503() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let none = issuer.kubernetes("").replace(
        &format!("bearer_token_file = \"{}\"", issuer.reader_file().display()),
        "bearer_token_file = \"\"",
    );
    let (side, _keys) = billing(&none, "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(
            &side, "cluster", "error"
        ) >= 1)
        .await
    );
    assert!(
        issuer.stat("refused") >= 1,
        "the API server refused the anonymous fetch"
    );
    let a = call(&side, &issuer.mint("k8s", "k8s", serde_json::json!({}))).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.json()["reason"], "keys_unavailable");
}

#[tokio::test]
async fn the_issuer_can_be_read_from_the_pods_own_token() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    // This pod's own token: its `iss` names the cluster, and it is what the JWKS is
    // fetched with (the API server accepts its own service-account tokens).
    let pod = issuer.dir.path().join("pod-token");
    let own = serde_json::json!({"aud": ["https://kubernetes.default.svc"],
        "sub": "system:serviceaccount:shop:billing",
        "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "billing"}}});
    std::fs::write(&pod, format!("{}\n", issuer.mint("k8s", "k8s", own))).unwrap();
    let issuers = format!(
        "[[trust.issuers]]\nname = \"cluster\"\nkind = \"kubernetes\"\nissuer = \"kubernetes:///\"\n\
         jwks_url = \"{}/openid/v1/jwks\"\nca_file = \"{}\"\nbearer_token_file = \"{}\"\n\
         callers = {{ \"shop/orders\" = \"orders\" }}\n",
        issuer.url(),
        tls_fixture("ca.crt").display(),
        pod.display(),
    );
    let (side, _keys) = billing(&issuers, "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "cluster", "ok")
            >= 1)
        .await
    );
    assert_eq!(issuer.stat("refused"), 0);
    let listing: serde_json::Value = serde_json::from_str(
        &get(format!("http://{}/trust", side.admin()), &[])
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        listing["issuers"][0]["issuer"]["iss"],
        issuer.url(),
        "read from the pod's token"
    );
    let a = call(&side, &issuer.mint("k8s", "k8s", serde_json::json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let other = serde_json::json!({"iss": "https://kubernetes.default.svc.cluster.local"});
    assert_eq!(
        refused(&call(&side, &issuer.mint("k8s", "k8s", other)).await),
        "issuer_mismatch"
    );
}

#[tokio::test]
async fn a_spiffe_bundle_trusts_jwt_svid_keys_only_and_its_trust_domain() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let issuers = format!(
        "[[trust.issuers]]\nname = \"spire\"\nkind = \"spiffe\"\ntrust_domain = \"example.org\"\n\
         jwks_url = \"{}/spiffe/bundle\"\nca_file = \"{}\"\n\
         callers = {{ \"spiffe://example.org/ns/shop/sa/orders\" = \"orders\" }}\n",
        issuer.url(),
        tls_fixture("ca.crt").display(),
    );
    let (side, _keys) = billing(&issuers, "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(&side, "spire", "ok")
            >= 1)
        .await
    );
    let a = call(
        &side,
        &issuer.mint("spiffe", "spiffe", serde_json::json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "orders");
    // The bundle's X.509-SVID key is not a token key.
    let a = call(&side, &issuer.mint("spiffe", "x509", serde_json::json!({}))).await;
    assert_eq!(refused(&a), "unknown_key");
    for (sub, reason) in [
        ("spiffe://other.org/ns/shop/sa/orders", "subject_mismatch"),
        (
            "spiffe://example.org.evil/ns/shop/sa/orders",
            "subject_mismatch",
        ),
        (
            "spiffe://example.org/ns/shop/../sa/orders",
            "subject_mismatch",
        ),
        (
            "spiffe://example.org/ns/shop/sa/intruder",
            "unmapped_subject",
        ),
    ] {
        let a = call(
            &side,
            &issuer.mint("spiffe", "spiffe", serde_json::json!({"sub": sub})),
        )
        .await;
        assert_eq!(refused(&a), reason, "{sub}");
    }
    let a = call(
        &side,
        &issuer.mint("spiffe", "spiffe", serde_json::json!({"exp": null})),
    )
    .await;
    assert_eq!(refused(&a), "malformed", "exp is required");
}

#[tokio::test]
async fn a_generic_oidc_provider_maps_its_subjects() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let issuers = format!(
        "[[trust.issuers]]\nname = \"idp\"\nkind = \"oidc\"\nissuer = \"{}/oidc\"\nca_file = \"{}\"\n\
         max_token_ttl = \"15m\"\ncallers = {{ \"client-123\" = \"reports\" }}\n",
        issuer.url(),
        tls_fixture("ca.crt").display(),
    );
    let (side, _keys) = billing(&issuers, "").await;
    assert!(eventually(Duration::from_secs(10), || fetches(&side, "idp", "ok") >= 1).await);
    let a = call(&side, &issuer.mint("oidc", "oidc", serde_json::json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "reports");
    let now = trustgate::proxy::unix_now();
    let long = serde_json::json!({"exp": now + 3600});
    assert_eq!(
        refused(&call(&side, &issuer.mint("oidc", "oidc", long)).await),
        "lifetime_too_long"
    );
    let other = serde_json::json!({"sub": "client-999"});
    assert_eq!(
        refused(&call(&side, &issuer.mint("oidc", "oidc", other)).await),
        "unmapped_subject"
    );
}

/// orders presents a projected token from a file the test rotates as the kubelet does
/// (`..data` symlink swap), while calls run: billing sees each token's caller, and no
/// call fails.
#[tokio::test]
async fn an_outbound_token_file_is_presented_and_its_rotation_is_picked_up() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let issuers = issuer.kubernetes("").replace(
        "\"shop/reports\" = \"reports\"",
        "\"shop/orders-v2\" = \"orders-v2\"",
    );
    let (billing_side, keys) = billing(&issuers, "").await;
    assert!(
        eventually(Duration::from_secs(10), || fetches(
            &billing_side,
            "cluster",
            "ok"
        ) >= 1)
        .await
    );
    let tokens = tempfile::tempdir().unwrap();
    let swap = |n: usize, token: &str| {
        let data = tokens.path().join(format!("..{n}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("billing"), token).unwrap();
        let tmp = tokens.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{n}"), &tmp).unwrap();
        std::fs::rename(&tmp, tokens.path().join("..data")).unwrap();
    };
    swap(0, &issuer.mint("k8s", "k8s", serde_json::json!({})));
    std::os::unix::fs::symlink("..data/billing", tokens.path().join("billing")).unwrap();
    let orders_key = keys.make("orders");
    let orders = Conf::new("orders", &orders_key.private)
        .route("billing", format!("http://{}", billing_side.inbound()))
        .extra(&format!(
            "token_file = \"{}\"",
            tokens.path().join("billing").display()
        ))
        .start()
        .await;
    let via_orders = || {
        get(
            format!("http://{}/orders/1", orders.outbound()),
            &[("host", "billing")],
        )
    };
    let a = via_orders().await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["headers"]["x-service-caller"], "orders");
    assert_eq!(
        orders.state.metrics.tokens_signed.get(),
        0,
        "nothing signed for this route"
    );

    // Rotate five times, alternating service accounts, calling all along.
    let v2 = serde_json::json!({
        "sub": "system:serviceaccount:shop:orders-v2",
        "kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "orders-v2"}},
    });
    let (mut calls, mut failed) = (0, 0);
    for n in 1..=5 {
        let (claims, caller) = if n % 2 == 1 {
            (v2.clone(), "orders-v2")
        } else {
            (serde_json::json!({}), "orders")
        };
        swap(n, &issuer.mint("k8s", "k8s", claims));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let a = via_orders().await;
            calls += 1;
            if a.status != StatusCode::OK {
                failed += 1;
            } else if a.json()["headers"]["x-service-caller"] == caller {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rotation {n} never presented"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("token file rotated 5 times: {calls} calls, {failed} failed");
    assert_eq!(failed, 0);
    // Read by the trust plane, counted as its reloads are.
    let reloads = |result| {
        orders
            .state
            .metrics
            .reloads
            .with_label_values(&["token_file", result])
            .get()
    };
    assert!(reloads("ok") >= 5, "{} token file reloads", reloads("ok"));
    assert_eq!(reloads("error"), 0);
}
