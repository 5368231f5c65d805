//! The JWT claims trustgate signs and reads.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `aud`: one audience or several (RFC 7519 allows both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        }
    }

    /// Names `audience` and no other service.
    pub fn only(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => !list.is_empty() && list.iter().all(|a| a == audience),
        }
    }
}

/// Claims of a trustgate token. Unknown claims are ignored on input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Signed context: header name → value, re-created by the receiving side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx: Option<BTreeMap<String, String>>,
    /// Request binding (RFC 9449 style): method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htm: Option<String>,
    /// Request binding: path and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htu: Option<String>,
}
