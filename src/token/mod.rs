//! Tokens: the claims trustgate puts in a JWT, signing them, and verifying them in the
//! contract's order with a typed reason for every refusal.
//!
//! The algorithm is always taken from the key the `kid` names, never from the token, and
//! everything that can be refused without cryptography (size, structure, `alg`, `crit`,
//! unknown kid) is refused before any signature work. Time is passed in (`now`, Unix
//! seconds) so that tests can replay fixed tokens.
mod cache;
mod claims;
pub mod dpop;
mod peek;
mod person;
mod sign;
mod verify;

pub use cache::{Cacheable, Issued, OutboundTokenCache, ReplayCache, VerifiedCache};
pub use claims::{Audience, Claims};
pub use peek::{peek, why, Peeked};
pub use person::{mint_txn, verify_txn, verify_user, Person, TxnPolicy};
pub use sign::TokenSigner;
pub use verify::{verify, Rejection, Typ, Verified, VerifyPolicy, MAX_TOKEN_BYTES};

/// Unix seconds now (the `now` of every check at run time).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::ZERO)
        .as_secs()
}
