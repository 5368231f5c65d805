//! The token step (contract steps 2–7): exactly one token ([`super::bearer`]), verified
//! against this request's keyring snapshot — a kid nobody knows may first fetch the
//! claimed source once — with request binding and replay where required, and the facts
//! behind a refusal for `explain` and the debug log.
use std::sync::Arc;

use http::Request;

use super::bearer::{check_token, extract_token, locate_token};
use super::verify::{self, Refused};
use super::Who;
use crate::proxy::limits::fleet_fallback;
use crate::proxy::rescue::Failure;
use crate::proxy::state::{InboundState, State};
use crate::token::{self, unix_now, Rejection, Verified};

/// Steps 2–7 of the contract ([`verify_token`]); a kid nobody knows, in a token claiming
/// an identity whose keys live at a URL, may first fetch that URL once (bounded, see
/// `crate::trust::sources`) — and an identity whose keys could not be fetched gets 503
/// `keys_unavailable`, not 401. A bound token's single use is recorded last, by
/// [`first_use`], once every other step passed.
pub(crate) async fn authenticate<B>(
    state: &Arc<State>,
    side: &InboundState,
    req: &Request<B>,
    now: u64,
) -> Result<Arc<Verified>, Failure> {
    verified(state, side, req, now).await
}

/// A request-bound token is single-use: its `jti` recorded, and refused if seen before —
/// by this sidecar, or (`inbound.replay_scope = "fleet"`) by any replica. The last step
/// before the app: a request refused for anything else records nothing (no store filled
/// by refused requests, no token used up by a refusal).
pub(crate) async fn first_use(side: &InboundState, v: &Verified, now: u64) -> Result<(), Failure> {
    let refused = Failure::Unauthenticated;
    let jti = v
        .claims
        .jti
        .as_deref()
        .ok_or(refused(Rejection::BindingMissing))?;
    if let Some(fleet) = &side.fleet_replay {
        // As long as the local cache would remember it: until exp, plus the leeway.
        let until = v.claims.exp + side.policy.leeway.as_secs();
        let ttl = std::time::Duration::from_secs(until.saturating_sub(now).max(1));
        match fleet.first_use(&v.caller, jti, ttl).await {
            Ok(true) => return Ok(()),
            Ok(false) => return Err(refused(Rejection::Replayed)),
            Err(_) => {
                fleet_fallback(fleet.replay_on_error, "replay")?;
                // This sidecar's own cache decides; the store learns it when it is back.
                side.replay
                    .check_and_insert(jti, v.claims.exp, now)
                    .map_err(refused)?;
                fleet.accepted_alone(&v.caller, jti, ttl);
                return Ok(());
            }
        }
    }
    side.replay
        .check_and_insert(jti, v.claims.exp, now)
        .map_err(refused)
}

/// The token verified, a kid nobody knows fetched from the claimed source first.
async fn verified<B>(
    state: &Arc<State>,
    side: &InboundState,
    req: &Request<B>,
    now: u64,
) -> Result<Arc<Verified>, Failure> {
    let raw =
        locate_token(req.headers(), &side.cfg.token_header).map_err(Failure::Unauthenticated)?;
    let attempt = || verify_token(state, side, req, raw, now);
    verify::with_refetch(state, raw, attempt)
        .await
        .map_err(|refused| match refused {
            Refused::Token(r) => Failure::Unauthenticated(r),
            Refused::KeysUnavailable(iss) => Failure::KeysUnavailable(iss),
        })
}

/// The token `raw` verified against this request's keyring snapshot, request binding
/// where required (replay: [`first_use`], once per request); one seen before from the
/// verified-token cache ([`verify::cached`]).
fn verify_token<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    raw: &[u8],
    now: u64,
) -> Result<Arc<Verified>, Rejection> {
    // One snapshot for the whole decision.
    let trust = state.trust.snapshot();
    if side.cfg.require_request_binding {
        // Bound tokens are single-use: nothing to cache, the replay check is the point.
        let v = token::verify(check_token(raw)?, &trust.keyring, &side.policy, now)?;
        // What the caller signed: the target as it sent it, not the canonical form.
        let pq = crate::http::path::arrived_target(req);
        v.check_binding(req.method().as_str(), pq)?;
        return Ok(Arc::new(v));
    }
    let (v, hit) = verify::cached(&side.verified, raw, trust.generation, now, || {
        let token = check_token(raw)?;
        Ok((
            token::verify(token, &trust.keyring, &side.policy, now)?,
            token,
        ))
    })?;
    if hit {
        state.metrics.verified_cache_hits.inc();
    }
    Ok(v)
}

/// The facts behind a token's refusal ([`token::why`]): for `explain`, and a debug line.
pub(crate) fn refusal_facts<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    failure: &Failure,
) -> Option<String> {
    let Failure::Unauthenticated(rejection) = failure else {
        return None;
    };
    let token = extract_token(req.headers(), &side.cfg.token_header).ok()?;
    let trust = state.trust.snapshot();
    token::why(token, *rejection, &trust.keyring, &side.policy, unix_now())
}

/// A revoked key's token passed every other check (revocation is the last): its caller is
/// known, and named in the access log with the kid in a line of its own, so that whoever
/// still presents a revoked key can be found.
pub(super) fn revoked_caller<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    failure: &Failure,
) -> Option<Who> {
    if !matches!(failure, Failure::Unauthenticated(Rejection::Revoked)) {
        return None;
    }
    let claimed = extract_token(req.headers(), &side.cfg.token_header)
        .ok()
        .and_then(token::peek)?;
    let trust = state.trust.snapshot();
    let key = trust
        .keyring
        .select(&claimed.kid, || claimed.iss.clone())?
        .key()
        .clone();
    let caller: Arc<str> = key.speaks.label().into();
    tracing::info!(caller = %caller, kid = %claimed.kid, "a revoked key was presented");
    Some(Who::Caller(caller, None))
}
