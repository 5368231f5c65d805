//! Forwarding one request upstream: the request target rewritten to the upstream, header
//! hygiene, the body streamed both ways, and HTTP/1.1 upgrades (WebSocket) tunnelled.
use std::net::SocketAddr;

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::http::{append_forwarded, empty, is_upgrade, strip_hop_by_hop, Body, BoxError};
use super::rescue::Failure;
use super::State;

/// How the `Host` header reaches the upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HostHeader {
    /// As the client sent it (inbound: the app sees the name it was called by).
    Keep,
    /// The upstream's authority (outbound: the next hop sees its own name).
    Upstream,
}

pub async fn forward(
    state: &State,
    mut req: Request<Incoming>,
    target: &Uri,
    peer: SocketAddr,
    downstream_tls: bool,
    host: HostHeader,
) -> Result<Response<Body>, Failure> {
    let upgrade = is_upgrade(&req);
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let original_authority = parts.uri.authority().cloned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let mut uri = Uri::builder().path_and_query(path_and_query.as_str());
    if let Some(scheme) = target.scheme() {
        uri = uri.scheme(scheme.clone());
    }
    if let Some(authority) = target.authority() {
        uri = uri.authority(authority.clone());
    }
    parts.uri = uri
        .build()
        .map_err(|_| Failure::BadRequest("request target cannot be forwarded"))?;

    strip_hop_by_hop(&mut parts.headers, upgrade);
    append_forwarded(&mut parts.headers, peer, downstream_tls);
    match host {
        HostHeader::Keep => {
            // HTTP/2 carries the name in :authority; keep it visible to an HTTP/1.1 app.
            if !parts.headers.contains_key(HOST) {
                if let Some(a) = original_authority {
                    if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                        parts.headers.insert(HOST, v);
                    }
                }
            }
        }
        HostHeader::Upstream => {
            if let Some(a) = target.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    parts.headers.insert(HOST, v);
                }
            }
        }
    }

    let req = Request::from_parts(parts, body.map_err(BoxError::from).boxed());
    let mut resp = state.upstreams.send(req).await?;

    if let Some(downstream) = downstream_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
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
            return Ok(Response::from_parts(parts, empty()));
        }
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed(),
    ))
}
