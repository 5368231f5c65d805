//! The JWT claims trustgate signs and reads.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `aud`: one audience or several (RFC 7519 allows both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A string or a list of strings, read straight from the JSON (serde's `untagged`
/// would first copy the value into a buffer to try each variant on it).
impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E>(self, s: &str) -> Result<Audience, E> {
                Ok(Audience::One(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Audience, E> {
                Ok(Audience::One(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(a) = seq.next_element::<String>()? {
                    list.push(a);
                }
                Ok(Audience::Many(list))
            }
        }
        d.deserialize_any(V)
    }
}

impl Audience {
    /// `aud` names one of `ours`, and (unless `allow_multi`) no one else: a token for
    /// `[shipping, billing]` could be replayed by shipping against billing. The same rule
    /// for every issuer's tokens, callers' and people's.
    pub fn names(&self, ours: &[String], allow_multi: bool) -> Result<(), super::Rejection> {
        if !ours.iter().any(|a| self.contains(a)) {
            return Err(super::Rejection::WrongAudience);
        }
        let only_ours = match self {
            Audience::One(_) => true,
            Audience::Many(list) => list.iter().all(|a| ours.contains(a)),
        };
        if !allow_multi && !only_ours {
            return Err(super::Rejection::MultipleAudiences);
        }
        Ok(())
    }

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
