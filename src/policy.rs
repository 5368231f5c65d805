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
use serde_json::Value;

use crate::config::Inbound;
pub use crate::rule::{claim_matches, source_name, Miss, Rule, Subject};
use crate::token::Verified;

/// [`Rule::caller_part`] of every rule (deny rules, then allow rules), one bit each,
/// computed on a token's first request and kept with the verified token: later requests
/// presenting it check only the request's fields, and only of the rules its caller
/// matches.
fn token_bits(inbound: &Inbound, s: &Subject) -> Box<[u64]> {
    let rules = inbound.deny.iter().chain(&inbound.allow);
    let mut bits = vec![0u64; (inbound.deny.len() + inbound.allow.len()).div_ceil(64)];
    for (i, rule) in rules.enumerate() {
        if rule.caller_part(s.caller.as_ref()).is_ok() {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits.into_boxed_slice()
}

/// A rule's answer: from scratch for an observer that wants every reason, else from the
/// token's bits and the request's fields.
fn answer<'r>(
    rule: &'r Rule,
    index: usize,
    s: &Subject,
    bits: Option<&[u64]>,
) -> Result<(), Miss<'r>> {
    match bits {
        Some(b) if b[index / 64] & (1 << (index % 64)) == 0 => Err(Miss::token()),
        Some(_) => rule.request_part(&s.request),
        None => rule.check(s),
    }
}

/// `[inbound.claim_headers]`, read only from the sources each header names: a claim
/// absent, or from a source not named, sends no header; one the app would read otherwise
/// than the rules did is withheld, and its header returned (to be counted).
pub fn claim_headers<'c>(
    configured: &'c [crate::config::ClaimHeader],
    v: &Verified,
    headers: &mut http::HeaderMap,
) -> Vec<&'c http::HeaderName> {
    let mut withheld = Vec::new();
    let issuer = v.issuer.as_deref();
    for h in configured {
        if !h.sources.reads(issuer) {
            continue;
        }
        let Some(claim) = h.pointer.lookup(v.claims_json()) else {
            continue;
        };
        match claim_header_value(claim) {
            Some(value) => {
                headers.insert(h.name.clone(), value);
            }
            None => withheld.push(&h.name),
        }
    }
    withheld
}

/// A claim as a header value, when the app reads it as the rules matched it: a string as
/// is, a number or boolean as its JSON text, a list of those joined by commas. `None` —
/// withheld — for what an app would read otherwise: surrounding whitespace (parsers strip
/// it: `"evil "` would reach the app as the `"evil"` a deny rule refuses), a comma inside
/// one string (`"x,banned"` would read as the list `["x", "banned"]`), control or non-ASCII
/// characters, an empty value, an object, `null`, a list inside a list.
pub fn claim_header_value(v: &Value) -> Option<http::HeaderValue> {
    let mut text = String::new();
    match v {
        Value::Array(list) => {
            for (i, e) in list.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&scalar_text(e)?);
            }
        }
        v => text = scalar_text(v)?,
    }
    if text.is_empty() {
        return None;
    }
    http::HeaderValue::from_str(&text).ok()
}

/// One element's text, refused where an app would split, trim or mangle it.
fn scalar_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Null | Value::Object(_) => return None,
    };
    let plain = |b: u8| (0x21..0x7f).contains(&b) && b != b',';
    let inner_ok = text.bytes().all(|b| plain(b) || b == b' ');
    let ends_ok = text.bytes().next().is_some_and(plain) && text.bytes().last().is_some_and(plain);
    (inner_ok && ends_ok).then_some(text)
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

/// Deny rules, then allow rules; audit rules evaluated for the observer only. A deny rule
/// whose only miss is a field the request does not say clearly ([`crate::rule::Why::Unclear`])
/// refuses: what cannot be read cannot be let through.
pub fn decide<'r, O: Observe>(inbound: &'r Inbound, s: &Subject, obs: &mut O) -> Verdict<'r> {
    // The token's memo; a request without a caller has none (every rule from scratch).
    let bits = match &s.caller {
        Some(c) if !O::EVERY => Some(c.verified.policy_memo(|| token_bits(inbound, s))),
        _ => None,
    };
    let mut denied = None;
    for (i, rule) in inbound.deny.iter().enumerate() {
        if denied.is_some() && !rule.audit && !O::EVERY {
            continue;
        }
        let result = answer(rule, i, s, bits);
        obs.rule(List::Deny, rule, result, s);
        let hit = match result {
            Ok(()) => true,
            Err(miss) => miss.why == crate::rule::Why::Unclear,
        };
        if hit && !rule.audit && denied.is_none() {
            denied = Some(rule);
        }
    }
    let mut allowed = None;
    let mut enforcing = false;
    for (i, rule) in inbound.allow.iter().enumerate() {
        let decided = denied.is_some() || allowed.is_some();
        enforcing |= !rule.audit;
        if decided && !rule.audit && !O::EVERY {
            continue;
        }
        let result = answer(rule, inbound.deny.len() + i, s, bits);
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
    use http::Method;

    fn inbound(rules: &str) -> Inbound {
        let text = format!(
            "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/k\"\n[inbound]\n{rules}"
        );
        crate::config::from_toml_str(&text, "t.toml", Vec::new())
            .unwrap()
            .inbound
            .unwrap()
    }

    /// A token an issuer ("cluster") vouched for: its claims are read by default.
    fn token(claims: serde_json::Value) -> Verified {
        let mut v = token_of("orders", claims);
        v.issuer = Some("cluster".into());
        v
    }

    fn token_of(caller: &str, claims: serde_json::Value) -> Verified {
        let mut base = serde_json::json!({"iss": caller, "sub": caller, "aud": "billing",
            "iat": 1, "exp": 2});
        for (k, v) in claims.as_object().unwrap() {
            base[k] = v.clone();
        }
        let claims = serde_json::from_value(base.clone()).unwrap();
        let mut v =
            Verified::new(caller, "kid".into(), crate::keys::KeyAlg::Es256, claims).unwrap();
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
        let s = Subject::plain(v, &[], method, path);
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

    /// A peer trusted by its own key signs what it likes: its claims are read only by
    /// rules naming "self"; a rule naming issuers matches their tokens only.
    #[test]
    fn claims_are_read_only_from_the_sources_a_rule_names() {
        let i = inbound(
            "[[inbound.deny]]\nname = \"evil-ns\"\nclaims = { \"/kubernetes.io/namespace\" = \"evil\" }\n\
             [[inbound.allow]]\nname = \"shop\"\nclaims = { \"/kubernetes.io/namespace\" = [\"shop\"] }\n\
             [[inbound.allow]]\nname = \"tenant\"\nissuers = [\"self\"]\nclaims = { \"/ctx/x-tenant\" = \"acme\" }\n\
             [[inbound.allow]]\nname = \"east-only\"\nissuers = [\"east\"]\npaths = [\"/east/*\"]\n\
             [[trust.issuers]]\nname = \"east\"\nkind = \"oidc\"\nissuer = \"https://east.example\"\n\
             callers = { \"client-1\" = \"orders\" }\n",
        );
        let get = Method::GET;
        let shop = serde_json::json!({"kubernetes.io": {"namespace": "shop"}});
        let own = token_of("search", shop.clone());
        assert_eq!(
            run(&i, &own, &get, "/"),
            Verdict::NoAllowMatched,
            "a self-signed kubernetes.io claim is a claim absent"
        );
        let vouched = token(shop);
        assert_eq!(
            run(&i, &vouched, &get, "/"),
            Verdict::Allowed(Some(&i.allow[0]))
        );
        let evil = token_of(
            "search",
            serde_json::json!({"kubernetes.io": {"namespace": "evil"},
            "ctx": {"x-tenant": "acme"}}),
        );
        assert_eq!(
            run(&i, &evil, &get, "/"),
            Verdict::Allowed(Some(&i.allow[1])),
            "the deny rule reads no self claim either; the self rule reads ctx"
        );
        let mut vouched_ctx = token(serde_json::json!({"ctx": {"x-tenant": "acme"}}));
        assert_eq!(
            run(&i, &vouched_ctx, &get, "/"),
            Verdict::NoAllowMatched,
            "ctx of an issuer is not self's"
        );
        assert_eq!(
            run(&i, &vouched_ctx, &get, "/east/1"),
            Verdict::NoAllowMatched,
            "cluster is not east"
        );
        vouched_ctx.issuer = Some("east".into());
        assert_eq!(
            run(&i, &vouched_ctx, &get, "/east/1"),
            Verdict::Allowed(Some(&i.allow[2]))
        );
        let mut seen = Seen(Vec::new());
        let s = Subject::plain(&own, &[], &get, "/");
        decide(&i, &s, &mut seen);
        let why = i.allow[0].check(&s).unwrap_err().explain(&i.allow[0], &s);
        assert!(why.contains("not read from self"), "{why}");
        let why = i.allow[2].check(&s).unwrap_err().explain(&i.allow[2], &s);
        assert!(why.contains("from self, not one of [\"east\"]"), "{why}");
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
        let s = Subject::plain(&v, &[], &Method::DELETE, "/admin/x");
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

    /// The proxy decides from the token's memo (callers, roles and claims found once) and
    /// `explain` from scratch: the same verdicts, request after request on one token.
    #[test]
    fn the_token_memo_gives_the_verdicts_of_a_full_evaluation() {
        let i = inbound(
            "[[inbound.deny]]\npaths = [\"/admin/*\"]\n\
             [[inbound.deny]]\nclaims = { \"/ctx/x-tenant\" = [\"evil\"] }\nmethods = [\"POST\"]\n\
             [[inbound.allow]]\ncallers = [\"orders\"]\nmethods = [\"GET\"]\n\
             [[inbound.allow]]\nclaims = { \"/ctx/x-tenant\" = [\"acme\"] }\npaths = [\"/invoices/*\"]\n",
        );
        let tokens = [
            serde_json::json!({}),
            serde_json::json!({"ctx": {"x-tenant": "acme"}}),
            serde_json::json!({"ctx": {"x-tenant": "evil"}}),
        ];
        let requests = [
            (Method::GET, "/invoices/1"),
            (Method::POST, "/invoices/1"),
            (Method::POST, "/other"),
            (Method::GET, "/admin/x"),
            (Method::DELETE, "/invoices/2"),
        ];
        for claims in tokens {
            for caller in ["orders", "search"] {
                let memo = token_of(caller, claims.clone());
                for (method, path) in &requests {
                    let full = token_of(caller, claims.clone());
                    let subject = |v| Subject::plain(v, &[], method, path);
                    let expected = decide(&i, &subject(&full), &mut Seen(Vec::new()));
                    let fast = decide(&i, &subject(&memo), &mut Quiet);
                    assert_eq!(fast, expected, "{caller} {method} {path} {claims}");
                }
            }
        }
    }

    #[test]
    fn claim_header_values_are_what_the_rules_matched() {
        let text =
            |v: serde_json::Value| claim_header_value(&v).map(|h| h.to_str().unwrap().to_owned());
        assert_eq!(text(serde_json::json!("shop")).as_deref(), Some("shop"));
        assert_eq!(text(serde_json::json!("a b")).as_deref(), Some("a b"));
        assert_eq!(text(serde_json::json!(3)).as_deref(), Some("3"));
        assert_eq!(
            text(serde_json::json!(["a", 1, true])).as_deref(),
            Some("a,1,true")
        );
        for withheld in [
            serde_json::json!({"a": 1}),
            serde_json::json!([["a"]]),
            serde_json::json!(null),
            serde_json::json!(""),
            serde_json::json!([]),
            serde_json::json!("evil "),
            serde_json::json!(" evil"),
            serde_json::json!("\tevil"),
            serde_json::json!("x,banned"),
            serde_json::json!(["x", "y,banned"]),
            serde_json::json!(["x", " banned"]),
            serde_json::json!("a\u{7f}b"),
            serde_json::json!("a\nb"),
            serde_json::json!("caf\u{e9}"),
        ] {
            assert_eq!(text(withheld.clone()), None, "{withheld}");
        }
    }
}
