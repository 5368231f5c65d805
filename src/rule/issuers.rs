//! `issuers = ["cluster", "self"]`: the sources whose tokens a rule matches and whose
//! claims it reads (DESIGN.md "Policy", whose claims).
use serde::{Deserialize, Deserializer};

use super::{CallerFacts, CallerMatch, Field, Rule, Subject, Why};

/// Whose claims are read: a peer trusted by its own key signs whatever it likes into its
/// token, so its claims are read only where `"self"` is named. The default — every
/// issuer, never `"self"` — cannot be met by a self-signed token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// `None`: not given (every `[[trust.issuers]]` entry, not `"self"`).
    listed: Option<Vec<String>>,
}

impl Sources {
    /// The name of callers' own keys (authorized_keys files, key URLs, the shared key).
    pub const SELF: &'static str = "self";

    /// A non-empty list of source names, each once (the names are checked against
    /// `[[trust.issuers]]` by the check pass).
    pub fn from_names(names: Vec<String>) -> Result<Self, String> {
        if names.is_empty() {
            return Err("an empty list reads no source: name issuers, or \"self\"".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            if n.is_empty() {
                return Err("an empty string names nothing".into());
            }
            if !seen.insert(n) {
                return Err(format!("\"{n}\" is named twice"));
            }
        }
        Ok(Sources {
            listed: Some(names),
        })
    }

    /// The names given, if any.
    pub fn names(&self) -> Option<&[String]> {
        self.listed.as_deref()
    }

    /// Whether a token from `issuer` (`None`: the caller's own key) may be read.
    pub fn reads(&self, issuer: Option<&str>) -> bool {
        match (&self.listed, issuer) {
            (None, i) => i.is_some(),
            (Some(names), None) => names.iter().any(|n| n == Self::SELF),
            (Some(names), Some(i)) => names.iter().any(|n| n == i),
        }
    }

    /// Whether a token from `issuer` matches at all: only a list given restricts.
    pub fn admits(&self, issuer: Option<&str>) -> bool {
        self.listed.is_none() || self.reads(issuer)
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Sources::from_names(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.listed {
            None => f.write_str("every [[trust.issuers]] entry (not \"self\")"),
            Some(names) => write!(f, "{names:?}"),
        }
    }
}

/// How a token's source is named in rules: its issuer's name, or `"self"` for a caller's
/// own key.
pub fn source_name<'a>(c: &CallerFacts<'a>) -> &'a str {
    c.verified.issuer.as_deref().unwrap_or(Sources::SELF)
}

impl Field for Sources {
    fn is_given(&self) -> bool {
        self.listed.is_some()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        match &s.caller {
            Some(c) => format!("the token is from {}, not one of {self}", source_name(c)),
            None => super::NO_CALLER.into(),
        }
    }
}

impl CallerMatch for Sources {
    fn check(&self, _: &Rule, c: &CallerFacts) -> Result<(), Why<'_>> {
        match self.admits(c.verified.issuer.as_deref()) {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
