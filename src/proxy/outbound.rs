//! Outbound: this service's app → trustgate → another service.
//!
//! The destination is the request's absolute-form target (trustgate used as
//! `HTTP_PROXY`) or its `Host` header, looked up in `[[outbound.routes]]`. The token for
//! the route's audience replaces whatever the app put in the token header: it comes from
//! the per-(audience, signed context) cache, or is signed per request when requests are
//! bound.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, AUTHORIZATION, HOST};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::client::Protocol;
use super::forward::{forward, HostHeader};
use super::http::{is_upgrade, strip_hop_by_hop, Body};
use super::rescue::Failure;
use super::{unix_now, State};
use crate::config::{Outbound, Route, UpstreamProtocol};

pub async fn handle(
    state: Arc<State>,
    outbound: &Outbound,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let grpc = super::http::is_grpc(&req);
    let path = req.uri().path().to_owned();
    let mut host_seen = None;
    let result = route_and_forward(&state, outbound, req, peer, &mut host_seen).await;
    let (outcome, reason, response) = match result {
        Ok((outcome, resp)) => (outcome, None, resp),
        Err(failure) => {
            if matches!(failure, Failure::Upstream(_) | Failure::Internal(_)) {
                tracing::warn!(error = %failure, "outbound request failed");
            }
            (
                failure.outcome(),
                Some(failure.reason()),
                failure.into_response_for(grpc),
            )
        }
    };
    let elapsed = start.elapsed();
    state
        .metrics
        .requests
        .with_label_values(&["outbound", outcome])
        .inc();
    state
        .metrics
        .request_duration
        .with_label_values(&["outbound"])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "trustgate::access",
        direction = "outbound",
        %method,
        path = %path,
        host = host_seen.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        outcome,
        reason = reason.unwrap_or("-"),
        latency_us = elapsed.as_micros() as u64,
    );
    response
}

async fn route_and_forward(
    state: &State,
    outbound: &Outbound,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    host_seen: &mut Option<String>,
) -> Result<(&'static str, Response<Body>), Failure> {
    if req.method() == Method::CONNECT {
        // A CONNECT tunnel would carry TLS we cannot add a token to: apps send plain
        // http:// and trustgate originates TLS where the route says https://.
        return Err(Failure::BadRequest(
            "CONNECT is not supported: send plain http:// requests through trustgate",
        ));
    }
    // Hop-by-hop fields go first, so that `Connection` can never remove the token
    // header set below.
    let upgrade = is_upgrade(&req);
    strip_hop_by_hop(req.headers_mut(), upgrade);
    // The destination: the request target's authority (absolute-form, or HTTP/2
    // :authority) or the Host header, whichever names a route. Both come from the local
    // app; the HTTP/2 :authority often names trustgate itself (127.0.0.1:15001).
    let candidates = destinations(&req);
    if candidates.is_empty() {
        return Err(Failure::BadRequest("no Host header"));
    }
    let found = candidates.iter().find_map(|authority| {
        let host = host_of(authority);
        find_route(outbound, authority, &host).map(|r| (r, host))
    });
    let Some((route, host)) = found else {
        let authority = &candidates[0];
        *host_seen = Some(host_of(authority));
        if outbound.passthrough_unknown {
            let target: Uri = format!("http://{authority}")
                .parse()
                .map_err(|_| Failure::BadRequest("invalid Host header"))?;
            let protocol = link_protocol(UpstreamProtocol::Auto, req.version());
            let resp =
                forward(state, req, &target, peer, false, HostHeader::Keep, protocol).await?;
            return Ok(("passthrough", resp));
        }
        return Err(Failure::NoRoute(host_of(authority)));
    };
    *host_seen = Some(host);

    let token = token_for(state, outbound, route, &req)?;
    let value = if outbound.token_header == AUTHORIZATION {
        format!("Bearer {token}")
    } else {
        token.to_string()
    };
    let value = HeaderValue::from_str(&value)
        .map_err(|_| Failure::Internal("token is not a header value".into()))?;
    req.headers_mut().remove(&outbound.token_header);
    req.headers_mut()
        .insert(outbound.token_header.clone(), value);
    let protocol = link_protocol(route.upstream_protocol, req.version());
    let resp = forward(
        state,
        req,
        &route.upstream,
        peer,
        false,
        HostHeader::Upstream,
        protocol,
    )
    .await?;
    Ok(("ok", resp))
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
fn destinations<B>(req: &Request<B>) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Some(a) = req.uri().authority() {
        out.push(a.as_str().to_owned());
    }
    if let Some(h) = req.headers().get(HOST).and_then(|v| v.to_str().ok()) {
        let h = h.trim();
        if !h.is_empty() && !out.iter().any(|a| a.eq_ignore_ascii_case(h)) {
            out.push(h.to_owned());
        }
    }
    out
}

fn host_of(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal: [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn find_route<'a>(outbound: &'a Outbound, authority: &str, host: &str) -> Option<&'a Route> {
    let authority = authority.to_ascii_lowercase();
    outbound
        .routes
        .iter()
        .find(|r| r.host == authority)
        .or_else(|| outbound.routes.iter().find(|r| r.host == host))
}

fn token_for<B>(
    state: &State,
    outbound: &Outbound,
    route: &Route,
    req: &Request<B>,
) -> Result<Arc<str>, Failure> {
    let signer = state
        .signer
        .load_full()
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
        let token = signer
            .sign(&route.audience, ctx, Some((req.method().as_str(), pq)), now)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        state.metrics.tokens_signed.inc();
        return Ok(token.into());
    }
    let (token, hit) = state
        .outbound_tokens
        .get_or_sign(&signer, &route.audience, ctx, now)
        .map_err(|e| Failure::Internal(e.to_string()))?;
    if hit {
        state.metrics.token_cache_hits.inc();
    } else {
        state.metrics.tokens_signed.inc();
    }
    Ok(token)
}
