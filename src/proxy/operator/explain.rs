//! `trustgate explain`: what the inbound side would do with one request, step by step,
//! by the proxy's own code — the same screen, canonical-path check, token verification
//! (fetching key URLs and issuers as the proxy would), policy evaluation and identity
//! headers ([`crate::proxy::inbound`]), observed instead of served. The answer's words are the
//! proxy's reason words (`bad_signature`, `non_canonical_path`, `policy`, …).
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use crate::config::{Config, Rule};
use crate::metrics::Outcome;
use crate::policy::{List, Miss, Observe, Subject};
use crate::proxy::answer::Decision;
use crate::proxy::inbound;
use crate::proxy::inbound::person::TXN_TOKEN;
use crate::proxy::rescue::{Answer, Failure};
use crate::proxy::state::{InboundState, State};
use crate::token::{unix_now, Claims, Person, Rejection, Verified};

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
    /// A person's token, in `[inbound.users] token_header`.
    pub user_token: Option<String>,
    /// A transaction token, in `txn-token`.
    pub txn_token: Option<String>,
    /// A DPoP proof (in `DPoP`), for a person's token bound to a key: that token then
    /// goes with the `DPoP` scheme.
    pub dpop: Option<String>,
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
}

/// What the token step gives.
type Authenticated = Result<Arc<Verified>, Failure>;

/// `explain`'s observer of the inbound's steps ([`inbound::steps`]): every step said,
/// every rule looked at, matched or not and why; limits described, not consumed.
struct Explain<'a> {
    out: &'a mut Explanation,
    state: &'a State,
    /// `--caller NAME`: the name, and what the token step is instead.
    named: Option<(&'a str, Option<Authenticated>)>,
    nobody: bool,
    /// Audit mode: the answer enforce mode would have given.
    would_refuse: Option<(u16, &'static str)>,
    caller: Option<String>,
    /// `inbound.merge_slashes`: to say why a path is not canonical.
    merge_slashes: bool,
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

impl<B> inbound::Observer<B> for Explain<'_> {
    fn screened(&mut self, removed: &[HeaderName]) {
        let names: Vec<&str> = removed.iter().map(HeaderName::as_str).collect();
        self.out.say(match names.as_slice() {
            [] => "scrub: nothing removed".to_owned(),
            names => format!(
                "scrub: removed {} (hop-by-hop, or names trustgate sets: identity, signed and claim headers)",
                names.join(", ")
            ),
        });
    }

    fn target(&mut self, req: &Request<B>, refused: Option<&Failure>) {
        let arrived = crate::http::path::arrived_path(req);
        let line = match refused.map(Failure::reason) {
            Some("non_canonical_path") => {
                let why = crate::http::path::canonical(arrived, self.merge_slashes)
                    .err()
                    .unwrap_or(
                        "'*' is a target only for OPTIONS, or a byte outside RFC 3986 in the query",
                    );
                format!("canonical path: {arrived} — no: {why}")
            }
            Some(reason) => format!(
                "request line: {} {arrived} — refused ({reason})",
                req.method()
            ),
            None => {
                let (forward, rules) = (req.uri().path(), crate::http::path::rule_path(req));
                let mut line = format!("canonical path: {arrived} — yes");
                if forward != arrived {
                    line += &format!(", the app receives {forward}");
                }
                if rules != forward {
                    line += &format!(", the rules match {rules} (escapes decoded)");
                }
                if let Some(stripped) = crate::http::path::stripped_rule_path(req) {
                    line += &format!(
                        ", and {stripped} as servlet containers route it (;parameters removed): the rules must allow both"
                    );
                }
                line
            }
        };
        self.out.say(line);
    }

    fn public(&mut self, public: bool) {
        self.out.say(match public {
            true => "public path: yes — forwarded without a token (inbound.public_paths)",
            false => "public path: no",
        });
    }

    fn named(&mut self) -> Option<Result<Arc<Verified>, Failure>> {
        self.named.as_mut().and_then(|(_, v)| v.take())
    }

    fn token(
        &mut self,
        state: &State,
        side: &InboundState,
        req: &Request<B>,
        result: &Result<Option<Arc<Verified>>, Failure>,
    ) {
        let line = match (result, self.named.as_ref()) {
            (Ok(_), Some((name, _))) => format!(
                "token: not checked (--caller {name}: its claims are iss, sub, aud, iat, exp only)"
            ),
            (Err(_), Some((name, _))) => format!(
                "token: --caller {name}: nobody by that name is trusted here (no key file, key URL or issuer maps to it)"
            ),
            (Ok(None), None) => "token: none — [inbound.users] callers = \"optional\": no caller, the request may come for a person".to_owned(),
            (Ok(Some(v)), None) => {
                let via = v
                    .issuer
                    .as_ref()
                    .map(|i| format!(", vouched for by issuer {i}, subject {}", v.claims.sub))
                    .unwrap_or_default();
                format!(
                    "token: valid — caller {} (kid {}, {}{via})",
                    v.caller, v.kid, v.alg
                )
            }
            (Err(Failure::Unauthenticated(Rejection::Missing)), None) if self.nobody => {
                "token: none given — this path needs one: --token T (the token a request \
                 carries, - for stdin), or --caller NAME (a trusted caller, without a token)"
                    .to_owned()
            }
            (Err(f), None) => {
                let why = inbound::refusal_facts(state, side, req, f)
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                format!("token: refused — {}{why}", f.reason())
            }
        };
        self.out.say(line);
    }

    fn person(&mut self, person: Option<&Person>) {
        let side = self.state.inbound.as_ref();
        let takes = side.is_some_and(|s| s.cfg.users.is_some() || s.accepts_txn);
        let line = match person {
            Some(p) => {
                let from = match &p.minted_by {
                    Some(minter) => format!("a transaction token minted by {minter}"),
                    None => "their own token".to_owned(),
                };
                let txn = p
                    .txn
                    .as_deref()
                    .map(|t| format!(", transaction {t}"))
                    .unwrap_or_default();
                Some(format!(
                    "person: {} of {} (from {from}{txn})",
                    p.sub, p.issuer
                ))
            }
            None if takes => Some("person: none".to_owned()),
            None => None,
        };
        if let Some(line) = line {
            self.out.say(line);
        }
        if side.is_some_and(|s| s.cfg.allow.is_empty() && s.cfg.deny.is_empty()) {
            self.out
                .say("rules: none — every trusted caller may call every path");
        }
    }

    /// A caller named without a token has no single-use token to record.
    async fn first_use(&mut self, side: &InboundState, v: &Verified) -> Result<(), Failure> {
        match self.named {
            Some(_) => Ok(()),
            None => inbound::first_use(side, v, unix_now()).await,
        }
    }

    async fn admit(&mut self, _: &InboundState, caller: &str) -> Result<(), Failure> {
        self.out.say(limits_line(&self.state.cfg, caller));
        Ok(())
    }

    fn presented(&mut self, caller: &str, headers: &HeaderMap, withheld: &[&HeaderName]) {
        self.caller = Some(caller.to_owned());
        let protected = self.state.inbound.as_ref().map(|s| &*s.protected);
        let told: Vec<String> = headers
            .iter()
            .filter(|(n, _)| {
                crate::http::is_protected(n.as_ref(), protected.unwrap_or(&[])) || *n == TXN_TOKEN
            })
            .map(|(n, v)| match *n == TXN_TOKEN {
                true => format!("{n}: <a transaction token>"),
                false => format!("{n}: {}", v.to_str().unwrap_or("<bytes>")),
            })
            .collect();
        self.out.say(format!("to the app: {}", told.join(", ")));
        if !withheld.is_empty() {
            let withheld: Vec<String> = withheld
                .iter()
                .map(|n| {
                    format!("{n} (withheld: the app would read the claim otherwise than the rules)")
                })
                .collect();
            self.out
                .say(format!("not to the app: {}", withheld.join(", ")));
        }
    }

    fn rejected(&mut self, _: &Request<B>, a: &Answer, forwarded: bool) {
        if forwarded {
            self.would_refuse = Some((a.status.as_u16(), a.reason));
        }
    }
}

/// Asks the inbound side of `state` about `q`: the request runs through the inbound's
/// own steps ([`inbound::steps`]), observed instead of served.
pub async fn explain(state: &Arc<State>, q: Question) -> Result<Explanation, String> {
    let side = state
        .inbound
        .as_ref()
        .ok_or("the configuration has no [inbound]: nothing receives requests to explain")?;
    let mut out = Explanation {
        lines: Vec::new(),
        forwarded: false,
    };
    let req = request(side, &state.cfg.identity.name, &q)?;
    let named = match &q.who {
        Who::Caller(name) if !state.trust.could_trust(name) => Some((
            name.as_str(),
            Some(Err(Failure::Unauthenticated(Rejection::UnknownKey))),
        )),
        Who::Caller(name) => Some((
            name.as_str(),
            Some(Ok(Arc::new(named_caller(name, &state.cfg)?))),
        )),
        Who::Token(_) | Who::Nobody => None,
    };
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-");
    out.say(format!("request: {} {} (host {host})", q.method, q.target));
    let mut obs = Explain {
        out: &mut out,
        state,
        named,
        nobody: matches!(q.who, Who::Nobody),
        would_refuse: None,
        caller: None,
        merge_slashes: side.cfg.merge_slashes,
    };
    let decision = inbound::steps(state, side, req, &mut obs).await;
    let (would_refuse, caller) = (obs.would_refuse, obs.caller);
    let upstream = &side.cfg.upstream;
    let (line, forwarded) = match decision {
        Decision::Answer(handled) => match handled.failure() {
            Some(f) => {
                let a = f.answer();
                let status = a.status.as_u16();
                (format!("answer: refused — {status} {} ({f})", a.reason), false)
            }
            None => (
                "answer: by trustgate itself (this service's JWKS), never forwarded".to_owned(),
                false,
            ),
        },
        Decision::Forward(verdict, _) => match (verdict.outcome(), would_refuse, caller) {
            (Outcome::Audit, Some((status, reason)), _) => (
                format!(
                    "answer: would be refused ({status} {reason}), but inbound.mode = \"audit\" forwards it without identity headers"
                ),
                true,
            ),
            (_, _, Some(caller)) => (format!("answer: forwarded to {upstream} as {caller}"), true),
            (_, _, None) => (format!("answer: forwarded to {upstream}"), true),
        },
    };
    out.say(line);
    out.forwarded = forwarded;
    Ok(out)
}

/// The request as it would arrive: the target, the headers (`Host`: this service's name
/// unless given), the token in the token header.
fn request(side: &InboundState, identity: &str, q: &Question) -> Result<Request<()>, String> {
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
    // Callers reach a service by its name (`http://billing/...`); `-H "host: ..."` asks
    // about another.
    if !req.headers().contains_key(http::header::HOST) {
        if let Ok(v) = HeaderValue::from_str(identity) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    // A token as a client sends it in that header: `Authorization` takes the `Bearer`
    // scheme (a token given with its scheme is sent as given).
    let field = |name: &HeaderName, token: &str| {
        let value = match *name == http::header::AUTHORIZATION && !token.contains(' ') {
            true => format!("Bearer {token}"),
            false => token.to_owned(),
        };
        HeaderValue::from_str(&value).map_err(|_| "the token is not a header value")
    };
    if let Who::Token(token) = &q.who {
        let name = &side.cfg.token_header;
        req.headers_mut().insert(name.clone(), field(name, token)?);
    }
    let user_header = side.cfg.users.as_ref().map_or_else(
        || HeaderName::from_static("x-user-token"),
        |u| u.token_header.clone(),
    );
    for (name, token) in [(user_header, &q.user_token), (TXN_TOKEN, &q.txn_token)] {
        if let Some(token) = token {
            let value = match (&q.dpop, name == http::header::AUTHORIZATION) {
                (Some(_), true) if !token.contains(' ') => {
                    HeaderValue::from_str(&format!("DPoP {token}"))
                        .map_err(|_| "the token is not a header value")?
                }
                _ => field(&name, token)?,
            };
            req.headers_mut().insert(name, value);
        }
    }
    if let Some(proof) = &q.dpop {
        let value =
            HeaderValue::from_str(proof.trim()).map_err(|_| "the proof is not a header value")?;
        req.headers_mut()
            .insert(HeaderName::from_static("dpop"), value);
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
        let scope = match c.rate_limit_scope {
            crate::config::Scope::Fleet => "fleet-wide: every replica together",
            crate::config::Scope::Sidecar => "per sidecar",
        };
        parts.push(format!(
            "rate_limit {}/{unit}, burst {} ({scope})",
            r.count,
            c.burst.unwrap_or_else(|| r.default_burst())
        ));
    }
    if let Some(n) = c.max_concurrent {
        parts.push(format!("max_concurrent {n} (per sidecar)"));
    }
    if parts.is_empty() {
        return format!("limits: none for {caller}");
    }
    format!(
        "limits: {} (past them: 429; not consumed by explain)",
        parts.join(", ")
    )
}
