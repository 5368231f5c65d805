//! Inbound: a caller → trustgate → this service's app.
//!
//! The request runs through [`steps`], top to bottom (DESIGN.md "Inbound: what is
//! checked"): [`screen`] (hop-by-hop fields, `Connection` abuse, spoofed identity
//! headers) → [`canonical_path`] → public paths go straight to the app → [`authenticate`]
//! (exactly one token, verified against the keyring snapshot of *this* request, so a
//! revocation applies to open keep-alive connections; binding and replay where required)
//! → [`authorize`] (the allow rules) → [`present_caller`] → forward. Each step is a plain
//! function of the request and this side's state, testable alone; the first that says no
//! ends the request, and [`super::observe`] turns that into metrics, a log line and the
//! response. The app receives the caller in plain headers and never the token.
use std::future::Future;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;

pub use super::bearer::extract_token;
use super::bearer::{check_token, locate_token};
use super::client::Protocol;
use super::forward::{expects_continue, forward, Downstream, Hop, HostHeader};
use super::limits::InFlight;
use super::observe::{self, Decision, Direction, Handled, Seen, Verdict, Who};
use super::rescue::{BadRequest, Failure};
use super::state::{Granted, InboundState, State};
use crate::config::{InboundMode, Rule, UpstreamProtocol};
use crate::http::{connection_tokens, is_protected, is_upgrade, scrub, strip_hop_by_hop, Body};
use crate::metrics::Outcome;
use crate::policy::{self, List, Miss, Observe, Subject, Verdict as PolicyVerdict};
use crate::token::{self, unix_now, Rejection, Verified};
use crate::trust::KidRefusal;

/// Where this service's public keys are published (`inbound.publish_jwks`).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

pub const CALLER: HeaderName = HeaderName::from_static("x-service-caller");
pub const CALLER_ROLES: HeaderName = HeaderName::from_static("x-service-caller-roles");

pub fn handle<'a>(
    state: &'a Arc<State>,
    side: &'a InboundState,
    req: Request<Incoming>,
    down: &'a Downstream,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let seen = Seen::new(Direction::Inbound, &req);
    // The decision and the exchange with the app are two awaits of one future, so its
    // size is the larger of the two, not their sum (hyper keeps it per connection). A
    // `let`, not a `match` around the exchange: that would keep the decision alive in the
    // future during the exchange.
    async move {
        let mut in_flight = None;
        let (verdict, req) = match steps(state, side, req, &mut in_flight).await {
            Decision::Forward(verdict, req) => (verdict, req),
            Decision::Answer(handled) => return observe::finish(state, seen, handled, &"-"),
        };
        let answer = to_app(side, req, down).await;
        let handled = verdict.forwarded(match in_flight {
            None => answer,
            Some(f) => answer.map(|resp| super::limits::hold(resp, f)),
        });
        observe::finish(state, seen, handled, &side.cfg.upstream)
    }
}

/// The inbound pipeline. Every early return is a decision. A request of a caller with a
/// concurrency limit leaves its [`InFlight`] in `in_flight`, held until the answer ends.
async fn steps(
    state: &Arc<State>,
    side: &InboundState,
    mut req: Request<Incoming>,
    in_flight: &mut Option<InFlight>,
) -> Decision<Request<Incoming>> {
    let cfg = &side.cfg;
    if let Err(failure) = screen(&side.protected, &mut req).and_then(|()| canonical_path(&req)) {
        return Decision::Answer(refuse(req, failure));
    }
    if cfg.publish_jwks && req.uri().path() == JWKS_PATH {
        let jwks = super::admin::jwks_response(state, req.method());
        return Decision::Answer(Verdict::new(Outcome::Jwks).forwarded(Ok(jwks)));
    }
    if cfg.is_public(req.uri().path()) {
        return Decision::Forward(Verdict::new(Outcome::Public), req);
    }
    let verified = match authenticate(state, side, &req, unix_now()).await {
        Ok(v) => v,
        Err(failure) => {
            if tracing::enabled!(tracing::Level::DEBUG) {
                if let Some(why) = refusal_facts(state, side, &req, &failure) {
                    tracing::debug!(reason = failure.reason(), why, "token refused");
                }
            }
            let who = revoked_caller(state, side, &req, &failure);
            return reject(state, side, req, failure, who);
        }
    };
    let who = || {
        Some(Who::Caller(
            verified.caller.clone(),
            verified.issuer.clone(),
        ))
    };
    let mut audit = AuditRules {
        metrics: &state.metrics,
        caller: &verified.caller,
    };
    let granted = side.granted(&verified.caller);
    if let Err(failure) = authorize(side, &verified, granted, &req, &mut audit) {
        return reject(state, side, req, failure, who());
    }
    if !side.limits.is_empty() {
        match side.limits.admit(&verified.caller) {
            Ok(f) => *in_flight = f,
            Err(limit) => {
                state
                    .metrics
                    .caller_limited
                    .with_label_values(&[&verified.caller, limit.reason()])
                    .inc();
                let caller = verified.caller.to_string();
                return reject(state, side, req, Failure::Limited { caller, limit }, who());
            }
        }
    }
    for name in present_caller(side, req.headers_mut(), &verified, granted) {
        state
            .metrics
            .claim_headers_withheld
            .with_label_values(&[name.as_str()])
            .inc();
        tracing::debug!(header = %name, caller = %verified.caller,
            "claim header withheld: the app would read its value otherwise than the rules");
    }
    Decision::Forward(Verdict::new(Outcome::Ok).by(who()), req)
}

/// The one way a request reaches the app.
fn to_app<'a>(
    side: &'a InboundState,
    req: Request<Incoming>,
    down: &'a Downstream,
) -> impl Future<Output = Result<Response<Body>, Failure>> + Send + 'a {
    let hop = Hop {
        upstreams: &side.app,
        target: &side.cfg.upstream.uri,
        host: HostHeader::Keep,
        protocol: app_protocol(side.cfg.upstream_protocol, &req),
        protected: Some(&side.protected),
    };
    forward(req, hop, down)
}

/// A token or policy failure: refused in enforce mode; in audit mode counted, logged and
/// forwarded without identity headers — the app sees an anonymous call, exactly as if
/// trustgate were not there.
fn reject(
    state: &State,
    side: &InboundState,
    mut req: Request<Incoming>,
    failure: Failure,
    who: Option<Who>,
) -> Decision<Request<Incoming>> {
    state
        .metrics
        .inbound_rejections
        .with_label_values(&[failure.reason()])
        .inc();
    match side.cfg.mode {
        InboundMode::Enforce => Decision::Answer(refuse(req, failure).by(who)),
        InboundMode::Audit => {
            tracing::warn!(
                method = %req.method(), path = %req.uri().path(), reason = failure.reason(),
                "audit mode: would have refused this request"
            );
            req.headers_mut().remove(&side.cfg.token_header);
            let verdict = Verdict::new(Outcome::Audit).because(failure.reason());
            Decision::Forward(verdict.by(who), req)
        }
    }
}

/// The facts behind a token's refusal ([`token::why`]): for `explain`, and a debug line.
pub(crate) fn refusal_facts<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    failure: &Failure,
) -> Option<String> {
    let Failure::Unauthenticated(rejection) = failure else {
        return None;
    };
    let token = extract_token(req.headers(), &side.cfg.token_header).ok()?;
    let trust = state.trust.snapshot();
    token::why(token, *rejection, &trust.keyring, &side.policy, unix_now())
}

/// A revoked key's token passed every other check (revocation is the last): its caller is
/// known, and named in the access log with the kid in a line of its own, so that whoever
/// still presents a revoked key can be found.
fn revoked_caller<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    failure: &Failure,
) -> Option<Who> {
    if !matches!(failure, Failure::Unauthenticated(Rejection::Revoked)) {
        return None;
    }
    let claimed = extract_token(req.headers(), &side.cfg.token_header)
        .ok()
        .and_then(token::peek)?;
    let trust = state.trust.snapshot();
    let key = trust
        .keyring
        .select(&claimed.kid, || claimed.iss.clone())?
        .key()
        .clone();
    let caller: Arc<str> = key.speaks.label().into();
    tracing::info!(caller = %caller, kid = %claimed.kid, "a revoked key was presented");
    Some(Who::Caller(caller, None))
}

/// What the app speaks: `auto` sends gRPC as HTTP/2 and everything else as HTTP/1.1,
/// whatever protocol the request arrived in (an h2c client, or the TLS link between
/// sidecars, must not reach an HTTP/1.1-only app as HTTP/2).
fn app_protocol<B>(setting: UpstreamProtocol, req: &Request<B>) -> Protocol {
    match setting {
        UpstreamProtocol::Http1 => Protocol::Http1,
        UpstreamProtocol::Http2 => Protocol::Http2,
        UpstreamProtocol::Auto if crate::http::is_grpc_proper(req) => Protocol::Http2,
        UpstreamProtocol::Auto => Protocol::Http1,
    }
}

/// A refused request's body: drained in the background so that an HTTP/1.1 client still
/// uploading reads the refusal instead of a connection reset (see [`super::body`]).
/// Not for a client waiting for `100 Continue`: it has not sent the body, and reading
/// would make hyper promise a `100` after all.
fn refuse(req: Request<Incoming>, failure: Failure) -> Handled {
    if req.version() != Version::HTTP_2 && !expects_continue(&req) {
        super::body::linger(req.into_body());
    }
    Handled::failed(failure)
}

/// Everything that happens to a request's headers before any decision, in this order:
///
/// 1. a `Connection` header naming a header trustgate sets is refused (400): it could
///    only be there to make a hop-by-hop pass remove the verified identity;
/// 2. the hop-by-hop fields go, *before* trustgate sets any header of its own;
/// 3. every header an app could read as an identity header is removed ([`scrub`]).
pub(crate) fn screen<B>(protected: &[HeaderName], req: &mut Request<B>) -> Result<(), Failure> {
    if connection_tokens(req.headers()).any(|token| is_protected(token, protected)) {
        return Err(Failure::BadRequest(
            BadRequest::ConnectionNamesProtectedHeader,
        ));
    }
    let upgrade = is_upgrade(req);
    strip_hop_by_hop(req.headers_mut(), upgrade);
    scrub(req.headers_mut(), protected);
    Ok(())
}

/// A path that an app server could route differently from the rules is refused (400,
/// [`super::path`]).
pub(crate) fn canonical_path<B>(req: &Request<B>) -> Result<(), Failure> {
    super::path::check(req.uri().path()).map_err(|why| {
        tracing::debug!(path = %req.uri().path(), why, "non-canonical path refused");
        Failure::BadRequest(BadRequest::NonCanonicalPath)
    })
}

/// The policy (step 8 of the contract, [`crate::policy`]): deny rules, then allow rules;
/// audit rules counted and logged through `obs`.
pub(crate) fn authorize<B, O: Observe>(
    side: &InboundState,
    verified: &Verified,
    granted: Granted,
    req: &Request<B>,
    obs: &mut O,
) -> Result<(), Failure> {
    let cfg = &side.cfg;
    if cfg.allow.is_empty() && cfg.deny.is_empty() {
        return Ok(());
    }
    let path = req.uri().path();
    let subject = Subject {
        roles: granted.roles(),
        method: req.method(),
        path,
        verified,
    };
    let rule = match policy::decide(cfg, &subject, obs) {
        PolicyVerdict::Allowed(_) => return Ok(()),
        PolicyVerdict::Denied(rule) => Some(rule.name.clone()),
        PolicyVerdict::NoAllowMatched => None,
    };
    Err(Failure::Forbidden {
        caller: verified.caller.to_string(),
        method: req.method().to_string(),
        path: path.to_owned(),
        rule,
    })
}

/// The proxy's observer of the rules: audit rules counted
/// (`trustgate_policy_audit_total{rule,result}`) and logged; the others decide.
pub(crate) struct AuditRules<'a> {
    pub metrics: &'a crate::metrics::Metrics,
    pub caller: &'a str,
}

impl Observe for AuditRules<'_> {
    const EVERY: bool = false;

    fn rule(&mut self, list: List, rule: &Rule, result: Result<(), Miss<'_>>, _: &Subject) {
        if !rule.audit {
            return;
        }
        let verdict = if result.is_ok() { "match" } else { "no_match" };
        self.metrics
            .policy_audit
            .with_label_values(&[&rule.name, verdict])
            .inc();
        tracing::info!(
            rule = %rule.name, list = ?list, result = verdict, caller = self.caller,
            "audit rule evaluated (decides nothing)"
        );
    }
}

/// Steps 2–7 of the contract ([`verify_token`]); a kid nobody knows, in a token claiming
/// an identity whose keys live at a URL, may first fetch that URL once (bounded, see
/// `crate::trust::sources`) — and an identity whose keys could not be fetched gets 503
/// `keys_unavailable`, not 401.
pub(crate) async fn authenticate<B>(
    state: &Arc<State>,
    side: &InboundState,
    req: &Request<B>,
    now: u64,
) -> Result<Arc<Verified>, Failure> {
    // A kid nobody trusts, or one trusted only for sources other than the one the token
    // claims (another source publishing the same kid): the claimed source may have it.
    let first = match verify_token(state, side, req, now) {
        Err(r @ (Rejection::UnknownKey | Rejection::IssuerMismatch))
            if state.trust.has_sources() =>
        {
            r
        }
        other => return other.map_err(Failure::Unauthenticated),
    };
    let unknown = || Failure::Unauthenticated(first);
    let peeked = extract_token(req.headers(), &side.cfg.token_header)
        .ok()
        .and_then(token::peek);
    let Some(claimed) = peeked else {
        return Err(unknown());
    };
    let again = || verify_token(state, side, req, now);
    // Boxed: this rare path's future would otherwise size every request's.
    match Box::pin(state.trust.unknown_kid(&claimed, again)).await {
        Ok(v) => Ok(v),
        Err(KidRefusal::Unknown) => Err(unknown()),
        Err(KidRefusal::Unavailable) if first == Rejection::UnknownKey => {
            Err(Failure::KeysUnavailable(claimed.iss.unwrap_or_default()))
        }
        Err(KidRefusal::Unavailable) => Err(unknown()),
        Err(KidRefusal::Rejected(r)) => Err(Failure::Unauthenticated(r)),
    }
}

/// Exactly one token, verified against this request's keyring snapshot, request binding
/// and replay where required. A token seen before is answered from the verified-token
/// cache (same bytes, same keyring generation) before its bytes are even checked: they
/// equal bytes that passed every check.
fn verify_token<B>(
    state: &State,
    side: &InboundState,
    req: &Request<B>,
    now: u64,
) -> Result<Arc<Verified>, Rejection> {
    let raw = locate_token(req.headers(), &side.cfg.token_header)?;
    // One snapshot for the whole decision.
    let trust = state.trust.snapshot();
    if side.cfg.require_request_binding {
        // Bound tokens are single-use: nothing to cache, the replay check is the point.
        let v = token::verify(check_token(raw)?, &trust.keyring, &side.policy, now)?;
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        v.check_binding(req.method().as_str(), pq)?;
        let jti = v.claims.jti.as_deref().ok_or(Rejection::BindingMissing)?;
        side.replay.check_and_insert(jti, v.claims.exp, now)?;
        return Ok(Arc::new(v));
    }
    if let Some(v) = side.verified.get(raw, trust.generation, now) {
        state.metrics.verified_cache_hits.inc();
        return Ok(v);
    }
    let token = check_token(raw)?;
    let v = Arc::new(token::verify(token, &trust.keyring, &side.policy, now)?);
    side.verified
        .insert(token, v.clone(), trust.generation, now);
    Ok(v)
}

/// What the app is told: who called, with which roles, the signed context and the claim
/// headers. The claim headers withheld (a claim the app would read differently from the
/// rules: see [`policy::claim_header_value`]) are returned, for the caller to count.
pub(crate) fn present_caller<'s>(
    side: &'s InboundState,
    headers: &mut HeaderMap,
    v: &Verified,
    granted: Granted,
) -> Vec<&'s HeaderName> {
    let inbound = &side.cfg;
    headers.remove(&inbound.token_header);
    headers.insert(CALLER, v.caller_header.clone());
    // A caller without roles gets no roles header at all (an empty one reads as "a
    // role named ''" to some apps), nor does `roles = []`; any copy from the network is
    // gone already ([`scrub`], the first step).
    match granted.header() {
        Some(joined) => {
            headers.insert(CALLER_ROLES, joined.clone());
        }
        None => debug_assert!(!headers.contains_key(CALLER_ROLES), "not scrubbed"),
    }
    if let Some(ctx) = &v.claims.ctx {
        for name in &inbound.signed_headers {
            if let Some(value) = ctx.get(name.as_str()) {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(name.clone(), value);
                }
            }
        }
    }
    // Claims to the app (any copy from the network is gone already).
    policy::claim_headers(&inbound.claim_headers, v, headers)
}

#[cfg(test)]
mod tests {
    use super::super::bearer::tests::headers;
    use super::*;

    fn side(extra: &str) -> InboundState {
        let text = format!(
            "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/k\"\n\
             [inbound]\nsigned_headers = [\"x-user-id\"]\n\
             [callers.orders]\nroles = [\"reader\"]\n{extra}"
        );
        let cfg = crate::config::from_toml_str(&text, "t.toml", Vec::new()).unwrap();
        let app = super::super::client::Upstreams::new(&super::super::client::ClientOptions {
            connect_timeout: std::time::Duration::from_secs(1),
            request_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            ca_file: None,
            client_cert: None,
            dial: Default::default(),
        })
        .unwrap();
        InboundState::new(&cfg, cfg.inbound.as_ref().unwrap(), app)
    }

    fn verified(caller: &str) -> Verified {
        let claims = serde_json::from_value(serde_json::json!({
            "iss": caller, "sub": caller, "aud": "billing", "iat": 1, "exp": 2,
            "ctx": {"x-user-id": "7", "x-other": "not signed here"},
        }))
        .unwrap();
        Verified::new(caller, "kid".into(), crate::keys::KeyAlg::Es256, claims).unwrap()
    }

    fn request(method: &str, path: &str, pairs: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn step_screen() {
        let side = side("");
        let mut req = request(
            "GET",
            "/",
            &[
                ("x_service_caller", "admin"),
                ("X-User-Id", "spoofed"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
                ("x-kept", "1"),
            ],
        );
        screen(&side.protected, &mut req).unwrap();
        let names: Vec<_> = req.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        let mut req = request("GET", "/", &[("connection", "X_Service_Caller")]);
        assert_eq!(
            screen(&side.protected, &mut req).unwrap_err().reason(),
            "connection_names_protected_header"
        );
    }

    #[test]
    fn step_canonical_path() {
        assert!(canonical_path(&request("GET", "/orders/7", &[])).is_ok());
        for path in ["/public/..%2fadmin", "/a/%2e%2e/b", "/a;x=1/../b"] {
            let err = canonical_path(&request("GET", path, &[])).unwrap_err();
            assert_eq!(err.reason(), "non_canonical_path", "{path}");
        }
    }

    #[test]
    fn step_authorize() {
        let open = side("");
        let req = request("DELETE", "/x", &[]);
        let granted = open.granted("orders");
        assert!(authorize(
            &open,
            &verified("orders"),
            granted,
            &req,
            &mut policy::Quiet
        )
        .is_ok());
        let rules = side(
            "[[inbound.allow]]\ncallers = [\"orders\"]\nmethods = [\"GET\"]\npaths = [\"/orders/*\"]\n\
             [[inbound.allow]]\nroles = [\"reader\"]\npaths = [\"/catalog\"]\n",
        );
        let ok = |caller: &str, method: &str, path: &str| {
            let req = request(method, path, &[]);
            authorize(
                &rules,
                &verified(caller),
                rules.granted(caller),
                &req,
                &mut policy::Quiet,
            )
            .is_ok()
        };
        assert!(ok("orders", "GET", "/orders/7"));
        assert!(!ok("orders", "POST", "/orders/7"));
        assert!(!ok("search", "GET", "/orders/7"));
        assert!(ok("orders", "PUT", "/catalog"), "by role");
        assert!(!ok("search", "GET", "/catalog"), "search has no roles");
        let req = request("GET", "/x", &[]);
        let err = authorize(
            &rules,
            &verified("search"),
            rules.granted("search"),
            &req,
            &mut policy::Quiet,
        )
        .unwrap_err();
        assert_eq!((err.outcome().as_str(), err.reason()), ("denied", "policy"));
    }

    #[test]
    fn step_present_caller() {
        let side = side("");
        let mut headers = headers(&[("authorization", "Bearer t")]);
        present_caller(
            &side,
            &mut headers,
            &verified("orders"),
            side.granted("orders"),
        );
        assert!(
            headers.get("authorization").is_none(),
            "the token never reaches the app"
        );
        assert_eq!(headers["x-service-caller"], "orders");
        assert_eq!(headers["x-service-caller-roles"], "reader");
        assert_eq!(headers["x-user-id"], "7", "signed context, configured here");
        assert!(headers.get("x-other").is_none(), "not a signed header here");

        // A caller without roles: no roles header, not an empty one.
        let mut none = HeaderMap::new();
        present_caller(
            &side,
            &mut none,
            &verified("search"),
            side.granted("search"),
        );
        assert_eq!(none["x-service-caller"], "search");
        assert!(none.get("x-service-caller-roles").is_none());
    }

    #[test]
    fn scrub_removes_spoofed_identity() {
        let mut h = headers(&[
            ("x-service-caller", "admin"),
            ("X-Service-Caller-Roles", "root"),
            ("x-service-caller-anything", "1"),
            ("x_service_caller", "admin"),
            ("X_Service_Caller_Roles", "root"),
            ("x-service_caller", "admin"),
            ("x.service.caller", "admin"),
            ("x-user-id", "7"),
            ("x_user_id", "7"),
            ("X_USER-ID", "7"),
            ("x-other", "kept"),
        ]);
        scrub(&mut h, &[HeaderName::from_static("x-user-id")]);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-other"], "kept");
    }
}
