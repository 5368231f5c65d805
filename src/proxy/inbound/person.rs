//! The person behind a call (DESIGN.md "End users"): their own token, where this side
//! takes people's tokens (`[inbound.users]`: verified against the user issuers, removed
//! before the app, and — `mint_transaction_token` — replaced by a transaction token this
//! sidecar signs), else a transaction token from an identity this side trusts to mint
//! them (`trust.transaction_token_issuers`). A kid nobody knows may first fetch the user
//! issuer's keys, as for callers.
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};

use super::bearer::{check_token, locate_user_token, Scheme};
use super::dpop;
use super::verify::{self, Refused};
use crate::config::{Users, UsersMode};
use crate::proxy::rescue::Failure;
use crate::proxy::state::{InboundState, State};
use crate::token::{mint_txn, verify_txn, verify_user, Person, Rejection, TxnPolicy};

pub use crate::http::{TRANSACTION_ID, TXN_TOKEN, USER_ISSUER, USER_SUBJECT};

/// The person the request is made for, if any. `has_caller`: a service token was
/// verified (a request with neither a caller nor a person's own token is refused
/// `missing`: a transaction token always travels with a caller).
///
/// A request carries one person: where their own token and a transaction token both
/// arrive at a side that does not mint, both are verified and must name the same `sub`
/// and `iss` (an edge that mints replaced the arriving one; a side that verifies no
/// transaction token removed it in the screen).
pub(crate) async fn person<B>(
    state: &Arc<State>,
    side: &InboundState,
    req: &mut Request<B>,
    has_caller: bool,
    now: u64,
) -> Result<Option<Arc<Person>>, Failure> {
    let users = side.cfg.users.as_ref();
    if let Some(u) = users {
        if let Some(mut p) = own_token(state, side, u, req, now).await? {
            if !u.mint_transaction_token && side.accepts_txn {
                if let Some(t) = transaction_token(state, side, req, now)? {
                    if t.sub != p.sub || t.iss != p.iss {
                        state
                            .metrics
                            .transaction_tokens
                            .with_label_values(&["verified", "txn_subject_mismatch"])
                            .inc();
                        return Err(Failure::Txn(Rejection::SubjectMismatch));
                    }
                    // The app gets this transaction token: its id is the transaction's.
                    p.txn = t.txn.clone();
                }
            }
            return Ok(Some(Arc::new(p)));
        }
    }
    if !has_caller {
        return Err(Failure::Unauthenticated(Rejection::Missing));
    }
    if side.accepts_txn {
        if let Some(p) = transaction_token(state, side, req, now)? {
            return Ok(Some(p));
        }
    }
    if users.is_some_and(|u| u.mode == UsersMode::Required) {
        return Err(Failure::UserRequired);
    }
    Ok(None)
}

/// A person's own token, in `[inbound.users] token_header`: verified (with one fetch of
/// the claimed issuer's keys for a kid nobody knows), counted, removed before the app
/// unless forwarded, and exchanged for a transaction token where this side mints them.
async fn own_token<B>(
    state: &Arc<State>,
    side: &InboundState,
    u: &Users,
    req: &mut Request<B>,
    now: u64,
) -> Result<Option<Person>, Failure> {
    let counted = |result: &str| state.metrics.user_tokens.with_label_values(&[result]).inc();
    let (raw, scheme) = match locate_user_token(req.headers(), &u.token_header) {
        Err(Rejection::Missing) => return Ok(None),
        Err(r) => (Err(r), Scheme::Bare),
        Ok((raw, scheme)) => (check_token(raw), scheme),
    };
    let verified = match raw {
        Ok(token) => verify_person(state, side, token, now)
            .await
            .map(|p| (p, token)),
        Err(r) => Err(Failure::User(r)),
    };
    let (mut p, token) = match verified {
        Ok(p) => p,
        Err(f) => {
            counted(f.reason());
            if matches!(f, Failure::User(Rejection::MultipleAudiences)) {
                tracing::info!(
                    reason = f.reason(),
                    "a person's token names other audiences besides this service's: \
                     allow_multi_audience = true on its issuer accepts such tokens"
                );
            }
            return Err(f);
        }
    };
    match &side.person_counters {
        Some([valid, _]) => valid.inc(),
        None => counted("valid"),
    }
    // A token bound to a key passes only with its proof.
    let presented = dpop::Presented {
        token,
        scheme,
        jkt: p.jkt.as_deref(),
    };
    dpop::sender(state, side, u, req, presented, now).await?;
    if !u.forward_user_token {
        req.headers_mut().remove(&u.token_header);
    }
    if u.mint_transaction_token {
        let minted = mint(state, u, &mut p, now);
        match (&minted, &side.person_counters) {
            (Ok(_), Some([_, ok])) => ok.inc(),
            (Ok(_), None) => counted_minted(state, "ok"),
            (Err(_), _) => counted_minted(state, "internal"),
        }
        // An arriving transaction token is replaced, never passed on beside the new one.
        req.headers_mut().insert(TXN_TOKEN, minted?);
    }
    Ok(Some(p))
}

fn counted_minted(state: &State, result: &str) {
    state
        .metrics
        .transaction_tokens
        .with_label_values(&["minted", result])
        .inc();
}

/// A person's token verified ([`verify::cached`], [`verify::with_refetch`]: as callers'
/// tokens are). The person is the request's own copy, to add the transaction's context
/// and id to.
async fn verify_person(
    state: &Arc<State>,
    side: &InboundState,
    token: &str,
    now: u64,
) -> Result<Person, Failure> {
    let leeway = state.cfg.trust.leeway;
    let attempt = || {
        let snapshot = state.trust.snapshot();
        let cache = &side.users_verified;
        let (p, _) = verify::cached(cache, token.as_bytes(), snapshot.generation, now, || {
            let mut p = verify_user(token, &snapshot.keyring, leeway, now)?;
            // The transaction's context, from the person's claims, once per token:
            // minted into the transaction token here, and to the app's context headers.
            for (name, pointer) in side.cfg.users.iter().flat_map(|u| &u.context) {
                if let Some(v) = pointer.lookup(&p.claims) {
                    p.tctx.insert(name.clone(), v.clone());
                }
            }
            Ok((p, token))
        })?;
        Ok(p.for_request())
    };
    verify::with_refetch(state, token.as_bytes(), attempt)
        .await
        .map_err(|refused| match refused {
            Refused::Token(r) => Failure::User(r),
            Refused::KeysUnavailable(iss) => Failure::KeysUnavailable(iss),
        })
}

/// The transaction token for `p`: its context from `[inbound.users] context`.
fn mint(state: &State, u: &Users, p: &mut Person, now: u64) -> Result<HeaderValue, Failure> {
    let signer = state
        .trust
        .signer()
        .ok_or_else(|| Failure::Internal("no signing key loaded to mint with".into()))?;
    // Moved into the token's claims and back into the person (not copied).
    let tctx = std::mem::take(&mut p.tctx);
    let domain = &state.cfg.identity.trust_domain;
    let token = mint_txn(&signer, p, tctx, domain, u.transaction_ttl, now)
        .map_err(|e| Failure::Internal(e.to_string()))?;
    // The token's own bytes, not a copy (base64url and dots: a valid header value).
    HeaderValue::from_maybe_shared(bytes::Bytes::from(token))
        .map_err(|e| Failure::Internal(e.to_string()))
}

/// A transaction token (`txn-token`, exactly one), from an identity listed in
/// `trust.transaction_token_issuers`. One seen before (the same bytes, the same keyring
/// generation, not expired) is answered from the verified-token cache.
fn transaction_token<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    now: u64,
) -> Result<Option<Arc<Person>>, Failure> {
    let mut fields = req.headers().get_all(TXN_TOKEN).iter();
    let (value, more) = (fields.next(), fields.next());
    let result = match (value, more) {
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => Err(Rejection::Malformed),
        (Some(v), None) => v
            .to_str()
            .map_err(|_| Rejection::Malformed)
            .and_then(|token| verify_cached(state, side, token.trim(), now)),
    };
    match (&result, &side.txn_verified) {
        (Ok(_), Some(counter)) => counter.inc(),
        (Ok(_), None) => {}
        (Err(r), _) => state
            .metrics
            .transaction_tokens
            .with_label_values(&["verified", r.txn_reason()])
            .inc(),
    }
    result.map(Some).map_err(Failure::Txn)
}

fn verify_cached(
    state: &State,
    side: &InboundState,
    token: &str,
    now: u64,
) -> Result<Arc<Person>, Rejection> {
    let snapshot = state.trust.snapshot();
    let trust = &state.cfg.trust;
    let policy = TxnPolicy {
        issuers: &trust.transaction_token_issuers,
        trust_domain: &state.cfg.identity.trust_domain,
        leeway: trust.leeway,
        max_ttl: trust.max_transaction_ttl,
    };
    let (p, _) = verify::cached(
        &side.persons,
        token.as_bytes(),
        snapshot.generation,
        now,
        || Ok((verify_txn(token, &snapshot.keyring, &policy, now)?, token)),
    )?;
    Ok(p)
}

/// The person, to the app: subject, issuer, transaction id, and the context headers
/// configured (a context value the app would read otherwise than the rules matched it is
/// withheld, as claim headers are).
pub(crate) fn present(side: &InboundState, headers: &mut http::HeaderMap, p: &Person) {
    let named = p.headers.get_or_init(|| {
        let mut named = Vec::new();
        let mut add = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                named.push((name, v));
            }
        };
        add(USER_SUBJECT, &p.sub);
        add(USER_ISSUER, &p.iss);
        if let Some(txn) = &p.txn {
            add(TRANSACTION_ID, txn);
        }
        let configured = side.cfg.users.as_ref().map(|u| &u.context_headers[..]);
        for (name, member) in configured.unwrap_or_default() {
            let value = p.tctx.get(member);
            if let Some(v) = value.and_then(crate::policy::claim_header_value) {
                named.push((name.clone(), v));
            }
        }
        named
    });
    for (name, value) in named {
        headers.insert(name.clone(), value.clone());
    }
}
