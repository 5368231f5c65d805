//! The one place where a failure becomes an answer: [`Failure::answer`] decides, for each
//! kind, the metric outcome, the access-log reason, the status, the JSON body and the gRPC
//! status, in one table (linkerd2-proxy's `SyntheticHttpResponse` is the model).
//! Authentication failures are 401 with the RFC 6750 challenge, policy 403, problems
//! upstream 502/504, a request we cannot route 400/502, our own faults 500. Bodies are
//! short JSON; details go to the log.
use std::borrow::Cow;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use super::client::UpstreamError;
use crate::http::{json_response, Body};
use crate::metrics::Outcome;
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
    #[error("bad request: {}", .0.message())]
    BadRequest(BadRequest),
    /// The caller's identity has a key URL whose keys could not be fetched (never, or
    /// not within `trust.max_stale`): 503, the caller did nothing wrong.
    #[error("keys of {0} unavailable (key URL not fetched)")]
    KeysUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a request cannot be handled as sent: 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// Outbound: CONNECT (a tunnel would carry TLS we cannot add a token to).
    Connect,
    NoHost,
    InvalidHost,
    /// A chunked or HTTP/2 body that does not parse.
    MalformedBody,
    /// A target hyper cannot send on.
    TargetNotForwardable,
    /// `Connection` names a header trustgate sets (it would strip what it just set).
    ConnectionNamesProtectedHeader,
    /// Inbound: a path an app would read differently than the policy did.
    NonCanonicalPath,
}

impl BadRequest {
    /// The access log's reason.
    pub fn code(self) -> &'static str {
        match self {
            BadRequest::Connect => "connect_unsupported",
            BadRequest::NoHost => "no_host",
            BadRequest::InvalidHost => "invalid_host",
            BadRequest::MalformedBody => "malformed_body",
            BadRequest::TargetNotForwardable => "target_not_forwardable",
            BadRequest::ConnectionNamesProtectedHeader => "connection_names_protected_header",
            BadRequest::NonCanonicalPath => "non_canonical_path",
        }
    }

    /// The JSON body's `reason`.
    pub fn message(self) -> &'static str {
        match self {
            BadRequest::Connect => {
                "CONNECT is not supported: send plain http:// requests through trustgate"
            }
            BadRequest::NoHost => "no Host header",
            BadRequest::InvalidHost => "invalid Host header",
            BadRequest::TargetNotForwardable => "request target cannot be forwarded",
            other => other.code(),
        }
    }
}

/// gRPC status codes a failure maps to.
mod grpc {
    pub const INVALID_ARGUMENT: u16 = 3;
    pub const DEADLINE_EXCEEDED: u16 = 4;
    pub const PERMISSION_DENIED: u16 = 7;
    pub const INTERNAL: u16 = 13;
    pub const UNAVAILABLE: u16 = 14;
    pub const UNAUTHENTICATED: u16 = 16;
}

/// Everything a failure answers, decided in one place.
pub struct Answer {
    pub outcome: Outcome,
    /// The access log's reason (and the 401 challenge's description).
    pub reason: &'static str,
    pub status: StatusCode,
    /// The JSON body: `{"error": error, "reason": message}`.
    pub error: &'static str,
    pub message: Cow<'static, str>,
    pub grpc: u16,
}

fn row(
    outcome: Outcome,
    reason: &'static str,
    status: StatusCode,
    error: &'static str,
    message: impl Into<Cow<'static, str>>,
    grpc: u16,
) -> Answer {
    let message = message.into();
    Answer {
        outcome,
        reason,
        status,
        error,
        message,
        grpc,
    }
}

impl Failure {
    /// The one table: what each failure answers.
    pub fn answer(&self) -> Answer {
        use Outcome as O;
        use StatusCode as S;
        match self {
            Failure::Unauthenticated(r) => {
                let r = r.reason();
                row(
                    O::Rejected,
                    r,
                    S::UNAUTHORIZED,
                    "invalid_token",
                    r,
                    grpc::UNAUTHENTICATED,
                )
            }
            Failure::Forbidden { .. } => {
                let (r, e) = ("policy", "forbidden");
                row(O::Denied, r, S::FORBIDDEN, e, r, grpc::PERMISSION_DENIED)
            }
            Failure::Upstream(e) => upstream(e),
            Failure::NoRoute(host) => {
                let m = format!("no [[outbound.routes]] entry for host \"{host}\"");
                row(
                    O::NoRoute,
                    "no_route",
                    S::BAD_GATEWAY,
                    "no_route",
                    m,
                    grpc::UNAVAILABLE,
                )
            }
            Failure::BadRequest(b) => {
                let (r, m) = (b.code(), b.message());
                row(
                    O::BadRequest,
                    r,
                    S::BAD_REQUEST,
                    "bad_request",
                    m,
                    grpc::INVALID_ARGUMENT,
                )
            }
            Failure::KeysUnavailable(_) => {
                let (r, s) = ("keys_unavailable", S::SERVICE_UNAVAILABLE);
                row(O::Unavailable, r, s, "unavailable", r, grpc::UNAVAILABLE)
            }
            Failure::Internal(_) => {
                let (e, s) = ("internal_error", S::INTERNAL_SERVER_ERROR);
                row(
                    O::InternalError,
                    "internal",
                    s,
                    e,
                    "see the trustgate log",
                    grpc::INTERNAL,
                )
            }
        }
    }

    /// The metric/log word of this failure.
    pub fn outcome(&self) -> Outcome {
        self.answer().outcome
    }

    /// The short reason for the access log.
    pub fn reason(&self) -> &'static str {
        self.answer().reason
    }

    /// The answer; for a gRPC client HTTP 200 with the status in `grpc-status` /
    /// `grpc-message` ("trailers-only"), as gRPC clients expect from a proxy, the HTTP
    /// headers (`www-authenticate`) kept.
    pub fn into_response_for(self, grpc: bool) -> Response<Body> {
        let a = self.answer();
        let mut resp = json_response(a.status, a.error, &a.message);
        let headers = resp.headers_mut();
        match self {
            Failure::Unauthenticated(_) => {
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    a.reason
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.insert(WWW_AUTHENTICATE, v);
                }
            }
            Failure::KeysUnavailable(_) => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        if !grpc {
            return resp;
        }
        let (mut parts, _) = resp.into_parts();
        parts.status = StatusCode::OK;
        parts.headers.remove(http::header::CACHE_CONTROL);
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        parts
            .headers
            .insert("grpc-status", HeaderValue::from(a.grpc));
        if let Ok(v) = HeaderValue::from_str(&format!("trustgate: {}", a.reason)) {
            parts.headers.insert("grpc-message", v);
        }
        Response::from_parts(parts, crate::http::empty())
    }

    pub fn into_response(self) -> Response<Body> {
        self.into_response_for(false)
    }
}

/// The rows of upstream failures: 504 for a timeout, 502 for the others.
fn upstream(e: &UpstreamError) -> Answer {
    let (outcome, reason, status, message, grpc) = match e {
        UpstreamError::Timeout(_) => (
            Outcome::Timeout,
            "upstream_timeout",
            StatusCode::GATEWAY_TIMEOUT,
            "the upstream did not answer in time",
            grpc::DEADLINE_EXCEEDED,
        ),
        UpstreamError::Connect(_) => (
            Outcome::UpstreamError,
            "upstream_unreachable",
            StatusCode::BAD_GATEWAY,
            "the upstream refused or could not be reached",
            grpc::UNAVAILABLE,
        ),
        UpstreamError::Tls { .. } => (
            Outcome::UpstreamError,
            "upstream_tls",
            StatusCode::BAD_GATEWAY,
            "the upstream's TLS certificate was not accepted (see the trustgate log)",
            grpc::UNAVAILABLE,
        ),
        UpstreamError::Failed(_) => (
            Outcome::UpstreamError,
            "upstream_failed",
            StatusCode::BAD_GATEWAY,
            "the upstream connection failed",
            grpc::UNAVAILABLE,
        ),
    };
    row(outcome, reason, status, reason, message, grpc)
}
