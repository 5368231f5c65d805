//! Forwarding one request upstream: the request target rewritten to the upstream, the
//! protocol chosen for the upstream, the body streamed both ways, and HTTP/1.1 upgrades
//! (WebSocket) tunnelled.
//!
//! Header hygiene on the request (hop-by-hop fields, identity) is done by each side
//! before it sets its own headers; here only what the protocol change needs is done.
pub mod body;
pub mod client;
pub mod dial;
pub mod upstream_io;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{COOKIE, EXPECT, HOST};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::http::{append_forwarded, empty, is_upgrade, strip_hop_by_hop, Body, BoxError};
use crate::proxy::forward::body::{BodyState, RequestBody, ResponseBody};
use crate::proxy::forward::client::{Affinity, Protocol, Upstreams};
use crate::proxy::rescue::{BadRequest, Failure};

/// How the `Host` header reaches the upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HostHeader {
    /// As the client sent it (inbound: the app sees the name it was called by).
    Keep,
    /// The upstream's authority (outbound: the next hop sees its own name).
    Upstream,
}

/// Does this HTTP/1.1 request wait for `100 Continue` before sending its body?
pub fn expects_continue<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The downstream connection a request arrived on: who is on the other end, over TLS or
/// not, and the upstream connection it keeps (one per downstream connection).
pub struct Downstream {
    pub peer: SocketAddr,
    pub tls: bool,
    pub affinity: Affinity,
}

impl Downstream {
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        Downstream {
            peer,
            tls,
            affinity: Affinity::default(),
        }
    }
}

/// Where a request goes and how.
/// Only `upstreams` outlives the call: the rest is read while the request is rewritten.
pub struct Hop<'a, 't> {
    /// The client of this side (the inbound's dials the app, a Unix socket perhaps).
    pub upstreams: &'a Upstreams,
    pub target: &'t Uri,
    pub host: HostHeader,
    pub protocol: Protocol,
    /// Inbound: the names that leave the request's trailers in every spelling (protected
    /// names and credentials: [`crate::proxy::state::InboundState::trailers_removed`];
    /// [`crate::proxy::forward::body`]).
    pub protected: Option<&'t Arc<[HeaderName]>>,
}

/// Forwards `req` over `hop`. The request is rewritten here, before the returned future
/// exists; the future holds only what the exchange needs (the boxed upstream exchange, the
/// body's state, the downstream upgrade), not the request (see [`crate::proxy::server`]: hyper
/// keeps a connection's request future in an allocation of its own, so its size is paid
/// per connection).
pub fn forward<'a>(
    req: Request<Incoming>,
    hop: Hop<'a, '_>,
    down: &'a Downstream,
) -> impl Future<Output = Result<Response<Body>, Failure>> + Send + 'a {
    let sending = start(req, hop, down);
    async move {
        let Sending {
            response,
            body_state,
            downstream_upgrade,
            downstream_version,
        } = sending?;
        let resp = match response.await {
            Ok(resp) => resp,
            // The client's body broke, not the upstream: the client's fault, answered 400.
            Err(_) if body_state.as_ref().is_some_and(|b| b.downstream_failed()) => {
                return Err(Failure::BadRequest(BadRequest::MalformedBody))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(respond(resp, downstream_upgrade, downstream_version))
    }
}

/// A request on its way upstream.
struct Sending<'a> {
    response: crate::proxy::forward::client::Exchange<'a>,
    body_state: Option<Arc<BodyState>>,
    downstream_upgrade: Option<OnUpgrade>,
    downstream_version: Version,
}

/// The target's scheme and authority with the request's path and query.
fn next_hop_uri(uri: &Uri, target: &Uri) -> Result<Uri, Failure> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut next = Uri::builder().path_and_query(path_and_query);
    if let Some(scheme) = target.scheme() {
        next = next.scheme(scheme.clone());
    }
    if let Some(authority) = target.authority() {
        next = next.authority(authority.clone());
    }
    next.build()
        .map_err(|_| Failure::BadRequest(BadRequest::TargetNotForwardable))
}

/// `Host` as the hop wants it: the request's own (HTTP/2 carries it in `:authority`;
/// kept visible to an HTTP/1.1 app), or the upstream's.
fn set_host(
    headers: &mut http::HeaderMap,
    host: HostHeader,
    original: Option<http::uri::Authority>,
    target: &Uri,
) {
    let value = match host {
        HostHeader::Keep if !headers.contains_key(HOST) => original,
        HostHeader::Keep => None,
        HostHeader::Upstream => target.authority().cloned(),
    };
    if let Some(v) = value.and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
        headers.insert(HOST, v);
    }
}

/// Over HTTP/2 the host travels in `:authority` (RFC 9113 §8.3.1), and a server may
/// refuse a request with a `host` field beside it (nginx answers 400 "duplicate host
/// header", even for the same value): the field goes. Where the connection does not
/// depend on the URI (the app at a pinned address or on a Unix socket), `:authority`
/// becomes the host the field named — the app reads the host the rules matched, as over
/// HTTP/1.1; elsewhere it stays the upstream's, which the field then named too.
fn host_as_authority(parts: &mut http::request::Parts, fixed_dial: bool) -> Result<(), Failure> {
    let Some(host) = parts.headers.remove(HOST) else {
        return Ok(());
    };
    let authority = match http::uri::Authority::try_from(host.as_bytes()) {
        Ok(a) if fixed_dial => a,
        _ => return Ok(()),
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.authority = Some(authority);
    parts.uri =
        Uri::from_parts(uri).map_err(|_| Failure::BadRequest(BadRequest::TargetNotForwardable))?;
    Ok(())
}

/// The request rewritten for the upstream and handed to the client.
fn start<'a>(
    mut req: Request<Incoming>,
    hop: Hop<'a, '_>,
    down: &'a Downstream,
) -> Result<Sending<'a>, Failure> {
    let Hop {
        upstreams,
        target,
        host,
        protocol,
        protected,
    } = hop;
    let upgrade = is_upgrade(&req);
    // An upgrade exists only in HTTP/1.1, whatever the route prefers.
    let protocol = if upgrade { Protocol::Http1 } else { protocol };
    let downstream_version = req.version();
    let expect_continue = expects_continue(&req);
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let original_authority = parts.uri.authority().cloned();
    parts.uri = next_hop_uri(&parts.uri, target)?;
    append_forwarded(&mut parts.headers, down.peer, down.tls);
    set_host(&mut parts.headers, host, original_authority, target);
    if protocol == Protocol::Http2 {
        host_as_authority(&mut parts, upstreams.dials_fixed())?;
    }
    if protocol == Protocol::Http1 && downstream_version == Version::HTTP_2 {
        join_cookies(&mut parts.headers);
    }

    // A request without a body (most GETs) needs none of RequestBody's duties.
    let (body, body_state) = if body.is_end_stream() {
        (body.map_err(BoxError::from).boxed(), None)
    } else {
        let (body, state) = RequestBody::new(body, expect_continue, protected.cloned());
        (body.boxed(), Some(state))
    };
    let mut req = Request::from_parts(parts, body);
    if let Some(body_state) = body_state.as_ref().filter(|_| expect_continue) {
        // The app's own `100 Continue` releases the body (HTTP/1.1 upstreams; others
        // get it after `EXPECT_WAIT`).
        let opener = body_state.clone();
        hyper::ext::on_informational(&mut req, move |res| {
            if res.status() == StatusCode::CONTINUE {
                opener.open();
            }
        });
    }
    // An upgrade takes its upstream connection for the tunnel: never the kept one; nor
    // do an HTTP/2 client's streams, several at once (the pools serve them).
    let affinity = (!upgrade && downstream_version != Version::HTTP_2).then_some(&down.affinity);
    Ok(Sending {
        response: upstreams.send(req, protocol, affinity),
        body_state,
        downstream_upgrade,
        downstream_version,
    })
}

/// Kept alive by an upgraded connection's tunnel until it closes: a `101` answer carries
/// one in its extensions, and what is put in it (a caller's concurrency slot, as Envoy
/// counts an upgraded stream as active until it ends) lives as long as the tunnel.
#[derive(Clone, Default)]
pub struct TunnelGuards(Arc<std::sync::Mutex<Vec<Box<dyn Send + Sync>>>>);

impl TunnelGuards {
    pub fn keep(&self, guard: impl Send + Sync + 'static) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(guard));
    }
}

/// The upstream's response as the downstream client gets it; a `101` to an upgrade
/// starts the tunnel between the two connections.
fn respond(
    mut resp: Response<Incoming>,
    downstream_upgrade: Option<OnUpgrade>,
    downstream_version: Version,
) -> Response<Body> {
    if let Some(downstream) = downstream_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream = hyper::upgrade::on(&mut resp);
            let guards = TunnelGuards::default();
            let held = guards.clone();
            tokio::spawn(async move {
                // What must last as long as the tunnel (a caller's concurrency slot) is
                // dropped when it closes, not when the `101` has been sent.
                let _held = held;
                match tokio::try_join!(downstream, upstream) {
                    Ok((down, up)) => {
                        let mut down = TokioIo::new(down);
                        let mut up = TokioIo::new(up);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "upgrade failed"),
                }
            });
            let (mut parts, _) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            parts.version = Version::HTTP_11;
            parts.extensions.insert(guards);
            return Response::from_parts(parts, empty());
        }
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    // An intermediary answers in its own protocol version (RFC 9110 §2.5): HTTP/1.1 to
    // an HTTP/1.x client even when the app spoke HTTP/1.0 (which would otherwise turn
    // keep-alive off and the body close-delimited on the client's connection too).
    parts.version = if downstream_version == Version::HTTP_2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    Response::from_parts(parts, ResponseBody::new(body).boxed())
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 allows one (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, v);
    }
}
