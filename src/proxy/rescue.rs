//! The one place where a failure becomes a status code. Authentication failures are 401
//! with the RFC 6750 challenge, policy 403, problems upstream 502/504, a request we cannot
//! route 400/502, our own faults 500. Bodies are short JSON; details go to the log.
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use super::client::UpstreamError;
use super::http::{json_response, Body};
use crate::token::Rejection;

/// Everything that can stop a request inside trustgate.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("token rejected: {0}")]
    Unauthenticated(Rejection),
    #[error("caller {caller} is not allowed {method} {path}")]
    Forbidden {
        caller: String,
        method: String,
        path: String,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("no route for host {0}")]
    NoRoute(String),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The caller's identity has a key URL whose keys could not be fetched (never, or
    /// not within `trust.max_stale`): 503, the caller did nothing wrong.
    #[error("keys of {0} unavailable (key URL not fetched)")]
    KeysUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Failure {
    /// The metric/log word of this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Unauthenticated(_) => "rejected",
            Failure::Forbidden { .. } => "denied",
            Failure::Upstream(UpstreamError::Timeout(_)) => "timeout",
            Failure::Upstream(_) => "upstream_error",
            Failure::NoRoute(_) => "no_route",
            Failure::BadRequest(_) => "bad_request",
            Failure::KeysUnavailable(_) => "unavailable",
            Failure::Internal(_) => "internal_error",
        }
    }

    /// The short reason for the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Unauthenticated(r) => r.reason(),
            Failure::Forbidden { .. } => "policy",
            Failure::Upstream(UpstreamError::Connect(_)) => "upstream_unreachable",
            Failure::Upstream(UpstreamError::Tls { .. }) => "upstream_tls",
            Failure::Upstream(UpstreamError::Timeout(_)) => "upstream_timeout",
            Failure::Upstream(UpstreamError::Failed(_)) => "upstream_failed",
            Failure::NoRoute(_) => "no_route",
            Failure::BadRequest(r) => r,
            Failure::KeysUnavailable(_) => "keys_unavailable",
            Failure::Internal(_) => "internal",
        }
    }

    /// The answer for a gRPC client: HTTP 200 with the status in `grpc-status` /
    /// `grpc-message` ("trailers-only"), as gRPC clients expect from a proxy; the HTTP
    /// headers (`www-authenticate`) are kept.
    pub fn into_response_for(self, grpc: bool) -> Response<Body> {
        if !grpc {
            return self.into_response();
        }
        let code = match &self {
            Failure::Unauthenticated(_) => 16, // UNAUTHENTICATED
            Failure::Forbidden { .. } => 7,    // PERMISSION_DENIED
            Failure::Upstream(UpstreamError::Timeout(_)) => 4, // DEADLINE_EXCEEDED
            Failure::Upstream(_) | Failure::NoRoute(_) | Failure::KeysUnavailable(_) => 14, // UNAVAILABLE
            Failure::BadRequest(_) => 3, // INVALID_ARGUMENT
            Failure::Internal(_) => 13,  // INTERNAL
        };
        let message = format!("trustgate: {}", self.reason());
        let plain = self.into_response();
        let (mut parts, _) = plain.into_parts();
        parts.status = StatusCode::OK;
        parts.headers.remove(http::header::CACHE_CONTROL);
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        parts
            .headers
            .insert("grpc-status", HeaderValue::from(code as u16));
        if let Ok(v) = HeaderValue::from_str(&message) {
            parts.headers.insert("grpc-message", v);
        }
        Response::from_parts(parts, super::http::empty())
    }

    pub fn into_response(self) -> Response<Body> {
        match self {
            Failure::Unauthenticated(r) => {
                let mut resp = json_response(StatusCode::UNAUTHORIZED, "invalid_token", r.reason());
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    r.reason()
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(WWW_AUTHENTICATE, v);
                }
                resp
            }
            Failure::Forbidden { .. } => {
                json_response(StatusCode::FORBIDDEN, "forbidden", "policy")
            }
            Failure::Upstream(UpstreamError::Timeout(_)) => json_response(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the upstream did not answer in time",
            ),
            Failure::Upstream(UpstreamError::Connect(_)) => json_response(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "the upstream refused or could not be reached",
            ),
            Failure::Upstream(UpstreamError::Tls { .. }) => json_response(
                StatusCode::BAD_GATEWAY,
                "upstream_tls",
                "the upstream's TLS certificate was not accepted (see the trustgate log)",
            ),
            Failure::Upstream(UpstreamError::Failed(_)) => json_response(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                "the upstream connection failed",
            ),
            Failure::NoRoute(host) => json_response(
                StatusCode::BAD_GATEWAY,
                "no_route",
                &format!("no [[outbound.routes]] entry for host \"{host}\""),
            ),
            Failure::BadRequest(reason) => {
                json_response(StatusCode::BAD_REQUEST, "bad_request", reason)
            }
            Failure::KeysUnavailable(_) => {
                let mut resp = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "keys_unavailable",
                );
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
                resp
            }
            Failure::Internal(_) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "see the trustgate log",
            ),
        }
    }
}
