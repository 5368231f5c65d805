//! `hosts = ["billing", "billing.shop.svc.cluster.local", "*.internal"]`: the host the
//! request is for, as the app will read it (the one `Host` field, else HTTP/2's
//! `:authority`; [`crate::http::host`]), without port or trailing dot, any case. `*.x`
//! matches any name under `x`, not `x` itself. A request with two `Host` fields, one that
//! is not a host, or none at all (HTTP/1.0: the app then reads whatever the forwarding
//! client fills in) is unclear: no allow rule naming hosts matches it, and a deny rule
//! naming hosts refuses it.
use serde::{Deserialize, Deserializer};

use super::{Field, RequestFacts, RequestMatch, Rule, Subject, Why};
use crate::http::host::{host_part, RequestHost};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts(pub Vec<HostPattern>);

/// A host name (lower case), or `*.` and a suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `.suffix`: any name ending with it.
    Under(String),
}

impl HostPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("\"{s}\" is not a host name (billing, billing.shop.svc, *.internal)");
        let (wild, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let ok = !name.is_empty()
            && host_part(&name) == name
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        match (ok, wild) {
            (false, _) => Err(bad()),
            (true, true) => Ok(HostPattern::Under(format!(".{name}"))),
            (true, false) => Ok(HostPattern::Exact(name)),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Under(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Under(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| HostPattern::parse(s).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Hosts)
    }
}

impl Field for Hosts {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, why: Why, _: &Rule, s: &Subject) -> String {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        match (s.request.host(), why) {
            (RequestHost::Named(h), _) => format!("host {h} is not in {names:?}"),
            (RequestHost::Absent | RequestHost::Ambiguous, _) => {
                "the request's host is unclear (no Host field, two, or one that is not a \
                 host): no allow rule naming hosts matches it, a deny rule naming hosts \
                 refuses it"
                    .into()
            }
        }
    }
}

impl RequestMatch for Hosts {
    fn check(&self, r: &RequestFacts) -> Result<(), Why<'_>> {
        if self.0.is_empty() {
            return Ok(());
        }
        match r.host() {
            RequestHost::Named(h) if self.0.iter().any(|p| p.matches(h)) => Ok(()),
            RequestHost::Ambiguous | RequestHost::Absent => Err(Why::Unclear),
            RequestHost::Named(_) => Err(Why::NotIn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("Billing.").matches("billing") && p("billing").matches("BILLING"));
        assert!(!p("billing").matches("billing.shop"));
        let under = p("*.internal");
        assert!(under.matches("a.internal") && under.matches("a.b.INTERNAL"));
        assert!(!under.matches("internal") && !under.matches("xinternal"));
        for bad in ["", "*", "a:80", "a b", "a/b", "*.", "[::1]", "a*b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
