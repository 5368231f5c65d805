//! `methods = ["GET", "HEAD"]`: the request's method is one of them (standard methods
//! only, any case in the configuration).
use http::Method;
use serde::{Deserialize, Deserializer};

use super::{Field, RequestFacts, RequestMatch, Rule, Subject, Why};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Methods(pub Vec<Method>);

const STANDARD: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

impl<'de> Deserialize<'de> for Methods {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|m| {
                let upper = m.to_ascii_uppercase();
                STANDARD
                    .iter()
                    .find(|s| s.as_str() == upper)
                    .cloned()
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!("\"{m}\" is not an HTTP method"))
                    })
            })
            .collect::<Result<_, _>>()
            .map(Methods)
    }
}

impl Field for Methods {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        let names: Vec<&str> = self.0.iter().map(Method::as_str).collect();
        format!("method {} is not in {names:?}", s.request.method)
    }
}

impl RequestMatch for Methods {
    fn check(&self, r: &RequestFacts) -> Result<(), Why<'_>> {
        match self.0.is_empty() || self.0.contains(r.method) {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
