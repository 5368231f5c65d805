//! `claims = { "/kubernetes.io/namespace" = ["shop"], "/ctx/x-tenant" = "acme" }`: JSON
//! Pointers into the verified token, each naming the values that match — read only from
//! the sources the rule's `issuers` names.
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{CallerFacts, CallerMatch, Field, Rule, Subject, Why};

/// Pointer → the values that match (all pointers must match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims(pub Vec<(ClaimPointer, Vec<String>)>);

impl<'de> Deserialize<'de> for Claims {
    /// Each pointer checked, each value a string or a non-empty list of strings.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        values_table(d)?
            .into_iter()
            .map(|(k, values)| Ok((ClaimPointer::parse(&k).map_err(D::Error::custom)?, values)))
            .collect::<Result<_, _>>()
            .map(Claims)
    }
}

/// A table of names to the values that match: each a string or a non-empty list of
/// strings (`claims`, `context`).
pub(super) fn values_table<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Vec<String>)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Values {
        One(String),
        Many(Vec<String>),
    }
    std::collections::BTreeMap::<String, Values>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| match v {
            Values::One(s) => Ok((k, vec![s])),
            Values::Many(list) if list.is_empty() => Err(serde::de::Error::custom(format!(
                "\"{k}\": an empty list matches nothing"
            ))),
            Values::Many(list) => Ok((k, list)),
        })
        .collect()
}

impl Field for Claims {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, why: Why, rule: &Rule, s: &Subject) -> String {
        let Some(caller) = &s.caller else {
            return super::NO_CALLER.into();
        };
        let claims = caller.verified.claims_json();
        match why {
            Why::Claim(p) => {
                let values = self
                    .0
                    .iter()
                    .find(|(q, _)| q == p)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                format!(
                    "claim {p} is {} — none of {values:?}",
                    p.lookup(claims).map_or("absent".into(), Value::to_string)
                )
            }
            Why::ClaimAbsent(p) => format!("the token has no claim {p}"),
            Why::ClaimUnread(p) => format!(
                "claim {p} is not read from {}: the rule reads claims of {}",
                super::source_name(caller),
                rule.issuers
            ),
            Why::NotIn | Why::Unclear | Why::NoCaller | Why::NoPerson => {
                "its claims do not match".into()
            }
        }
    }
}

impl CallerMatch for Claims {
    fn check(&self, rule: &Rule, c: &CallerFacts) -> Result<(), Why<'_>> {
        let issuer = c.verified.issuer.as_deref();
        for (pointer, values) in &self.0 {
            if !rule.issuers.reads(issuer) {
                return Err(Why::ClaimUnread(pointer));
            }
            match pointer.lookup(c.verified.claims_json()) {
                None => return Err(Why::ClaimAbsent(pointer)),
                Some(v) if !claim_matches(v, values) => return Err(Why::Claim(pointer)),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A claim matches a rule's values: a string as itself, a number or a boolean as its
/// JSON text, a list when any element does.
pub fn claim_matches(v: &Value, values: &[String]) -> bool {
    match v {
        Value::String(s) => values.iter().any(|x| x == s),
        Value::Number(n) => {
            let text = n.to_string();
            values.contains(&text)
        }
        Value::Bool(b) => values
            .iter()
            .any(|x| x == if *b { "true" } else { "false" }),
        Value::Array(list) => list
            .iter()
            .any(|e| !e.is_array() && claim_matches(e, values)),
        Value::Null | Value::Object(_) => false,
    }
}

/// A JSON Pointer (RFC 6901) into a token's claims: `/kubernetes.io/namespace`,
/// `/ctx/x-tenant`, `/groups/0`. Its reference tokens are unescaped once, here, so that a
/// lookup on the request path allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPointer {
    text: String,
    tokens: Vec<String>,
}

impl ClaimPointer {
    /// A pointer that starts with `/` and whose every `~` is `~0` or `~1`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!(
                "\"{s}\" is not a JSON Pointer into the claims: it must start with '/' (\"/sub\", \"/kubernetes.io/namespace\")"
            ));
        }
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "\"{s}\": '~' must be written ~0, and '/' inside a name ~1 (RFC 6901)"
                ));
            }
        }
        let tokens = s[1..]
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(ClaimPointer {
            text: s.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value it points at (RFC 6901 §4: a member by name, an array element by its
    /// index written without leading zeros).
    pub fn lookup<'v>(&self, mut v: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        for token in &self.tokens {
            v = match v {
                serde_json::Value::Object(map) => map.get(token.as_str())?,
                serde_json::Value::Array(list) => {
                    let canonical = token == "0" || !token.starts_with('0');
                    if !canonical || !token.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    list.get(token.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(v)
    }
}

impl std::fmt::Display for ClaimPointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
