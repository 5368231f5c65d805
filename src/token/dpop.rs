//! DPoP proofs (RFC 9449): a token bound to a key (`cnf.jkt`) is worth something only
//! with a fresh proof signed by that key. The proof's checks, in the RFC's order (§4.3),
//! as pure functions of the proof, the request and the access token; the single use of a
//! proof's `jti` is the caller's ([`crate::proxy::inbound`] keeps the replay caches).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::keys::{KeyAlg, VerifyingKey};

words! {
    /// Why a DPoP proof (or a bound token without one) was refused: the reason
    /// `user_dpop_<word>` (the metric's `result`).
    pub enum DpopRejection as word {
        /// No `DPoP` header with a token bound to a key.
        Missing = "missing",
        /// Two `DPoP` headers, or one that is not a proof JWT (`typ`, `alg`, `jwk`, claims).
        Malformed = "malformed",
        /// The proof's signature does not verify with its own `jwk`.
        BadSignature = "bad_signature",
        /// `htm` is not the request's method.
        WrongMethod = "wrong_method",
        /// `htu` is not one of `dpop_origins` followed by the request's path.
        WrongUri = "wrong_uri",
        /// `iat` outside `dpop_max_age` (and the leeway).
        Stale = "stale",
        /// The proof's `jti` was used before within the window.
        Replayed = "replayed",
        /// The proof's key is not the one the token is bound to (`cnf.jkt`).
        KeyMismatch = "key_mismatch",
        /// `ath` is not the hash of the access token sent with it.
        TokenMismatch = "token_mismatch",
        /// A bound token sent with the `Bearer` scheme (the theft DPoP exists to stop).
        BearerScheme = "bearer_scheme",
        /// `dpop = "required"` and the token is not bound to a key.
        Unbound = "unbound",
        /// A bound token at an edge without `dpop_origins`: nothing to check `htu` against.
        Unconfigured = "unconfigured",
    }
}

impl DpopRejection {
    /// A caller's token's reason (`dpop_<word>`).
    pub fn caller_reason(self) -> &'static str {
        &self.user_reason()["user_".len()..]
    }

    /// A person's token's: the 401's reason and the access log's.
    pub fn user_reason(self) -> &'static str {
        // Spelled out (snake case of each word) so that the reasons are constants.
        match self {
            DpopRejection::Missing => "user_dpop_missing",
            DpopRejection::Malformed => "user_dpop_malformed",
            DpopRejection::BadSignature => "user_dpop_bad_signature",
            DpopRejection::WrongMethod => "user_dpop_wrong_method",
            DpopRejection::WrongUri => "user_dpop_wrong_uri",
            DpopRejection::Stale => "user_dpop_stale",
            DpopRejection::Replayed => "user_dpop_replayed",
            DpopRejection::KeyMismatch => "user_dpop_key_mismatch",
            DpopRejection::TokenMismatch => "user_dpop_token_mismatch",
            DpopRejection::BearerScheme => "user_dpop_bearer_scheme",
            DpopRejection::Unbound => "user_dpop_unbound",
            DpopRejection::Unconfigured => "user_dpop_unconfigured",
        }
    }
}

/// The asymmetric algorithms a proof may use (`WWW-Authenticate: DPoP algs="…"`).
pub const ALGS: &str = "ES256 ES384 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA";

/// What the proof is checked against, besides the request.
pub struct ProofPolicy<'a> {
    /// `dpop_origins`, normalised ([`origin`]).
    pub origins: &'a [String],
    /// `dpop_max_age`, seconds.
    pub max_age: u64,
    /// `trust.leeway`, seconds.
    pub leeway: u64,
}

/// A proof that passed every check but its single use.
#[derive(Debug)]
pub struct Proof {
    pub jti: String,
    pub iat: u64,
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: String,
    jwk: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<u64>,
    ath: Option<String>,
}

/// The members only a private JWK has: a proof carrying one is refused (RFC 9449 §4.3
/// step 7: the key must not be private).
const PRIVATE: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// A proof's key, from its header: what verifies it and its RFC 7638 thumbprint.
struct ProofKey {
    alg: Algorithm,
    /// ES256, EdDSA: parsed once for aws-lc; the others through `decoding`.
    verifying: Option<VerifyingKey>,
    decoding: DecodingKey,
    jkt: String,
}

/// The keys of the proofs seen, by their header's bytes (a client's proofs all carry the
/// same header: `typ`, `alg`, `jwk`): the header parsed, the key checked and its
/// thumbprint computed once per client, not per request. Bounded: emptied when full.
pub struct ProofKeys {
    capacity: usize,
    keys: Mutex<HashMap<Box<str>, Arc<ProofKey>>>,
}

impl ProofKeys {
    pub fn new(capacity: usize) -> Self {
        ProofKeys {
            capacity,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, header_b64: &str) -> Result<Arc<ProofKey>, DpopRejection> {
        let lock = || self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = lock().get(header_b64) {
            return Ok(k.clone());
        }
        let key = Arc::new(proof_key(header_b64)?);
        let mut keys = lock();
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(header_b64.into(), key.clone());
        Ok(key)
    }
}

/// The header's checks (§4.3 steps 4–7): `typ` `dpop+jwt`, an asymmetric `alg`, a public
/// `jwk` (no private members) usable with it.
fn proof_key(header_b64: &str) -> Result<ProofKey, DpopRejection> {
    use DpopRejection as R;
    let bytes = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| R::Malformed)?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| R::Malformed)?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(R::Malformed);
    }
    let alg = asymmetric(&header.alg).ok_or(R::Malformed)?;
    let jwk = header.jwk.ok_or(R::Malformed)?;
    if PRIVATE.iter().any(|m| jwk.contains_key(*m)) {
        return Err(R::Malformed);
    }
    let jwk: Jwk =
        serde_json::from_value(serde_json::Value::Object(jwk)).map_err(|_| R::Malformed)?;
    let jkt = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .map_err(|_| R::Malformed)?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| R::Malformed)?;
    let verifying = match alg {
        Algorithm::ES256 => Some(KeyAlg::Es256),
        Algorithm::EdDSA => Some(KeyAlg::EdDsa),
        _ => None,
    }
    .and_then(|a| VerifyingKey::from_public_jwk(jwk, a).ok())
    .filter(|v| v.parsed.is_some());
    Ok(ProofKey {
        alg,
        verifying,
        decoding,
        jkt,
    })
}

/// The RFC's checks of one proof (§4.3), in its order: a JWT; `typ` `dpop+jwt`; an
/// asymmetric `alg`; a public `jwk` that verifies the signature; `jti`, `htm`, `htu`,
/// `iat`; `ath` the hash of `access_token`; the key's thumbprint `jkt`.
/// `method` and `path` are the request's as it arrived (the client signed those).
pub fn verify_proof(
    proof: &str,
    (method, path): (&str, &str),
    access_token: &str,
    jkt: &str,
    policy: &ProofPolicy<'_>,
    keys: &ProofKeys,
    now: u64,
) -> Result<Proof, DpopRejection> {
    use DpopRejection as R;
    let mut parts = proof.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(R::Malformed);
    };
    let key = keys.get(h)?;
    let message = &proof.as_bytes()[..h.len() + 1 + c.len()];
    let valid = match key.verifying.as_ref().and_then(|v| v.parsed.as_ref()) {
        Some(parsed) => {
            let mut raw = [0u8; 64];
            matches!(URL_SAFE_NO_PAD.decode_slice(sig, &mut raw), Ok(64))
                && parsed.verify_sig(message, &raw).is_ok()
        }
        None => jsonwebtoken::crypto::verify(sig, message, &key.decoding, key.alg).unwrap_or(false),
    };
    if !valid {
        return Err(R::BadSignature);
    }
    let claims = URL_SAFE_NO_PAD.decode(c).map_err(|_| R::Malformed)?;
    let claims: Claims = serde_json::from_slice(&claims).map_err(|_| R::Malformed)?;
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(R::Malformed)?;
    if claims.htm.as_deref() != Some(method) {
        return Err(R::WrongMethod);
    }
    let htu = claims.htu.ok_or(R::Malformed)?;
    if !uri_matches(&htu, path, policy.origins) {
        return Err(R::WrongUri);
    }
    let iat = claims.iat.ok_or(R::Malformed)?;
    if iat > now + policy.leeway || iat + policy.max_age + policy.leeway < now {
        return Err(R::Stale);
    }
    if claims.ath.as_deref() != Some(ath(access_token).as_str()) {
        return Err(R::TokenMismatch);
    }
    if key.jkt != jkt {
        return Err(R::KeyMismatch);
    }
    Ok(Proof { jti, iat })
}

/// The asymmetric algorithms a proof may name (never `none`, never HS*).
fn asymmetric(alg: &str) -> Option<Algorithm> {
    Some(match alg {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// `ath`: base64url SHA-256 of the access token's ASCII.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, access_token.as_bytes()))
}

/// An origin as `dpop_origins` names it, normalised (RFC 3986 §6.2.2): scheme and host
/// lower-cased, the scheme's default port removed; no path (a lone `/` aside), query,
/// fragment or user information.
pub fn origin(text: &str) -> Result<String, String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("\"{text}\" is not scheme://host[:port]"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("\"{text}\": the scheme must be https or http"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "\"{text}\" must be an origin: scheme://host[:port], no path, query or user"
        ));
    }
    let authority = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(&authority);
    Ok(format!("{scheme}://{authority}"))
}

/// `htu` is one of the origins followed by the request's path: query and fragment
/// ignored, both sides normalised (the origin as [`origin`]; the paths as the inbound's
/// canonical form: unreserved escapes decoded, other escapes upper-cased).
fn uri_matches(htu: &str, path: &str, origins: &[String]) -> bool {
    let htu = htu.split('#').next().unwrap_or_default();
    let htu = htu.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = htu.split_once("://") else {
        return false;
    };
    let (authority, htu_path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let Ok(htu_origin) = origin(&format!("{scheme}://{authority}")) else {
        return false;
    };
    if !origins.contains(&htu_origin) {
        return false;
    }
    let canonical =
        |p: &str| crate::http::path::canonical(p, false).map(|c| c.forward.into_owned());
    let path = path.split('?').next().unwrap_or_default();
    matches!((canonical(htu_path), canonical(path)), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_paths_compared_canonical() {
        assert_eq!(
            origin("HTTPS://API.Example.com:443/").unwrap(),
            "https://api.example.com"
        );
        assert_eq!(origin("http://a:8080").unwrap(), "http://a:8080");
        for bad in [
            "api.example.com",
            "ftp://a",
            "https://a/x",
            "https://u@a",
            "https://",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
        let origins = [origin("https://api.example.com").unwrap()];
        let ok = |htu: &str, path: &str| uri_matches(htu, path, &origins);
        assert!(ok("https://api.example.com/orders", "/orders"));
        assert!(ok(
            "https://API.example.com:443/orders?x=1#f",
            "/orders?y=2"
        ));
        assert!(ok("https://api.example.com/%6Frders", "/orders"));
        assert!(!ok("https://api.example.com/orders/1", "/orders"));
        assert!(!ok("https://evil.example.com/orders", "/orders"));
        assert!(!ok("http://api.example.com/orders", "/orders"));
        assert!(!ok("https://api.example.com:8443/orders", "/orders"));
    }

    #[test]
    fn ath_is_the_rfc_example() {
        // RFC 9449 §7.1: the access token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
        // has ath "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo".
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
