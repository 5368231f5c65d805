//! `users = ["alice@example.com"]` (subjects), or `["*"]` for any verified person: the
//! person the request is made for (a person's token at the edge, a transaction token
//! downstream). A request made for no person never matches.
use serde::{Deserialize, Deserializer};

use super::{Field, RequestFacts, RequestMatch, Rule, Subject, Why};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users(pub Vec<String>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let subjects = Vec::<String>::deserialize(d)?;
        if subjects.iter().any(String::is_empty) {
            return Err(serde::de::Error::custom("an empty subject names nobody"));
        }
        Ok(Users(subjects))
    }
}

impl Field for Users {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        match s.request.person {
            Some(p) => format!("user {} is not in {:?}", p.sub, self.0),
            None => super::NO_PERSON.into(),
        }
    }
}

impl RequestMatch for Users {
    fn check(&self, r: &RequestFacts) -> Result<(), Why<'_>> {
        if self.0.is_empty() {
            return Ok(());
        }
        let Some(person) = r.person else {
            return Err(Why::NoPerson);
        };
        match self.0.iter().any(|u| u == "*" || *u == person.sub) {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
