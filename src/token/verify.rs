//! Verification in the contract's order (DESIGN.md "Inbound: what is checked"), failing
//! closed. Cheap refusals come first: nothing is base64-decoded before the size check and
//! no signature is computed before the header names a trusted key whose algorithm matches.
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::claims::{Audience, Claims};
use crate::keys::{
    is_spiffe_id_in, is_valid_identity, IssuerKind, KeyAlg, Keyring, Speaks, TrustedKey, Vouch,
};

/// Tokens above this size are refused before they are parsed.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// [`Rejection`] from one list: the reasons, and the same reasons of a person's token
/// (`user_…`) and of a transaction token (`txn_…`).
macro_rules! rejections {
    ($( $variant:ident = $word:literal, )*) => {
        words! {
            /// Why a token was refused. The reason strings are stable: they are the
            /// `error_description` of 401 answers and the `reason` label of metrics.
            pub enum Rejection as reason {
                $( $variant = $word, )*
            }
        }

        impl Rejection {
            /// The reason, for a person's token.
            pub const fn user_reason(self) -> &'static str {
                match self {
                    $( Rejection::$variant => concat!("user_", $word), )*
                }
            }

            /// The reason, for a transaction token.
            pub const fn txn_reason(self) -> &'static str {
                match self {
                    $( Rejection::$variant => concat!("txn_", $word), )*
                }
            }
        }
    };
}

rejections! {
    Missing = "missing",
    MultipleTokens = "multiple_tokens",
    TooLarge = "too_large",
    Malformed = "malformed",
    UnsupportedAlg = "unsupported_alg",
    UnknownCrit = "unknown_crit",
    UnknownKey = "unknown_key",
    BadSignature = "bad_signature",
    IssuerMismatch = "issuer_mismatch",
    WrongAudience = "wrong_audience",
    MultipleAudiences = "multiple_audiences",
    Expired = "expired",
    NotYetValid = "not_yet_valid",
    LifetimeTooLong = "lifetime_too_long",
    Revoked = "revoked",
    Replayed = "replayed",
    BindingMissing = "binding_missing",
    BindingMismatch = "binding_mismatch",
    SubjectMismatch = "subject_mismatch",
    UnmappedSubject = "unmapped_subject",
    WrongType = "wrong_type",
    UntrustedIssuer = "untrusted_issuer",
}

impl std::error::Error for Rejection {}

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
    /// The issuer that vouched for the caller (`[[trust.issuers]].name`); `None` for a
    /// token signed with the caller's own key.
    pub issuer: Option<Arc<str>>,
    /// The verified claims as they arrived (JSON), for claim lookups by JSON Pointer.
    payload: Vec<u8>,
    parsed: std::sync::OnceLock<serde_json::Value>,
    /// What the inbound policy found true of this token on its first request (see
    /// `crate::policy`), kept with it.
    policy: std::sync::OnceLock<Box<[u64]>>,
}

impl Verified {
    pub fn new(caller: &str, kid: String, alg: KeyAlg, claims: Claims) -> Result<Self, Rejection> {
        let payload = serde_json::to_vec(&claims).map_err(|_| Rejection::Malformed)?;
        Ok(Verified {
            caller: caller.into(),
            caller_header: http::HeaderValue::from_str(caller).map_err(|_| Rejection::Malformed)?,
            kid,
            alg,
            claims,
            issuer: None,
            payload,
            parsed: std::sync::OnceLock::new(),
            policy: std::sync::OnceLock::new(),
        })
    }

    /// Every verified claim, as JSON (parsed on first use, then kept with the token); look
    /// claims up with `config::ClaimPointer::lookup`, which allocates nothing.
    pub fn claims_json(&self) -> &serde_json::Value {
        self.parsed.get_or_init(|| {
            serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
        })
    }

    /// Replaces the claims' JSON (a caller named without a token: `trustgate explain
    /// --caller`, and tests).
    pub fn set_claims_json(&mut self, claims: serde_json::Value) {
        self.payload = serde_json::to_vec(&claims).unwrap_or_default();
        self.parsed = std::sync::OnceLock::from(claims);
        self.policy = std::sync::OnceLock::new();
    }

    /// The policy's memo of this token (one process, one rule set): computed by `init`
    /// on first use.
    pub fn policy_memo(&self, init: impl FnOnce() -> Box<[u64]>) -> &[u64] {
        self.policy.get_or_init(init)
    }

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
    // 2–4. Shape, header, signature.
    let (trusted, alg, payload) = signed_by(token, keyring, Typ::Service)?;
    // 5–6. Who and when: by the rules of whom the key speaks for.
    let (caller, claims, issuer) = match &trusted.speaks {
        // A user issuer's key signs people's tokens, never a caller's.
        Speaks::Issuer(vouch) if vouch.users => return Err(Rejection::UnknownKey),
        Speaks::Issuer(vouch) => {
            let (caller, claims) = vouched(vouch, &payload, policy, now)?;
            (caller, claims, Some(vouch.name.as_str().into()))
        }
        speaks => {
            let claims: Claims =
                serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)?;
            let caller = own_caller(speaks, &claims)?;
            let ours = std::slice::from_ref(&policy.audience);
            claims.aud.names(ours, policy.allow_multi_audience)?;
            when(
                claims.iat,
                claims.nbf,
                claims.exp,
                policy.max_ttl,
                policy.leeway,
                now,
            )?;
            (caller, claims, None)
        }
    };

    // 7. Revocation (binding and replay are the caller's, they need the request).
    if keyring.is_revoked(&trusted.key.kid) {
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
        issuer,
        payload,
        parsed: std::sync::OnceLock::new(),
        policy: std::sync::OnceLock::new(),
    })
}

/// What a token is meant to be, by its `typ` (RFC 8725 §3.11: explicit typing keeps the
/// kinds apart — a service token is never a transaction token, nor the reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typ {
    /// A call's token: `typ` absent or `JWT`.
    Service,
    /// A person's token: absent, `JWT` or `at+jwt` (RFC 9068).
    User,
    /// A transaction token: exactly `txntoken+jwt`.
    Transaction,
}

impl Typ {
    /// Whether a token whose `typ` is `typ` (`None`: absent) is of this kind. `Err` for a
    /// `typ` nobody here knows.
    fn admits(self, typ: Option<&str>) -> Result<bool, Rejection> {
        // A transaction token says so exactly (DESIGN.md "End users").
        if self == Typ::Transaction {
            return Ok(typ == Some("txntoken+jwt"));
        }
        let t = typ.map(|t| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(t)
        });
        match t.as_deref() {
            None | Some("jwt") => Ok(self != Typ::Transaction),
            Some("at+jwt") => Ok(self == Typ::User),
            Some("txntoken+jwt") => Ok(self == Typ::Transaction),
            Some(_) => Err(Rejection::Malformed),
        }
    }
}

/// Steps 2–4: size and shape, the JOSE header (alg, crit, typ, a trusted kid whose key
/// has that alg), the signature with the key's own algorithm. The key, the alg and the
/// claims' JSON text.
pub(super) fn signed_by<'k>(
    token: &str,
    keyring: &'k Keyring,
    kind: Typ,
) -> Result<(&'k Arc<TrustedKey>, KeyAlg, Vec<u8>), Rejection> {
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
    // RFC 7515 §4.1.9: "JWT" and "application/jwt" name the same type.
    let typ = match &header.typ {
        Member::Absent => None,
        t => Some(t.as_str().ok_or(Rejection::Malformed)?),
    };
    if !kind.admits(typ)? {
        // A call's token of another type is malformed, as it always was; a person's or a
        // transaction's says which type it is not.
        return Err(match kind {
            Typ::Service => Rejection::Malformed,
            Typ::User | Typ::Transaction => Rejection::WrongType,
        });
    }
    let kid = header.kid.as_str().ok_or(Rejection::UnknownKey)?;
    // A kid is only ever a map key: never a path, a URL or a query. Two sources trusting
    // one kid: the token's (unverified) `iss` picks whose key it means; then the
    // signature and every rule of that source decide.
    let trusted = select_key(keyring, kid, payload_b64)?;
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
    Ok((trusted, alg, decode_object_bytes(payload_b64)?))
}

/// The key a kid names, for the source the token's `iss` claims when several sources
/// trust that kid (the payload is read for `iss` only then).
fn select_key<'k>(
    keyring: &'k Keyring,
    kid: &str,
    payload_b64: &str,
) -> Result<&'k Arc<TrustedKey>, Rejection> {
    #[derive(serde::Deserialize)]
    struct Iss {
        #[serde(default)]
        iss: Option<String>,
    }
    let iss = || decode_object::<Iss>(payload_b64).ok().and_then(|p| p.iss);
    Ok(keyring.select(kid, iss).ok_or(Rejection::UnknownKey)?.key())
}

/// Step 5 for a token signed with the caller's own key: it speaks for one identity only.
fn own_caller(speaks: &Speaks, claims: &Claims) -> Result<Arc<str>, Rejection> {
    match speaks {
        Speaks::Identity(identity) => {
            if claims.iss != *identity || claims.sub != *identity {
                return Err(Rejection::IssuerMismatch);
            }
            Ok(identity.as_str().into())
        }
        // Shared-key mode: any holder can claim any (well-formed) identity.
        _ => {
            if claims.iss != claims.sub || !is_valid_identity(&claims.iss) {
                return Err(Rejection::IssuerMismatch);
            }
            Ok(claims.iss.as_str().into())
        }
    }
}

/// Step 6: `exp`, `nbf`, `iat` within the leeway and `exp - iat` at most `max_ttl`.
/// Without an `iat` (a JWT-SVID may omit it) the lifetime left is what is bounded.
pub(super) fn when(
    iat: u64,
    nbf: Option<u64>,
    exp: u64,
    max_ttl: Duration,
    leeway: Duration,
    now: u64,
) -> Result<(), Rejection> {
    let leeway = leeway.as_secs();
    if now > exp.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    if now.saturating_add(leeway) < nbf.unwrap_or(0) || now.saturating_add(leeway) < iat {
        return Err(Rejection::NotYetValid);
    }
    if exp < iat || exp - iat > max_ttl.as_secs() {
        return Err(Rejection::LifetimeTooLong);
    }
    Ok(())
}

/// The claims of a token an issuer signed (DESIGN.md "Platform identity").
#[derive(serde::Deserialize)]
struct PlatformClaims {
    #[serde(default)]
    iss: Option<String>,
    sub: String,
    aud: Audience,
    /// Required: a platform token without an expiry is a password.
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<serde_json::Value>,
}

/// Steps 5–6 for a token an issuer signed: `iss` exact, `aud` one of the issuer's
/// audiences, `exp` required, the lifetime bounded by the issuer's `max_token_ttl`; then
/// the subject by the issuer's kind, and its caller from the issuer's map.
fn vouched(
    vouch: &Vouch,
    payload: &[u8],
    policy: &VerifyPolicy,
    now: u64,
) -> Result<(Arc<str>, Claims), Rejection> {
    let pc: PlatformClaims = serde_json::from_slice(payload).map_err(|_| Rejection::Malformed)?;
    if let Some(issuer) = &vouch.issuer {
        if pc.iss.as_deref() != Some(issuer.as_str()) {
            return Err(Rejection::IssuerMismatch);
        }
    }
    pc.aud.names(&vouch.audiences, vouch.allow_multi_audience)?;
    let claims = Claims {
        iss: pc.iss.unwrap_or_default(),
        sub: pc.sub,
        aud: pc.aud,
        iat: pc.iat.unwrap_or(now),
        exp: pc.exp,
        nbf: pc.nbf,
        jti: pc.jti,
        ctx: None,
        htm: None,
        htu: None,
    };
    when(
        claims.iat,
        claims.nbf,
        claims.exp,
        vouch.max_ttl,
        policy.leeway,
        now,
    )?;
    let key = subject_key(vouch, &claims.sub, pc.kubernetes.as_ref())?;
    let caller = vouch
        .callers
        .get(key.as_ref())
        .ok_or(Rejection::UnmappedSubject)?;
    Ok((caller.as_str().into(), claims))
}

/// The key of `callers` a subject is looked up by, once it is well-formed for its kind.
fn subject_key<'a>(
    vouch: &Vouch,
    sub: &'a str,
    kubernetes: Option<&serde_json::Value>,
) -> Result<Cow<'a, str>, Rejection> {
    match vouch.kind {
        IssuerKind::Kubernetes => {
            // `system:serviceaccount:<ns>:<sa>`, and the `kubernetes.io` claim agreeing.
            let rest = sub
                .strip_prefix("system:serviceaccount:")
                .ok_or(Rejection::SubjectMismatch)?;
            let (ns, sa) = rest.split_once(':').ok_or(Rejection::SubjectMismatch)?;
            let k = kubernetes.ok_or(Rejection::SubjectMismatch)?;
            let agrees = k.pointer("/namespace").and_then(|v| v.as_str()) == Some(ns)
                && k.pointer("/serviceaccount/name").and_then(|v| v.as_str()) == Some(sa);
            if ns.is_empty() || sa.is_empty() || sa.contains(':') || !agrees {
                return Err(Rejection::SubjectMismatch);
            }
            Ok(format!("{ns}/{sa}").into())
        }
        IssuerKind::Spiffe => {
            let domain = vouch.trust_domain.as_deref().unwrap_or_default();
            if !is_spiffe_id_in(sub, domain) {
                return Err(Rejection::SubjectMismatch);
            }
            Ok(sub.into())
        }
        IssuerKind::Oidc => Ok(sub.into()),
    }
}

/// Claims must be a JSON object: serde would otherwise read an array into the struct by
/// position.
pub(super) fn decode_object<T: serde::de::DeserializeOwned>(b64: &str) -> Result<T, Rejection> {
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
