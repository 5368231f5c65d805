//! What the app is told of a request that passed (the last step): the caller, its roles,
//! the signed context and claim headers; the person ([`super::person::present`]).
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{CALLER, CALLER_ROLES};
use crate::policy;
use crate::proxy::state::{Granted, InboundState};
use crate::token::Verified;

/// What the app is told: who called, with which roles, the signed context and the claim
/// headers. The claim headers withheld (a claim the app would read differently from the
/// rules: see [`policy::claim_header_value`]) are returned, for the caller to count.
pub(crate) fn present_caller<'s>(
    side: &'s InboundState,
    headers: &mut HeaderMap,
    v: &Verified,
    granted: Granted,
) -> Vec<&'s HeaderName> {
    let inbound = &side.cfg;
    headers.remove(&inbound.token_header);
    headers.insert(CALLER, v.caller_header.clone());
    // A caller without roles gets no roles header at all (an empty one reads as "a
    // role named ''" to some apps), nor does `roles = []`; any copy from the network is
    // gone already ([`scrub`], the first step).
    match granted.header() {
        Some(joined) => {
            headers.insert(CALLER_ROLES, joined.clone());
        }
        None => debug_assert!(!headers.contains_key(CALLER_ROLES), "not scrubbed"),
    }
    if let Some(ctx) = &v.claims.ctx {
        for name in &inbound.signed_headers {
            if let Some(value) = ctx.get(name.as_str()) {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(name.clone(), value);
                }
            }
        }
    }
    // Claims to the app (any copy from the network is gone already).
    policy::claim_headers(&inbound.claim_headers, v, headers)
}
