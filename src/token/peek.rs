//! A token's claims before it is verified: only to pick the source that may hold a key
//! not seen yet.
use super::verify::decode_object;

/// What a token claims, **unverified**: its `kid`, `iss` and `sub`. Only to pick, among
/// the key URLs the authorized_keys directory names and the issuers configured, which
/// one may hold a key not seen yet. Never trusted for anything else, never turned into
/// a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub kid: String,
    pub iss: Option<String>,
    pub sub: Option<String>,
}

pub fn peek(token: &str) -> Option<Peeked> {
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    #[derive(serde::Deserialize)]
    struct Header {
        kid: String,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        #[serde(default)]
        iss: Option<String>,
        #[serde(default)]
        sub: Option<String>,
    }
    let h: Header = decode_object(header).ok()?;
    let p: Payload = decode_object(payload).ok()?;
    Some(Peeked {
        kid: h.kid,
        iss: p.iss,
        sub: p.sub,
    })
}
