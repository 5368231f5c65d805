//! Inbound: a caller → trustgate → this service's app.
//!
//! The request runs through [`steps`], top to bottom (DESIGN.md "Inbound: what is
//! checked"): [`screen`] (hop-by-hop fields, `Connection` abuse, spoofed identity
//! headers) → [`canonical_path`] → public paths go straight to the app → [`authenticate`]
//! (exactly one token, verified against the keyring snapshot of *this* request, so a
//! revocation applies to open keep-alive connections; binding and replay where required)
//! → [`authorize`] (the allow rules) → [`present_caller`] → forward. Each step is a plain
//! function of the request and this side's state, testable alone; the first that says no
//! ends the request, and [`crate::proxy::answer`] turns that into metrics, a log line and the
//! response. The app receives the caller in plain headers and never the token.
//!
//! The steps are run by two [`Observer`]s: the proxy ([`Serve`]) and `trustgate explain`
//! ([`crate::proxy::operator::explain`]), so that what `explain` says is what the proxy does — audit mode,
//! key URLs fetched, public paths and all.
use std::future::Future;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};
use http::{Request, Response, Version};
use hyper::body::Incoming;

mod authn;
mod authorize;
mod bearer;
mod dpop;
pub mod person;
mod present;
mod screen;
pub mod target;
mod verify;

use authn::{authenticate, revoked_caller};
pub(crate) use authn::{first_use, refusal_facts};
pub(crate) use authorize::authorize;
pub use bearer::extract_token;
use bearer::locate_token;
pub(crate) use present::present_caller;
pub(crate) use screen::screen;
use screen::withhold_credentials;

use crate::config::{InboundMode, Rule, UpstreamProtocol};
use crate::http::path::{rule_path, stripped_rule_path};
use crate::http::Body;
use crate::metrics::Outcome;
use crate::policy::{List, Miss, Observe, Subject};
use crate::proxy::answer::{self, Decision, Direction, Handled, Seen, Verdict, Who};
use crate::proxy::forward::client::Protocol;
use crate::proxy::forward::{expects_continue, forward, Downstream, Hop, HostHeader};
use crate::proxy::limits::InFlight;
use crate::proxy::rescue::{Answer, Failure};
use crate::proxy::state::{InboundState, State};
use crate::token::{unix_now, Person, Rejection, Verified};

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
        let mut serve = Serve {
            state,
            in_flight: None,
        };
        let (verdict, req) = match steps(state, side, req, &mut serve).await {
            Decision::Forward(verdict, req) => (verdict, req),
            Decision::Answer(handled) => return answer::finish(state, seen, handled, &"-"),
        };
        let answer = to_app(side, req, down).await;
        let handled = verdict.forwarded(match serve.in_flight {
            None => answer,
            Some(f) => answer.map(|resp| crate::proxy::limits::hold(resp, f)),
        });
        answer::finish(state, seen, handled, &side.cfg.upstream)
    }
}

/// Sees the inbound's steps as they run. Two observers of the same steps: the proxy
/// ([`Serve`]: counts, logs, holds the caller's limits, lets a refused upload drain) and
/// `trustgate explain` (says each step); neither decides anything the steps do not.
/// `B` is the request's body. The rules are seen through [`Observe`]; `Observe::EVERY`
/// says whether the steps report what changes nothing (what the screen removed).
pub(crate) trait Observer<B>: Observe {
    /// The screen passed; `removed` what it took away (reported only when `EVERY`).
    fn screened(&mut self, _removed: &[HeaderName]) {}
    /// The request line's step ([`target::request_line`]): `refused`, or passed — the
    /// request's path then canonical, [`target::rule_path`] what the rules match and
    /// [`target::arrived_target`] what the caller sent.
    fn target(&mut self, _req: &Request<B>, _refused: Option<&Failure>) {}
    /// Whether the path is public (asked only of paths that are not the JWKS).
    fn public(&mut self, _public: bool) {}
    /// A caller given instead of a token (explain's `--caller`): the token step skipped.
    fn named(&mut self) -> Option<Result<Arc<Verified>, Failure>> {
        None
    }
    /// The token step's result (`Ok(None)`: no service token, and this side takes
    /// people's tokens without one).
    fn token(
        &mut self,
        _state: &State,
        _side: &InboundState,
        _req: &Request<B>,
        _result: &Result<Option<Arc<Verified>>, Failure>,
    ) {
    }
    /// The person the request is made for, if any.
    fn person(&mut self, _person: Option<&Person>) {}
    /// The caller's limits: admit it (holding what it takes until its answer ends), or
    /// say which one it is over (or that the fleet's store could not say).
    async fn admit(&mut self, side: &InboundState, caller: &str) -> Result<(), Failure>;
    /// A request-bound token's single use, recorded once every other step passed.
    async fn first_use(&mut self, side: &InboundState, v: &Verified) -> Result<(), Failure> {
        authn::first_use(side, v, unix_now()).await
    }
    /// The caller presented: `headers` are the request's as the app gets them; the claim
    /// headers in `withheld` were not sent.
    fn presented(&mut self, _caller: &str, _headers: &HeaderMap, _withheld: &[&HeaderName]) {}
    /// A token, policy or limit failure and its answer: refused, or (`forwarded`, in
    /// audit mode) sent on without identity.
    fn rejected(&mut self, _req: &Request<B>, _answer: &Answer, _forwarded: bool) {}
    /// A request answered here without reaching the app.
    fn refused(&mut self, _req: Request<B>) {}
}

/// The proxy's observer, and the authorizer's ([`crate::proxy::authz`]): audit rules
/// counted (`trustgate_policy_audit_total{rule,result}`) and logged, limits consumed (the
/// caller's [`InFlight`] kept until its answer ends), rejections counted, a refused upload
/// drained.
pub(crate) struct Serve<'a> {
    pub(crate) state: &'a State,
    pub(crate) in_flight: Option<InFlight>,
}

/// What becomes of a refused request's body: the proxy's is drained ([`Observer::refused`]);
/// the authorizer's request has none (`()`).
pub(crate) trait Refused: Sized {
    fn refused(_req: Request<Self>) {}
}

impl Refused for () {}

impl Refused for Incoming {
    /// A refused request's body: drained in the background so that an HTTP/1.1 client
    /// still uploading reads the refusal instead of a connection reset (see
    /// [`crate::proxy::forward::body`]). Not for a client waiting for `100 Continue`: it has not sent the
    /// body, and reading would make hyper promise a `100` after all.
    fn refused(req: Request<Incoming>) {
        if req.version() != Version::HTTP_2 && !expects_continue(&req) {
            crate::proxy::forward::body::linger(req.into_body());
        }
    }
}

impl Observe for Serve<'_> {
    const EVERY: bool = false;

    fn rule(&mut self, list: List, rule: &Rule, result: Result<(), Miss<'_>>, s: &Subject) {
        if !rule.audit {
            return;
        }
        let verdict = if result.is_ok() { "match" } else { "no_match" };
        self.state
            .metrics
            .policy_audit
            .with_label_values(&[&rule.name, verdict])
            .inc();
        tracing::info!(
            rule = %rule.name, list = match list { List::Deny => "deny", List::Allow => "allow" }, result = verdict, caller = s.caller.as_ref().map_or("-", |c| &*c.verified.caller),
            "audit rule evaluated (decides nothing)"
        );
    }
}

impl<B: Refused> Observer<B> for Serve<'_> {
    fn token(
        &mut self,
        state: &State,
        side: &InboundState,
        req: &Request<B>,
        result: &Result<Option<Arc<Verified>>, Failure>,
    ) {
        let Err(failure) = result else { return };
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Some(why) = refusal_facts(state, side, req, failure) {
                tracing::debug!(reason = failure.reason(), why, "token refused");
            }
        }
    }

    async fn admit(&mut self, side: &InboundState, caller: &str) -> Result<(), Failure> {
        if side.limits.is_empty() {
            return Ok(());
        }
        match side.limits.admit(caller).await {
            Ok(f) => {
                self.in_flight = f;
                Ok(())
            }
            Err(failure) => {
                if let Failure::Limited { limit, .. } = &failure {
                    self.state
                        .metrics
                        .caller_limited
                        .with_label_values(&[caller, limit.reason()])
                        .inc();
                }
                Err(failure)
            }
        }
    }

    fn presented(&mut self, caller: &str, _: &HeaderMap, withheld: &[&HeaderName]) {
        for name in withheld {
            self.state
                .metrics
                .claim_headers_withheld
                .with_label_values(&[name.as_str()])
                .inc();
            tracing::debug!(header = %name, caller,
                "claim header withheld: the app would read its value otherwise than the rules");
        }
    }

    fn rejected(&mut self, req: &Request<B>, answer: &Answer, forwarded: bool) {
        self.state
            .metrics
            .inbound_rejections
            .with_label_values(&[answer.reason])
            .inc();
        if forwarded {
            tracing::warn!(
                method = %req.method(), path = %req.uri().path(), reason = answer.reason,
                "audit mode: would have refused this request"
            );
        }
    }

    fn refused(&mut self, req: Request<B>) {
        B::refused(req)
    }
}

/// The inbound pipeline, for the proxy and for `trustgate explain` (`obs`). Every early
/// return is a decision.
pub(crate) async fn steps<B, O: Observer<B>>(
    state: &Arc<State>,
    side: &InboundState,
    mut req: Request<B>,
    obs: &mut O,
) -> Decision<Request<B>> {
    let cfg = &side.cfg;
    if let Err(failure) = screen_observed(side, &mut req, obs) {
        return Decision::Answer(refuse(req, failure, obs));
    }
    let line = target::request_line(&mut req, cfg.merge_slashes);
    obs.target(&req, line.as_ref().err());
    if let Err(failure) = line {
        return Decision::Answer(refuse(req, failure, obs));
    }
    if cfg.publish_jwks && req.uri().path() == JWKS_PATH {
        let jwks = crate::proxy::answer::jwks::response(state, req.method());
        return Decision::Answer(Verdict::new(Outcome::Jwks).forwarded(Ok(jwks)));
    }
    // Public only if every reading of the path is (`;parameters` kept and removed).
    let public =
        cfg.is_public(rule_path(&req)) && stripped_rule_path(&req).is_none_or(|p| cfg.is_public(p));
    obs.public(public);
    if public {
        withhold_credentials(side, req.headers_mut());
        return Decision::Forward(Verdict::new(Outcome::Public), req);
    }
    let caller = match obs.named() {
        Some(named) => named.map(Some),
        // An edge taking people's tokens without a caller's: no service token, no caller.
        None if side.caller_optional
            && locate_token(req.headers(), &cfg.token_header) == Err(Rejection::Missing) =>
        {
            Ok(None)
        }
        None => authenticate(state, side, &req, unix_now()).await.map(Some),
    };
    obs.token(state, side, &req, &caller);
    let verified = match caller {
        Ok(v) => v,
        Err(failure) => {
            let who = revoked_caller(state, side, &req, &failure);
            return reject(side, req, failure, who, obs);
        }
    };
    // A caller's token bound to a key passes only with its proof (boxed: rare).
    if let Some(v) = verified.as_deref() {
        if dpop::caller_bound(side, &req, v).is_some() {
            if let Err(failure) = Box::pin(dpop::caller(state, side, &req, v, unix_now())).await {
                return reject(side, req, failure, who(Some(v), None), obs);
            }
        }
    }
    // A side that takes no person (no [inbound.users], no minter listed) asks nothing.
    // Boxed: people's sides only; its future would otherwise size every request's.
    let has_caller = verified.is_some();
    let person = match side.takes_persons {
        false => Ok(None),
        true => {
            Box::pin(person::person(
                state,
                side,
                &mut req,
                has_caller,
                unix_now(),
            ))
            .await
        }
    };
    let person = match person {
        Ok(p) => p,
        Err(failure) => return reject(side, req, failure, who(verified.as_deref(), None), obs),
    };
    obs.person(person.as_deref());
    decide(side, req, verified, person, obs).await
}

/// The screen ([`screen`]), and what it removed told to an observer that wants it.
fn screen_observed<B, O: Observer<B>>(
    side: &InboundState,
    req: &mut Request<B>,
    obs: &mut O,
) -> Result<(), Failure> {
    let before: Vec<HeaderName> = match O::EVERY {
        true => req.headers().keys().cloned().collect(),
        false => Vec::new(),
    };
    screen(&side.protected, side.accepts_txn, &side.credentials, req)?;
    if O::EVERY {
        let removed: Vec<HeaderName> = before
            .into_iter()
            .filter(|n| !req.headers().contains_key(n))
            .collect();
        obs.screened(&removed);
    }
    Ok(())
}

/// Who a request concerned, for the access log: its caller (`-`: none) and the person.
fn who(v: Option<&Verified>, p: Option<&Arc<Person>>) -> Option<Who> {
    let caller: Arc<str> = v.map_or_else(|| "-".into(), |v| v.caller.clone());
    let issuer = v.and_then(|v| v.issuer.clone());
    Some(match p {
        None => Who::Caller(caller, issuer),
        Some(p) => Who::For(caller, issuer, p.clone()),
    })
}

/// The rules, the caller's limits, what the app is told.
async fn decide<B, O: Observer<B>>(
    side: &InboundState,
    mut req: Request<B>,
    verified: Option<Arc<Verified>>,
    person: Option<Arc<Person>>,
    obs: &mut O,
) -> Decision<Request<B>> {
    let (v, p) = (verified.as_deref(), person.as_deref());
    let granted = v.map(|v| side.granted(&v.caller));
    if let Err(failure) = authorize(side, v, granted, p, &req, obs) {
        return reject(side, req, failure, who(v, person.as_ref()), obs);
    }
    if let Some(v) = v {
        // Boxed where there is something to wait for (limits, a single use): those
        // futures (a fleet's round trip) would otherwise size every request's.
        let admitted = match !O::EVERY && side.limits.is_empty() {
            true => Ok(()),
            false => Box::pin(obs.admit(side, &v.caller)).await,
        };
        let admitted = match admitted {
            Ok(()) if side.cfg.require_request_binding => Box::pin(obs.first_use(side, v)).await,
            other => other,
        };
        if let Err(failure) = admitted {
            return reject(side, req, failure, who(Some(v), person.as_ref()), obs);
        }
    }
    let withheld = match (v, granted) {
        (Some(v), Some(granted)) => present_caller(side, req.headers_mut(), v, granted),
        _ => {
            req.headers_mut().remove(&side.cfg.token_header);
            Vec::new()
        }
    };
    if let Some(p) = p {
        person::present(side, req.headers_mut(), p);
    }
    // A DPoP proof is a credential, checked or not.
    req.headers_mut().remove(dpop::DPOP);
    obs.presented(v.map_or("-", |v| &v.caller), req.headers(), &withheld);
    Decision::Forward(Verdict::new(Outcome::Ok).by(who(v, person.as_ref())), req)
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
        protected: Some(&side.trailers_removed),
    };
    forward(req, hop, down)
}

/// A token, policy or limit failure: refused in enforce mode; in audit mode, where its
/// answer says so (`forward_in_audit`), counted, logged and forwarded without identity
/// headers — the app sees an anonymous call, exactly as if trustgate were not there.
fn reject<B, O: Observer<B>>(
    side: &InboundState,
    mut req: Request<B>,
    failure: Failure,
    who: Option<Who>,
    obs: &mut O,
) -> Decision<Request<B>> {
    let answer = failure.answer();
    let forward = side.cfg.mode == InboundMode::Audit && answer.forward_in_audit;
    obs.rejected(&req, &answer, forward);
    if forward {
        withhold_credentials(side, req.headers_mut());
        let verdict = Verdict::new(Outcome::Audit).because(answer.reason);
        return Decision::Forward(verdict.by(who), req);
    }
    Decision::Answer(refuse(req, failure, obs).by(who))
}

/// A request answered here: the observer gets it (its body), the failure becomes the
/// answer.
fn refuse<B, O: Observer<B>>(req: Request<B>, failure: Failure, obs: &mut O) -> Handled {
    obs.refused(req);
    Handled::failed(failure)
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

#[cfg(test)]
mod tests {
    use super::bearer::tests::headers;
    use super::*;
    use crate::policy;

    pub(super) fn side(extra: &str) -> InboundState {
        let text = format!(
            "[identity]\nname = \"billing\"\n[trust]\nauthorized_keys = \"/k\"\n\
             [inbound]\nsigned_headers = [\"x-user-id\"]\n\
             [callers.orders]\nroles = [\"reader\"]\n{extra}"
        );
        let cfg = crate::config::from_toml_str(&text, "t.toml", Vec::new()).unwrap();
        let app = crate::proxy::forward::client::Upstreams::new(
            &crate::proxy::forward::client::ClientOptions {
                connect_timeout: std::time::Duration::from_secs(1),
                request_timeout: std::time::Duration::from_secs(1),
                idle_timeout: std::time::Duration::from_secs(1),
                ca_file: None,
                client_cert: None,
                dial: Default::default(),
            },
        )
        .unwrap();
        InboundState::new(&cfg, cfg.inbound.as_ref().unwrap(), app, None)
    }

    fn verified(caller: &str) -> Verified {
        let claims = serde_json::from_value(serde_json::json!({
            "iss": caller, "sub": caller, "aud": "billing", "iat": 1, "exp": 2,
            "ctx": {"x-user-id": "7", "x-other": "not signed here"},
        }))
        .unwrap();
        Verified::new(caller, "kid".into(), crate::keys::KeyAlg::Es256, claims).unwrap()
    }

    pub(super) fn request(method: &str, path: &str, pairs: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn step_authorize() {
        let open = side("");
        let req = request("DELETE", "/x", &[]);
        let granted = open.granted("orders");
        assert!(authorize(
            &open,
            Some(&verified("orders")),
            Some(granted),
            None,
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
                Some(&verified(caller)),
                Some(rules.granted(caller)),
                None,
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
            Some(&verified("search")),
            Some(rules.granted("search")),
            None,
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
}
