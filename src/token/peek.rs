//! A token's claims before it is verified: only to pick the source that may hold a key
//! not seen yet.
use super::verify::decode_object;

/// What a token claims, **unverified**: its `kid`, `iss` and `sub`. Only to pick, among
/// the key URLs the authorized_keys directory names and the issuers configured, which
/// one may hold a key not seen yet. Never trusted for anything else, never turned into
/// a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub kid: String,
    pub iss: Option<String>,
    pub sub: Option<String>,
}

pub fn peek(token: &str) -> Option<Peeked> {
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    #[derive(serde::Deserialize)]
    struct Header {
        kid: String,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        #[serde(default)]
        iss: Option<String>,
        #[serde(default)]
        sub: Option<String>,
    }
    let h: Header = decode_object(header).ok()?;
    let p: Payload = decode_object(payload).ok()?;
    Some(Peeked {
        kid: h.kid,
        iss: p.iss,
        sub: p.sub,
    })
}

/// The facts behind a refusal, from the token's own (unverified) header and claims: what
/// `aud` it names against the audience expected, which kid was not found and for whom,
/// how long ago it expired. For `explain`, `verify` and a debug log line; never the
/// token itself, and every value the token chose is quoted (`{:?}`), so that it cannot
/// forge a log line.
pub fn why(
    token: &str,
    rejection: super::Rejection,
    keyring: &crate::keys::Keyring,
    policy: &super::VerifyPolicy,
    now: u64,
) -> Option<String> {
    use super::Rejection as R;
    const MULTI: &str = "allow_multi_audience = true on its issuer (or \
                         trust.allow_multi_audience) accepts such tokens";
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    let header: serde_json::Value = decode_object(header).ok()?;
    let claims: serde_json::Value = decode_object(payload).unwrap_or_default();
    let kid = header.get("kid").and_then(|k| k.as_str());
    let num = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
        None => "none".into(),
    };
    let leeway = policy.leeway.as_secs();
    Some(match rejection {
        R::WrongAudience => format!(
            "the token's aud is {}; this service is {:?}",
            text(claims.get("aud")),
            policy.audience
        ),
        R::MultipleAudiences => format!(
            "the token's aud is {}, naming others besides this service ({:?}); {MULTI}",
            text(claims.get("aud")),
            policy.audience
        ),
        R::UnknownKey => match kid {
            None => "the token names no kid".into(),
            Some(kid) => format!(
                "kid {kid:?} is not a trusted key (the token claims iss {}){}",
                text(claims.get("iss")),
                if keyring.is_empty() {
                    "; no key is trusted at all"
                } else {
                    ""
                }
            ),
        },
        R::IssuerMismatch => format!(
            "the token claims iss {} and sub {}; its key {}",
            text(claims.get("iss")),
            text(claims.get("sub")),
            speaks_for(keyring, kid)
        ),
        R::Expired => {
            let exp = num("exp")?;
            format!(
                "expired {}s ago (exp {exp}, now {now}, leeway {leeway}s)",
                now.saturating_sub(exp)
            )
        }
        R::NotYetValid => {
            let from = num("nbf").or(num("iat"))?;
            format!(
                "valid from {from}, in {}s (now {now}, leeway {leeway}s)",
                from.saturating_sub(now)
            )
        }
        R::LifetimeTooLong => {
            let (exp, iat) = (num("exp")?, num("iat").unwrap_or(now));
            format!(
                "lives {}s (exp - iat); at most {}s are accepted",
                exp.saturating_sub(iat),
                policy.max_ttl.as_secs()
            )
        }
        R::Revoked => format!(
            "kid {} is in trust.revoked",
            kid.map_or("-".into(), |k| format!("{k:?}"))
        ),
        _ => return None,
    })
}

/// Whom a kid's keys speak for, in words.
fn speaks_for(keyring: &crate::keys::Keyring, kid: Option<&str>) -> String {
    let Some(kid) = kid else {
        return "is not named".into();
    };
    let whom: Vec<_> = keyring
        .get(kid)
        .iter()
        .map(|t| t.speaks.label().into_owned())
        .collect();
    if whom.is_empty() {
        format!("{kid:?} speaks for nobody")
    } else {
        format!("{kid:?} speaks for {}", whom.join(", "))
    }
}
