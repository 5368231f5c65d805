//! The policy step (contract step 8, [`crate::policy`]): deny rules, then allow rules,
//! on every reading of the path; audit rules counted and logged through the observer.
use http::Request;

use crate::http::path::stripped_rule_path;
use crate::policy::{self, Observe, Subject, Verdict as PolicyVerdict};
use crate::proxy::rescue::Failure;
use crate::proxy::state::{Granted, InboundState};
use crate::rule::{CallerFacts, RequestFacts};
use crate::token::{Person, Verified};

/// The policy (step 8 of the contract, [`crate::policy`]): deny rules, then allow rules;
/// audit rules counted and logged through `obs`.
pub(crate) fn authorize<B, O: Observe>(
    side: &InboundState,
    verified: Option<&Verified>,
    granted: Option<Granted>,
    person: Option<&Person>,
    req: &Request<B>,
    obs: &mut O,
) -> Result<(), Failure> {
    let cfg = &side.cfg;
    if cfg.allow.is_empty() && cfg.deny.is_empty() {
        return Ok(());
    }
    let subject = Subject {
        caller: verified.map(|verified| CallerFacts {
            verified,
            roles: granted.map_or(&[], |g| g.roles()),
        }),
        request: RequestFacts::of(req, person),
    };
    // A path with `;parameters` must be allowed as written and as servlet containers
    // route it (parameters removed): the first reading that is refused decides.
    let mut stripped = subject;
    let readings = [
        Some(subject),
        stripped_rule_path(req).map(|p| {
            stripped.request.path = p;
            stripped
        }),
    ];
    let refused = readings.iter().flatten().find_map(|s| {
        let rule = match policy::decide(cfg, s, obs) {
            PolicyVerdict::Allowed(_) => return None,
            PolicyVerdict::Denied(rule) => Some(rule.name.clone()),
            PolicyVerdict::NoAllowMatched => None,
        };
        Some((rule, s.request.path))
    });
    let Some((rule, path)) = refused else {
        return Ok(());
    };
    Err(Failure::Forbidden {
        caller: verified.map_or_else(|| "-".to_owned(), |v| v.caller.to_string()),
        method: req.method().to_string(),
        path: path.to_owned(),
        rule,
    })
}
