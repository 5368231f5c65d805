//! `[inbound.claim_headers]`: claims of the verified token sent to the app, each read
//! only from the sources it names (DESIGN.md "Policy").
use http::HeaderName;

pub use crate::rule::{ClaimPointer, Sources};

/// One `[inbound.claim_headers]` entry: the header, the claim, the sources it is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    pub name: HeaderName,
    pub pointer: ClaimPointer,
    pub sources: Sources,
}
