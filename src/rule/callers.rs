//! `callers = ["orders", "search"]`: the verified caller is one of them.
use serde::{Deserialize, Deserializer};

use super::{CallerFacts, CallerMatch, Field, Rule, Subject, Why};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callers(pub Vec<String>);

impl<'de> Deserialize<'de> for Callers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        if let Some(bad) = names.iter().find(|n| !crate::keys::is_valid_identity(n)) {
            return Err(serde::de::Error::custom(format!(
                "\"{bad}\" is not a valid identity (a DNS label: lower-case letters, digits, '-')"
            )));
        }
        Ok(Callers(names))
    }
}

impl Field for Callers {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        match &s.caller {
            Some(c) => format!("caller {} is not in {:?}", c.verified.caller, self.0),
            None => super::NO_CALLER.into(),
        }
    }
}

impl CallerMatch for Callers {
    fn check(&self, _: &Rule, c: &CallerFacts) -> Result<(), Why<'_>> {
        let caller = &*c.verified.caller;
        match self.0.is_empty() || self.0.iter().any(|n| n == caller) {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
