//! Signing: one key parsed once, one signature per token.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::claims::{Audience, Claims};
use crate::keys::{KeyError, SigningKey};

/// Signs tokens as one identity with one key.
pub struct TokenSigner {
    identity: String,
    key: Arc<SigningKey>,
    ttl: Duration,
    /// The encoded JOSE header, the same for every token of this key.
    header_b64: String,
    /// The same for the transaction tokens it mints (`typ: txntoken+jwt`).
    txn_header_b64: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("identity", &self.identity)
            .field("kid", &self.key.kid)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TokenSigner {
    pub fn new(identity: String, key: Arc<SigningKey>, ttl: Duration) -> Self {
        let header = serde_json::json!({"alg": key.alg.as_str(), "typ": "JWT", "kid": key.kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let txn =
            serde_json::json!({"alg": key.alg.as_str(), "typ": "txntoken+jwt", "kid": key.kid});
        let txn_header_b64 = URL_SAFE_NO_PAD.encode(txn.to_string());
        TokenSigner {
            identity,
            key,
            ttl,
            header_b64,
            txn_header_b64,
            rng: SystemRandom::new(),
        }
    }

    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn key(&self) -> &Arc<SigningKey> {
        &self.key
    }

    /// A transaction token's compact form: its header (made once), `payload`, signed.
    pub(super) fn txn_compact(&self, payload: &[u8]) -> Result<String, KeyError> {
        compact(&self.key, &self.txn_header_b64, payload)
    }

    /// A token for `aud`, valid from `now` for the signer's ttl, with a fresh 128-bit `jti`.
    /// `binding` is (method, path and query) for request-bound tokens.
    pub fn sign(
        &self,
        aud: &str,
        ctx: Option<&BTreeMap<String, String>>,
        binding: Option<(&str, &str)>,
        now: u64,
    ) -> Result<String, KeyError> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| KeyError::Sign("no randomness for jti".into()))?;
        let claims = Claims {
            iss: self.identity.clone(),
            sub: self.identity.clone(),
            aud: Audience::One(aud.to_owned()),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
            nbf: None,
            jti: Some(URL_SAFE_NO_PAD.encode(jti)),
            ctx: ctx.filter(|c| !c.is_empty()).cloned(),
            htm: binding.map(|(m, _)| m.to_owned()),
            htu: binding.map(|(_, u)| u.to_owned()),
        };
        let payload = serde_json::to_vec(&claims).map_err(|e| KeyError::Sign(e.to_string()))?;
        compact(&self.key, &self.header_b64, &payload)
    }
}

/// A compact JWS: `header.payload.signature`, the header already encoded.
pub(super) fn compact(
    key: &SigningKey,
    header_b64: &str,
    payload: &[u8],
) -> Result<String, KeyError> {
    let mut token = String::with_capacity(header_b64.len() + payload.len() * 2 + 100);
    token.push_str(header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}
