//! Outbound: this service's app → trustgate → another service.
//!
//! The destination is the request's absolute-form target (trustgate used as
//! `HTTP_PROXY`) or its `Host` header, looked up in `[[outbound.routes]]`. The token for
//! the route's audience replaces whatever the app put in the token header: it comes from
//! the per-(audience, signed context) cache, or is signed per request when requests are
//! bound.
use std::collections::BTreeMap;
use std::future::Future;

use http::header::{AUTHORIZATION, HOST};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::config::{Outbound, Route, UpstreamProtocol};
use crate::http::host::host_part;
use crate::http::{is_upgrade, strip_hop_by_hop, Body};
use crate::metrics::Outcome;
use crate::proxy::answer::{self, Decision, Direction, Handled, Seen, Verdict, Who};
use crate::proxy::forward::client::Protocol;
use crate::proxy::forward::{forward, Downstream, Hop, HostHeader};
use crate::proxy::rescue::{BadRequest, Failure};
use crate::proxy::state::{OutboundState, State};
use crate::token::{unix_now, Issued};

pub fn handle<'a>(
    state: &'a State,
    side: &'a OutboundState,
    req: Request<Incoming>,
    down: &'a Downstream,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let seen = Seen::new(Direction::Outbound, &req);
    // Decided before the future exists: it holds the exchange, not the request.
    let (decided, upstream) = steps(state, side, req, down);
    async move {
        let handled = match decided {
            Decision::Forward(verdict, forwarding) => verdict.forwarded(forwarding.await),
            Decision::Answer(handled) => handled,
        };
        let upstream: &dyn std::fmt::Display = match upstream {
            Some(u) => u,
            None => &"the destination host",
        };
        answer::finish(state, seen, handled, upstream)
    }
}

/// The outbound pipeline: refuse CONNECT → strip hop-by-hop fields → find the route →
/// put the token on → forward. Every early return is a decision; a request sent on
/// comes back as its verdict and the exchange with the next hop, and the route's
/// upstream (for the warning of a failed exchange).
fn steps<'a>(
    state: &'a State,
    side: &'a OutboundState,
    req: Request<Incoming>,
    down: &'a Downstream,
) -> (
    Decision<impl Future<Output = Result<Response<Body>, Failure>> + Send + 'a>,
    Option<&'a Uri>,
) {
    let mut upstream = None;
    let decision = decide(state, side, req, down, &mut upstream);
    (decision, upstream)
}

fn decide<'a>(
    state: &'a State,
    side: &'a OutboundState,
    mut req: Request<Incoming>,
    down: &'a Downstream,
    upstream: &mut Option<&'a Uri>,
) -> Decision<impl Future<Output = Result<Response<Body>, Failure>> + Send + 'a> {
    let cfg = &side.cfg;
    if req.method() == Method::CONNECT {
        // A CONNECT tunnel would carry TLS we cannot add a token to: apps send plain
        // http:// and trustgate originates TLS where the route says https://.
        return Decision::Answer(Handled::failed(Failure::BadRequest(BadRequest::Connect)));
    }
    // Hop-by-hop fields go first, so that `Connection` can never remove the token
    // header set below.
    let upgrade = is_upgrade(&req);
    strip_hop_by_hop(req.headers_mut(), upgrade);
    let (route, host) = match route(cfg, &req) {
        Ok(Destination::Route(route, host)) => (route, host),
        Ok(Destination::Passthrough(target, host)) => {
            let protocol = link_protocol(UpstreamProtocol::Auto, req.version());
            let verdict = Verdict::new(Outcome::Passthrough).by(Some(Who::Host(host)));
            let hop = Hop {
                upstreams: &state.upstreams,
                target: &target,
                host: HostHeader::Keep,
                protocol,
                protected: None,
            };
            let forwarding = forward(req, hop, down);
            return Decision::Forward(verdict, forwarding);
        }
        Err((failure, host)) => {
            return Decision::Answer(Handled::failed(failure).by(host.map(Who::Host)))
        }
    };
    if let Err(failure) = attach_token(state, side, route, &mut req) {
        return Decision::Answer(Handled::failed(failure).by(Some(Who::Host(host))));
    }
    let protocol = link_protocol(route.upstream_protocol, req.version());
    let verdict = Verdict::new(Outcome::Ok).by(Some(Who::Host(host)));
    *upstream = Some(&route.upstream);
    let hop = Hop {
        upstreams: &state.upstreams,
        target: &route.upstream,
        host: HostHeader::Upstream,
        protocol,
        protected: None,
    };
    let forwarding = forward(req, hop, down);
    Decision::Forward(verdict, forwarding)
}

enum Destination<'a> {
    Route(&'a Route, String),
    /// No route, and `passthrough_unknown` is set: forwarded without a token.
    Passthrough(Uri, String),
}

/// The destination: the request target's authority (absolute-form, or HTTP/2
/// :authority) or the Host header, whichever names a route. Both come from the local
/// app; the HTTP/2 :authority often names trustgate itself (127.0.0.1:15001).
fn route<'a, B>(
    cfg: &'a Outbound,
    req: &Request<B>,
) -> Result<Destination<'a>, (Failure, Option<String>)> {
    let candidates = destinations(req);
    let Some(authority) = candidates[0] else {
        return Err((Failure::BadRequest(BadRequest::NoHost), None));
    };
    let found = candidates
        .into_iter()
        .flatten()
        .find_map(|authority| find_route(cfg, authority).map(|r| (r, authority)));
    if let Some((route, authority)) = found {
        return Ok(Destination::Route(route, host_of(authority)));
    }
    let host = host_of(authority);
    if !cfg.passthrough_unknown {
        return Err((Failure::NoRoute(host.clone()), Some(host)));
    }
    match format!("http://{authority}").parse() {
        Ok(target) => Ok(Destination::Passthrough(target, host)),
        Err(_) => Err((Failure::BadRequest(BadRequest::InvalidHost), Some(host))),
    }
}

/// The route's token replaces whatever the app put in the token header.
fn attach_token<B>(
    state: &State,
    side: &OutboundState,
    route: &Route,
    req: &mut Request<B>,
) -> Result<(), Failure> {
    let cfg = &side.cfg;
    let issued = token_for(state, side, route, req)?;
    let value = if cfg.token_header == AUTHORIZATION {
        issued.bearer
    } else {
        issued.bare
    };
    req.headers_mut().remove(&cfg.token_header);
    req.headers_mut().insert(cfg.token_header.clone(), value);
    Ok(())
}

/// The protocol of the link to the next hop. `auto` keeps the app's own: an HTTP/2
/// client multiplexes over the link, an HTTP/1.1 one (and its upgrades) stays HTTP/1.1,
/// and the receiving sidecar restores what its own app speaks.
fn link_protocol(setting: UpstreamProtocol, downstream: Version) -> Protocol {
    match setting {
        UpstreamProtocol::Http1 => Protocol::Http1,
        UpstreamProtocol::Http2 => Protocol::Http2,
        UpstreamProtocol::Auto if downstream == Version::HTTP_2 => Protocol::Http2,
        UpstreamProtocol::Auto => Protocol::Http1,
    }
}

/// `host[:port]` candidates the app may mean: the request target's authority, then the
/// Host header.
fn destinations<B>(req: &Request<B>) -> [Option<&str>; 2] {
    let target = req.uri().authority().map(|a| a.as_str());
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| !h.is_empty() && !target.is_some_and(|a| a.eq_ignore_ascii_case(h)));
    match target {
        Some(_) => [target, host],
        None => [host, None],
    }
}

/// The host of an authority, as routes name it: no port, no trailing dot, lower case.
fn host_of(authority: &str) -> String {
    host_part(authority).to_ascii_lowercase()
}

/// The route named by the whole authority (`host:port`), else by its host. Route hosts
/// are lower case (the configuration lowers them).
fn find_route<'a>(outbound: &'a Outbound, authority: &str) -> Option<&'a Route> {
    let host = host_part(authority);
    outbound
        .routes
        .iter()
        .find(|r| r.host.eq_ignore_ascii_case(authority))
        .or_else(|| {
            outbound
                .routes
                .iter()
                .find(|r| r.host.eq_ignore_ascii_case(host))
        })
}

fn token_for<B>(
    state: &State,
    side: &OutboundState,
    route: &Route,
    req: &Request<B>,
) -> Result<Issued, Failure> {
    let outbound = &side.cfg;
    if route.token_file.is_some() {
        // A projected token: presented as written, never signed here.
        return state
            .trust
            .route_token(&route.host)
            .flatten()
            .ok_or_else(|| Failure::TokenUnavailable(route.host.clone()));
    }
    let signer = state
        .trust
        .signer()
        .ok_or_else(|| Failure::Internal("no signing key loaded".into()))?;
    let mut ctx = BTreeMap::new();
    for name in &outbound.signed_headers {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            ctx.insert(name.as_str().to_owned(), v.to_owned());
        }
    }
    let ctx = (!ctx.is_empty()).then_some(&ctx);
    let now = unix_now();
    if outbound.bind_request {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let issued = signer
            .sign(&route.audience, ctx, Some((req.method().as_str(), pq)), now)
            .and_then(|token| Issued::new(token.into()))
            .map_err(|e| Failure::Internal(e.to_string()))?;
        state.metrics.tokens_signed.inc();
        return Ok(issued);
    }
    let (issued, hit) = side
        .tokens
        .get_or_sign(&signer, &route.audience, ctx, now)
        .map_err(|e| Failure::Internal(e.to_string()))?;
    if hit {
        state.metrics.token_cache_hits.inc();
    } else {
        state.metrics.tokens_signed.inc();
    }
    Ok(issued)
}
