//! `[inbound.users]`'s DPoP keys (DESIGN.md "Sender-constrained tokens"): what a token
//! bound to a key (`cnf.jkt`) needs, and the origins its proofs name.
use serde::Deserialize;

use super::parse::Problems;
use super::Config;

/// `[inbound.users] dpop`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// A token bound to a key needs a valid proof and the `DPoP` scheme; an unbound token
    /// passes as a bearer token.
    #[default]
    Bound,
    /// Every person's token must be bound to a key (and come with its proof).
    Required,
    /// `cnf` ignored: a bound token passes as a bearer token (a migration only).
    Off,
}

/// The origins normalised (so that a request compares with one string), and what a mode
/// needs of them.
pub(super) fn check(cfg: &mut Config, p: &mut Problems) {
    let Some(users) = cfg.inbound.as_mut().and_then(|i| i.users.as_mut()) else {
        return;
    };
    let mut normalised = Vec::with_capacity(users.dpop_origins.len());
    for o in &users.dpop_origins {
        match crate::token::dpop::origin(o) {
            Ok(o) => normalised.push(o),
            Err(e) => p.add("inbound.users.dpop_origins", e),
        }
    }
    users.dpop_origins = normalised;
    if users.dpop == DpopMode::Required && users.dpop_origins.is_empty() {
        p.add(
            "inbound.users.dpop_origins",
            "is required with dpop = \"required\": the scheme and authority clients call \
             (\"https://api.example.com\"), which a proof's htu must name",
        );
    }
    if users.dpop_max_age.is_zero() || users.dpop_max_age > std::time::Duration::from_secs(600) {
        p.add(
            "inbound.users.dpop_max_age",
            "must be between 1s and 10m (a proof is fresh for this long)",
        );
    }
}
