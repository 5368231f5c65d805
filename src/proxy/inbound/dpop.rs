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
use crate::token::Person;

/// The proof's header.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The person's token as `presented` (its bytes and scheme; verified as `p`) and its proof, if
/// it is bound to a key or must be; counted in `trustgate_dpop_proofs_total{result}`.
pub(crate) async fn sender<B>(
    state: &State,
    side: &InboundState,
    u: &Users,
    req: &Request<B>,
    presented: (&str, Scheme),
    p: &Person,
    now: u64,
) -> Result<(), Failure> {
    let result = check(state, side, u, req, presented, p, now).await;
    let word = match &result {
        Ok(false) => return Ok(()),
        Ok(true) => "valid",
        Err(Failure::Dpop(r)) => r.word(),
        Err(_) => "unavailable",
    };
    state.metrics.dpop_proofs.with_label_values(&[word]).inc();
    if let Err(Failure::Dpop(DpopRejection::Unconfigured)) = &result {
        tracing::warn!(
            "a person's token bound to a key (cnf.jkt) arrived, and [inbound.users] has no \
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
    u: &Users,
    req: &Request<B>,
    (token, scheme): (&str, Scheme),
    p: &Person,
    now: u64,
) -> Result<bool, Failure> {
    use DpopRejection as R;
    let refused = |r| Err(Failure::Dpop(r));
    let jkt = match (u.dpop, p.jkt.as_deref()) {
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
    if u.dpop_origins.is_empty() {
        return refused(R::Unconfigured);
    }
    let mut proofs = req.headers().get_all(DPOP).iter();
    let proof = match (proofs.next(), proofs.next()) {
        (None, _) => return refused(R::Missing),
        (Some(_), Some(_)) => return refused(R::Malformed),
        (Some(v), None) => v.to_str().map_err(|_| Failure::Dpop(R::Malformed))?,
    };
    let policy = ProofPolicy {
        origins: &u.dpop_origins,
        max_age: u.dpop_max_age.as_secs(),
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
