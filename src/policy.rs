//! The inbound policy (DESIGN.md "Policy"): `[[inbound.deny]]` rules first — a request
//! matching one is refused — then `[[inbound.allow]]`: when allow rules exist, the caller
//! must match one. A rule matches when every field it gives matches (callers, roles,
//! methods, paths, and claims by JSON Pointer into the verified token). Rules with
//! `audit = true` are evaluated and reported to the observer but decide nothing, and do
//! not make "allow rules exist".
//!
//! One evaluation, [`decide`], for the proxy (which counts and logs audit rules) and for
//! `trustgate explain` (which prints every rule and why it matched or not): an
//! [`Observe`] sees each rule looked at.
use http::Method;
use serde_json::Value;

use crate::config::{ClaimPointer, Inbound, Rule};
use crate::token::Verified;

/// What the rules are matched against: one request and its verified caller.
pub struct Subject<'a> {
    pub caller: &'a str,
    pub roles: &'a [String],
    pub method: &'a Method,
    /// The path as the app will route it (canonical: checked before).
    pub path: &'a str,
    pub verified: &'a Verified,
}

/// The first field of a rule that did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss<'r> {
    Caller,
    Role,
    Method,
    Path,
    /// The claim is there and none of the rule's values.
    Claim(&'r ClaimPointer),
    /// No claim at that pointer.
    ClaimAbsent(&'r ClaimPointer),
}

impl Miss<'_> {
    /// Why, in words (`trustgate explain`).
    pub fn explain(&self, rule: &Rule, s: &Subject) -> String {
        match self {
            Miss::Caller => format!("caller {} is not in {:?}", s.caller, rule.callers),
            Miss::Role => format!("roles {:?} share none of {:?}", s.roles, rule.roles),
            Miss::Method => format!(
                "method {} is not in {:?}",
                s.method,
                rule.methods.iter().map(Method::as_str).collect::<Vec<_>>()
            ),
            Miss::Path => format!("path {} matches none of the rule's paths", s.path),
            Miss::Claim(p) => {
                let values = rule
                    .claims
                    .iter()
                    .find(|(q, _)| q == *p)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                format!(
                    "claim {p} is {} — none of {values:?}",
                    s.verified
                        .claim(p.as_str())
                        .map_or("absent".into(), Value::to_string)
                )
            }
            Miss::ClaimAbsent(p) => format!("the token has no claim {p}"),
        }
    }
}

/// Whether `rule` matches: every field it gives.
pub fn check<'r>(rule: &'r Rule, s: &Subject) -> Result<(), Miss<'r>> {
    if !rule.callers.is_empty() && !rule.callers.iter().any(|c| c == s.caller) {
        return Err(Miss::Caller);
    }
    if !rule.roles.is_empty() && !rule.roles.iter().any(|r| s.roles.contains(r)) {
        return Err(Miss::Role);
    }
    if !rule.methods.is_empty() && !rule.methods.contains(s.method) {
        return Err(Miss::Method);
    }
    if !rule.paths.is_empty() && !rule.paths.iter().any(|p| p.matches(s.path)) {
        return Err(Miss::Path);
    }
    for (pointer, values) in &rule.claims {
        match s.verified.claim(pointer.as_str()) {
            None => return Err(Miss::ClaimAbsent(pointer)),
            Some(v) if !claim_matches(v, values) => return Err(Miss::Claim(pointer)),
            Some(_) => {}
        }
    }
    Ok(())
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

/// A claim as a header value's text: a string as is, a number or boolean as its JSON
/// text, a list of those joined by commas. `None` for anything else (an object, `null`).
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(list) => {
            let parts: Option<Vec<String>> = list
                .iter()
                .map(|e| match e {
                    Value::Array(_) => None,
                    e => claim_text(e),
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        Value::Null | Value::Object(_) => None,
    }
}

/// Which list a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Deny,
    Allow,
}

/// Sees the rules [`decide`] looks at.
pub trait Observe {
    /// `true`: every rule is looked at (explain); `false`: only those that can change the
    /// verdict, and audit rules (the proxy).
    const EVERY: bool;
    fn rule(&mut self, list: List, rule: &Rule, result: Result<(), Miss<'_>>, s: &Subject);
}

/// An observer that sees nothing (the verdict alone).
pub struct Quiet;

impl Observe for Quiet {
    const EVERY: bool = false;
    fn rule(&mut self, _: List, _: &Rule, _: Result<(), Miss<'_>>, _: &Subject) {}
}

/// The rules' verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'r> {
    /// No deny rule matched, and an allow rule did (`Some`) or none exists (`None`).
    Allowed(Option<&'r Rule>),
    /// This deny rule matched.
    Denied(&'r Rule),
    /// Allow rules exist and none matched.
    NoAllowMatched,
}

/// Deny rules, then allow rules; audit rules evaluated for the observer only.
pub fn decide<'r, O: Observe>(inbound: &'r Inbound, s: &Subject, obs: &mut O) -> Verdict<'r> {
    let mut denied = None;
    for rule in &inbound.deny {
        if denied.is_some() && !rule.audit && !O::EVERY {
            continue;
        }
        let result = check(rule, s);
        obs.rule(List::Deny, rule, result, s);
        if result.is_ok() && !rule.audit && denied.is_none() {
            denied = Some(rule);
        }
    }
    let mut allowed = None;
    let mut enforcing = false;
    for rule in &inbound.allow {
        let decided = denied.is_some() || allowed.is_some();
        enforcing |= !rule.audit;
        if decided && !rule.audit && !O::EVERY {
            continue;
        }
        let result = check(rule, s);
        obs.rule(List::Allow, rule, result, s);
        if result.is_ok() && !rule.audit && allowed.is_none() {
            allowed = Some(rule);
        }
    }
    match (denied, allowed) {
        (Some(rule), _) => Verdict::Denied(rule),
        (None, Some(rule)) => Verdict::Allowed(Some(rule)),
        (None, None) if enforcing => Verdict::NoAllowMatched,
        (None, None) => Verdict::Allowed(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(rules: &str) -> Inbound {
        let text = format!(
            "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/k\"\n[inbound]\n{rules}"
        );
        crate::config::from_toml_str(&text, "t.toml", Vec::new())
            .unwrap()
            .inbound
            .unwrap()
    }

    fn token(claims: serde_json::Value) -> Verified {
        let mut base = serde_json::json!({"iss": "orders", "sub": "orders", "aud": "billing",
            "iat": 1, "exp": 2});
        for (k, v) in claims.as_object().unwrap() {
            base[k] = v.clone();
        }
        let claims = serde_json::from_value(base.clone()).unwrap();
        let mut v =
            Verified::new("orders", "kid".into(), crate::keys::KeyAlg::Es256, claims).unwrap();
        v.set_claims_json(base);
        v
    }

    struct Seen(Vec<(String, bool)>);
    impl Observe for Seen {
        const EVERY: bool = true;
        fn rule(&mut self, _: List, rule: &Rule, result: Result<(), Miss<'_>>, _: &Subject) {
            self.0.push((rule.name.clone(), result.is_ok()));
        }
    }

    fn run<'r>(i: &'r Inbound, v: &Verified, method: &Method, path: &str) -> Verdict<'r> {
        let s = Subject {
            caller: "orders",
            roles: &[],
            method,
            path,
            verified: v,
        };
        decide(i, &s, &mut Seen(Vec::new()))
    }

    #[test]
    fn claims_match_by_pointer_lists_any_element_numbers_as_text() {
        let i = inbound(
            "[[inbound.allow]]\nname = \"shop\"\nclaims = { \"/kubernetes.io/namespace\" = [\"shop\"], \
             \"/ctx/x-tenant\" = \"acme\" }\n\
             [[inbound.allow]]\nname = \"groups\"\nclaims = { \"/groups\" = [\"admins\"], \"/level\" = [\"3\"], \
             \"/a~1b\" = [\"true\"] }\n",
        );
        let get = Method::GET;
        let shop = token(serde_json::json!({"kubernetes.io": {"namespace": "shop"},
            "ctx": {"x-tenant": "acme"}}));
        assert_eq!(
            run(&i, &shop, &get, "/"),
            Verdict::Allowed(Some(&i.allow[0]))
        );
        let other = token(serde_json::json!({"kubernetes.io": {"namespace": "shop"},
            "ctx": {"x-tenant": "evil"}}));
        assert_eq!(
            run(&i, &other, &get, "/"),
            Verdict::NoAllowMatched,
            "AND of pointers"
        );
        let groups =
            token(serde_json::json!({"groups": ["dev", "admins"], "level": 3, "a/b": true}));
        assert_eq!(
            run(&i, &groups, &get, "/"),
            Verdict::Allowed(Some(&i.allow[1]))
        );
        let nested = token(serde_json::json!({"groups": [["admins"]], "level": 3, "a/b": true}));
        assert_eq!(
            run(&i, &nested, &get, "/"),
            Verdict::NoAllowMatched,
            "a list in a list is not an element"
        );
        let text = token(serde_json::json!({"groups": ["admins"], "level": "3", "a/b": "true"}));
        assert_eq!(
            run(&i, &text, &get, "/"),
            Verdict::Allowed(Some(&i.allow[1]))
        );
    }

    #[test]
    fn deny_wins_and_audit_rules_decide_nothing() {
        let i = inbound(
            "[[inbound.deny]]\nname = \"no-admin\"\npaths = [\"/admin/*\"]\n\
             [[inbound.deny]]\nname = \"dry\"\naudit = true\nmethods = [\"DELETE\"]\n\
             [[inbound.allow]]\ncallers = [\"orders\"]\n\
             [[inbound.allow]]\nname = \"audit-allow\"\naudit = true\npaths = [\"/x\"]\n",
        );
        let v = token(serde_json::json!({}));
        assert_eq!(i.allow[0].name, "allow[0]", "default names");
        assert_eq!(
            run(&i, &v, &Method::GET, "/admin/users"),
            Verdict::Denied(&i.deny[0])
        );
        assert_eq!(
            run(&i, &v, &Method::DELETE, "/orders"),
            Verdict::Allowed(Some(&i.allow[0]))
        );
        let audit_only = inbound("[[inbound.allow]]\naudit = true\ncallers = [\"search\"]\n");
        assert_eq!(
            run(&audit_only, &v, &Method::GET, "/"),
            Verdict::Allowed(None),
            "audit rules alone do not make rules exist"
        );
        let mut seen = Seen(Vec::new());
        let s = Subject {
            caller: "orders",
            roles: &[],
            method: &Method::DELETE,
            path: "/admin/x",
            verified: &v,
        };
        decide(&i, &s, &mut seen);
        assert_eq!(
            seen.0,
            [
                ("no-admin".to_owned(), true),
                ("dry".to_owned(), true),
                ("allow[0]".to_owned(), true),
                ("audit-allow".to_owned(), false)
            ]
        );
    }

    #[test]
    fn claim_text_for_headers() {
        assert_eq!(
            claim_text(&serde_json::json!("shop")).as_deref(),
            Some("shop")
        );
        assert_eq!(claim_text(&serde_json::json!(3)).as_deref(), Some("3"));
        assert_eq!(
            claim_text(&serde_json::json!(["a", 1, true])).as_deref(),
            Some("a,1,true")
        );
        assert_eq!(claim_text(&serde_json::json!({"a": 1})), None);
        assert_eq!(claim_text(&serde_json::json!([["a"]])), None);
    }
}
