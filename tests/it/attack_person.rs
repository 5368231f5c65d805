//! The person as an attacker who has read the code sees it (DESIGN.md "End users"):
//! tokens from the Python OIDC provider (PyJWT), raw bytes in, what the app received
//! asserted as it arrived. One person per request; no unverified credential past the
//! sidecar, in headers or trailers; the same audience rule for people as for callers; a
//! transaction token never a caller, never outliving the person's token.
use crate::end_users::{chain, one, people, person, person_by, reason, send};
use crate::platform::Issuer;
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use support::raw::{exchange, spawn_raw_app, RawApp};
use support::*;
use trustgate::keys::GeneratedFiles;

/// A transaction token for `sub` (issuer `iss`) minted with `web`'s key.
fn txn_for(web: &GeneratedFiles, sub: &str, iss: &str) -> String {
    let signer = trustgate::token::TokenSigner::new(
        "web".into(),
        Arc::new(trustgate::keys::load_signing_key(&web.private).unwrap()),
        Duration::from_secs(60),
    );
    let mut p = trustgate::token::Person::named(sub, iss);
    let now = trustgate::proxy::unix_now();
    trustgate::token::mint_txn(
        &signer,
        &mut p,
        serde_json::Map::new(),
        "cluster.local",
        Duration::from_secs(120),
        now,
    )
    .unwrap()
}

/// orders: takes people's tokens (audience "orders") and web's transaction tokens, does
/// not mint; callers `callers` ("required" or "optional"); `issuer_extra` on the people's
/// issuer.
struct Orders {
    side: Sidecar,
    app: RawApp,
    web: GeneratedFiles,
    _keys: Keys,
}

async fn orders(issuer: &Issuer, callers: &str, issuer_extra: &str) -> Orders {
    orders_with(issuer, callers, issuer_extra, &[]).await
}

/// [`orders`], with `inbound` lines in its [inbound].
async fn orders_with(
    issuer: &Issuer,
    callers: &str,
    issuer_extra: &str,
    inbound: &[&str],
) -> Orders {
    let keys = Keys::new();
    let (web, orders) = (keys.make("web"), keys.make("orders"));
    let app = spawn_raw_app().await;
    let people = people(issuer).replace("audiences = [\"web\"]\n", "audiences = [\"orders\"]\n");
    let mut conf = Conf::new("orders", &orders.private)
        .inbound(&keys.trust_dir("orders-trusts", &[&web]), app.addr)
        .set("trust", "transaction_token_issuers = [\"web\"]");
    for line in inbound {
        conf = conf.set("inbound", *line);
    }
    let side = conf
        .extra(&format!(
            "{people}{issuer_extra}\n[inbound.users]\ncallers = \"{callers}\"\n"
        ))
        .start()
        .await;
    Orders {
        side,
        app,
        web,
        _keys: keys,
    }
}

fn for_orders(issuer: &Issuer, sub: &str) -> String {
    person(issuer, sub, serde_json::json!({"aud": "orders"}))
}

/// A sidecar that does not mint, with alice's valid token: a forged transaction token
/// beside it is 401 `txn_bad_signature`, bob's valid one is 401 `txn_subject_mismatch`
/// (never bob's token next to `x-user-subject: alice`); alice's own passes, its id the
/// transaction's.
#[tokio::test]
async fn a_request_carries_one_person() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let o = orders(&issuer, "required", "").await;
    let iss = format!("{}/people", issuer.url());
    let alice = for_orders(&issuer, "alice");
    let caller = sign_as(&o.web, "web", "orders");
    let at = |txn: &str| {
        format!(
            "GET /x HTTP/1.1\r\nhost: orders\r\nauthorization: Bearer {caller}\r\n\
             x-user-token: {alice}\r\ntxn-token: {txn}\r\n"
        )
    };
    let good = txn_for(&o.web, "alice", &iss);
    let forged = format!("{}x", &good[..good.len() - 1]);
    let r = send(o.side.inbound(), &at(&forged)).await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "txn_bad_signature"));
    let bobs = txn_for(&o.web, "bob", &iss);
    let r = send(o.side.inbound(), &at(&bobs)).await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "txn_subject_mismatch")
    );
    let elsewhere = txn_for(&o.web, "alice", "https://other.example");
    let r = send(o.side.inbound(), &at(&elsewhere)).await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "txn_subject_mismatch")
    );
    assert!(o.app.requests().is_empty(), "none reached the app");
    let r = send(o.side.inbound(), &at(&good)).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(one(&o.app, "x-user-subject"), "alice");
    assert_eq!(one(&o.app, "txn-token"), good);
    let claims = payload(&good);
    assert_eq!(
        one(&o.app, "x-transaction-id"),
        claims["txn"].as_str().unwrap()
    );
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// `txn-token` (any spelling) and the token headers as chunked trailers never reach the
/// app: at a sidecar that verifies transaction tokens, and at a minting edge.
#[tokio::test]
async fn credentials_in_trailers_stay_at_the_sidecar() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let o = orders(&issuer, "required", "").await;
    let iss = format!("{}/people", issuer.url());
    let txn = txn_for(&o.web, "alice", &iss);
    let caller = sign_as(&o.web, "web", "orders");
    let trailers = format!(
        "txn-token: {txn}\r\nTxn_Token: {txn}\r\nx-user-token: {txn}\r\nAuthorization: Bearer {caller}\r\n"
    );
    let req = format!(
        "POST /x HTTP/1.1\r\nhost: orders\r\nauthorization: Bearer {caller}\r\ntxn-token: {txn}\r\n\
         transfer-encoding: chunked\r\ntrailer: txn-token, Txn_Token, x-user-token, authorization\r\n\
         connection: close\r\n\r\n4\r\nbody\r\n0\r\n{trailers}\r\n"
    );
    let r = exchange(o.side.inbound(), req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let seen = o.app.requests();
    assert_eq!(
        seen[0].trailer_fields(),
        Vec::<(String, String)>::new(),
        "trailers reached the app"
    );

    // The minting edge: a person's token in the head, credentials in the trailers.
    let c = chain(&issuer).await;
    let alice = person(&issuer, "alice", serde_json::json!({}));
    let req = format!(
        "POST /x HTTP/1.1\r\nhost: web\r\nx-user-token: {alice}\r\n\
         transfer-encoding: chunked\r\ntrailer: txn-token, x_user_token\r\nconnection: close\r\n\r\n\
         4\r\nbody\r\n0\r\ntxn-token: {txn}\r\nx_user_token: {alice}\r\n\r\n"
    );
    let r = exchange(c.web.inbound(), req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let seen = c.apps[0].requests();
    assert_eq!(seen[0].trailer_fields(), Vec::<(String, String)>::new());
}

/// A person's token whose `aud` names other audiences too is refused like a caller's
/// (`user_multiple_audiences`), unless its issuer sets `allow_multi_audience`.
#[tokio::test]
async fn a_persons_token_for_several_audiences_is_refused_unless_allowed() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let both = person(
        &issuer,
        "alice",
        serde_json::json!({"aud": ["orders", "payments"]}),
    );
    let strict = orders(&issuer, "optional", "").await;
    let head = format!("GET /x HTTP/1.1\r\nhost: orders\r\nx-user-token: {both}\r\n");
    let r = send(strict.side.inbound(), &head).await;
    assert_eq!(
        (r.status, reason(&r).as_str()),
        (401, "user_multiple_audiences")
    );
    let open = orders(&issuer, "optional", "allow_multi_audience = true\n").await;
    let r = send(open.side.inbound(), &head).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(one(&open.app, "x-user-subject"), "alice");
}

/// `callers = "optional"` admits a person's own token without a caller; a transaction
/// token alone (however valid) is not a caller: 401 `missing`.
#[tokio::test]
async fn a_transaction_token_alone_is_not_a_caller() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let o = orders(&issuer, "optional", "").await;
    let iss = format!("{}/people", issuer.url());
    let txn = txn_for(&o.web, "alice", &iss);
    let r = send(
        o.side.inbound(),
        &format!("GET /x HTTP/1.1\r\nhost: orders\r\ntxn-token: {txn}\r\n"),
    )
    .await;
    assert_eq!((r.status, reason(&r).as_str()), (401, "missing"));
    assert!(o.app.requests().is_empty());
    let alice = for_orders(&issuer, "alice");
    let r = send(
        o.side.inbound(),
        &format!("GET /x HTTP/1.1\r\nhost: orders\r\nx-user-token: {alice}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
}

/// A transaction token minted for a person's token two seconds from expiry expires with
/// it, not `transaction_ttl` later; the app at the edge is told the person's `iss`.
#[tokio::test]
async fn a_minted_transaction_token_never_outlives_the_persons() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let c = chain(&issuer).await;
    let now = trustgate::proxy::unix_now();
    let short = person_by(
        &issuer,
        "people-ec",
        "alice",
        serde_json::json!({"iat": now - 10, "exp": now + 2}),
    );
    let r = send(
        c.web.inbound(),
        &format!("GET /x HTTP/1.1\r\nhost: web\r\nx-user-token: {short}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let minted = payload(&one(&c.apps[0], "txn-token"));
    assert!(
        minted["exp"].as_u64().unwrap() <= now + 2,
        "minted {minted} for a token expiring at {}",
        now + 2
    );
    assert_eq!(
        one(&c.apps[0], "x-user-issuer"),
        format!("{}/people", issuer.url())
    );
}

/// `explain --user-token` at an edge that takes the person's token in `Authorization`
/// sends it as a client would (`Bearer`), and says the person is valid.
#[tokio::test]
async fn explain_takes_the_persons_token_as_authorization_carries_it() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let keys = Keys::new();
    let web = keys.make("web");
    let text = Conf::new("web", &web.private)
        .inbound(&keys.trust_dir("web-trusts", &[]), "127.0.0.1:9")
        .set("inbound", "token_header = \"x-service-token\"")
        .extra(&format!(
            "{}[inbound.users]\ntoken_header = \"authorization\"\ncallers = \"optional\"\n",
            people(&issuer)
        ))
        .toml();
    let config = keys.path().join("web.toml");
    std::fs::write(&config, text).unwrap();
    let alice = person(&issuer, "alice", serde_json::json!({}));
    let (code, out, err) = crate::policy::explain(&config, &["--user-token", &alice, "GET", "/me"]);
    assert!(!out.contains("user_malformed"), "{out}{err}");
    assert!(out.contains("alice"), "{out}{err}");
    assert_eq!(code, 0, "{out}{err}");
}

/// Where nothing verified a person's token — audit mode forwarding a refusal (expired,
/// wrong audience, or valid beside a garbage service token), a public path of an
/// enforcing edge — it stays at the sidecar, as the caller's token and `txn-token` do.
#[tokio::test]
async fn a_persons_token_never_passes_unverified() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let now = trustgate::proxy::unix_now();
    let alice = for_orders(&issuer, "alice");
    let expired = person(
        &issuer,
        "alice",
        serde_json::json!({"aud": "orders", "iat": now - 400, "nbf": now - 400, "exp": now - 100}),
    );
    let elsewhere = person(&issuer, "alice", serde_json::json!({"aud": "billing"}));
    let audit = orders_with(&issuer, "optional", "", &["mode = \"audit\""]).await;
    for (person, service) in [
        (&expired, None),
        (&elsewhere, None),
        (&alice, Some("garbage.service.token")),
    ] {
        audit.app.clear();
        let service = service.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let r = send(
            audit.side.inbound(),
            &format!("GET /x HTTP/1.1\r\nhost: orders\r\nx-user-token: {person}\r\n{service}"),
        )
        .await;
        assert_eq!(r.status, 200, "audit forwards: {}", r.body_text());
        let head = audit.app.requests()[0].head_text().to_ascii_lowercase();
        assert!(!head.contains("x-user-token"), "{head}");
        assert!(!head.contains("authorization"), "{head}");
        assert!(
            !head.contains("x-user-subject"),
            "audit forwards without identity: {head}"
        );
    }
    let public = orders_with(&issuer, "optional", "", &["public_paths = [\"/healthz\"]"]).await;
    let caller = sign_as(&public.web, "web", "orders");
    let r = send(
        public.side.inbound(),
        &format!(
            "POST /healthz HTTP/1.1\r\nhost: orders\r\ncontent-length: 0\r\n\
             authorization: Bearer {caller}\r\nx-user-token: {alice}\r\nX_User_Token: {alice}\r\n"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let head = public.app.requests()[0].head_text().to_ascii_lowercase();
    for gone in [
        "x-user-token",
        "x_user_token",
        "authorization",
        &alice.to_ascii_lowercase(),
    ] {
        assert!(!head.contains(gone), "{gone} reached the app: {head}");
    }
}

/// A person's token is verified once and then answered from the cache — which never
/// outlives the keyring generation (the issuer's key revoked: refused as soon as the
/// reload lands, then every time) nor the token (refused once `exp` and the leeway have
/// passed, exactly as without a cache).
#[tokio::test]
async fn a_cached_person_is_refused_when_revoked_or_expired() {
    let Some(issuer) = Issuer::start() else {
        return;
    };
    let keys = Keys::new();
    let orders = keys.make("orders");
    let app = spawn_raw_app().await;
    let revoked = keys.path().join("revoked");
    std::fs::write(&revoked, "# none\n").unwrap();
    let people = people(&issuer).replace("audiences = [\"web\"]\n", "audiences = [\"orders\"]\n");
    let side = Conf::new("orders", &orders.private)
        .inbound(&keys.trust_dir("orders-trusts", &[]), app.addr)
        .set("trust", format!("revoked = \"{}\"", revoked.display()))
        .set("trust", "leeway = \"1s\"")
        .extra(&format!(
            "{people}[inbound.users]\ncallers = \"optional\"\n"
        ))
        .start()
        .await;
    let ask = |token: String| {
        let to = side.inbound();
        async move {
            send(
                to,
                &format!("GET /x HTTP/1.1\r\nhost: orders\r\nx-user-token: {token}\r\n"),
            )
            .await
        }
    };
    // Expiry: a token with two seconds left, asked again and again.
    let now = trustgate::proxy::unix_now();
    let short = person(
        &issuer,
        "alice",
        serde_json::json!({"aud": "orders", "iat": now, "exp": now + 2}),
    );
    assert_eq!(ask(short.clone()).await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused_at = loop {
        let r = ask(short.clone()).await;
        if r.status == 401 {
            assert_eq!(reason(&r), "user_expired");
            break trustgate::proxy::unix_now();
        }
        assert!(std::time::Instant::now() < deadline, "still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        refused_at <= now + 2 + 1 + 1,
        "refused at {refused_at}, exp {} + leeway 1 s",
        now + 2
    );

    // Revocation: a token served (and cached), then its key revoked.
    let alice = for_orders(&issuer, "alice");
    for _ in 0..3 {
        assert_eq!(ask(alice.clone()).await.status, 200);
    }
    std::fs::write(&revoked, "people-ec-1\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = ask(alice.clone()).await;
        if r.status == 401 {
            assert_eq!(reason(&r), "user_revoked");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cached person outlived the revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        assert_eq!(reason(&ask(alice.clone()).await), "user_revoked");
    }
}
