//! Verification in the contract's order (DESIGN.md "Inbound: what is checked"), failing
//! closed. Cheap refusals come first: nothing is base64-decoded before the size check and
//! no signature is computed before the header names a trusted key whose algorithm matches.
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::claims::Claims;
use crate::keys::{is_valid_identity, KeyAlg, Keyring};

/// Tokens above this size are refused before they are parsed.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Why a token was refused. The reason strings are stable: they are the
/// `error_description` of 401 answers and the `reason` label of metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("missing")]
    Missing,
    #[error("multiple_tokens")]
    MultipleTokens,
    #[error("too_large")]
    TooLarge,
    #[error("malformed")]
    Malformed,
    #[error("unsupported_alg")]
    UnsupportedAlg,
    #[error("unknown_crit")]
    UnknownCrit,
    #[error("unknown_key")]
    UnknownKey,
    #[error("bad_signature")]
    BadSignature,
    #[error("issuer_mismatch")]
    IssuerMismatch,
    #[error("wrong_audience")]
    WrongAudience,
    #[error("multiple_audiences")]
    MultipleAudiences,
    #[error("expired")]
    Expired,
    #[error("not_yet_valid")]
    NotYetValid,
    #[error("lifetime_too_long")]
    LifetimeTooLong,
    #[error("revoked")]
    Revoked,
    #[error("replayed")]
    Replayed,
    #[error("binding_missing")]
    BindingMissing,
    #[error("binding_mismatch")]
    BindingMismatch,
}

impl Rejection {
    pub const ALL: [Rejection; 18] = [
        Rejection::Missing,
        Rejection::MultipleTokens,
        Rejection::TooLarge,
        Rejection::Malformed,
        Rejection::UnsupportedAlg,
        Rejection::UnknownCrit,
        Rejection::UnknownKey,
        Rejection::BadSignature,
        Rejection::IssuerMismatch,
        Rejection::WrongAudience,
        Rejection::MultipleAudiences,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::LifetimeTooLong,
        Rejection::Revoked,
        Rejection::Replayed,
        Rejection::BindingMissing,
        Rejection::BindingMismatch,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::MultipleTokens => "multiple_tokens",
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
            Rejection::UnsupportedAlg => "unsupported_alg",
            Rejection::UnknownCrit => "unknown_crit",
            Rejection::UnknownKey => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::IssuerMismatch => "issuer_mismatch",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::MultipleAudiences => "multiple_audiences",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::LifetimeTooLong => "lifetime_too_long",
            Rejection::Revoked => "revoked",
            Rejection::Replayed => "replayed",
            Rejection::BindingMissing => "binding_missing",
            Rejection::BindingMismatch => "binding_mismatch",
        }
    }
}

/// What the receiving side requires of a token.
#[derive(Clone, Debug)]
pub struct VerifyPolicy {
    /// This service's identity; `aud` must contain it.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Longest `exp - iat` accepted: a stolen long-lived token is a long-lived problem.
    pub max_ttl: Duration,
    /// Accept an `aud` list that names other services besides this one. Off by default:
    /// a token for `[shipping, billing]` could be replayed by shipping against billing.
    pub allow_multi_audience: bool,
}

impl VerifyPolicy {
    pub fn new(audience: String) -> Self {
        VerifyPolicy {
            audience,
            leeway: Duration::from_secs(30),
            max_ttl: Duration::from_secs(300),
            allow_multi_audience: false,
        }
    }
}

/// A token that passed every check.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The identity the signing key is trusted for (= `iss` = `sub`); shared, as the
    /// access log of every request presenting a cached token names it.
    pub caller: Arc<str>,
    /// `caller` as a header value, made once (a cached token is presented many times).
    pub caller_header: http::HeaderValue,
    pub kid: String,
    pub alg: KeyAlg,
    pub claims: Claims,
}

impl Verified {
    /// Request binding: the token's `htm`/`htu` must name this request. `htu` may be the
    /// path and query, or an absolute URL whose path and query are these.
    pub fn check_binding(&self, method: &str, path_and_query: &str) -> Result<(), Rejection> {
        let (Some(htm), Some(htu)) = (&self.claims.htm, &self.claims.htu) else {
            return Err(Rejection::BindingMissing);
        };
        if htm != method {
            return Err(Rejection::BindingMismatch);
        }
        let matches = if htu.starts_with('/') {
            htu == path_and_query
        } else {
            match htu.parse::<http::Uri>() {
                Ok(uri) if uri.scheme().is_some() => {
                    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/") == path_and_query
                }
                _ => false,
            }
        };
        if matches {
            Ok(())
        } else {
            Err(Rejection::BindingMismatch)
        }
    }
}

/// Verifies `token` against `keyring` at time `now` (Unix seconds).
pub fn verify(
    token: &str,
    keyring: &Keyring,
    policy: &VerifyPolicy,
    now: u64,
) -> Result<Verified, Rejection> {
    // 2. Size and shape.
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let header_json = decode_object_bytes(header_b64)?;
    let header: JoseHeader =
        serde_json::from_slice(&header_json).map_err(|_| Rejection::Malformed)?;

    // 3. Header: alg, crit, typ, kid. `jku`, `jwk`, `x5u` and `x5c` are never looked at.
    let alg = match header.alg.as_str() {
        Some(name) => KeyAlg::from_jose(name).ok_or(Rejection::UnsupportedAlg)?,
        None => return Err(Rejection::UnsupportedAlg),
    };
    if !matches!(header.crit, Member::Absent) {
        // RFC 7515 §4.1.11: a recipient must reject extensions it does not understand,
        // and trustgate understands none.
        return Err(Rejection::UnknownCrit);
    }
    if !matches!(header.typ, Member::Absent) {
        match header.typ.as_str() {
            // RFC 7515 §4.1.9: "JWT" and "application/jwt" name the same type.
            Some(t)
                if t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt") => {}
            _ => return Err(Rejection::Malformed),
        }
    }
    let kid = header.kid.as_str().ok_or(Rejection::UnknownKey)?;
    // A kid is only ever a map key: never a path, a URL or a query.
    let trusted = keyring.get(kid).ok_or(Rejection::UnknownKey)?;
    if trusted.key.alg != alg {
        return Err(Rejection::UnsupportedAlg);
    }

    // 4. Signature, with the key's own algorithm.
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    let valid = match &trusted.key.parsed {
        // ES256 and EdDSA: the key parsed once; the 64-byte signature decoded here.
        Some(parsed) => {
            let mut sig = [0u8; 64];
            matches!(
                URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut sig),
                Ok(64)
            ) && parsed.verify_sig(signing_input.as_bytes(), &sig).is_ok()
        }
        None => jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input.as_bytes(),
            &trusted.key.decoding,
            trusted.key.alg.jwt_alg(),
        )
        .unwrap_or(false),
    };
    if !valid {
        return Err(Rejection::BadSignature);
    }
    let claims: Claims = decode_object(payload_b64)?;

    // 5. Who: the key speaks for one identity only.
    let caller: Arc<str> = match &trusted.identity {
        Some(identity) => {
            if claims.iss != *identity || claims.sub != *identity {
                return Err(Rejection::IssuerMismatch);
            }
            identity.as_str().into()
        }
        // Shared-key mode: any holder can claim any (well-formed) identity.
        None => {
            if claims.iss != claims.sub || !is_valid_identity(&claims.iss) {
                return Err(Rejection::IssuerMismatch);
            }
            claims.iss.as_str().into()
        }
    };
    if !claims.aud.contains(&policy.audience) {
        return Err(Rejection::WrongAudience);
    }
    if !policy.allow_multi_audience && !claims.aud.only(&policy.audience) {
        return Err(Rejection::MultipleAudiences);
    }

    // 6. When.
    let leeway = policy.leeway.as_secs();
    if now > claims.exp.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if now.saturating_add(leeway) < nbf {
            return Err(Rejection::NotYetValid);
        }
    }
    if now.saturating_add(leeway) < claims.iat {
        return Err(Rejection::NotYetValid);
    }
    if claims.exp < claims.iat || claims.exp - claims.iat > policy.max_ttl.as_secs() {
        return Err(Rejection::LifetimeTooLong);
    }

    // 7. Revocation (binding and replay are the caller's, they need the request).
    if keyring.is_revoked(kid) {
        return Err(Rejection::Revoked);
    }
    // An identity is a DNS label, always a valid header value.
    let caller_header = http::HeaderValue::from_str(&caller).map_err(|_| Rejection::Malformed)?;
    Ok(Verified {
        caller,
        caller_header,
        kid: trusted.key.kid.clone(),
        alg,
        claims,
    })
}

/// Claims must be a JSON object: serde would otherwise read an array into the struct by
/// position.
fn decode_object<T: serde::de::DeserializeOwned>(b64: &str) -> Result<T, Rejection> {
    let bytes = decode_object_bytes(b64)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
}

/// The JSON text of a header or of claims: base64url, a JSON object (serde would read an
/// array into a struct by position), no member named twice at any depth.
fn decode_object_bytes(b64: &str) -> Result<Vec<u8>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| Rejection::Malformed)?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Rejection::Malformed);
    }
    unique_members(&bytes)?;
    Ok(bytes)
}

/// The JOSE header members trustgate reads, borrowed from the decoded JSON (no copy of a
/// name or a value unless it holds an escape). Any other member is ignored.
#[derive(serde::Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow, default)]
    alg: Member<'a>,
    #[serde(borrow, default)]
    typ: Member<'a>,
    #[serde(borrow, default)]
    kid: Member<'a>,
    #[serde(borrow, default)]
    crit: Member<'a>,
}

/// A header member, or a member name: absent, a string (borrowed from the JSON text
/// unless it holds an escape), or a value of another type (`null` included, which is
/// *present*: `"crit": null` is refused as any `crit` is).
#[derive(Default)]
enum Member<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Other,
}

impl Member<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            Member::Absent | Member::Other => None,
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Member<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Member<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Member<'de>, E> {
                Ok(Member::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_unit<E>(self) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Member<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Member::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Member<'de>, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Member::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `kid` and the claimed `iss` of a token, **unverified**: only to pick, among the
/// key URLs the authorized_keys directory names, which one may hold a key not seen yet.
/// Never trusted for anything else, never turned into a URL.
pub fn peek_kid_and_issuer(token: &str) -> Option<(String, String)> {
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    #[derive(serde::Deserialize)]
    struct Header {
        kid: String,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        iss: String,
    }
    let h: Header = decode_object(header).ok()?;
    let p: Payload = decode_object(payload).ok()?;
    Some((h.kid, p.iss))
}

/// RFC 7515 §5.2 / RFC 8725 §3.x: a JOSE header or claims object with a member named
/// twice means different things to parsers that keep the first and those that keep the
/// last (`{"alg":"none","alg":"ES256"}`). Refused, at every depth.
fn unique_members(json: &[u8]) -> Result<(), Rejection> {
    serde_json::from_slice::<Unique>(json)
        .map(|_| ())
        .map_err(|_| Rejection::Malformed)
}

/// A JSON value walked only to check that no object names a member twice.
struct Unique;

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        // Names are compared as the strings they decode to (an escaped spelling of a
        // name is the same name).
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(8);
        while let Some(key) = map.next_key::<Member<'de>>()? {
            // JSON names are strings: [`Member`] borrows them unless escaped (serde's
            // own `Cow<str>` always copies).
            let Member::Str(key) = key else {
                return Err(serde::de::Error::custom("member name is not a string"));
            };
            if seen.contains(&key) {
                return Err(serde::de::Error::custom("duplicate member"));
            }
            seen.push(key);
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}
