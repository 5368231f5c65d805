//! Envoy's HTTP mode (`ext_authz` with an `http_service`, on `authz.http_listen`): Envoy
//! sends the original method, path and the headers its `allowed_headers` lets through,
//! without the body; [`super::check`]'s verdict comes back as Envoy reads it:
//! - allowed: `200`, the headers to set (Envoy copies those its
//!   `allowed_upstream_headers` names, overwriting), and `x-envoy-auth-headers-to-remove`
//!   listing the ones to take away;
//! - refused: the proxy's own answer (status, `WWW-Authenticate`, `Retry-After`, JSON
//!   body), which Envoy sends to the client.
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Allowed, Answered};
use crate::http::Body;
use crate::proxy::state::State;

/// Where Envoy reads the names it removes from the request (Envoy's own header).
pub const HEADERS_TO_REMOVE: http::HeaderName =
    http::HeaderName::from_static("x-envoy-auth-headers-to-remove");

pub async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let Some(side) = &state.inbound else {
        return crate::http::not_found();
    };
    let (parts, _body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let fields = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()));
    let answered = match super::request(
        parts.method.as_str(),
        target,
        host,
        http::Version::HTTP_11,
        fields,
    ) {
        Ok(req) => super::check(state, side, req).await,
        Err(failure) => super::refusal(state, failure).await,
    };
    answered.count(state, "http");
    match answered {
        Answered::Allowed(Allowed { set, remove, .. }) => {
            let mut resp = Response::new(crate::http::empty());
            *resp.status_mut() = StatusCode::OK;
            let headers = resp.headers_mut();
            for (name, value) in set {
                headers.append(name, value);
            }
            let remove: Vec<&str> = remove.iter().map(|n| n.as_str()).collect();
            if !remove.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
                    headers.insert(HEADERS_TO_REMOVE, v);
                }
            }
            resp
        }
        Answered::Refused(resp, _) => resp.map(crate::http::full),
    }
}
