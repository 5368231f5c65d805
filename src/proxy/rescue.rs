//! The one place where a failure becomes an answer: [`Failure::answer`] decides, for each
//! kind, the metric outcome, the access-log reason, the status, the JSON body and the gRPC
//! status, in one table (linkerd2-proxy's `SyntheticHttpResponse` is the model).
//! Authentication failures are 401 with the RFC 6750 challenge, policy 403, problems
//! upstream 502/504, a request we cannot route 400/502, our own faults 500. Bodies are
//! short JSON; details go to the log.
use std::borrow::Cow;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::http::{json_response, Body};
use crate::metrics::Outcome;
use crate::token::Rejection;

/// Everything that can stop a request inside trustgate.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("token rejected: {0}")]
    Unauthenticated(Rejection),
    /// A person's token was refused: 401 `user_<reason>`.
    #[error("person's token rejected: {0}")]
    User(Rejection),
    /// A DPoP proof (or a bound token without one) was refused: 401 `user_dpop_<reason>`,
    /// with a `DPoP` challenge.
    #[error("DPoP proof refused: {0}")]
    Dpop(crate::token::dpop::DpopRejection),
    /// The same, for a caller's token bound to a key: 401 `dpop_<reason>`.
    #[error("caller's DPoP proof refused: {0}")]
    CallerDpop(crate::token::dpop::DpopRejection),
    /// A transaction token was refused: 401 `txn_<reason>`.
    #[error("transaction token rejected: {0}")]
    Txn(Rejection),
    /// `[inbound.users] mode = "required"` and no person: 401 `user_token_required`.
    #[error("a person's token is required")]
    UserRequired,
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
    /// `[fleet]` could not answer a fleet-scoped limit or replay check, and its
    /// `on_error` / `replay_on_error` is `refuse`: 503.
    #[error("the fleet's store did not answer ({0})")]
    FleetUnavailable(&'static str),
    /// Outbound: the route's `token_file` has never been readable: 503.
    #[error("no token to present for {0} (token_file unreadable)")]
    TokenUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a request did not get an upstream response (the forwarding client says which).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    /// The TLS handshake with an `https://` upstream failed: which check, then the chain.
    #[error("upstream TLS handshake failed ({check}): {chain}")]
    Tls { check: String, chain: String },
    #[error("upstream did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("upstream failed: {0}")]
    Failed(String),
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
    /// When to try again: at least a second.
    fn retry_after(self) -> u64 {
        match self {
            Limit::Rate { retry_after } => retry_after.max(1),
            Limit::Concurrency => 1,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Limit::Rate { .. } => "rate_limited",
            Limit::Concurrency => "concurrency_limited",
        }
    }
}

words! {
    /// Why a request cannot be handled as sent: 400. The word is the access log's reason.
    pub enum BadRequest as code {
        /// Outbound: CONNECT (a tunnel would carry TLS we cannot add a token to).
        Connect = "connect_unsupported",
        NoHost = "no_host",
        InvalidHost = "invalid_host",
        /// A chunked or HTTP/2 body that does not parse.
        MalformedBody = "malformed_body",
        /// A target hyper cannot send on.
        TargetNotForwardable = "target_not_forwardable",
        /// `Connection` names a header trustgate sets (it would strip what it just set).
        ConnectionNamesProtectedHeader = "connection_names_protected_header",
        /// Inbound: a path an app would read differently than the policy did.
        NonCanonicalPath = "non_canonical_path",
        /// Inbound: a method with lower-case letters (frameworks upper-case it).
        BadMethod = "bad_method",
        /// Inbound: CONNECT (405: the app's 200 would open a tunnel through the sidecar).
        MethodNotAllowed = "method_not_allowed",
        /// A header field an authorizer was described that is not one (`[authz]`).
        BadHeader = "bad_header",
    }
}

impl BadRequest {
    /// The JSON body's `reason`.
    pub fn message(self) -> &'static str {
        match self {
            BadRequest::Connect => {
                "CONNECT is not supported: send plain http:// requests through trustgate"
            }
            BadRequest::NoHost => "no Host header",
            BadRequest::InvalidHost => "invalid Host header",
            BadRequest::TargetNotForwardable => "request target cannot be forwarded",
            BadRequest::BadMethod => {
                "a method with lower-case letters: app frameworks upper-case it, send it in upper case"
            }
            BadRequest::MethodNotAllowed => "CONNECT is not allowed through the inbound",
            BadRequest::BadHeader => "a header field name or value that is not one",
            other => other.code(),
        }
    }

    /// 400, or 405 for a method no resource behind the sidecar takes.
    pub fn status(self) -> StatusCode {
        match self {
            BadRequest::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
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

/// Everything a failure answers, decided in one place: callers read these fields, and no
/// one else matches on [`Failure`]'s variants to decide what to answer, count or log.
pub struct Answer {
    pub outcome: Outcome,
    /// The access log's reason (and the 401 challenge's description).
    pub reason: &'static str,
    pub status: StatusCode,
    /// The JSON body: `{"error": error, "reason": message}`.
    pub error: &'static str,
    pub message: Cow<'static, str>,
    /// The gRPC status a gRPC client gets instead (HTTP 200, trailers-only).
    pub grpc: u16,
    /// `WWW-Authenticate: Bearer error="invalid_token", error_description="<reason>"`
    /// (RFC 6750 §3).
    pub challenge: bool,
    /// The challenge is DPoP's instead (RFC 9449 §7.1):
    /// `DPoP error="invalid_dpop_proof", algs="…", error_description="<reason>"`.
    pub dpop: bool,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// In `inbound.mode = "audit"`: forwarded without identity instead of refused (a
    /// token, policy, limit or key availability failure — not a request that cannot be
    /// handled as sent).
    pub forward_in_audit: bool,
    /// A failure of ours or of the upstream: logged as a warning (with the upstream
    /// named), besides the access log line every request gets.
    pub warn: bool,
}

/// A row: the fields every failure has; the others start off.
fn row(
    outcome: Outcome,
    reason: &'static str,
    status: StatusCode,
    error: &'static str,
    message: impl Into<Cow<'static, str>>,
    grpc: u16,
) -> Answer {
    Answer {
        outcome,
        reason,
        status,
        error,
        message: message.into(),
        grpc,
        challenge: false,
        dpop: false,
        retry_after: None,
        forward_in_audit: false,
        warn: false,
    }
}

impl Answer {
    fn challenge(mut self) -> Self {
        self.challenge = true;
        self
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn forward_in_audit(mut self) -> Self {
        self.forward_in_audit = true;
        self
    }

    fn warn(mut self) -> Self {
        self.warn = true;
        self
    }
}

impl Failure {
    /// The one table: what each failure answers.
    pub fn answer(&self) -> Answer {
        use Outcome as O;
        use StatusCode as S;
        match self {
            Failure::Unauthenticated(r) => refused(r.reason()),
            Failure::User(r) => refused(r.user_reason()),
            Failure::Txn(r) => refused(r.txn_reason()),
            Failure::Dpop(r) => dpop_refused(r.user_reason()),
            Failure::CallerDpop(r) => dpop_refused(r.caller_reason()),
            Failure::UserRequired => refused("user_token_required"),
            Failure::Forbidden { .. } => {
                let (r, e) = ("policy", "forbidden");
                row(O::Denied, r, S::FORBIDDEN, e, r, grpc::PERMISSION_DENIED).forward_in_audit()
            }
            Failure::Limited { limit, .. } => {
                let (r, e) = (limit.reason(), "too_many_requests");
                row(
                    O::Limited,
                    r,
                    S::TOO_MANY_REQUESTS,
                    e,
                    r,
                    grpc::RESOURCE_EXHAUSTED,
                )
                .retry_after(limit.retry_after())
                .forward_in_audit()
            }
            Failure::Upstream(e) => upstream(e).warn(),
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
                    b.status(),
                    "bad_request",
                    m,
                    grpc::INVALID_ARGUMENT,
                )
            }
            Failure::KeysUnavailable(_) => {
                let (r, s) = ("keys_unavailable", S::SERVICE_UNAVAILABLE);
                row(O::Unavailable, r, s, "unavailable", r, grpc::UNAVAILABLE)
                    .retry_after(5)
                    .forward_in_audit()
            }
            Failure::FleetUnavailable(_) => {
                let (r, s) = ("fleet_unavailable", S::SERVICE_UNAVAILABLE);
                row(O::Unavailable, r, s, "unavailable", r, grpc::UNAVAILABLE)
                    .retry_after(1)
                    .forward_in_audit()
            }
            Failure::TokenUnavailable(_) => {
                let (r, s) = ("token_unavailable", S::SERVICE_UNAVAILABLE);
                row(O::Unavailable, r, s, "unavailable", r, grpc::UNAVAILABLE).retry_after(5)
            }
            Failure::Internal(_) => {
                let (e, s, m) = (
                    "internal_error",
                    S::INTERNAL_SERVER_ERROR,
                    "see the trustgate log",
                );
                row(O::InternalError, "internal", s, e, m, grpc::INTERNAL).warn()
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
        render(&self.answer(), grpc)
    }

    pub fn into_response(self) -> Response<Body> {
        self.into_response_for(false)
    }
}

/// An answer as a response, from its fields alone.
pub fn render(a: &Answer, grpc: bool) -> Response<Body> {
    let mut resp = json_response(a.status, a.error, &a.message);
    let headers = resp.headers_mut();
    if a.challenge {
        let challenge = match a.dpop {
            true => format!(
                "DPoP error=\"invalid_dpop_proof\", algs=\"{}\", error_description=\"{}\"",
                crate::token::dpop::ALGS,
                a.reason
            ),
            false => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                a.reason
            ),
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.insert(WWW_AUTHENTICATE, v);
        }
    }
    if let Some(secs) = a.retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
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

/// The row of a token refused (a caller's, a person's, a transaction's): 401 with the
/// challenge; forwarded in audit mode.
fn refused(reason: &'static str) -> Answer {
    let (o, s) = (Outcome::Rejected, StatusCode::UNAUTHORIZED);
    row(o, reason, s, "invalid_token", reason, grpc::UNAUTHENTICATED)
        .challenge()
        .forward_in_audit()
}

/// A 401 with the DPoP challenge (RFC 9449 §7.1).
fn dpop_refused(reason: &'static str) -> Answer {
    Answer {
        dpop: true,
        ..refused(reason)
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
    use crate::token::dpop::DpopRejection;
    use http_body_util::BodyExt as _;

    async fn body_of(resp: Response<Body>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Which variant a failure is. Exhaustive: a new variant does not compile until it is
    /// numbered here, and then [`every_failure`] must make one.
    fn variant(f: &Failure) -> usize {
        match f {
            Failure::Unauthenticated(_) => 0,
            Failure::Forbidden { .. } => 1,
            Failure::Limited { .. } => 2,
            Failure::Upstream(_) => 3,
            Failure::NoRoute(_) => 4,
            Failure::BadRequest(_) => 5,
            Failure::KeysUnavailable(_) => 6,
            Failure::TokenUnavailable(_) => 7,
            Failure::Internal(_) => 8,
            Failure::User(_) => 9,
            Failure::Txn(_) => 10,
            Failure::UserRequired => 11,
            Failure::FleetUnavailable(_) => 12,
            Failure::Dpop(_) => 13,
            Failure::CallerDpop(_) => 14,
        }
    }
    const VARIANTS: usize = 15;

    /// Every failure: every variant, with every reason its inner enums have.
    fn every_failure() -> Vec<Failure> {
        let mut all: Vec<Failure> = Rejection::ALL
            .iter()
            .map(|r| Failure::Unauthenticated(*r))
            .collect();
        all.extend(BadRequest::ALL.iter().map(|b| Failure::BadRequest(*b)));
        all.extend(Rejection::ALL.iter().map(|r| Failure::User(*r)));
        all.extend(Rejection::ALL.iter().map(|r| Failure::Txn(*r)));
        all.extend(DpopRejection::ALL.iter().map(|r| Failure::Dpop(*r)));
        all.extend(DpopRejection::ALL.iter().map(|r| Failure::CallerDpop(*r)));
        all.push(Failure::UserRequired);
        for rule in [None, Some("no-admin".to_owned())] {
            all.push(Failure::Forbidden {
                caller: "o".into(),
                method: "GET".into(),
                path: "/".into(),
                rule,
            });
        }
        for limit in [
            Limit::Rate { retry_after: 3 },
            Limit::Rate { retry_after: 0 },
            Limit::Concurrency,
        ] {
            all.push(Failure::Limited {
                caller: "o".into(),
                limit,
            });
        }
        all.extend(
            [
                UpstreamError::Timeout(std::time::Duration::from_secs(1)),
                UpstreamError::Connect("refused".into()),
                UpstreamError::Tls {
                    check: "name".into(),
                    chain: "x".into(),
                },
                UpstreamError::Failed("reset".into()),
            ]
            .map(Failure::Upstream),
        );
        all.push(Failure::NoRoute("ledger".into()));
        all.push(Failure::KeysUnavailable("orders".into()));
        all.push(Failure::FleetUnavailable("rate"));
        all.push(Failure::FleetUnavailable("replay"));
        all.push(Failure::TokenUnavailable("billing".into()));
        all.push(Failure::Internal("x".into()));
        all
    }

    /// The contract's rows (DESIGN.md "What each bad input gets"), for every failure: the
    /// status by kind, the JSON error, the challenge exactly on 401, Retry-After exactly on
    /// 429 and 503, audit mode forwarding exactly token, policy, limit and key
    /// availability failures, warnings exactly for our faults and the upstream's — and
    /// what a gRPC client gets instead (HTTP 200, grpc-status, grpc-message), the same
    /// headers kept.
    #[tokio::test]
    async fn every_failure_answers_by_the_table() {
        let all = every_failure();
        let covered: std::collections::BTreeSet<usize> = all.iter().map(variant).collect();
        assert_eq!(covered.len(), VARIANTS, "a variant without a sample");
        for f in all {
            let name = format!("{f:?}");
            let a = f.answer();
            let (status, error, grpc, audit, warn) = match &f {
                Failure::Unauthenticated(_)
                | Failure::User(_)
                | Failure::Txn(_)
                | Failure::Dpop(_)
                | Failure::CallerDpop(_)
                | Failure::UserRequired => (401, "invalid_token", 16, true, false),
                Failure::Forbidden { .. } => (403, "forbidden", 7, true, false),
                Failure::Limited { .. } => (429, "too_many_requests", 8, true, false),
                Failure::Upstream(UpstreamError::Timeout(_)) => {
                    (504, "upstream_timeout", 4, false, true)
                }
                Failure::Upstream(UpstreamError::Connect(_)) => {
                    (502, "upstream_unreachable", 14, false, true)
                }
                Failure::Upstream(UpstreamError::Tls { .. }) => {
                    (502, "upstream_tls", 14, false, true)
                }
                Failure::Upstream(UpstreamError::Failed(_)) => {
                    (502, "upstream_failed", 14, false, true)
                }
                Failure::NoRoute(_) => (502, "no_route", 14, false, false),
                Failure::BadRequest(b) => (b.status().as_u16(), "bad_request", 3, false, false),
                Failure::KeysUnavailable(_) | Failure::FleetUnavailable(_) => {
                    (503, "unavailable", 14, true, false)
                }
                Failure::TokenUnavailable(_) => (503, "unavailable", 14, false, false),
                Failure::Internal(_) => (500, "internal_error", 13, false, true),
            };
            assert_eq!(
                (
                    a.status.as_u16(),
                    a.error,
                    a.grpc,
                    a.forward_in_audit,
                    a.warn
                ),
                (status, error, grpc, audit, warn),
                "{name}"
            );
            let reason = match &f {
                Failure::Unauthenticated(r) => r.reason(),
                Failure::User(r) => r.user_reason(),
                Failure::Txn(r) => r.txn_reason(),
                Failure::Dpop(r) => r.user_reason(),
                Failure::CallerDpop(r) => r.caller_reason(),
                Failure::UserRequired => "user_token_required",
                Failure::BadRequest(b) => b.code(),
                Failure::Limited { limit, .. } => limit.reason(),
                Failure::Forbidden { .. } => "policy",
                Failure::KeysUnavailable(_) => "keys_unavailable",
                Failure::FleetUnavailable(_) => "fleet_unavailable",
                Failure::TokenUnavailable(_) => "token_unavailable",
                Failure::Internal(_) => "internal",
                Failure::Upstream(_) | Failure::NoRoute(_) => error,
            };
            assert_eq!((a.reason, f.reason()), (reason, reason), "{name}");

            let plain = render(&a, false);
            assert_eq!(plain.status().as_u16(), status, "{name}");
            let challenge = plain.headers().get(WWW_AUTHENTICATE).cloned();
            let retry = plain.headers().get(http::header::RETRY_AFTER).cloned();
            let want = match f {
                Failure::Dpop(_) | Failure::CallerDpop(_) => format!(
                    "DPoP error=\"invalid_dpop_proof\", algs=\"{}\", error_description=\"{reason}\"",
                    crate::token::dpop::ALGS
                ),
                _ => format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""),
            };
            match challenge {
                Some(c) => assert_eq!(c.to_str().unwrap(), want, "{name}"),
                None => assert_ne!(status, 401, "{name}"),
            }
            match retry {
                Some(secs) => {
                    assert!(status == 429 || status == 503, "{name}");
                    assert!(
                        secs.to_str().unwrap().parse::<u64>().unwrap() >= 1,
                        "{name}"
                    );
                }
                None => assert!(status != 429 && status != 503, "{name}"),
            }
            let json = body_of(plain).await;
            assert_eq!(json["error"], error, "{name}");
            assert!(
                json["reason"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}"
            );

            let g = render(&a, true);
            assert_eq!(g.status(), StatusCode::OK, "{name}");
            assert_eq!(g.headers()["content-type"], "application/grpc", "{name}");
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
            assert_eq!(
                g.headers().get(WWW_AUTHENTICATE).is_some(),
                status == 401,
                "{name}"
            );
        }
    }

    /// The 400 bodies clients have always seen: a sentence where there is one.
    #[test]
    fn bad_request_messages() {
        let message = |b: BadRequest| Failure::BadRequest(b).answer().message;
        assert_eq!(
            message(BadRequest::Connect),
            "CONNECT is not supported: send plain http:// requests through trustgate"
        );
        assert_eq!(message(BadRequest::NoHost), "no Host header");
        assert_eq!(message(BadRequest::InvalidHost), "invalid Host header");
        assert_eq!(
            message(BadRequest::TargetNotForwardable),
            "request target cannot be forwarded"
        );
        assert_eq!(message(BadRequest::NonCanonicalPath), "non_canonical_path");
        let retry = |limit| {
            Failure::Limited {
                caller: "o".into(),
                limit,
            }
            .answer()
            .retry_after
        };
        assert_eq!(retry(Limit::Rate { retry_after: 3 }), Some(3));
        assert_eq!(retry(Limit::Rate { retry_after: 0 }), Some(1), "never 0");
        assert_eq!(retry(Limit::Concurrency), Some(1));
    }
}
