//! Keys an issuer publishes — the Kubernetes API server, a SPIFFE trust domain, an OIDC
//! provider — and what a token signed with one of them vouches for ([`Vouch`]).
//!
//! An issuer's kids are whatever it publishes (the API server's, SPIRE's and most OIDC
//! providers' are not RFC 7638 thumbprints): kept as published, matched exactly. Every
//! other rule of key files holds: no private members (the whole document is refused),
//! no weak keys, the algorithm from the key. A key this trustgate cannot use (another
//! `use`, an algorithm it does not verify) is skipped and said, not fatal: issuers
//! publish encryption and X.509-SVID keys beside their signing keys.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::format::{jwk_public_key, PRIVATE_MEMBERS};
use super::{thumbprint, VerifyingKey};

/// `[[trust.issuers]].kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// Projected service-account tokens: `sub` = `system:serviceaccount:<ns>:<sa>`.
    Kubernetes,
    /// JWT-SVIDs: `sub` a SPIFFE ID of the trust domain.
    Spiffe,
    /// Any OIDC issuer: `sub` as the issuer says.
    Oidc,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Kubernetes => "kubernetes",
            IssuerKind::Spiffe => "spiffe",
            IssuerKind::Oidc => "oidc",
        }
    }
}

/// What a key published by an issuer vouches for: the rules every token it signs must
/// meet, and whom its subjects may be as callers. Made by the trust plane from the
/// configuration (and, for `kubernetes:///`, the issuer read from the pod's own token).
#[derive(Debug, PartialEq, Eq)]
pub struct Vouch {
    /// `[[trust.issuers]].name`: the label in metrics, logs and `/trust`.
    pub name: String,
    pub kind: IssuerKind,
    /// `iss` must equal this exactly; `None` only for a SPIFFE issuer without `issuer`
    /// (SPIRE omits `iss` by default).
    pub issuer: Option<String>,
    /// `aud` must name one of these.
    pub audiences: Vec<String>,
    /// Longest `exp - iat` accepted.
    pub max_ttl: Duration,
    /// Subject (kubernetes: `<namespace>/<serviceaccount>`; spiffe: the SPIFFE ID; oidc:
    /// `sub`) → caller identity.
    pub callers: HashMap<String, String>,
    /// spiffe: the trust domain every `sub` must be in.
    pub trust_domain: Option<String>,
    /// Its tokens are people's (a user issuer), never a caller's.
    pub users: bool,
    /// An `aud` list naming other audiences besides one of [`Vouch::audiences`] is
    /// accepted (the issuer's `allow_multi_audience`, else `trust.allow_multi_audience`).
    pub allow_multi_audience: bool,
}

/// Keys of an issuer's JWKS, and why each key that is not among them was skipped.
pub fn parse_issuer_jwks(
    body: &[u8],
    kind: IssuerKind,
) -> Result<(Vec<VerifyingKey>, Vec<String>), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let list = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS (no \"keys\" array)")?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let n = i + 1;
        let obj = v
            .as_object()
            .ok_or_else(|| format!("JWKS key {n}: not a JSON object"))?;
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            // A provider that publishes private material is broken: trust none of it.
            return Err(format!(
                "JWKS key {n} holds private key material (member \"{m}\"); refused whole"
            ));
        }
        match obj.get("use").map(|u| u.as_str()) {
            None | Some(Some("sig")) => {}
            Some(Some("jwt-svid")) if kind == IssuerKind::Spiffe => {}
            Some(u) => {
                skipped.push(format!(
                    "key {n}: \"use\" is {}; not a token signing key",
                    u.map_or("not a string".to_owned(), |u| format!("\"{u}\""))
                ));
                continue;
            }
        }
        let key = match jwk_public_key(obj) {
            Ok(k) => k,
            Err(reason) => {
                skipped.push(format!("key {n}: {reason}"));
                continue;
            }
        };
        let kid = match obj.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            Some(_) => {
                skipped.push(format!("key {n}: \"kid\" is not a non-empty string"));
                continue;
            }
            // No kid published: the thumbprint (what a token would have to name).
            None => key
                .jwk
                .as_ref()
                .map(thumbprint)
                .transpose()?
                .unwrap_or_else(|| key.kid.clone()),
        };
        if !seen.insert(kid.clone()) {
            skipped.push(format!("key {n}: kid \"{kid}\" is published twice"));
            continue;
        }
        keys.push(key.with_kid(kid));
    }
    Ok((keys, skipped))
}

/// A SPIFFE ID (spiffe.io SPIFFE-ID §2) in `domain`: `spiffe://<domain>/<path>`, a path of
/// non-empty segments of letters, digits, `.`, `-` and `_`, no dot segments, nothing
/// percent-encoded, no query or fragment.
pub fn is_spiffe_id_in(id: &str, domain: &str) -> bool {
    let Some(path) = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(domain))
    else {
        return false;
    };
    !domain.is_empty()
        && path.len() > 1
        && path.starts_with('/')
        && path[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_jwk(extra: serde_json::Value) -> serde_json::Value {
        // A P-256 point (the generator), valid on the curve.
        let mut jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        });
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    #[test]
    fn kids_are_kept_as_published_and_unusable_keys_skipped() {
        let doc = serde_json::json!({"keys": [
            ec_jwk(serde_json::json!({"kid": "cluster-key-1", "use": "sig"})),
            ec_jwk(serde_json::json!({"kid": "svid", "use": "jwt-svid"})),
            ec_jwk(serde_json::json!({"kid": "x509", "use": "x509-svid"})),
            ec_jwk(serde_json::json!({"kid": "enc", "use": "enc"})),
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            ec_jwk(serde_json::json!({"kid": "cluster-key-1"})),
        ]});
        let body = serde_json::to_vec(&doc).unwrap();
        let (keys, skipped) = parse_issuer_jwks(&body, IssuerKind::Spiffe).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["cluster-key-1", "svid"]);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert_eq!(
            keys[0].jwk.as_ref().unwrap().common.key_id.as_deref(),
            Some("cluster-key-1")
        );
        // Outside SPIFFE, `jwt-svid` is not a signing use.
        let (keys, _) = parse_issuer_jwks(&body, IssuerKind::Oidc).unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn private_members_refuse_the_whole_document() {
        let doc = serde_json::json!({"keys": [
            ec_jwk(serde_json::json!({"kid": "a"})),
            ec_jwk(serde_json::json!({"kid": "b", "d": "AAAA"})),
        ]});
        let err = parse_issuer_jwks(&serde_json::to_vec(&doc).unwrap(), IssuerKind::Kubernetes)
            .unwrap_err();
        assert!(err.contains("private key material"), "{err}");
        assert!(parse_issuer_jwks(b"{\"kty\":\"EC\"}", IssuerKind::Oidc).is_err());
    }
}
