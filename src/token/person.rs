//! The person behind a call (DESIGN.md "End users"): a person's own token (from a user
//! issuer, an OIDC provider) verified at the edge, and the transaction token
//! (draft-ietf-oauth-transaction-tokens) that carries the person down the chain — minted
//! by the sidecar that verified them, verified by every sidecar after it.
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::claims::Audience;
use super::sign::TokenSigner;
use super::verify::{signed_by, when, Rejection, Typ};
use crate::keys::{KeyError, Keyring, Speaks};

/// A verified person.
#[derive(Clone, Debug)]
pub struct Person {
    /// Their subject (`sub`).
    pub sub: String,
    /// The user issuer that vouched for them (its `[[trust.issuers]].name`; downstream, the
    /// transaction token's `rctx.user_iss`).
    pub issuer: String,
    /// The person's `iss` (their token's at the edge; `rctx.user_iss` downstream): what a
    /// transaction token minted for them names as `rctx.user_iss`.
    pub iss: String,
    /// The transaction's id (`txn`): from the transaction token downstream, or minted here.
    pub txn: Option<String>,
    /// The transaction context (`tctx`).
    pub tctx: Map<String, Value>,
    /// Their `scope`, when their token had one.
    pub scope: Option<String>,
    /// Their verified claims (at the edge only), for `[inbound.users] context`.
    pub claims: Value,
    /// The identity that minted the transaction token (downstream).
    pub minted_by: Option<String>,
    /// When the token that named them expires, and the key that signed it (for the
    /// verified-token cache).
    pub exp: u64,
    pub kid: String,
    /// The key their token is bound to (`cnf.jkt`, RFC 9449): a proof signed by it must
    /// come with the token (at the edge only).
    pub jkt: Option<String>,
    /// The headers that name them to the app, made on first use and kept with them (a
    /// cached transaction token names the same person request after request).
    pub headers: std::sync::OnceLock<Vec<(http::HeaderName, http::HeaderValue)>>,
}

impl Person {
    /// This person for one request: everything but their claims (read once, into
    /// [`Person::tctx`], when their token was verified) and the headers made for another
    /// request.
    pub fn for_request(&self) -> Person {
        Person {
            sub: self.sub.clone(),
            issuer: self.issuer.clone(),
            iss: self.iss.clone(),
            txn: self.txn.clone(),
            tctx: self.tctx.clone(),
            scope: self.scope.clone(),
            claims: Value::Null,
            minted_by: self.minted_by.clone(),
            exp: self.exp,
            kid: self.kid.clone(),
            jkt: self.jkt.clone(),
            headers: Default::default(),
        }
    }

    /// A person known by subject and issuer only (to mint a transaction token for them
    /// outside a request: `trustgate token --transaction-for`, tests).
    pub fn named(sub: &str, issuer: &str) -> Person {
        Person {
            sub: sub.to_owned(),
            issuer: issuer.to_owned(),
            iss: issuer.to_owned(),
            txn: None,
            tctx: Map::new(),
            scope: None,
            claims: Value::Null,
            minted_by: None,
            exp: 0,
            kid: String::new(),
            jkt: None,
            headers: Default::default(),
        }
    }
}

/// The claims of a person's token that are checked.
#[derive(Deserialize)]
struct UserClaims {
    iss: String,
    sub: String,
    aud: Audience,
    /// Required: a person's token without an expiry is a password.
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    /// The confirmation (RFC 7800): `jkt` for a DPoP-bound token (RFC 9449 §6.1).
    #[serde(default)]
    cnf: Option<Confirmation>,
}

#[derive(Deserialize)]
struct Confirmation {
    #[serde(default)]
    jkt: Option<String>,
}

/// A person's token: signed by a user issuer's key (never a caller's or a peer's), `typ`
/// absent, `JWT` or `at+jwt`; `iss` the issuer's exactly; `aud` one of its audiences;
/// `exp` required; the lifetime bounded by the issuer's `max_token_ttl`; not revoked.
pub fn verify_user(
    token: &str,
    keyring: &Keyring,
    leeway: Duration,
    now: u64,
) -> Result<Person, Rejection> {
    // The key the token's kid (and `iss`, where sources share a kid) picks must be a user
    // issuer's before its signature is worth checking: a caller's key under the same kid
    // means the person's issuer has not been fetched yet — unknown, so that it is.
    if let Some(claimed) = super::peek(token) {
        let picked = keyring.select(&claimed.kid, || claimed.iss.clone());
        let users = |s: &Speaks| matches!(s, Speaks::Issuer(v) if v.users);
        if picked.is_some_and(|p| !users(&p.key().speaks)) {
            return Err(Rejection::UnknownKey);
        }
    }
    let (trusted, _, payload) = signed_by(token, keyring, Typ::User)?;
    let Speaks::Issuer(vouch) = &trusted.speaks else {
        return Err(Rejection::UnknownKey);
    };
    if !vouch.users {
        return Err(Rejection::UnknownKey);
    }
    let c: UserClaims = serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)?;
    if !plain(&c.sub) {
        return Err(Rejection::Malformed);
    }
    if vouch.issuer.as_deref() != Some(c.iss.as_str()) {
        return Err(Rejection::IssuerMismatch);
    }
    c.aud.names(&vouch.audiences, vouch.allow_multi_audience)?;
    when(
        c.iat.unwrap_or(now),
        c.nbf,
        c.exp,
        vouch.max_ttl,
        leeway,
        now,
    )?;
    if keyring.is_revoked(&trusted.key.kid) {
        return Err(Rejection::Revoked);
    }
    let claims: Value = serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)?;
    Ok(Person {
        sub: c.sub,
        issuer: vouch.name.clone(),
        iss: c.iss.clone(),
        txn: None,
        tctx: Map::new(),
        scope: c.scope,
        claims,
        minted_by: None,
        exp: c.exp,
        kid: trusted.key.kid.clone(),
        jkt: c.cnf.and_then(|c| c.jkt),
        headers: Default::default(),
    })
}

/// A transaction token's claims.
#[derive(Serialize, Deserialize)]
struct TxnClaims {
    iss: String,
    aud: Audience,
    iat: u64,
    exp: u64,
    txn: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default)]
    tctx: Map<String, Value>,
    rctx: RequestContext,
}

/// [`TxnClaims`] as minted: borrowed from the person and the signer (no copy per request).
#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    txn: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    tctx: &'a Map<String, Value>,
    rctx: MintedContext<'a>,
}

#[derive(Serialize)]
struct MintedContext<'a> {
    req_wl: &'a str,
    user_iss: &'a str,
}

#[derive(Serialize, Deserialize)]
struct RequestContext {
    /// The workload that minted it.
    req_wl: String,
    /// The person's issuer.
    user_iss: String,
}

/// What a transaction token must meet here.
pub struct TxnPolicy<'a> {
    /// `trust.transaction_token_issuers`.
    pub issuers: &'a [String],
    /// `identity.trust_domain`.
    pub trust_domain: &'a str,
    pub leeway: Duration,
    /// `trust.max_transaction_ttl`.
    pub max_ttl: Duration,
}

/// A transaction token: `typ` exactly `txntoken+jwt`; signed by a key trusted for one of
/// the identities listed (its own key, as for calls), `iss` that identity; `aud` this
/// trust domain; `exp`/`iat` within the leeway, `exp - iat` at most the policy's.
pub fn verify_txn(
    token: &str,
    keyring: &Keyring,
    policy: &TxnPolicy,
    now: u64,
) -> Result<Person, Rejection> {
    let (trusted, _, payload) = signed_by(token, keyring, Typ::Transaction)?;
    let c: TxnClaims = serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)?;
    // Minted with the minter's own key (a key file, a key URL, or the shared key).
    let minter = match &trusted.speaks {
        Speaks::Identity(id) => id.as_str(),
        Speaks::Anyone => c.iss.as_str(),
        Speaks::Issuer(_) => return Err(Rejection::UntrustedIssuer),
    };
    if c.iss != minter || !policy.issuers.contains(&c.iss) {
        return Err(Rejection::UntrustedIssuer);
    }
    if !c.aud.only(policy.trust_domain) {
        return Err(Rejection::WrongAudience);
    }
    when(c.iat, None, c.exp, policy.max_ttl, policy.leeway, now)?;
    if keyring.is_revoked(&trusted.key.kid) {
        return Err(Rejection::Revoked);
    }
    if !plain(&c.txn) || !plain(&c.sub) || !plain(&c.rctx.user_iss) {
        return Err(Rejection::Malformed);
    }
    Ok(Person {
        sub: c.sub,
        issuer: c.rctx.user_iss.clone(),
        iss: c.rctx.user_iss,
        txn: Some(c.txn),
        tctx: c.tctx,
        scope: c.scope,
        claims: Value::Null,
        minted_by: Some(c.iss),
        exp: c.exp,
        kid: trusted.key.kid.clone(),
        jkt: None,
        headers: Default::default(),
    })
}

/// A subject, issuer or transaction id the app reads exactly as the rules matched it: not
/// empty, visible ASCII, no comma (an app would read a list), no surrounding whitespace
/// (an app would trim `" alice"` into the `alice` a deny rule names).
fn plain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',')
}

/// Mints the transaction token for `person` (verified here), with `tctx`: a fresh 128-bit
/// `txn`, `aud` the trust domain, `exp` at most the person's token's, signed with this
/// identity's key. Sets `person.txn` and
/// `person.tctx`; returns the token.
pub fn mint_txn(
    signer: &TokenSigner,
    person: &mut Person,
    tctx: Map<String, Value>,
    trust_domain: &str,
    ttl: Duration,
    now: u64,
) -> Result<String, KeyError> {
    let mut id = [0u8; 16];
    SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| KeyError::Sign("no randomness for txn".into()))?;
    let txn = URL_SAFE_NO_PAD.encode(id);
    let claims = MintedClaims {
        iss: signer.identity(),
        aud: trust_domain,
        iat: now,
        // Never outliving the person's own token (`exp` 0: a person named outside a
        // request, whose token nobody verified here).
        exp: match person.exp {
            0 => now.saturating_add(ttl.as_secs()),
            until => now.saturating_add(ttl.as_secs()).min(until),
        },
        txn: &txn,
        sub: &person.sub,
        scope: person.scope.as_deref(),
        tctx: &tctx,
        rctx: MintedContext {
            req_wl: signer.identity(),
            user_iss: &person.iss,
        },
    };
    let payload = serde_json::to_vec(&claims).map_err(|e| KeyError::Sign(e.to_string()))?;
    let token = signer.txn_compact(&payload)?;
    person.txn = Some(txn);
    person.tctx = tctx;
    Ok(token)
}
