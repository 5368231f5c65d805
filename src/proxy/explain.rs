//! `trustgate explain`: what the inbound side would do with one request, step by step,
//! by the proxy's own code — the same screen, canonical-path check, token verification
//! (fetching key URLs and issuers as the proxy would), policy evaluation and identity
//! headers ([`super::inbound`]), observed instead of served. The answer's words are the
//! proxy's reason words (`bad_signature`, `non_canonical_path`, `policy`, …).
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use super::inbound;
use super::rescue::Failure;
use super::state::{InboundState, State};
use crate::config::{Config, InboundMode, Rule};
use crate::policy::{List, Miss, Observe, Subject};
use crate::token::{unix_now, Claims, Rejection, Verified};

/// Who the request claims to be: a token as it would arrive, or a caller by name (the
/// token step then skipped, the policy evaluated for that caller with no claims but the
/// basic ones).
pub enum Who {
    Token(String),
    Caller(String),
    /// Neither: a request without a token (fine on a public path).
    Nobody,
}

/// The question: one request.
pub struct Question {
    pub method: Method,
    /// Path and query, as in the request line.
    pub target: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub who: Who,
}

/// The steps, one line each, and the answer.
pub struct Explanation {
    pub lines: Vec<String>,
    /// Whether the request would reach the app.
    pub forwarded: bool,
}

impl Explanation {
    fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    fn refused(mut self, failure: &Failure, side: &InboundState) -> Self {
        self.refuse(failure, side);
        self
    }

    fn refuse(&mut self, failure: &Failure, side: &InboundState) {
        let a = failure.answer();
        let status = a.status.as_u16();
        if side.cfg.mode == InboundMode::Audit && is_policy_or_token(failure) {
            self.say(format!(
                "answer: would be refused ({status} {}), but inbound.mode = \"audit\" forwards it without identity headers",
                a.reason
            ));
            self.forwarded = true;
        } else {
            self.say(format!(
                "answer: refused — {status} {} ({failure})",
                a.reason
            ));
            self.forwarded = false;
        }
    }
}

fn is_policy_or_token(f: &Failure) -> bool {
    matches!(
        f,
        Failure::Unauthenticated(_) | Failure::Forbidden { .. } | Failure::Limited { .. }
    )
}

/// Every rule looked at, matched or not and why.
struct Explain<'a> {
    out: &'a mut Explanation,
}

impl Observe for Explain<'_> {
    const EVERY: bool = true;

    fn rule(&mut self, list: List, rule: &Rule, result: Result<(), Miss<'_>>, s: &Subject) {
        let kind = match list {
            List::Deny => "deny",
            List::Allow => "allow",
        };
        let audit = if rule.audit {
            " (audit = true: counted, decides nothing)"
        } else {
            ""
        };
        let line = match result {
            Ok(()) => format!("{kind} rule \"{}\": match{audit}", rule.name),
            Err(miss) => format!(
                "{kind} rule \"{}\": no match — {}{audit}",
                rule.name,
                miss.explain(rule, s)
            ),
        };
        self.out.say(line);
    }
}

/// What the step says: go on, or this is the answer.
enum Step<T> {
    Next(T),
    Done,
}

/// Asks the inbound side of `state` about `q`.
pub async fn explain(state: &Arc<State>, q: Question) -> Result<Explanation, String> {
    let side = state
        .inbound
        .as_ref()
        .ok_or("the configuration has no [inbound]: nothing receives requests to explain")?;
    let mut out = Explanation {
        lines: Vec::new(),
        forwarded: false,
    };
    let mut req = request(side, &q)?;
    out.say(format!("request: {} {}", q.method, q.target));
    if let Step::Done = before_the_token(side, &mut req, &mut out) {
        return Ok(out);
    }
    let verified = match who(state, side, &req, &q.who, &mut out).await? {
        Step::Next(v) => v,
        Step::Done => return Ok(out),
    };

    // 4. The policy: deny rules, then allow rules.
    let (cfg, inbound_cfg) = (&state.cfg, &side.cfg);
    if inbound_cfg.allow.is_empty() && inbound_cfg.deny.is_empty() {
        out.say("rules: none — every trusted caller may call every path");
    }
    let mut obs = Explain { out: &mut out };
    let granted = side.granted(&verified.caller);
    if let Err(f) = inbound::authorize(side, &verified, granted, &req, &mut obs) {
        return Ok(out.refused(&f, side));
    }

    // 5. Per-caller limits (not consumed here).
    out.say(limits_line(cfg, &verified.caller));

    // 6. What the app is told.
    let mut told = HeaderMap::new();
    let withheld = inbound::present_caller(side, &mut told, &verified, granted);
    let withheld: Vec<String> = withheld
        .iter()
        .map(|n| format!("{n} (withheld: the app would read the claim otherwise than the rules)"))
        .collect();
    let told: Vec<String> = told
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("<bytes>")))
        .collect();
    out.say(format!("to the app: {}", told.join(", ")));
    if !withheld.is_empty() {
        out.say(format!("not to the app: {}", withheld.join(", ")));
    }
    out.say(format!(
        "answer: forwarded to {} as {}",
        inbound_cfg.upstream, verified.caller
    ));
    out.forwarded = true;
    Ok(out)
}

/// Steps 1–2 and the paths answered without a token: the screen (hop-by-hop fields,
/// `Connection` abuse, spoofable identity headers), the canonical path, the JWKS path,
/// public paths.
fn before_the_token(side: &InboundState, req: &mut Request<()>, out: &mut Explanation) -> Step<()> {
    let before: Vec<HeaderName> = req.headers().keys().cloned().collect();
    if let Err(f) = inbound::screen(&side.protected, req) {
        out.refuse(&f, side);
        return Step::Done;
    }
    let removed: Vec<&str> = before
        .iter()
        .filter(|n| !req.headers().contains_key(*n))
        .map(HeaderName::as_str)
        .collect();
    out.say(match removed.as_slice() {
        [] => "scrub: nothing removed".to_owned(),
        names => format!(
            "scrub: removed {} (hop-by-hop, or names trustgate sets: identity, signed and claim headers)",
            names.join(", ")
        ),
    });
    let path = req.uri().path().to_owned();
    if let Err(f) = inbound::canonical_path(req) {
        out.say(format!("canonical path: {path} — no"));
        out.refuse(&f, side);
        return Step::Done;
    }
    out.say(format!("canonical path: {path} — yes"));
    if side.cfg.publish_jwks && path == inbound::JWKS_PATH {
        out.say("answer: by trustgate itself (this service's JWKS), never forwarded");
        out.forwarded = false;
        return Step::Done;
    }
    if side.cfg.is_public(&path) {
        out.say("public path: yes — forwarded without a token (inbound.public_paths)");
        out.say(format!("answer: forwarded to {}", side.cfg.upstream));
        out.forwarded = true;
        return Step::Done;
    }
    out.say("public path: no");
    Step::Next(())
}

/// Step 3: the token, as the proxy verifies it (fetching a key URL or an issuer's keys
/// for a kid it does not know yet), or the caller named.
async fn who(
    state: &Arc<State>,
    side: &InboundState,
    req: &Request<()>,
    who: &Who,
    out: &mut Explanation,
) -> Result<Step<Arc<Verified>>, String> {
    match who {
        Who::Token(_) => match inbound::authenticate(state, side, req, unix_now()).await {
            Ok(v) => {
                let via = v
                    .issuer
                    .as_ref()
                    .map(|i| format!(", vouched for by issuer {i}, subject {}", v.claims.sub))
                    .unwrap_or_default();
                out.say(format!(
                    "token: valid — caller {} (kid {}, {}{via})",
                    v.caller, v.kid, v.alg
                ));
                Ok(Step::Next(v))
            }
            Err(f) => {
                let why = inbound::refusal_facts(state, side, req, &f)
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                out.say(format!("token: refused — {}{why}", f.reason()));
                out.refuse(&f, side);
                Ok(Step::Done)
            }
        },
        Who::Caller(name) if !state.trust.could_trust(name) => {
            out.say(format!(
                "token: --caller {name}: nobody by that name is trusted here (no key file, key URL or issuer maps to it)"
            ));
            out.refuse(&Failure::Unauthenticated(Rejection::UnknownKey), side);
            Ok(Step::Done)
        }
        Who::Caller(name) => {
            out.say(format!(
                "token: not checked (--caller {name}: its claims are iss, sub, aud, iat, exp only)"
            ));
            Ok(Step::Next(Arc::new(named_caller(name, &state.cfg)?)))
        }
        Who::Nobody => {
            out.say(
                "token: none given — this path needs one: --token T (the token a request \
                 carries, - for stdin), or --caller NAME (a trusted caller, without a token)",
            );
            out.refuse(&Failure::Unauthenticated(Rejection::Missing), side);
            Ok(Step::Done)
        }
    }
}

/// The request as it would arrive: the target, the headers, the token in the token header.
fn request(side: &InboundState, q: &Question) -> Result<Request<()>, String> {
    let mut req = Request::builder()
        .method(q.method.clone())
        .uri(&q.target)
        .body(())
        .map_err(|e| format!("\"{}\" is not a request target: {e}", q.target))?;
    if !req.uri().path().starts_with('/') {
        return Err(format!(
            "\"{}\" is not a request target (a path: /orders/1)",
            q.target
        ));
    }
    for (n, v) in &q.headers {
        req.headers_mut().append(n.clone(), v.clone());
    }
    if let Who::Token(token) = &q.who {
        let name = &side.cfg.token_header;
        let value = if *name == http::header::AUTHORIZATION {
            format!("Bearer {token}")
        } else {
            token.clone()
        };
        let value = HeaderValue::from_str(&value).map_err(|_| "the token is not a header value")?;
        req.headers_mut().insert(name.clone(), value);
    }
    Ok(req)
}

/// A caller named without a token: the claims trustgate's own token would carry.
fn named_caller(name: &str, cfg: &Config) -> Result<Verified, String> {
    if !crate::keys::is_valid_identity(name) {
        return Err(format!("--caller \"{name}\" is not a valid identity"));
    }
    let now = unix_now();
    let claims = Claims {
        iss: name.to_owned(),
        sub: name.to_owned(),
        aud: crate::token::Audience::One(cfg.identity.name.clone()),
        iat: now,
        exp: now + cfg.identity.token_ttl.as_secs(),
        nbf: None,
        jti: None,
        ctx: None,
        htm: None,
        htu: None,
    };
    Verified::new(name, "-".into(), crate::keys::KeyAlg::Es256, claims)
        .map_err(|r| r.reason().to_owned())
}

fn limits_line(cfg: &Config, caller: &str) -> String {
    let Some(c) = cfg.callers.get(caller) else {
        return format!("limits: none for {caller}");
    };
    let mut parts = Vec::new();
    if let Some(r) = c.rate_limit {
        let unit = match r.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        parts.push(format!(
            "rate_limit {}/{unit}, burst {}",
            r.count,
            c.burst.unwrap_or_else(|| r.default_burst())
        ));
    }
    if let Some(n) = c.max_concurrent {
        parts.push(format!("max_concurrent {n}"));
    }
    if parts.is_empty() {
        return format!("limits: none for {caller}");
    }
    format!(
        "limits: {} (past them: 429; not consumed by explain)",
        parts.join(", ")
    )
}
