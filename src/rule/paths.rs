//! `paths = ["/orders/*", "/healthz"]`: the request's path (canonical: checked before any
//! rule) matches one of the patterns. The same patterns name `inbound.public_paths`.
use serde::Deserialize;

use crate::http::path;

use super::{Field, RequestFacts, RequestMatch, Rule, Subject, Why};

/// A path pattern: `*` (any), `/prefix/*` (the prefix itself and anything under it), or
/// an exact path.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PathPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl TryFrom<String> for PathPattern {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl PathPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(PathPattern::Any);
        }
        if !s.starts_with('/') {
            return Err(format!("\"{s}\" must start with '/' (or be \"*\")"));
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            if prefix.contains('*') {
                return Err(format!("\"{s}\": '*' is only allowed as the last segment"));
            }
            return Ok(PathPattern::Prefix(Self::canonical(s, prefix)?));
        }
        if s.contains('*') {
            return Err(format!("\"{s}\": '*' is only allowed as a final \"/*\""));
        }
        Ok(PathPattern::Exact(Self::canonical(s, s)?))
    }

    /// A pattern's path as the rules read a request's ([`path::rule_form`]: escapes
    /// decoded), or why no request's path can ever be it: an empty segment, a dot segment
    /// or a `;parameter` (refused or removed before the rules look), a backslash, space or
    /// control, `?` or `#`.
    fn canonical(s: &str, p: &str) -> Result<String, String> {
        let never = |why: &str| Err(format!("\"{s}\": {why}, so no request's path is ever it"));
        if p.contains("//") {
            return never("an empty segment (//) is refused or merged first");
        }
        if p.split('/').any(|seg| seg == "." || seg == "..") {
            return never("a dot segment is refused first");
        }
        if p.contains(';') {
            return never(";parameters are removed before the rules match");
        }
        if p.bytes()
            .any(|b| b <= b' ' || b == 0x7f || b"\\?#".contains(&b))
        {
            return never("a backslash, space, control, '?' or '#' never reaches the rules");
        }
        if path::percent_decode(p.as_bytes()).is_err() {
            return never("its percent-encoding is malformed");
        }
        Ok(path::rule_form(p).unwrap_or_else(|| p.to_owned()))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => {
                path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Paths(pub Vec<PathPattern>);

impl Field for Paths {
    fn is_given(&self) -> bool {
        !self.0.is_empty()
    }

    fn explain(&self, _: Why, _: &Rule, s: &Subject) -> String {
        format!("path {} matches none of the rule's paths", s.request.path)
    }
}

impl RequestMatch for Paths {
    fn check(&self, r: &RequestFacts) -> Result<(), Why<'_>> {
        match self.0.is_empty() || self.0.iter().any(|p| p.matches(r.path)) {
            true => Ok(()),
            false => Err(Why::NotIn),
        }
    }
}
