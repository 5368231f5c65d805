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
    #[error("caller {caller} is not allowed {method} {path}{}", rule.as_ref().map(|r| format!(" (deny rule {r})")).unwrap_or_default())]
    Forbidden {
        caller: String,
        method: String,
        path: String,
        /// The deny rule that matched; `None`: no allow rule did.
        rule: Option<String>,
    },
    /// A per-caller limit (`[callers.<name>]`): 429.
    #[error("caller {caller} is over its {}", limit.reason())]
    Limited { caller: String, limit: Limit },
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
    /// Outbound: the route's `token_file` has never been readable: 503.
    #[error("no token to present for {0} (token_file unreadable)")]
    TokenUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which per-caller limit a request is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `rate_limit` / `burst`: a request fits again in this many seconds.
    Rate { retry_after: u64 },
    /// `max_concurrent`.
    Concurrency,
}

impl Limit {
    pub fn reason(self) -> &'static str {
        match self {
            Limit::Rate { .. } => "rate_limited",
            Limit::Concurrency => "concurrency_limited",
        }
    }
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
    pub const RESOURCE_EXHAUSTED: u16 = 8;
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
            Failure::Limited { limit, .. } => {
                let r = limit.reason();
                let s = S::TOO_MANY_REQUESTS;
                row(
                    O::Limited,
                    r,
                    s,
                    "too_many_requests",
                    r,
                    grpc::RESOURCE_EXHAUSTED,
                )
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
            Failure::TokenUnavailable(_) => {
                let (r, s) = ("token_unavailable", S::SERVICE_UNAVAILABLE);
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
        self.render(grpc).2
    }

    /// The metric outcome, the access log's reason and the answer, from one look at the
    /// table.
    pub fn render(self, grpc: bool) -> (Outcome, &'static str, Response<Body>) {
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
            Failure::KeysUnavailable(_) | Failure::TokenUnavailable(_) => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Failure::Limited { limit, .. } => {
                let secs = match limit {
                    Limit::Rate { retry_after } => retry_after.max(1),
                    Limit::Concurrency => 1,
                };
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        if !grpc {
            return (a.outcome, a.reason, resp);
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
        let resp = Response::from_parts(parts, crate::http::empty());
        (a.outcome, a.reason, resp)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body_of(resp: Response<Body>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every 400: status, the JSON body as clients have always seen it, and the access
    /// log's code (a code for all of them now, sentences only in the body).
    #[tokio::test]
    async fn bad_requests_answer_400_with_their_message_and_log_a_code() {
        let rows = [
            (
                BadRequest::Connect,
                "connect_unsupported",
                "CONNECT is not supported: send plain http:// requests through trustgate",
            ),
            (BadRequest::NoHost, "no_host", "no Host header"),
            (
                BadRequest::InvalidHost,
                "invalid_host",
                "invalid Host header",
            ),
            (
                BadRequest::MalformedBody,
                "malformed_body",
                "malformed_body",
            ),
            (
                BadRequest::TargetNotForwardable,
                "target_not_forwardable",
                "request target cannot be forwarded",
            ),
            (
                BadRequest::ConnectionNamesProtectedHeader,
                "connection_names_protected_header",
                "connection_names_protected_header",
            ),
            (
                BadRequest::NonCanonicalPath,
                "non_canonical_path",
                "non_canonical_path",
            ),
        ];
        for (b, code, message) in rows {
            let (outcome, reason, resp) = Failure::BadRequest(b).render(false);
            assert_eq!((outcome, reason), (Outcome::BadRequest, code));
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let json = body_of(resp).await;
            assert_eq!(json["error"], "bad_request");
            assert_eq!(json["reason"], message, "{b:?}");
        }
    }

    /// The rows the contract names: status, JSON error, the challenge on 401, Retry-After
    /// on 503, and what a gRPC client gets instead (HTTP 200, grpc-status).
    #[tokio::test]
    async fn each_failure_has_its_status_body_and_grpc_status() {
        type Make = fn() -> Failure;
        let rows: [(Make, u16, &str, &str, u16); 10] = [
            (
                || Failure::Unauthenticated(Rejection::UnknownKey),
                401,
                "invalid_token",
                "unknown_key",
                16,
            ),
            (
                || Failure::Forbidden {
                    caller: "o".into(),
                    method: "GET".into(),
                    path: "/".into(),
                    rule: Some("no-admin".into()),
                },
                403,
                "forbidden",
                "policy",
                7,
            ),
            (
                || Failure::Limited {
                    caller: "o".into(),
                    limit: Limit::Rate { retry_after: 3 },
                },
                429,
                "too_many_requests",
                "rate_limited",
                8,
            ),
            (
                || Failure::Limited {
                    caller: "o".into(),
                    limit: Limit::Concurrency,
                },
                429,
                "too_many_requests",
                "concurrency_limited",
                8,
            ),
            (
                || Failure::Upstream(UpstreamError::Timeout(std::time::Duration::from_secs(1))),
                504,
                "upstream_timeout",
                "upstream_timeout",
                4,
            ),
            (
                || Failure::Upstream(UpstreamError::Connect("refused".into())),
                502,
                "upstream_unreachable",
                "upstream_unreachable",
                14,
            ),
            (
                || Failure::NoRoute("ledger".into()),
                502,
                "no_route",
                "no_route",
                14,
            ),
            (
                || Failure::KeysUnavailable("orders".into()),
                503,
                "unavailable",
                "keys_unavailable",
                14,
            ),
            (
                || Failure::TokenUnavailable("billing".into()),
                503,
                "unavailable",
                "token_unavailable",
                14,
            ),
            (
                || Failure::Internal("x".into()),
                500,
                "internal_error",
                "internal",
                13,
            ),
        ];
        for (make, status, error, reason, grpc) in rows {
            let name = format!("{:?}", make());
            let (_, r, plain) = make().render(false);
            assert_eq!((plain.status().as_u16(), r), (status, reason), "{name}");
            let challenge = plain.headers().get(WWW_AUTHENTICATE).is_some();
            let retry = plain.headers().get(http::header::RETRY_AFTER).is_some();
            assert_eq!(
                (challenge, retry),
                (status == 401, status == 503 || status == 429),
                "{name}"
            );
            assert_eq!(body_of(plain).await["error"], error, "{name}");
            let (_, _, g) = make().render(true);
            assert_eq!(g.status(), StatusCode::OK, "{name}");
            assert_eq!(
                g.headers()["grpc-status"],
                grpc.to_string().as_str(),
                "{name}"
            );
            assert_eq!(
                g.headers()["grpc-message"],
                format!("trustgate: {reason}").as_str(),
                "{name}"
            );
        }
    }
}
