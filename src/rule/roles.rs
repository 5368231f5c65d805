//! `roles = ["reader"]`: `[callers.<name>].roles` grants the caller one of them.
use serde::Deserialize;

use super::{CallerFacts, CallerMatch, Field, Rule, Subject, Why};

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Roles(pub Vec<String>);

impl Field for Roles {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        match &s.caller {
            Some(c) => format!("roles {:?} share none of {:?}", c.roles, self.0),
            None => super::NO_CALLER.into(),
        }
    }
}

impl CallerMatch for Roles {
    fn check(&self, _: &Rule, c: &CallerFacts) -> Result<(), Why<'_>> {
        match self.0.is_empty() || self.0.iter().any(|r| c.roles.contains(r)) {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
