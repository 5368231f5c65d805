//! What rules and claim headers read of a verified token: JSON Pointers into its claims,
//! and the sources whose claims they may read (DESIGN.md "Policy").
use http::HeaderName;

/// Whose claims are read (DESIGN.md "Policy", whose claims): a peer trusted by its own
/// key signs whatever it likes into its token, so its claims are read only where
/// `"self"` is named. The default — every issuer, never `"self"` — cannot be met by a
/// self-signed token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// `None`: not given (every `[[trust.issuers]]` entry, not `"self"`).
    listed: Option<Vec<String>>,
}

impl Sources {
    /// The name of callers' own keys (authorized_keys files, key URLs, the shared key).
    pub const SELF: &'static str = "self";

    pub fn listed(names: Vec<String>) -> Self {
        Sources {
            listed: Some(names),
        }
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

impl std::fmt::Display for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.listed {
            None => f.write_str("every [[trust.issuers]] entry (not \"self\")"),
            Some(names) => write!(f, "{names:?}"),
        }
    }
}

/// One `[inbound.claim_headers]` entry: the header, the claim, the sources it is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    pub name: HeaderName,
    pub pointer: ClaimPointer,
    pub sources: Sources,
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
