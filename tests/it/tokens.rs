//! Token signing and verification: every rejection reason, and every RFC 8725 §2 attack
//! that applies to trustgate, proven with real keys and real signatures.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use trustgate::keys::{self, KeyAlg, Keyring, SigningKey, Speaks, TrustedKey};
use trustgate::token::{
    verify, OutboundTokenCache, Rejection, ReplayCache, TokenSigner, VerifiedCache, VerifyPolicy,
    MAX_TOKEN_BYTES,
};

const NOW: u64 = 1_900_000_000;

struct World {
    orders: Arc<SigningKey>,
    rsa: Arc<SigningKey>,
    ed: Arc<SigningKey>,
    mallory: Arc<SigningKey>,
    shared: Arc<SigningKey>,
    ring: Keyring,
}

fn trusted(identity: Option<&str>, key: &SigningKey) -> TrustedKey {
    TrustedKey {
        speaks: identity.map_or(Speaks::Anyone, |i| Speaks::Identity(i.to_owned())),
        key: key.verifying_key().clone(),
        source: "test".into(),
    }
}

fn shared_key() -> SigningKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("join.key");
    std::fs::write(
        &path,
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    )
    .unwrap();
    keys::load_shared_key(&path).unwrap()
}

fn world() -> World {
    let orders = Arc::new(keys::generate(KeyAlg::Es256).unwrap());
    let rsa = Arc::new(keys::generate(KeyAlg::Rs256).unwrap());
    let ed = Arc::new(keys::generate(KeyAlg::EdDsa).unwrap());
    let mallory = Arc::new(keys::generate(KeyAlg::Es256).unwrap());
    let shared = Arc::new(shared_key());
    let ring = Keyring::new(
        vec![
            trusted(Some("orders"), &orders),
            trusted(Some("search"), &rsa),
            trusted(Some("payments"), &ed),
            trusted(None, &shared),
        ],
        Default::default(),
        vec![],
    );
    World {
        orders,
        rsa,
        ed,
        mallory,
        shared,
        ring,
    }
}

fn policy() -> VerifyPolicy {
    VerifyPolicy::new("billing".into())
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with any header and claims, signed by `key` (or with the given raw signature).
fn craft(header: Value, claims: Value, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims(iss: &str) -> Value {
    json!({"iss": iss, "sub": iss, "aud": "billing", "iat": NOW, "exp": NOW + 60, "jti": "j1"})
}

fn header(key: &SigningKey) -> Value {
    json!({"alg": key.alg.as_str(), "typ": "JWT", "kid": key.kid})
}

fn hmac(secret: &[u8], input: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&k, input.as_bytes()))
}

fn reject(w: &World, token: &str) -> Rejection {
    verify(token, &w.ring, &policy(), NOW).unwrap_err()
}

#[test]
fn round_trip_for_every_algorithm() {
    let w = world();
    for (identity, key) in [
        ("orders", &w.orders),
        ("search", &w.rsa),
        ("payments", &w.ed),
        ("anyone", &w.shared),
    ] {
        let signer = TokenSigner::new(identity.into(), key.clone(), Duration::from_secs(60));
        let mut ctx = BTreeMap::new();
        ctx.insert("x-user-id".to_string(), "42".to_string());
        let token = signer.sign("billing", Some(&ctx), None, NOW).unwrap();
        let v = verify(&token, &w.ring, &policy(), NOW + 5).unwrap();
        assert_eq!(&*v.caller, identity);
        assert_eq!(v.kid, key.kid);
        assert_eq!(v.alg, key.alg);
        assert_eq!(v.claims.exp - v.claims.iat, 60);
        assert_eq!(v.claims.ctx.unwrap()["x-user-id"], "42");
        let jti = v.claims.jti.unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(jti).unwrap().len(),
            16,
            "128-bit jti"
        );
        // The header is exactly alg/typ/kid.
        let h: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            h,
            json!({"alg": key.alg.as_str(), "typ": "JWT", "kid": key.kid})
        );
    }
}

#[test]
fn rejection_reasons_are_stable_strings() {
    let reasons: Vec<_> = Rejection::ALL.iter().map(|r| r.reason()).collect();
    assert_eq!(
        reasons,
        [
            "missing",
            "multiple_tokens",
            "too_large",
            "malformed",
            "unsupported_alg",
            "unknown_crit",
            "unknown_key",
            "bad_signature",
            "issuer_mismatch",
            "wrong_audience",
            "multiple_audiences",
            "expired",
            "not_yet_valid",
            "lifetime_too_long",
            "revoked",
            "replayed",
            "binding_missing",
            "binding_mismatch",
            "subject_mismatch",
            "unmapped_subject",
            "wrong_type",
            "untrusted_issuer"
        ]
    );
    for r in Rejection::ALL {
        assert_eq!(r.to_string(), r.reason());
    }
}

#[test]
fn alg_none_is_refused() {
    let w = world();
    let h = json!({"alg": "none", "typ": "JWT", "kid": w.orders.kid});
    let unsigned = format!("{}.{}.", b64(&h), b64(&claims("orders")));
    assert_eq!(reject(&w, &unsigned), Rejection::UnsupportedAlg);
    let signed = craft(h, claims("orders"), &w.orders);
    assert_eq!(reject(&w, &signed), Rejection::UnsupportedAlg);
    for alg in ["None", "NONE", "HS512", "ES512", "PS256", ""] {
        let h = json!({"alg": alg, "typ": "JWT", "kid": w.orders.kid});
        assert_eq!(
            reject(&w, &craft(h, claims("orders"), &w.orders)),
            Rejection::UnsupportedAlg,
            "{alg}"
        );
    }
    let no_alg = json!({"typ": "JWT", "kid": w.orders.kid});
    assert_eq!(
        reject(&w, &craft(no_alg, claims("orders"), &w.orders)),
        Rejection::UnsupportedAlg
    );
}

#[test]
fn alg_confusion_hs256_with_a_public_key_as_secret() {
    let w = world();
    for (identity, key) in [
        ("orders", &w.orders),
        ("search", &w.rsa),
        ("payments", &w.ed),
    ] {
        let jwk = serde_json::to_string(key.public_jwk().unwrap()).unwrap();
        let h = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid});
        let input = format!("{}.{}", b64(&h), b64(&claims(identity)));
        for secret in [jwk.as_bytes(), key.kid.as_bytes()] {
            let token = format!("{input}.{}", hmac(secret, &input));
            assert_eq!(reject(&w, &token), Rejection::UnsupportedAlg, "{identity}");
        }
    }
}

#[test]
fn alg_of_another_key_type_is_refused() {
    let w = world();
    // RS256 header naming the ES256 key, signed by the RSA key: the key decides.
    let h = json!({"alg": "RS256", "typ": "JWT", "kid": w.orders.kid});
    assert_eq!(
        reject(&w, &craft(h, claims("orders"), &w.rsa)),
        Rejection::UnsupportedAlg
    );
    let h = json!({"alg": "ES256", "typ": "JWT", "kid": w.ed.kid});
    assert_eq!(
        reject(&w, &craft(h, claims("payments"), &w.orders)),
        Rejection::UnsupportedAlg
    );
    // A shared-secret kid with ES256.
    let h = json!({"alg": "ES256", "typ": "JWT", "kid": w.shared.kid});
    assert_eq!(
        reject(&w, &craft(h, claims("orders"), &w.orders)),
        Rejection::UnsupportedAlg
    );
}

#[test]
fn kid_injection_is_only_a_lookup() {
    let w = world();
    for kid in [
        "../../etc/passwd",
        "/dev/null",
        "' OR 1=1 --",
        "http://evil.example/key",
        "",
    ] {
        let h = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        assert_eq!(
            reject(&w, &craft(h, claims("orders"), &w.orders)),
            Rejection::UnknownKey,
            "{kid}"
        );
    }
    let no_kid = json!({"alg": "ES256", "typ": "JWT"});
    assert_eq!(
        reject(&w, &craft(no_kid, claims("orders"), &w.orders)),
        Rejection::UnknownKey
    );
    let numeric_kid = json!({"alg": "ES256", "typ": "JWT", "kid": 7});
    assert_eq!(
        reject(&w, &craft(numeric_kid, claims("orders"), &w.orders)),
        Rejection::UnknownKey
    );
}

#[test]
fn jku_jwk_x5u_x5c_headers_are_ignored() {
    let w = world();
    let mallory_jwk = serde_json::to_value(w.mallory.public_jwk().unwrap()).unwrap();
    let mut h = header(&w.orders);
    h["jku"] = "https://evil.example/jwks.json".into();
    h["x5u"] = "https://evil.example/cert.pem".into();
    h["x5c"] = json!(["MIIB"]);
    h["jwk"] = mallory_jwk.clone();
    // Signed by the trusted key: the extra members change nothing.
    assert!(verify(
        &craft(h.clone(), claims("orders"), &w.orders),
        &w.ring,
        &policy(),
        NOW
    )
    .is_ok());
    // Signed by the attacker's embedded key with a trusted kid: the embedded key is not used.
    assert_eq!(
        reject(&w, &craft(h, claims("orders"), &w.mallory)),
        Rejection::BadSignature
    );
    // The attacker's own kid with its key embedded: not trusted.
    let h = json!({"alg": "ES256", "typ": "JWT", "kid": w.mallory.kid, "jwk": mallory_jwk});
    assert_eq!(
        reject(&w, &craft(h, claims("orders"), &w.mallory)),
        Rejection::UnknownKey
    );
}

#[test]
fn substituted_signatures_are_refused() {
    let w = world();
    let a = craft(header(&w.orders), claims("orders"), &w.orders);
    let mut other = claims("orders");
    other["aud"] = "payments".into();
    let b = craft(header(&w.orders), other, &w.orders);
    let (a_input, _) = a.rsplit_once('.').unwrap();
    let (_, b_sig) = b.rsplit_once('.').unwrap();
    assert_eq!(
        reject(&w, &format!("{a_input}.{b_sig}")),
        Rejection::BadSignature
    );
    // A signature by an untrusted key on a trusted kid.
    assert_eq!(
        reject(&w, &craft(header(&w.orders), claims("orders"), &w.mallory)),
        Rejection::BadSignature
    );
    // Tampered claims under the original signature.
    let (_, a_sig) = a.rsplit_once('.').unwrap();
    let forged = format!(
        "{}.{}.{a_sig}",
        b64(&header(&w.orders)),
        b64(&claims("search"))
    );
    assert_eq!(reject(&w, &forged), Rejection::BadSignature);
    // An empty signature and a truncated one.
    assert_eq!(reject(&w, &format!("{a_input}.")), Rejection::BadSignature);
    assert_eq!(
        reject(&w, &format!("{a_input}.{}", &a_sig[..10])),
        Rejection::BadSignature
    );
}

#[test]
fn a_key_speaks_only_for_its_identity() {
    let w = world();
    // Valid signature by orders' key, claiming to be search.
    assert_eq!(
        reject(&w, &craft(header(&w.orders), claims("search"), &w.orders)),
        Rejection::IssuerMismatch
    );
    let mut c = claims("orders");
    c["sub"] = "admin".into();
    assert_eq!(
        reject(&w, &craft(header(&w.orders), c, &w.orders)),
        Rejection::IssuerMismatch
    );
    // Shared-key mode: any identity, but a well-formed one, with sub = iss.
    assert!(verify(
        &craft(header(&w.shared), claims("anything"), &w.shared),
        &w.ring,
        &policy(),
        NOW
    )
    .is_ok());
    assert_eq!(
        reject(
            &w,
            &craft(header(&w.shared), claims("Not Valid"), &w.shared)
        ),
        Rejection::IssuerMismatch
    );
}

#[test]
fn cross_audience_use_is_refused() {
    let w = world();
    let signer = TokenSigner::new("orders".into(), w.orders.clone(), Duration::from_secs(60));
    let for_payments = signer.sign("payments", None, None, NOW).unwrap();
    assert_eq!(reject(&w, &for_payments), Rejection::WrongAudience);
    let mut c = claims("orders");
    c["aud"] = json!(["payments", "billing"]);
    // Refused by default: payments could replay this token against billing.
    assert_eq!(
        reject(&w, &craft(header(&w.orders), c.clone(), &w.orders)),
        Rejection::MultipleAudiences
    );
    let mut lenient = policy();
    lenient.allow_multi_audience = true;
    assert!(verify(
        &craft(header(&w.orders), c.clone(), &w.orders),
        &w.ring,
        &lenient,
        NOW
    )
    .is_ok());
    c["aud"] = json!([]);
    assert_eq!(
        reject(&w, &craft(header(&w.orders), c, &w.orders)),
        Rejection::WrongAudience
    );
}

#[test]
fn time_checks_with_leeway() {
    let w = world();
    let t = |iat: u64, exp: u64, nbf: Option<u64>| {
        let mut c = claims("orders");
        c["iat"] = iat.into();
        c["exp"] = exp.into();
        if let Some(nbf) = nbf {
            c["nbf"] = nbf.into();
        }
        craft(header(&w.orders), c, &w.orders)
    };
    // Expired, but within the 30 s leeway: accepted; beyond: refused.
    assert!(verify(&t(NOW - 80, NOW - 20, None), &w.ring, &policy(), NOW).is_ok());
    assert_eq!(
        reject(&w, &t(NOW - 100, NOW - 31, None)),
        Rejection::Expired
    );
    assert_eq!(
        reject(&w, &t(NOW, NOW + 60, Some(NOW + 31))),
        Rejection::NotYetValid
    );
    assert!(verify(&t(NOW, NOW + 60, Some(NOW + 29)), &w.ring, &policy(), NOW).is_ok());
    assert_eq!(
        reject(&w, &t(NOW + 120, NOW + 180, None)),
        Rejection::NotYetValid
    );
    // Long-lived tokens.
    assert_eq!(
        reject(&w, &t(NOW, NOW + 3600, None)),
        Rejection::LifetimeTooLong
    );
    assert_eq!(
        reject(&w, &t(NOW, NOW + 10 * 365 * 86400, None)),
        Rejection::LifetimeTooLong
    );
    assert!(verify(&t(NOW, NOW + 300, None), &w.ring, &policy(), NOW).is_ok());
    // exp before iat.
    assert_eq!(
        reject(&w, &t(NOW + 10, NOW + 5, None)),
        Rejection::LifetimeTooLong
    );
    // Missing exp is malformed, not eternal.
    let mut c = claims("orders");
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        reject(&w, &craft(header(&w.orders), c, &w.orders)),
        Rejection::Malformed
    );
}

#[test]
fn structure_and_size() {
    let w = world();
    assert_eq!(reject(&w, ""), Rejection::Missing);
    assert_eq!(reject(&w, "abc.def"), Rejection::Malformed);
    assert_eq!(reject(&w, "a.b.c.d"), Rejection::Malformed);
    assert_eq!(reject(&w, "!!!.???.***"), Rejection::Malformed);
    assert_eq!(
        reject(&w, &format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("[1]"))),
        Rejection::Malformed
    );
    // Over 8 KiB: refused before anything is decoded (this is not even base64).
    assert_eq!(
        reject(&w, &"!".repeat(MAX_TOKEN_BYTES + 1)),
        Rejection::TooLarge
    );
    let mut big = claims("orders");
    big["pad"] = "x".repeat(MAX_TOKEN_BYTES).into();
    assert_eq!(
        reject(&w, &craft(header(&w.orders), big, &w.orders)),
        Rejection::TooLarge
    );
    let mut h = header(&w.orders);
    h["typ"] = "at+jwt".into();
    assert_eq!(
        reject(&w, &craft(h, claims("orders"), &w.orders)),
        Rejection::Malformed
    );
    let mut h = header(&w.orders);
    h["crit"] = json!(["exp-x"]);
    h["exp-x"] = 1.into();
    assert_eq!(
        reject(&w, &craft(h, claims("orders"), &w.orders)),
        Rejection::UnknownCrit
    );
    // Claims as a JSON array (serde would read it by position), under a valid signature.
    let input = format!(
        "{}.{}",
        b64(&header(&w.orders)),
        b64(&json!(["orders", "orders", "billing", NOW, NOW + 60]))
    );
    let sig = URL_SAFE_NO_PAD.encode(w.orders.sign(input.as_bytes()).unwrap());
    assert_eq!(reject(&w, &format!("{input}.{sig}")), Rejection::Malformed);
    // Claims that are not JSON, under a valid signature.
    let input = format!(
        "{}.{}",
        b64(&header(&w.orders)),
        URL_SAFE_NO_PAD.encode("not json")
    );
    let sig = URL_SAFE_NO_PAD.encode(w.orders.sign(input.as_bytes()).unwrap());
    assert_eq!(reject(&w, &format!("{input}.{sig}")), Rejection::Malformed);
}

#[test]
fn revoked_keys_say_revoked() {
    let w = world();
    let token = craft(header(&w.orders), claims("orders"), &w.orders);
    let ring = Keyring::new(
        vec![trusted(Some("orders"), &w.orders)],
        [w.orders.kid.clone()].into_iter().collect(),
        vec![],
    );
    assert_eq!(
        verify(&token, &ring, &policy(), NOW).unwrap_err(),
        Rejection::Revoked
    );
    assert!(ring.is_empty());
}

#[test]
fn request_binding() {
    let w = world();
    let signer = TokenSigner::new("orders".into(), w.orders.clone(), Duration::from_secs(60));
    let token = signer
        .sign("billing", None, Some(("POST", "/orders?id=1")), NOW)
        .unwrap();
    let v = verify(&token, &w.ring, &policy(), NOW).unwrap();
    assert!(v.check_binding("POST", "/orders?id=1").is_ok());
    assert_eq!(
        v.check_binding("GET", "/orders?id=1"),
        Err(Rejection::BindingMismatch)
    );
    assert_eq!(
        v.check_binding("POST", "/orders?id=2"),
        Err(Rejection::BindingMismatch)
    );
    let unbound = signer.sign("billing", None, None, NOW).unwrap();
    let v = verify(&unbound, &w.ring, &policy(), NOW).unwrap();
    assert_eq!(
        v.check_binding("POST", "/orders"),
        Err(Rejection::BindingMissing)
    );
    let mut c = claims("orders");
    c["htm"] = "GET".into();
    c["htu"] = "https://billing.example/orders?id=1".into();
    let v = verify(
        &craft(header(&w.orders), c, &w.orders),
        &w.ring,
        &policy(),
        NOW,
    )
    .unwrap();
    assert!(v.check_binding("GET", "/orders?id=1").is_ok());
}

#[test]
fn replay_cache() {
    let cache = ReplayCache::new(2, Duration::from_secs(30));
    assert!(cache.check_and_insert("a", NOW + 60, NOW).is_ok());
    assert_eq!(
        cache.check_and_insert("a", NOW + 60, NOW + 1),
        Err(Rejection::Replayed)
    );
    assert!(cache.check_and_insert("b", NOW + 60, NOW).is_ok());
    // Full of live jtis: fail closed.
    assert_eq!(
        cache.check_and_insert("c", NOW + 60, NOW),
        Err(Rejection::Replayed)
    );
    // Once they expire (exp + leeway), room again, and an old jti can no longer be accepted
    // by verification anyway.
    assert!(cache.check_and_insert("c", NOW + 200, NOW + 91).is_ok());
}

#[test]
fn outbound_cache_reuses_and_renews() {
    let w = world();
    let signer = TokenSigner::new("orders".into(), w.orders.clone(), Duration::from_secs(60));
    let cache = OutboundTokenCache::new(100);
    let (t1, hit) = cache.get_or_sign(&signer, "billing", None, NOW).unwrap();
    assert!(!hit);
    let (t2, hit) = cache
        .get_or_sign(&signer, "billing", None, NOW + 30)
        .unwrap();
    assert!(hit && t1 == t2);
    // The header values carry exactly the token.
    assert_eq!(
        t1.bearer.as_bytes(),
        format!("Bearer {}", t1.token).as_bytes()
    );
    assert_eq!(t1.bare.as_bytes(), t1.token.as_bytes());
    // Another context under the same audience is another token, and each stays cached.
    let mut other = BTreeMap::new();
    other.insert("x-user-id".to_string(), "8".to_string());
    let (o1, hit) = cache
        .get_or_sign(&signer, "billing", Some(&other), NOW + 30)
        .unwrap();
    assert!(!hit && o1 != t1);
    let (o2, hit) = cache
        .get_or_sign(&signer, "billing", Some(&other), NOW + 31)
        .unwrap();
    assert!(hit && o2 == o1);
    let (t2b, hit) = cache
        .get_or_sign(&signer, "billing", None, NOW + 31)
        .unwrap();
    assert!(hit && t2b == t1);
    let (t3, hit) = cache
        .get_or_sign(&signer, "payments", None, NOW + 30)
        .unwrap();
    assert!(!hit && t3 != t1);
    let mut ctx = BTreeMap::new();
    ctx.insert("x-user-id".into(), "7".into());
    let (t4, hit) = cache
        .get_or_sign(&signer, "billing", Some(&ctx), NOW + 30)
        .unwrap();
    assert!(!hit && t4 != t1);
    // Renewed once less than max(ttl/4, 5s) = 15 s is left.
    let (t5, hit) = cache
        .get_or_sign(&signer, "billing", None, NOW + 46)
        .unwrap();
    assert!(!hit && t5 != t1);
    // A new key (rotation) never gets the old key's token.
    let rotated = TokenSigner::new("orders".into(), w.ed.clone(), Duration::from_secs(60));
    let (t6, hit) = cache
        .get_or_sign(&rotated, "billing", None, NOW + 47)
        .unwrap();
    assert!(!hit && t6 != t5);
    // Bounded.
    let small = OutboundTokenCache::new(2);
    for aud in ["a", "b", "c", "d"] {
        small.get_or_sign(&signer, aud, None, NOW).unwrap();
    }
    assert!(small.len() <= 2);
}

#[test]
fn verified_cache_is_per_generation_and_dies_at_exp() {
    let w = world();
    let signer = TokenSigner::new("orders".into(), w.orders.clone(), Duration::from_secs(60));
    let token = signer.sign("billing", None, None, NOW).unwrap();
    let v = Arc::new(verify(&token, &w.ring, &policy(), NOW).unwrap());
    let cache = VerifiedCache::new(2);
    assert!(cache.get(token.as_bytes(), 1, NOW).is_none());
    cache.insert(&token, v.clone(), 1, NOW);
    assert_eq!(
        cache
            .get(token.as_bytes(), 1, NOW + 10)
            .unwrap()
            .caller
            .as_ref(),
        "orders"
    );
    assert!(
        cache.get(token.as_bytes(), 2, NOW + 10).is_none(),
        "a new keyring invalidates"
    );
    assert!(
        cache.get(token.as_bytes(), 1, NOW + 61).is_none(),
        "never past exp"
    );
    let tampered = format!("{token}x");
    assert!(cache.get(tampered.as_bytes(), 1, NOW).is_none());
    // The slot is the tail's; a hit is the whole token's.
    let other_head = format!("f{}", &token[1..]);
    assert!(
        cache.get(other_head.as_bytes(), 1, NOW).is_none(),
        "same signature, other header: a miss"
    );
    cache.remove_kid(&w.orders.kid);
    assert!(cache.get(token.as_bytes(), 1, NOW).is_none());
    for i in 0..5 {
        let t = signer.sign("billing", None, None, NOW + i).unwrap();
        cache.insert(&t, v.clone(), 1, NOW);
    }
    assert!(cache.len() <= 2);
}

/// jsonwebtoken's own encode/decode (the aws-lc backend, installed exactly once: with no
/// backend or two, jsonwebtoken panics on first use) agrees with ours in both directions.
#[test]
fn jsonwebtoken_interoperates() {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    let tmp = tempfile::tempdir().unwrap();
    let files =
        keys::write_keypair("orders", KeyAlg::Es256, tmp.path(), keys::OutputFormat::Pem).unwrap();
    let key = Arc::new(keys::load_signing_key(&files.private).unwrap());
    let ring = Keyring::new(
        vec![trusted(Some("orders"), &key)],
        Default::default(),
        vec![],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Ours → jsonwebtoken.
    let ours = TokenSigner::new("orders".into(), key.clone(), Duration::from_secs(60))
        .sign("billing", None, None, now)
        .unwrap();
    let public_pem = std::fs::read(&files.public).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["billing"]);
    validation.set_issuer(&["orders"]);
    let decoded = jsonwebtoken::decode::<Value>(
        &ours,
        &DecodingKey::from_ec_pem(&public_pem).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.header.kid.as_deref(), Some(key.kid.as_str()));
    assert_eq!(decoded.claims["iss"], "orders");

    // jsonwebtoken → ours.
    let private_pem = std::fs::read(&files.private).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    let theirs = jsonwebtoken::encode(
        &h,
        &json!({"iss": "orders", "sub": "orders", "aud": "billing", "iat": now, "exp": now + 60}),
        &EncodingKey::from_ec_pem(&private_pem).unwrap(),
    )
    .unwrap();
    let v = verify(&theirs, &ring, &policy(), now).unwrap();
    assert_eq!(&*v.caller, "orders");
}
