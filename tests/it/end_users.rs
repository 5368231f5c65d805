//! The person behind the call (DESIGN.md "End users"), against an OIDC provider we did
//! not write (the Python issuer: PyJWT and `cryptography`, discovery and JWKS over TLS):
//! web (the edge) verifies the person's token and mints a transaction token, orders and
//! billing downstream verify it; what each app received is asserted as it arrived, and
//! every refusal with its reason.
use crate::platform::Issuer;
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::raw::{exchange, spawn_raw_app, RawApp, RawResponse};
use support::*;
use trustgate::keys::GeneratedFiles;

/// The people's issuer, trusted by web for audience "web".
pub(crate) fn people(issuer: &Issuer) -> String {
    format!(
        "[[trust.issuers]]\nname = \"people\"\nkind = \"oidc\"\nusers = true\nissuer = \"{}/people\"\n\
         ca_file = \"{}\"\naudiences = [\"web\"]\n",
        issuer.url(),
        tls_fixture("ca.crt").display()
    )
}

pub(crate) struct Chain {
    pub(crate) web: Sidecar,
    pub(crate) orders: Sidecar,
    billing: Sidecar,
    pub(crate) apps: [RawApp; 3],
    _keys: Keys,
    pub(crate) web_config: std::path::PathBuf,
    billing_config: std::path::PathBuf,
    pub(crate) web_key: GeneratedFiles,
    orders_key: GeneratedFiles,
    billing_key: GeneratedFiles,
}

/// web (edge: people's tokens, callers optional, mints) → orders → billing, each with
/// its raw app. orders and billing accept web's transaction tokens; billing requires a
/// person and has rules on the person.
pub(crate) async fn chain(issuer: &Issuer) -> Chain {
    let keys = Keys::new();
    let (web_key, orders_key, billing_key) =
        (keys.make("web"), keys.make("orders"), keys.make("billing"));
    let apps = [
        spawn_raw_app().await,
        spawn_raw_app().await,
        spawn_raw_app().await,
    ];
    let billing_conf = Conf::new("billing", &billing_key.private)
        .inbound(&keys.trust_dir("billing-trusts", &[&orders_key, &web_key]), apps[2].addr)
        .set("trust", "transaction_token_issuers = [\"web\"]")
        .extra(
            "[inbound.users]\nmode = \"required\"\n\
             [inbound.users.context_headers]\n\"x-tenant\" = \"tenant\"\n\
             [[inbound.allow]]\nname = \"acme-people\"\ncallers = [\"orders\"]\nusers = [\"*\"]\ncontext = { tenant = \"acme\" }\n\
             [[inbound.deny]]\nname = \"not-bob\"\nusers = [\"bob\"]\n",
        )
        .toml();
    let billing_config = keys.path().join("billing.toml");
    std::fs::write(&billing_config, &billing_conf).unwrap();
    let billing = Sidecar::start(&billing_conf).await;
    let orders = Conf::new("orders", &orders_key.private)
        .inbound(&keys.trust_dir("orders-trusts", &[&web_key]), apps[1].addr)
        .set("trust", "transaction_token_issuers = [\"web\"]")
        .route("billing", format!("http://{}", billing.inbound()))
        .start()
        .await;
    let web = Conf::new("web", &web_key.private)
        .inbound(&keys.trust_dir("web-trusts", &[]), apps[0].addr)
        .route("orders", format!("http://{}", orders.inbound()))
        .extra(&format!(
            "{}[inbound.users]\ncallers = \"optional\"\nmint_transaction_token = true\n\
             context = {{ tenant = \"/tenant\", email = \"/email\" }}\n\
             [inbound.users.context_headers]\n\"x-tenant\" = \"tenant\"\n",
            people(issuer)
        ))
        .toml();
    let web_config = keys.path().join("web.toml");
    std::fs::write(&web_config, &web).unwrap();
    let web = Sidecar::start(&web).await;
    Chain {
        web_config,
        web,
        orders,
        billing,
        apps,
        _keys: keys,
        billing_config,
        web_key,
        orders_key,
        billing_key,
    }
}

/// A person's token from the provider (ES256), for web.
pub(crate) fn person(issuer: &Issuer, sub: &str, extra: serde_json::Value) -> String {
    person_by(issuer, "people-ec", sub, extra)
}

/// A person's token signed by the provider's key `signer` (`people-ec`, `people-rsa`).
pub(crate) fn person_by(
    issuer: &Issuer,
    signer: &str,
    sub: &str,
    extra: serde_json::Value,
) -> String {
    let mut claims = serde_json::json!({"iss": format!("{}/people", issuer.url()), "sub": sub,
        "aud": "web", "tenant": "acme", "email": format!("{sub}@example.com"),
        "scope": "orders:read"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer.mint("oidc", signer, claims)
}

pub(crate) async fn send(to: std::net::SocketAddr, head: &str) -> RawResponse {
    let req = format!("{head}connection: close\r\n\r\n");
    exchange(to, req.as_bytes()).await.expect("an answer")
}

pub(crate) fn reason(r: &RawResponse) -> String {
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    json["reason"].as_str().unwrap_or_default().to_owned()
}

/// The one header an app received under `name` (asserting there is exactly one).
pub(crate) fn one(app: &RawApp, name: &str) -> String {
    let seen = app.requests();
    let values = seen.last().expect("the app got the request").values(name);
    assert_eq!(
        values.len(),
        1,
        "{name}: {values:?}\n{}",
        seen.last().unwrap().head_text()
    );
    values[0].clone()
}

#[tokio::test]
async fn a_person_verified_at_the_edge_is_known_two_hops_later() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let c = chain(&issuer).await;
    let alice = person(&issuer, "alice", serde_json::json!({}));
    // Spoofed person headers in every spelling, at the edge.
    let spoof = "X-User-Subject: mallory\r\nx_user_subject: mallory\r\nX_USER_ISSUER: evil\r\n\
                 x-transaction-id: forged\r\nX-Tenant: evil\r\ntxn_token: forged\r\n";
    let r = send(
        c.web.inbound(),
        &format!("GET /profile HTTP/1.1\r\nhost: web\r\nx-user-token: {alice}\r\n{spoof}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let web_app = &c.apps[0];
    assert_eq!(one(web_app, "x-user-subject"), "alice");
    // The person's `iss`, as every later hop says it (an app can compare them).
    let people_iss = format!("{}/people", issuer.url());
    assert_eq!(one(web_app, "x-user-issuer"), people_iss);
    assert_eq!(one(web_app, "x-tenant"), "acme");
    let txn_id = one(web_app, "x-transaction-id");
    let txn = one(web_app, "txn-token");
    let seen = web_app.requests();
    let head = seen.last().unwrap().head_text().to_ascii_lowercase();
    assert!(
        !head.contains("x-user-token"),
        "the person's token never reaches the app:\n{head}"
    );
    assert!(
        !head.contains("mallory") && !head.contains("evil") && !head.contains("forged"),
        "{head}"
    );
    assert!(
        !head.contains("x-service-caller"),
        "no caller at the edge:\n{head}"
    );
    assert_ne!(txn, alice);

    // web's app calls orders as it calls anyone, passing the transaction token on.
    let r = send(
        c.web.outbound(),
        &format!("GET /orders/7 HTTP/1.1\r\nhost: orders\r\ntxn-token: {txn}\r\nx-user-subject: mallory\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let orders_app = &c.apps[1];
    assert_eq!(one(orders_app, "x-service-caller"), "web");
    assert_eq!(one(orders_app, "x-user-subject"), "alice");
    // Downstream the issuer is the person's own (rctx.user_iss), as at the edge.
    assert_eq!(one(orders_app, "x-user-issuer"), people_iss);
    assert_eq!(one(orders_app, "x-transaction-id"), txn_id);
    assert_eq!(one(orders_app, "txn-token"), txn, "passed on unchanged");

    // And orders' app calls billing: two hops after the edge.
    let r = send(
        c.orders.outbound(),
        &format!(
            "POST /invoices HTTP/1.1\r\nhost: billing\r\ncontent-length: 0\r\ntxn-token: {txn}\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let billing_app = &c.apps[2];
    assert_eq!(one(billing_app, "x-service-caller"), "orders");
    assert_eq!(one(billing_app, "x-user-subject"), "alice");
    assert_eq!(one(billing_app, "x-transaction-id"), txn_id);
    assert_eq!(one(billing_app, "x-tenant"), "acme");

    // explain at the edge, with the person's token: verified, and a transaction minted.
    let (code, out, err) =
        crate::policy::explain(&c.web_config, &["--user-token", &alice, "GET", "/profile"]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "token: none — [inbound.users] callers = \"optional\"",
        "person: alice of people (from their own token, transaction ",
        "x-user-subject: alice",
        "txn-token: <a transaction token>",
        "answer: forwarded to",
    ] {
        assert!(out.contains(line), "missing «{line}» in:\n{out}");
    }
    assert!(!out.contains(&alice), "the person's token is never printed");

    // explain, asked about the same request at billing: the person and the rules on them.
    let orders_call = sign_as(&c.orders_key, "orders", "billing");
    let (code, out, err) = crate::policy::explain(
        &c.billing_config,
        &[
            "--token",
            &orders_call,
            "--txn-token",
            &txn,
            "POST",
            "/invoices",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let person_line = format!(
        "person: alice of {people_iss} (from a transaction token minted by web, transaction "
    );
    for line in [
        "token: valid — caller orders",
        &person_line,
        "deny rule \"not-bob\": no match — user alice is not in [\"bob\"]",
        "allow rule \"acme-people\": match",
        "x-user-subject: alice",
        "x-tenant: acme",
        "answer: forwarded to",
    ] {
        assert!(out.contains(line), "missing «{line}» in:\n{out}");
    }
    eprintln!("explain at billing:\n{out}");

    // Counted: minted at the edge, verified at each hop after it.
    let count = |s: &Sidecar, action: &str| {
        s.state
            .metrics
            .transaction_tokens
            .with_label_values(&[action, "ok"])
            .get()
    };
    assert_eq!(count(&c.web, "minted"), 1);
    assert_eq!(
        (count(&c.orders, "verified"), count(&c.billing, "verified")),
        (1, 1)
    );
    assert_eq!(
        c.web
            .state
            .metrics
            .user_tokens
            .with_label_values(&["valid"])
            .get(),
        1
    );

    // The rules on the person at billing: bob is denied, a person of another tenant too.
    let bob = person(&issuer, "bob", serde_json::json!({}));
    let globex = person(&issuer, "carol", serde_json::json!({"tenant": "globex"}));
    for (who, token) in [("bob", bob), ("carol of globex", globex)] {
        let r = send(
            c.web.inbound(),
            &format!("GET / HTTP/1.1\r\nhost: web\r\nx-user-token: {token}\r\n"),
        )
        .await;
        assert_eq!(r.status, 200, "{who}");
        let txn = one(&c.apps[0], "txn-token");
        let r = send(
            c.orders.outbound(),
            &format!("GET /x HTTP/1.1\r\nhost: billing\r\ntxn-token: {txn}\r\n"),
        )
        .await;
        assert_eq!((r.status, reason(&r).as_str()), (403, "policy"), "{who}");
    }
    drop(c);
}

/// Every refusal of a person's token and of a transaction token, with its reason.
#[tokio::test]
async fn every_user_and_txn_refusal_has_its_reason() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let c = chain(&issuer).await;
    let now = trustgate::proxy::unix_now();
    let at_web = |token: String| {
        let to = c.web.inbound();
        async move {
            send(
                to,
                &format!("GET / HTTP/1.1\r\nhost: web\r\nx-user-token: {token}\r\n"),
            )
            .await
        }
    };
    let alice = person(&issuer, "alice", serde_json::json!({}));
    let cases = [
        (
            person(
                &issuer,
                "alice",
                serde_json::json!({"exp": now - 100, "iat": now - 400, "nbf": now - 400}),
            ),
            "user_expired",
        ),
        (
            person(&issuer, "alice", serde_json::json!({"aud": "billing"})),
            "user_wrong_audience",
        ),
        (
            person(
                &issuer,
                "alice",
                serde_json::json!({"iss": "https://other.example/oidc"}),
            ),
            "user_issuer_mismatch",
        ),
        (format!("{alice}x"), "user_bad_signature"),
        ("not-a-jwt".to_owned(), "user_malformed"),
        // A subject the app would read otherwise than the rules: trimmed, or as a list.
        (
            person(&issuer, " alice", serde_json::json!({})),
            "user_malformed",
        ),
        (
            person(&issuer, "alice,admin", serde_json::json!({})),
            "user_malformed",
        ),
    ];
    for (token, want) in cases {
        let r = at_web(token).await;
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (401, want),
            "{}",
            r.body_text()
        );
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains(want), "{challenge}");
    }
    // A caller's token is not a person's: signed by web's own key, a peer's kid.
    let service = sign_as(&c.web_key, "web", "web");
    let r = at_web(service.clone()).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "user_unknown_key"));
    // Neither a caller nor a person: refused missing.
    let r = send(c.web.inbound(), "GET / HTTP/1.1\r\nhost: web\r\n").await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "missing"));
    assert!(
        c.apps[0].requests().is_empty(),
        "nothing refused reached web's app"
    );

    // Downstream, at orders (straight to its inbound, with web's service token).
    let web_signer = trustgate::token::TokenSigner::new(
        "web".into(),
        Arc::new(trustgate::keys::load_signing_key(&c.web_key.private).unwrap()),
        Duration::from_secs(60),
    );
    let billing_signer = trustgate::token::TokenSigner::new(
        "billing".into(),
        Arc::new(trustgate::keys::load_signing_key(&c.billing_key.private).unwrap()),
        Duration::from_secs(60),
    );
    let txn_of = |signer: &trustgate::token::TokenSigner, domain: &str, ttl: u64, at: u64| {
        let mut p = trustgate::token::Person::named("alice", "people");
        trustgate::token::mint_txn(
            signer,
            &mut p,
            serde_json::Map::new(),
            domain,
            Duration::from_secs(ttl),
            at,
        )
        .unwrap()
    };
    let good = txn_of(&web_signer, "cluster.local", 300, now);
    let call = sign_as(&c.web_key, "web", "orders");
    let at_orders = |txn: String, service: String| {
        let to = c.orders.inbound();
        async move {
            send(to, &format!("GET / HTTP/1.1\r\nhost: orders\r\nauthorization: Bearer {service}\r\ntxn-token: {txn}\r\n")).await
        }
    };
    let r = at_orders(good.clone(), call.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let txn_cases = [
        (
            txn_of(&web_signer, "cluster.local", 300, now - 1000),
            "txn_expired",
            "replayed after expiry",
        ),
        (format!("{good}x"), "txn_bad_signature", "forged"),
        (
            txn_of(&web_signer, "other.domain", 300, now),
            "txn_wrong_audience",
            "another trust domain",
        ),
        (
            txn_of(&web_signer, "cluster.local", 3600, now),
            "txn_lifetime_too_long",
            "past max_transaction_ttl",
        ),
        (
            txn_of(&billing_signer, "cluster.local", 300, now),
            "txn_unknown_key",
            "minted with a key not trusted here",
        ),
        (
            call.clone(),
            "txn_wrong_type",
            "a service token as a transaction token",
        ),
        (
            alice.clone(),
            "txn_wrong_type",
            "a person's token as a transaction token",
        ),
    ];
    for (txn, want, what) in txn_cases {
        let r = at_orders(txn, call.clone()).await;
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (401, want),
            "{what}: {}",
            r.body_text()
        );
    }
    // The reverse: a transaction token as the service token.
    let r = at_orders(good.clone(), good.clone()).await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "malformed"),
        "a transaction token as a call's"
    );

    // At billing, which trusts orders' key for calls but lists only web as a minter.
    let orders_signer = trustgate::token::TokenSigner::new(
        "orders".into(),
        Arc::new(trustgate::keys::load_signing_key(&c.orders_key.private).unwrap()),
        Duration::from_secs(60),
    );
    let by_orders = txn_of(&orders_signer, "cluster.local", 300, now);
    let r = send(
        c.orders.outbound(),
        &format!("GET /x HTTP/1.1\r\nhost: billing\r\ntxn-token: {by_orders}\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "txn_untrusted_issuer")
    );

    // billing requires a person: a call without a transaction token is refused.
    let r = send(c.orders.outbound(), "GET /x HTTP/1.1\r\nhost: billing\r\n").await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "user_token_required")
    );

    // The edge lists no minter: an arriving transaction token is replaced by the one it
    // mints, never passed on beside it.
    let r = send(
        c.web.inbound(),
        &format!("GET / HTTP/1.1\r\nhost: web\r\nx-user-token: {alice}\r\ntxn-token: {good}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_ne!(one(&c.apps[0], "txn-token"), good);
    let metrics = &c.orders.state.metrics;
    assert!(
        metrics
            .transaction_tokens
            .with_label_values(&["verified", "txn_expired"])
            .get()
            >= 1
    );
}

/// A service that lists no minter never lets a transaction token reach its app, in any
/// spelling, nor a person's headers — headers and trailers.
#[tokio::test]
async fn without_a_minter_listed_no_person_reaches_the_app() {
    let t = support::attack::target("", "").await;
    let fields = "txn-token: a.b.c\r\nTXN_TOKEN: a.b.c\r\nx-user-subject: mallory\r\n\
                  X_User_Issuer: evil\r\nx-transaction-id: 1\r\n";
    let r = exchange(t.inbound(), &t.get("/invoices/1", fields))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let head = t.app.requests()[0].head_text().to_ascii_lowercase();
    for gone in [
        "txn",
        "x-user",
        "x_user",
        "x-transaction",
        "mallory",
        "evil",
    ] {
        assert!(!head.contains(gone), "{gone} reached the app:\n{head}");
    }
    t.app.clear();
    let req = format!(
        "POST /invoices/2 HTTP/1.1\r\nhost: billing\r\nauthorization: Bearer {}\r\n\
         transfer-encoding: chunked\r\ntrailer: x-user-subject, x_transaction_id\r\n\r\n\
         4\r\nbody\r\n0\r\nx-user-subject: mallory\r\nx_transaction_id: 1\r\n\r\n",
        t.token()
    );
    let r = exchange(t.inbound(), req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        t.app.requests()[0].trailer_fields().is_empty(),
        "person trailers removed"
    );

    // And over HTTP/2.
    t.app.clear();
    let io =
        hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(t.inbound()).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://billing/invoices/3")
        .header("authorization", format!("Bearer {}", t.token()))
        .header("txn-token", "a.b.c")
        .header("x_user_subject", "mallory")
        .header("x-transaction-id", "1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    let head = t.app.requests()[0].head_text().to_ascii_lowercase();
    for gone in ["txn", "x_user", "x-transaction", "mallory"] {
        assert!(
            !head.contains(gone),
            "{gone} reached the app over HTTP/2:\n{head}"
        );
    }
}

/// Transaction tokens made by another JOSE library (jwcrypto), with web's key: verified
/// at orders as trustgate's own are; the same token typed `JWT` is not one.
#[tokio::test]
async fn transaction_tokens_made_by_jwcrypto_are_verified() {
    if !have_tool(
        "python3",
        &["-c", "import jwcrypto"],
        "pip install jwcrypto",
    ) {
        return;
    }
    let keys = Keys::new();
    let (web, orders) = (keys.make("web"), keys.make("orders"));
    let app = spawn_raw_app().await;
    let side = Conf::new("orders", &orders.private)
        .inbound(&keys.trust_dir("orders-trusts", &[&web]), app.addr)
        .set("trust", "transaction_token_issuers = [\"web\"]")
        .start()
        .await;
    let script = r#"
import json, sys, time
from jwcrypto import jwk, jwt
key = jwk.JWK.from_pem(open(sys.argv[1], "rb").read())
now = int(time.time())
claims = {"iss": "web", "aud": "cluster.local", "iat": now, "exp": now + 120,
          "txn": "jwcrypto-txn-1", "sub": "alice", "tctx": {"tenant": "acme"},
          "rctx": {"req_wl": "web", "user_iss": "people"}}
for typ in sys.argv[3:]:
    t = jwt.JWT(header={"alg": "ES256", "typ": typ, "kid": sys.argv[2]}, claims=claims)
    t.make_signed_token(key)
    print(t.serialize())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&web.private)
        .arg(&web.kid)
        .args(["txntoken+jwt", "JWT"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let call = sign_as(&web, "web", "orders");
    let at = |txn: &str| {
        format!("GET / HTTP/1.1\r\nhost: orders\r\nauthorization: Bearer {call}\r\ntxn-token: {txn}\r\n")
    };
    let r = send(side.inbound(), &at(&tokens[0])).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(one(&app, "x-user-subject"), "alice");
    assert_eq!(one(&app, "x-transaction-id"), "jwcrypto-txn-1");
    let r = send(side.inbound(), &at(&tokens[1])).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "txn_wrong_type"));
}

/// An edge called by browsers: the person's token arrives in `Authorization` (the
/// service token's header moved), and never reaches the app.
#[tokio::test]
async fn an_edge_takes_the_persons_token_in_authorization() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let keys = Keys::new();
    let web = keys.make("web");
    let app = spawn_raw_app().await;
    let side = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("web-trusts", &[]), app.addr)
        .set("inbound", "token_header = \"x-service-token\"")
        .extra(&format!(
            "{}[inbound.users]\ntoken_header = \"authorization\"\ncallers = \"optional\"\n\
             context = {{ tenant = \"/tenant\" }}\n[inbound.users.context_headers]\n\"x-tenant\" = \"tenant\"\n",
            people(&issuer)
        ))
        .start()
        .await;
    // RS256 this time (the provider publishes an RSA key beside its P-256 one).
    let alice = person_by(&issuer, "people-rsa", "alice", serde_json::json!({}));
    let r = send(
        side.inbound(),
        &format!("GET /me HTTP/1.1\r\nhost: web\r\nauthorization: Bearer {alice}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(one(&app, "x-user-subject"), "alice");
    let head = app.requests()[0].head_text().to_ascii_lowercase();
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains("txn-token"), "not minting here: {head}");
    assert_eq!(
        one(&app, "x-tenant"),
        "acme",
        "context headers without minting too"
    );
    let r = send(
        side.inbound(),
        "GET /me HTTP/1.1\r\nhost: web\r\nauthorization: Bearer x.y.z\r\n",
    )
    .await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "user_malformed"));
}

/// The access log of the real binary names the person and the transaction; a person's
/// token forwarded where `forward_user_token` says so.
#[tokio::test]
async fn the_access_log_names_user_and_txn_and_forwarding_is_explicit() {
    let keys = Keys::new();
    let (web, orders) = (keys.make("web"), keys.make("orders"));
    let app = spawn_raw_app().await;
    let text = Conf::new("orders", &orders.private)
        .inbound(&keys.trust_dir("orders-trusts", &[&web]), app.addr)
        .set("trust", "transaction_token_issuers = [\"web\"]")
        .toml();
    let dir = keys.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let run = run_binary(&text, &dir);
    let signer = trustgate::token::TokenSigner::new(
        "web".into(),
        Arc::new(trustgate::keys::load_signing_key(&web.private).unwrap()),
        Duration::from_secs(60),
    );
    let mut alice = trustgate::token::Person::named("alice", "people");
    let now = trustgate::proxy::unix_now();
    let txn = trustgate::token::mint_txn(
        &signer,
        &mut alice,
        serde_json::Map::new(),
        "cluster.local",
        Duration::from_secs(120),
        now,
    )
    .unwrap();
    let call = sign_as(&web, "web", "orders");
    let r = send(
        run.inbound.parse().unwrap(),
        &format!("GET /x HTTP/1.1\r\nhost: orders\r\nauthorization: Bearer {call}\r\ntxn-token: {txn}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let line = access_line(&run.lines, "inbound");
    assert_eq!(line["caller"], "web");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["txn"], alice.txn.as_deref().unwrap());
    assert!(
        !line.to_string().contains(&txn),
        "the token is never logged"
    );

    // forward_user_token: the person's token reaches the app too.
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let app2 = spawn_raw_app().await;
    let side = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("web-trusts", &[]), app2.addr)
        .extra(&format!(
            "{}[inbound.users]\ncallers = \"optional\"\nforward_user_token = true\n",
            people(&issuer)
        ))
        .start()
        .await;
    let token = person(&issuer, "alice", serde_json::json!({}));
    let r = send(
        side.inbound(),
        &format!("GET / HTTP/1.1\r\nhost: web\r\nx-user-token: {token}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(one(&app2, "x-user-token"), token);
    assert_eq!(one(&app2, "x-user-subject"), "alice");
}

/// A user issuer whose keys cannot be fetched: its people get 503 keys_unavailable, not
/// 401 — they did nothing wrong (as for every issuer).
#[tokio::test]
async fn a_user_issuer_down_is_keys_unavailable() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let keys = Keys::new();
    let web = keys.make("web");
    let app = spawn_raw_app().await;
    let down = format!("https://localhost:{}/people", free_port());
    let side = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("web-trusts", &[]), app.addr)
        .extra(&format!(
            "[[trust.issuers]]\nname = \"people\"\nkind = \"oidc\"\nusers = true\nissuer = \"{down}\"\n\
             ca_file = \"{}\"\naudiences = [\"web\"]\n[inbound.users]\ncallers = \"optional\"\n",
            tls_fixture("ca.crt").display()
        ))
        .start()
        .await;
    let token = person(&issuer, "alice", serde_json::json!({ "iss": down }));
    let r = send(
        side.inbound(),
        &format!("GET / HTTP/1.1\r\nhost: web\r\nx-user-token: {token}\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (503, "keys_unavailable"),
        "{}",
        r.body_text()
    );
    assert!(r.header("retry-after").is_some());
    assert!(app.requests().is_empty());
}

/// Two sources, one kid: the people's provider publishes the kid of a caller's own key
/// file. Each token is looked up by its source (its `iss`): the caller's token stays the
/// caller's, the person's stays the person's, and neither passes as the other.
#[tokio::test]
async fn a_kid_shared_by_a_caller_and_the_people_provider_stays_each_ones() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let keys = Keys::new();
    let (web, orders) = (keys.make("web"), keys.make("orders"));
    assert_eq!(issuer.ask(&format!("kid people-ec {}", orders.kid)), "ok");
    let app = spawn_raw_app().await;
    let side = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("web-trusts", &[&orders]), app.addr)
        .extra(&format!("{}[inbound.users]\n", people(&issuer)))
        .start()
        .await;
    // (Possibly before the provider's first fetch: the kid then names orders' key only,
    // and the person's token must fetch the provider, not be checked against it.)
    let call = sign_as(&orders, "orders", "web");
    let alice = person(&issuer, "alice", serde_json::json!({}));
    let at = |service: &str, user: &str| {
        format!("GET / HTTP/1.1\r\nhost: web\r\nauthorization: Bearer {service}\r\nx-user-token: {user}\r\n")
    };
    let r = send(side.inbound(), &at(&call, &alice)).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(one(&app, "x-service-caller"), "orders");
    assert_eq!(one(&app, "x-user-subject"), "alice");
    // The person's token as the caller's: the provider's key signs no caller's token.
    let r = send(
        side.inbound(),
        &format!("GET / HTTP/1.1\r\nhost: web\r\nauthorization: Bearer {alice}\r\n"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body_text());
    // The caller's token as the person's: orders' own key vouches for no person.
    let r = send(side.inbound(), &at(&call, &call)).await;
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert!(reason(&r).starts_with("user_"), "{}", r.body_text());
}
