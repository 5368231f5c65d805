//! Attacker suite, tokens: the RFC 8725 list beyond what tests/tokens.rs covers —
//! ECDSA r = s = 0 and other degenerate signatures, duplicate JSON members, header
//! variants (alg/kid/typ spellings and types), numeric edge cases of exp/nbf/iat,
//! multi-audience replay — and through the proxy: the token is never echoed.
use crate::support;

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use trustgate::keys::{self, KeyAlg, Keyring, SigningKey, TrustedKey};
use trustgate::token::{verify, Rejection, VerifyPolicy};

const NOW: u64 = 1_900_000_000;

struct World {
    orders: Arc<SigningKey>,
    ring: Keyring,
}

fn world() -> World {
    let orders = Arc::new(keys::generate(KeyAlg::Es256).unwrap());
    let ring = Keyring::new(
        vec![TrustedKey {
            speaks: keys::Speaks::Identity("orders".into()),
            key: orders.verifying_key().clone(),
            source: "test".into(),
        }],
        Default::default(),
        vec![],
    );
    World { orders, ring }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Header and claims as raw JSON text (so duplicates and odd numbers survive).
fn craft_raw(header: &str, claims: &str, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn header(w: &World) -> String {
    json!({"alg": "ES256", "typ": "JWT", "kid": w.orders.kid}).to_string()
}

fn claims_with(overrides: Value) -> String {
    let mut c = json!({"iss": "orders", "sub": "orders", "aud": "billing", "iat": NOW, "exp": NOW + 60, "jti": "j"});
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c.to_string()
}

fn check(w: &World, token: &str) -> Result<(), Rejection> {
    verify(token, &w.ring, &VerifyPolicy::new("billing".into()), NOW).map(|_| ())
}

#[test]
fn a_valid_token_passes_so_the_refusals_below_mean_something() {
    let w = world();
    assert_eq!(
        check(
            &w,
            &craft_raw(&header(&w), &claims_with(json!({})), &w.orders)
        ),
        Ok(())
    );
}

#[test]
fn degenerate_ecdsa_signatures() {
    let w = world();
    let input = format!("{}.{}", b64(&header(&w)), b64(&claims_with(json!({}))));
    for sig in [
        vec![0u8; 64],                                  // r = s = 0 (CVE-2022-21449)
        [vec![0u8; 32], vec![1u8; 32]].concat(),         // r = 0
        [vec![1u8; 32], vec![0u8; 32]].concat(),         // s = 0
        vec![0xffu8; 64],                               // r, s ≥ n
        vec![0u8; 63],                                  // short
        vec![0u8; 65],                                  // long
        vec![],                                         // empty
        // P-256 order n as r and s.
        hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
    ] {
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let r = check(&w, &token);
        assert!(
            matches!(r, Err(Rejection::BadSignature) | Err(Rejection::Malformed)),
            "{} bytes: {r:?}",
            sig.len()
        );
    }
    // A DER-encoded signature (what OpenSSL produces) is not JOSE's r||s.
    let good = w.orders.sign(input.as_bytes()).unwrap();
    let der = [
        vec![0x30, 0x44, 0x02, 0x20],
        good[..32].to_vec(),
        vec![0x02, 0x20],
        good[32..].to_vec(),
    ]
    .concat();
    assert!(check(&w, &format!("{input}.{}", URL_SAFE_NO_PAD.encode(der))).is_err());
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn duplicate_members_are_refused_everywhere() {
    let w = world();
    let kid = &w.orders.kid;
    let good_claims = claims_with(json!({}));
    for h in [
        format!(r#"{{"alg":"none","alg":"ES256","typ":"JWT","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":"x","kid":"{kid}"}}"#),
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}","\u0061lg":"ES256"}}"#),
    ] {
        assert_eq!(
            check(&w, &craft_raw(&h, &good_claims, &w.orders)),
            Err(Rejection::Malformed),
            "{h}"
        );
    }
    let h = header(&w);
    for c in [
        format!(
            r#"{{"iss":"orders","sub":"orders","aud":"billing","aud":"other","iat":{NOW},"exp":{}}}"#,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"mallory","iss":"orders","sub":"orders","aud":"billing","iat":{NOW},"exp":{}}}"#,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"orders","sub":"orders","aud":"billing","iat":{NOW},"exp":{},"exp":{}}}"#,
            NOW + 60,
            NOW + 99999
        ),
        format!(
            r#"{{"iss":"orders","sub":"orders","aud":"billing","iat":{NOW},"exp":{},"ctx":{{"x-user-id":"1","x-user-id":"2"}}}}"#,
            NOW + 60
        ),
    ] {
        assert_eq!(
            check(&w, &craft_raw(&h, &c, &w.orders)),
            Err(Rejection::Malformed),
            "{c}"
        );
    }
}

#[test]
fn header_variants() {
    let w = world();
    let kid = w.orders.kid.clone();
    let c = claims_with(json!({}));
    let cases: Vec<(Value, Result<(), Rejection>)> = vec![
        (json!({"alg": "ES256", "kid": kid}), Ok(())), // typ is optional
        (json!({"alg": "ES256", "typ": "jwt", "kid": kid}), Ok(())),
        (
            json!({"alg": "ES256", "typ": "application/jwt", "kid": kid}),
            Ok(()),
        ),
        (
            json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
            Err(Rejection::Malformed),
        ),
        (
            json!({"alg": "ES256", "typ": 1, "kid": kid}),
            Err(Rejection::Malformed),
        ),
        (
            json!({"alg": "es256", "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": "ES256 ", "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": "ES384", "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": "None", "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": ["ES256"], "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT"}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": null}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": 7}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": format!("{kid} ")}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": kid.to_lowercase()}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": "../../../../dev/null"}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": kid, "crit": ["b64"], "b64": false}),
            Err(Rejection::UnknownCrit),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": kid, "crit": []}),
            Err(Rejection::UnknownCrit),
        ),
        // Members of other types: null is not absent for typ and crit.
        (
            json!({"alg": null, "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": {"name": "ES256"}, "typ": "JWT", "kid": kid}),
            Err(Rejection::UnsupportedAlg),
        ),
        (
            json!({"alg": "ES256", "typ": null, "kid": kid}),
            Err(Rejection::Malformed),
        ),
        (
            json!({"alg": "ES256", "typ": ["JWT"], "kid": kid}),
            Err(Rejection::Malformed),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": kid, "crit": null}),
            Err(Rejection::UnknownCrit),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": {"id": kid}}),
            Err(Rejection::UnknownKey),
        ),
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": kid, "zip": "DEF"}),
            Ok(()),
        ), // ignored, nothing is inflated
        (
            json!({"alg": "ES256", "typ": "JWT", "kid": kid, "enc": "A256GCM"}),
            Ok(()),
        ),
    ];
    for (h, want) in cases {
        assert_eq!(
            check(&w, &craft_raw(&h.to_string(), &c, &w.orders)),
            want,
            "{h}"
        );
    }
    // JSON escapes in names and values read as the characters they stand for; blanks
    // around the object are JSON too.
    for h in [
        format!(r#"{{"alg":"ES\u0032\u00356","typ":"J\u0057T","kid":"{kid}"}}"#),
        format!(r#"{{"\u0061lg":"ES256","typ":"JWT","\u006bid":"{kid}"}}"#),
        format!(
            r#"{{"alg":"ES256","kid":"\u{:04x}{}"}}"#,
            kid.as_bytes()[0],
            &kid[1..]
        ),
        format!(" \n{{\"alg\":\"ES256\",\"kid\":\"{kid}\"}}\t"),
    ] {
        assert_eq!(check(&w, &craft_raw(&h, &c, &w.orders)), Ok(()), "{h}");
    }
    // Not an object at all.
    for h in ["[]", "null", "\"ES256\"", "1", "{"] {
        assert_eq!(
            check(&w, &craft_raw(h, &c, &w.orders)),
            Err(Rejection::Malformed),
            "{h}"
        );
    }
}

#[test]
fn numeric_edges_of_time_claims() {
    let w = world();
    let h = header(&w);
    let cases: Vec<(Value, Result<(), Rejection>)> = vec![
        (json!({"exp": NOW + 60}), Ok(())),
        (
            json!({"exp": (NOW + 60) as f64 + 0.5}),
            Err(Rejection::Malformed),
        ),
        (
            json!({"exp": format!("{}", NOW + 60)}),
            Err(Rejection::Malformed),
        ),
        (json!({"exp": -1}), Err(Rejection::Malformed)),
        (json!({"exp": u64::MAX}), Err(Rejection::LifetimeTooLong)),
        (json!({"exp": null}), Err(Rejection::Malformed)),
        (json!({"iat": null}), Err(Rejection::Malformed)),
        (
            json!({"iat": NOW + 3600, "exp": NOW + 3660}),
            Err(Rejection::NotYetValid),
        ),
        (json!({"iat": 0, "exp": 60}), Err(Rejection::Expired)),
        (
            json!({"iat": NOW, "exp": NOW - 1}),
            Err(Rejection::LifetimeTooLong),
        ),
        (
            json!({"iat": NOW - 100, "exp": NOW - 31}),
            Err(Rejection::Expired),
        ),
        (json!({"iat": NOW - 100, "exp": NOW - 29}), Ok(())), // within leeway
        (
            json!({"iat": NOW, "exp": NOW + 301}),
            Err(Rejection::LifetimeTooLong),
        ),
        (json!({"nbf": NOW + 31}), Err(Rejection::NotYetValid)),
        (json!({"nbf": NOW + 29}), Ok(())),
        (json!({"nbf": u64::MAX}), Err(Rejection::NotYetValid)),
        (json!({"nbf": "soon"}), Err(Rejection::Malformed)),
    ];
    for (over, want) in cases {
        let c = claims_with(over.clone());
        assert_eq!(check(&w, &craft_raw(&h, &c, &w.orders)), want, "{over}");
    }
    // Bigger than any u64, and exponent notation.
    for raw in [
        format!(
            r#"{{"iss":"orders","sub":"orders","aud":"billing","iat":{NOW},"exp":184467440737095516160}}"#
        ),
        format!(r#"{{"iss":"orders","sub":"orders","aud":"billing","iat":{NOW},"exp":1.9e9}}"#),
    ] {
        assert_eq!(
            check(&w, &craft_raw(&h, &raw, &w.orders)),
            Err(Rejection::Malformed),
            "{raw}"
        );
    }
}

#[test]
fn audience_and_issuer_shapes() {
    let w = world();
    let h = header(&w);
    let cases: Vec<(Value, Result<(), Rejection>)> = vec![
        (json!({"aud": ["billing"]}), Ok(())),
        (json!({"aud": ["billing", "billing"]}), Ok(())),
        (
            json!({"aud": ["shipping", "billing"]}),
            Err(Rejection::MultipleAudiences),
        ),
        (
            json!({"aud": ["billing", "*"]}),
            Err(Rejection::MultipleAudiences),
        ),
        (json!({"aud": []}), Err(Rejection::WrongAudience)),
        (json!({"aud": "Billing"}), Err(Rejection::WrongAudience)),
        (json!({"aud": "billing "}), Err(Rejection::WrongAudience)),
        (json!({"aud": null}), Err(Rejection::Malformed)),
        (json!({"aud": 1}), Err(Rejection::Malformed)),
        (json!({"aud": [1]}), Err(Rejection::Malformed)),
        (json!({"aud": ["billing", null]}), Err(Rejection::Malformed)),
        (json!({"aud": {"billing": true}}), Err(Rejection::Malformed)),
        (
            json!({"iss": "mallory", "sub": "mallory"}),
            Err(Rejection::IssuerMismatch),
        ),
        (json!({"sub": "admin"}), Err(Rejection::IssuerMismatch)),
        (json!({"iss": "Orders"}), Err(Rejection::IssuerMismatch)),
        (json!({"iss": ["orders"]}), Err(Rejection::Malformed)),
    ];
    for (over, want) in cases {
        let c = claims_with(over.clone());
        assert_eq!(check(&w, &craft_raw(&h, &c, &w.orders)), want, "{over}");
    }
    // JSON escapes read as the characters they stand for, one audience or a list.
    for aud in [r#""bil\u006cing""#, r#"["\u0062illing"]"#] {
        let c = format!(
            r#"{{"iss":"orders","sub":"or\u0064ers","aud":{aud},"iat":{NOW},"exp":{}}}"#,
            NOW + 60
        );
        assert_eq!(check(&w, &craft_raw(&h, &c, &w.orders)), Ok(()), "{c}");
    }
}

#[test]
fn encodings_other_than_base64url_without_padding() {
    let w = world();
    let token = craft_raw(&header(&w), &claims_with(json!({})), &w.orders);
    let parts: Vec<&str> = token.split('.').collect();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    for bad in [
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE.encode(&sig)), // padded
        format!("{}.{}.{}", parts[0], parts[1], STANDARD.encode(&sig)), // + and /
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{} .{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}.", parts[0], parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}..{}", parts[0], parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
    ] {
        assert!(check(&w, &bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn refusals_through_the_proxy_never_echo_the_token() {
    let t = support::attack::target("", "").await;
    let k = Arc::new(keys::load_signing_key(&t.orders.private).unwrap());
    let kid = k.kid.clone();
    let forged = {
        let h = json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string();
        let c = json!({"iss": "orders", "sub": "orders", "aud": ["shipping", "billing"], "iat": trustgate::proxy::unix_now(), "exp": trustgate::proxy::unix_now() + 60}).to_string();
        craft_raw(&h, &c, &k)
    };
    let req =
        format!("GET /invoices/1 HTTP/1.1\r\nhost: b\r\nauthorization: Bearer {forged}\r\n\r\n");
    let r = support::raw::exchange(t.inbound(), req.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        r#"Bearer error="invalid_token", error_description="multiple_audiences""#
    );
    let sig = forged.rsplit('.').next().unwrap();
    assert!(!r.head.contains(sig) && !r.body_text().contains(sig));
    assert!(t.app.requests().is_empty());
}
