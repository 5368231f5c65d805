//! The DPoP step (RFC 9449, DESIGN.md "Sender-constrained tokens"): a person's token bound
//! to a key (`cnf.jkt`) passes only with the `DPoP` scheme and a fresh proof signed by that
//! key ([`crate::token::dpop::verify_proof`]), used once — at this sidecar, or at every
//! replica under `replay_scope = "fleet"`. The `DPoP` header is a credential: it never
//! reaches the app.
use std::time::Duration;

use http::{HeaderName, Request};

use super::bearer::Scheme;
use crate::config::{DpopMode, Users};
use crate::proxy::limits::fleet_fallback;
use crate::proxy::rescue::Failure;
use crate::proxy::state::{InboundState, State};
use crate::token::dpop::{verify_proof, DpopRejection, Proof, ProofPolicy};

/// The proof's header.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// What a side asks of tokens bound to a key: `[inbound.users]`'s settings, or (no such
/// section) the defaults — bound tokens need a proof, and with no origins to check one
/// against, they are refused.
struct Rules<'a> {
    mode: DpopMode,
    origins: &'a [String],
    max_age: Duration,
}

impl<'a> Rules<'a> {
    fn of(users: Option<&'a Users>) -> Self {
        match users {
            Some(u) => Rules {
                mode: u.dpop,
                origins: &u.dpop_origins,
                max_age: u.dpop_max_age,
            },
            None => Rules {
                mode: DpopMode::Bound,
                origins: &[],
                max_age: Duration::from_secs(60),
            },
        }
    }
}

/// A token as presented (its bytes and scheme) and the key it is bound to, if any.
pub(crate) struct Presented<'a> {
    pub token: &'a str,
    pub scheme: Scheme,
    pub jkt: Option<&'a str>,
}

/// The person's token as `presented` (verified: its `cnf.jkt` in `presented.jkt`) and its
/// proof, if it is bound to a key or must be; counted in `trustgate_dpop_proofs_total`.
pub(crate) async fn sender<B>(
    state: &State,
    side: &InboundState,
    u: &Users,
    req: &Request<B>,
    presented: Presented<'_>,
    now: u64,
) -> Result<(), Failure> {
    let result = check(state, side, &Rules::of(Some(u)), req, presented, now).await;
    counted(state, result)
}

/// A caller's token bound to a key (`cnf.jkt` in a token from an issuer): the same rule
/// as a person's (DESIGN.md: "the same rule applies to a caller's token"); refused with
/// `dpop_<reason>`. A caller's token that is not bound passes as a bearer token — unless
/// it came with the `DPoP` scheme.
pub(crate) async fn caller<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    v: &crate::token::Verified,
    now: u64,
) -> Result<(), Failure> {
    let Some((token, scheme, jkt)) = caller_bound(side, req, v) else {
        return Ok(());
    };
    let mut rules = Rules::of(side.cfg.users.as_ref());
    // `required` is about people's tokens.
    if rules.mode == DpopMode::Required {
        rules.mode = DpopMode::Bound;
    }
    let presented = Presented { token, scheme, jkt };
    let result = check(state, side, &rules, req, presented, now).await;
    counted(state, result).map_err(|f| match f {
        Failure::Dpop(r) => Failure::CallerDpop(r),
        other => other,
    })
}

/// A caller's token that is bound to a key (only an issuer's can be: trustgate's own
/// tokens carry no `cnf`) or came with the `DPoP` scheme: its bytes, scheme and key.
/// `None` for every other request — the usual one, which asks nothing more.
pub(crate) fn caller_bound<'r, B>(
    side: &InboundState,
    req: &'r Request<B>,
    v: &'r crate::token::Verified,
) -> Option<(&'r str, Scheme, Option<&'r str>)> {
    let jkt = match v.issuer {
        Some(_) => v.claims_json().pointer("/cnf/jkt").and_then(|j| j.as_str()),
        None => None,
    };
    let (raw, scheme) =
        super::bearer::locate_user_token(req.headers(), &side.cfg.token_header).ok()?;
    if jkt.is_none() && scheme != Scheme::Dpop {
        return None;
    }
    Some((std::str::from_utf8(raw).ok()?, scheme, jkt))
}

fn counted(state: &State, result: Result<bool, Failure>) -> Result<(), Failure> {
    let word = match &result {
        Ok(false) => return Ok(()),
        Ok(true) => "valid",
        Err(Failure::Dpop(r)) => r.word(),
        Err(_) => "unavailable",
    };
    state.metrics.dpop_proofs.with_label_values(&[word]).inc();
    if let Err(Failure::Dpop(DpopRejection::Unconfigured)) = &result {
        tracing::warn!(
            "a token bound to a key (cnf.jkt) arrived, and [inbound.users] has no \
             dpop_origins to check its proof against: refused (set dpop_origins to the \
             origins clients call, or dpop = \"off\" during a migration)"
        );
    }
    result.map(|_| ())
}

/// `Ok(true)`: a proof was checked and passed; `Ok(false)`: none was needed.
async fn check<B>(
    state: &State,
    side: &InboundState,
    rules: &Rules<'_>,
    req: &Request<B>,
    presented: Presented<'_>,
    now: u64,
) -> Result<bool, Failure> {
    use DpopRejection as R;
    let refused = |r| Err(Failure::Dpop(r));
    let Presented { token, scheme, jkt } = presented;
    let jkt = match (rules.mode, jkt) {
        (DpopMode::Off, _) => return Ok(false),
        // An unbound token presented as bound is not what the client thinks it holds.
        (DpopMode::Required, None) => return refused(R::Unbound),
        (DpopMode::Bound, None) if scheme == Scheme::Dpop => return refused(R::Unbound),
        (DpopMode::Bound, None) => return Ok(false),
        (_, Some(jkt)) => jkt,
    };
    if scheme == Scheme::Bearer {
        return refused(R::BearerScheme);
    }
    if rules.origins.is_empty() {
        return refused(R::Unconfigured);
    }
    let mut proofs = req.headers().get_all(DPOP).iter();
    let proof = match (proofs.next(), proofs.next()) {
        (None, _) => return refused(R::Missing),
        (Some(_), Some(_)) => return refused(R::Malformed),
        (Some(v), None) => v.to_str().map_err(|_| Failure::Dpop(R::Malformed))?,
    };
    let policy = ProofPolicy {
        origins: rules.origins,
        max_age: rules.max_age.as_secs(),
        leeway: state.cfg.trust.leeway.as_secs(),
    };
    // What the client signed: the target as it sent it, not the canonical form.
    let target = crate::http::path::arrived_target(req);
    let method = req.method().as_str();
    let keys = &side.dpop_keys;
    let proof = verify_proof(
        proof.trim(),
        (method, target),
        token,
        jkt,
        &policy,
        keys,
        now,
    )
    .map_err(Failure::Dpop)?;
    first_use(side, jkt, &proof, &policy, now).await?;
    Ok(true)
}

/// A proof's `jti` used once within its window (its `iat` + `dpop_max_age` + leeway: after
/// that the proof is stale anyway), per key: one client cannot use up another's.
async fn first_use(
    side: &InboundState,
    jkt: &str,
    proof: &Proof,
    policy: &ProofPolicy<'_>,
    now: u64,
) -> Result<(), Failure> {
    let replayed = || Failure::Dpop(DpopRejection::Replayed);
    let key = format!("dpop:{jkt}:{}", proof.jti);
    let until = proof.iat + policy.max_age + policy.leeway;
    if let Some(fleet) = &side.fleet_replay {
        let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
        match fleet.first_use("dpop", &key, ttl).await {
            Ok(true) => return Ok(()),
            Ok(false) => return Err(replayed()),
            Err(_) => {
                fleet_fallback(fleet.replay_on_error, "replay")?;
                side.replay
                    .check_and_insert(&key, until, now)
                    .map_err(|_| replayed())?;
                fleet.accepted_alone("dpop", &key, ttl);
                return Ok(());
            }
        }
    }
    side.replay
        .check_and_insert(&key, until, now)
        .map_err(|_| replayed())
}
