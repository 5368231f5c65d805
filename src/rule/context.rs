//! `context = { tenant = ["acme"] }`: members of the transaction's context (`tctx`, set
//! where the person's token was verified, from `[inbound.users] context`) and the values
//! that match, matched like `claims`. A request made for no person never matches.
use serde::{Deserialize, Deserializer};

use super::{claim_matches, Field, RequestFacts, RequestMatch, Rule, Subject, Why};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context(pub Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::claims::values_table(d).map(Context)
    }
}

impl Field for Context {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        let Some(p) = s.request.person else {
            return super::NO_PERSON.into();
        };
        for (member, values) in &self.0 {
            match p.tctx.get(member) {
                Some(v) if claim_matches(v, values) => {}
                Some(v) => return format!("context {member} is {v} — none of {values:?}"),
                None => return format!("the transaction has no context {member}"),
            }
        }
        "its context does not match".into()
    }
}

impl RequestMatch for Context {
    fn check(&self, r: &RequestFacts) -> Result<(), Why<'_>> {
        if self.0.is_empty() {
            return Ok(());
        }
        let Some(person) = r.person else {
            return Err(Why::NoPerson);
        };
        let all = self
            .0
            .iter()
            .all(|(m, values)| person.tctx.get(m).is_some_and(|v| claim_matches(v, values)));
        match all {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
