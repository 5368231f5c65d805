//! Keys: what a trustgate signs with and what it trusts.
//!
//! Every key format (PEM, JWK, JWKS, OpenSSH) is parsed into the same two types,
//! [`SigningKey`] and [`VerifyingKey`], whose `kid` is the RFC 7638 SHA-256 thumbprint of
//! the public JWK, computed in one place ([`thumbprint`]) whatever the input format was.
//! The algorithm belongs to the key, never to a token: a P-256 key only ever verifies
//! ES256, an Ed25519 key EdDSA, an RSA key RS256 and a shared secret HS256.

mod format;
mod generate;
mod issuer;
mod keyring;
mod loader;
mod private;

pub use format::parse_public_keys;
pub use generate::{generate, write_keypair, GeneratedFiles, OutputFormat};
pub use issuer::{is_spiffe_id_in, parse_issuer_jwks, IssuerKind, Vouch};
pub use keyring::{FileProblem, Keyring, Selected, SharedKid, Speaks, TrustedKey};
pub use loader::{load_dir, load_revoked, parse_url_file, DirLoad, UrlSource};
pub use private::{load_shared_key, load_signing_key};

use std::fmt;
use std::path::PathBuf;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::DecodingKey;

/// Errors of key handling. Each names the file concerned where there is one.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // The cause is part of the message and not also a `source()`, so that a printed
    // chain says it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

impl KeyError {
    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        KeyError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The JWS algorithms trustgate signs and verifies with. One per key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    Es256,
    EdDsa,
    Rs256,
    Hs256,
}

impl KeyAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Hs256 => "HS256",
        }
    }

    /// Parses a JOSE `alg` name, exactly (JOSE names are case-sensitive).
    pub fn from_jose(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(KeyAlg::Es256),
            "EdDSA" => Some(KeyAlg::EdDsa),
            "RS256" => Some(KeyAlg::Rs256),
            "HS256" => Some(KeyAlg::Hs256),
            _ => None,
        }
    }

    pub fn jwt_alg(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyAlg::Es256 => jsonwebtoken::Algorithm::ES256,
            KeyAlg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            KeyAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
            KeyAlg::Hs256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that verifies signatures: a public key, or the secret of shared-key mode.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub alg: KeyAlg,
    /// The public JWK (with `kid`, `alg`, `use`). `None` for a shared secret, which is
    /// never published.
    pub jwk: Option<Jwk>,
    pub decoding: DecodingKey,
    /// The public key parsed once for aws-lc (ES256, EdDSA), so that a verification does
    /// not parse and check the point again on every request; `None` for RS256 and shared
    /// secrets, which verify through `decoding`.
    pub parsed: Option<aws_lc_rs::signature::ParsedPublicKey>,
}

impl fmt::Debug for VerifyingKey {
    // Key material stays out of logs, even public keys: kid and alg say which key it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Builds a verifying key from a public JWK whose key members are canonical
    /// (base64url without padding, fixed-length EC coordinates, no leading zeros in RSA
    /// integers), so that the thumbprint is the RFC 7638 one.
    pub(crate) fn from_public_jwk(mut jwk: Jwk, alg: KeyAlg) -> Result<Self, String> {
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
        let parsed = parse_public(&jwk, alg)?;
        let kid = thumbprint(&jwk)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.key_algorithm = Some(key_algorithm(alg));
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(VerifyingKey {
            kid,
            alg,
            jwk: Some(jwk),
            decoding,
            parsed,
        })
    }
}

impl VerifyingKey {
    /// The same key under the kid its issuer published (issuers' kids are not
    /// thumbprints: see [`issuer`]).
    pub(crate) fn with_kid(mut self, kid: String) -> Self {
        if let Some(jwk) = &mut self.jwk {
            jwk.common.key_id = Some(kid.clone());
        }
        self.kid = kid;
        self
    }
}

/// ES256 and EdDSA public keys in the form aws-lc verifies with, parsed (and the point
/// checked) once.
fn parse_public(
    jwk: &Jwk,
    alg: KeyAlg,
) -> Result<Option<aws_lc_rs::signature::ParsedPublicKey>, String> {
    use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let b64 = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "unusable key: a member is not base64url".to_owned())
    };
    let parsed = match (alg, &jwk.algorithm) {
        (KeyAlg::Es256, P::EllipticCurve(ec)) => {
            let mut point = vec![4u8];
            point.extend(b64(&ec.x)?);
            point.extend(b64(&ec.y)?);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        }
        (KeyAlg::EdDsa, P::OctetKeyPair(okp)) => ParsedPublicKey::new(&ED25519, b64(&okp.x)?),
        _ => return Ok(None),
    };
    parsed
        .map(Some)
        .map_err(|_| "unusable key: not a valid public key for its algorithm".to_owned())
}

/// RFC 7638 JWK SHA-256 thumbprint, base64url without padding.
pub fn thumbprint(jwk: &Jwk) -> Result<String, String> {
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| format!("cannot compute the key thumbprint: {e}"))
}

fn key_algorithm(alg: KeyAlg) -> jsonwebtoken::jwk::KeyAlgorithm {
    use jsonwebtoken::jwk::KeyAlgorithm as K;
    match alg {
        KeyAlg::Es256 => K::ES256,
        KeyAlg::EdDsa => K::EdDSA,
        KeyAlg::Rs256 => K::RS256,
        KeyAlg::Hs256 => K::HS256,
    }
}

/// The private half, parsed once: signing a token costs one signature, no key parsing.
pub(crate) enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
    Hs256(Box<aws_lc_rs::hmac::Key>),
}

/// This service's signing key.
pub struct SigningKey {
    pub kid: String,
    pub alg: KeyAlg,
    signer: Signer,
    /// The public half, published in `/.well-known/jwks.json`. For a shared secret this
    /// is the secret itself as a verifying key and is never published.
    verifying: VerifyingKey,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub(crate) fn new(signer: Signer, verifying: VerifyingKey) -> Self {
        SigningKey {
            kid: verifying.kid.clone(),
            alg: verifying.alg,
            signer,
            verifying,
            rng: SystemRandom::new(),
        }
    }

    /// Signs `message` (the JWS signing input) and returns the raw signature bytes
    /// (for ES256 the fixed 64-byte `r || s` form JWS requires).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let fail = |_| KeyError::Sign(format!("{} signature failed", self.alg));
        match &self.signer {
            Signer::Es256(k) => Ok(k.sign(&self.rng, message).map_err(fail)?.as_ref().to_vec()),
            Signer::EdDsa(k) => Ok(k.sign(message).as_ref().to_vec()),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    message,
                    &mut sig,
                )
                .map_err(fail)?;
                Ok(sig)
            }
            Signer::Hs256(k) => Ok(aws_lc_rs::hmac::sign(k, message).as_ref().to_vec()),
        }
    }

    /// The key that verifies this key's signatures.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The public JWK to publish, or `None` in shared-key mode (a secret is never published).
    pub fn public_jwk(&self) -> Option<&Jwk> {
        match self.alg {
            KeyAlg::Hs256 => None,
            _ => self.verifying.jwk.as_ref(),
        }
    }
}

/// A service identity: a DNS label, `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn is_valid_identity(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_dns_labels() {
        for good in ["orders", "a", "billing-v2", "0x", &"a".repeat(63)] {
            assert!(is_valid_identity(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Orders",
            "a.b",
            "a_b",
            "../etc",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!is_valid_identity(bad), "{bad}");
        }
    }

    #[test]
    fn jose_names_are_exact() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa, KeyAlg::Rs256, KeyAlg::Hs256] {
            assert_eq!(KeyAlg::from_jose(alg.as_str()), Some(alg));
        }
        assert_eq!(KeyAlg::from_jose("es256"), None);
        assert_eq!(KeyAlg::from_jose("none"), None);
    }
}
