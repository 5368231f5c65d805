//! How every token the inbound verifies is verified — a caller's, a person's own, a
//! transaction token — once, here:
//! - [`cached`]: a token seen before (the same bytes, verified against the same keyring
//!   generation, not expired) answered from its verified-token cache; a revocation or a
//!   rotation is a new generation, so a cached answer never outlives either;
//! - [`with_refetch`]: a kid nobody trusts (or trusted only for another source than the
//!   one the token claims) may first fetch the claimed source's keys once — bounded,
//!   single-flight (`crate::trust::sources`) — and is then verified again; a source
//!   whose keys could not be fetched is `keys_unavailable` (503), not the token's fault.
use std::sync::Arc;

use crate::proxy::state::State;
use crate::token::{self, Cacheable, Rejection, VerifiedCache};
use crate::trust::KidRefusal;

/// The verification of the token `raw` against keyring `generation`: from `cache` (the
/// bytes compared before they are even checked: they equal bytes that passed every
/// check), or `verify`'s — which returns the token as checked, to be stored under.
/// `true` with a cached answer.
pub(crate) fn cached<'t, T: Cacheable>(
    cache: &VerifiedCache<T>,
    raw: &'t [u8],
    generation: u64,
    now: u64,
    verify: impl FnOnce() -> Result<(T, &'t str), Rejection>,
) -> Result<(Arc<T>, bool), Rejection> {
    if let Some(v) = cache.get(raw, generation, now) {
        return Ok((v, true));
    }
    let (v, token) = verify()?;
    let v = Arc::new(v);
    cache.insert(token, v.clone(), generation, now);
    Ok((v, false))
}

/// Why a token was refused once its claimed source had its chance.
pub(crate) enum Refused {
    /// The token's fault: 401 with this reason.
    Token(Rejection),
    /// The claimed source's keys could not be had: 503 `keys_unavailable` naming it.
    KeysUnavailable(String),
}

/// `attempt` against the current keyring; a kid nobody knows (or known only for another
/// source) in a token whose claimed source can fetch gets that source's keys fetched
/// once and `attempt` run again against them.
pub(crate) async fn with_refetch<T>(
    state: &Arc<State>,
    token: &[u8],
    attempt: impl Fn() -> Result<T, Rejection>,
) -> Result<T, Refused> {
    let first = match attempt() {
        Err(r @ (Rejection::UnknownKey | Rejection::IssuerMismatch))
            if state.trust.has_sources() =>
        {
            r
        }
        other => return other.map_err(Refused::Token),
    };
    let peeked = std::str::from_utf8(token).ok().and_then(token::peek);
    let Some(claimed) = peeked else {
        return Err(Refused::Token(first));
    };
    // Boxed: this rare path's future would otherwise size every request's.
    match Box::pin(state.trust.unknown_kid(&claimed, attempt)).await {
        Ok(v) => Ok(v),
        Err(KidRefusal::Unknown) => Err(Refused::Token(first)),
        // A kid known for another source stays that refusal: the source is not down.
        Err(KidRefusal::Unavailable) if first == Rejection::UnknownKey => {
            Err(Refused::KeysUnavailable(claimed.iss.unwrap_or_default()))
        }
        Err(KidRefusal::Unavailable) => Err(Refused::Token(first)),
        Err(KidRefusal::Rejected(r)) => Err(Refused::Token(r)),
    }
}
