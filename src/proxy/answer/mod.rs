//! The ending both sides share: whatever the steps decided becomes one response, one
//! count in `trustgate_requests_total`, one latency observation and one access-log line.
//! A failure becomes its answer here ([`Failure::answer`], [`crate::proxy::rescue::render`]), and
//! only those its answer marks (`warn`: ours or the upstream's) are logged as warnings.
pub mod jwks;

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response};

use crate::http::Body;
use crate::metrics::Outcome;
use crate::proxy::rescue::Failure;
use crate::proxy::state::State;

words! {
    /// The `direction` label, and the access log's.
    pub enum Direction as as_str {
        Inbound = "inbound",
        Outbound = "outbound",
    }
}

/// What is known of a request when it arrives (the steps may consume the request).
pub struct Seen {
    direction: Direction,
    start: Instant,
    method: Method,
    /// The path, for the access line; copied, and only when that line is written: a
    /// cloned `Uri` would keep the downstream connection's read buffer (which holds the
    /// request head) alive while the app answers, and hyper would allocate another.
    path: Option<Box<str>>,
    grpc: bool,
    /// The W3C trace id of the request, when it carries a valid `traceparent`.
    trace: TraceId,
}

impl Seen {
    pub fn new<B>(direction: Direction, req: &Request<B>) -> Self {
        Seen {
            direction,
            start: Instant::now(),
            method: req.method().clone(),
            path: tracing::enabled!(target: "trustgate::access", tracing::Level::INFO)
                .then(|| req.uri().path().into()),
            grpc: crate::http::is_grpc(req),
            trace: TraceId::of(req.headers()),
        }
    }
}

/// Who a request concerned, for the access log.
pub enum Who {
    /// Inbound: the verified caller (shared with the verified-token cache, not copied),
    /// and the issuer that vouched for it (`[[trust.issuers]].name`) if one did.
    Caller(Arc<str>, Option<Arc<str>>),
    /// Inbound, made for a person: the caller (`-`: none, a person's token only) and its
    /// issuer, and the person's subject and transaction id.
    For(Arc<str>, Option<Arc<str>>, Arc<crate::token::Person>),
    /// Outbound: the destination host.
    Host(String),
}

impl Who {
    /// The caller (`-`: none), the person's subject and transaction id, if any.
    pub fn names(&self) -> (&str, Option<&str>, Option<&str>) {
        match self {
            Who::For(c, _, p) => (c, Some(p.sub.as_str()), p.txn.as_deref()),
            other => (other.as_str(), None, None),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Who::Caller(c, _) | Who::For(c, _, _) => c,
            Who::Host(h) => h,
        }
    }
}

/// What the steps decided of a request: the metric/log word (`ok`, `public`, `audit`,
/// `passthrough`, `jwks`, or a failure's), why, and who it concerned. A request sent on
/// gets the upstream's answer added ([`Verdict::forwarded`]).
pub struct Verdict {
    outcome: Outcome,
    reason: Option<&'static str>,
    who: Option<Who>,
}

impl Verdict {
    pub fn new(outcome: Outcome) -> Self {
        Verdict {
            outcome,
            reason: None,
            who: None,
        }
    }

    pub fn by(mut self, who: Option<Who>) -> Self {
        self.who = who;
        self
    }

    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    pub fn who(&self) -> Option<&Who> {
        self.who.as_ref()
    }

    /// Forwarded: the upstream's response, or why there is none.
    pub fn forwarded(self, result: Result<Response<Body>, Failure>) -> Handled {
        Handled {
            verdict: self,
            result,
        }
    }
}

/// What a side's steps decided, before anything is sent: send it on (`F` is the request,
/// or the exchange already started with it) with this verdict, or this answer.
pub enum Decision<F> {
    Forward(Verdict, F),
    /// Answered here: refused, or served by trustgate itself.
    Answer(Handled),
}

/// A decision with its response, or the failure that becomes one.
pub struct Handled {
    verdict: Verdict,
    result: Result<Response<Body>, Failure>,
}

impl Handled {
    /// Stopped by a step.
    pub fn failed(failure: Failure) -> Self {
        let answer = failure.answer();
        Handled {
            verdict: Verdict {
                outcome: answer.outcome,
                reason: Some(answer.reason),
                who: None,
            },
            result: Err(failure),
        }
    }

    pub fn by(mut self, who: Option<Who>) -> Self {
        self.verdict.who = who;
        self
    }

    pub fn outcome(&self) -> Outcome {
        self.verdict.outcome
    }

    pub fn who(&self) -> Option<&Who> {
        self.verdict.who()
    }

    /// The failure this answer is, if it is one.
    pub fn failure(&self) -> Option<&Failure> {
        self.result.as_ref().err()
    }
}

/// Names the sidecar that answered itself, on every answer it makes (`billing/inbound`):
/// a caller tells "billing's app is down" (502 from billing/inbound) from "billing's
/// sidecar is down" (502 from orders/outbound); an outbound sidecar relays the callee's
/// and counts it as `callee_refused`.
pub const HOP: http::HeaderName = http::HeaderName::from_static("trustgate-hop");

/// Counts, logs and answers. `upstream`, where a request was sent on, names it in the
/// warning of a failed exchange.
pub fn finish(
    state: &State,
    seen: Seen,
    handled: Handled,
    upstream: &dyn std::fmt::Display,
) -> Response<Body> {
    let metrics = &state.metrics;
    let Handled {
        verdict:
            Verdict {
                mut outcome,
                mut reason,
                who,
            },
        result,
    } = handled;
    let direction = seen.direction.as_str();
    let index = match seen.direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    };
    let response = match result {
        Ok(resp) => {
            if index == 1 && outcome == Outcome::Ok {
                if let Some(r) = callee_refusal(&resp) {
                    (outcome, reason) = (Outcome::CalleeRefused, Some(r));
                }
            }
            resp
        }
        Err(failure) => {
            let answer = failure.answer();
            if answer.warn {
                tracing::warn!(direction, %upstream, error = %failure, "request failed");
            }
            let mut resp = crate::proxy::rescue::render(&answer, seen.grpc);
            resp.headers_mut().insert(HOP, state.hops[index].clone());
            (outcome, reason) = (answer.outcome, Some(answer.reason));
            resp
        }
    };
    let elapsed = seen.start.elapsed();
    metrics
        .per_request
        .observe(index, outcome, elapsed.as_secs_f64());
    let outcome = outcome.as_str();
    let issuer = match &who {
        Some(Who::Caller(_, Some(i)) | Who::For(_, Some(i), _)) => i,
        _ => "-",
    };
    let (user, txn) = match &who {
        Some(Who::For(_, _, p)) => (p.sub.as_str(), p.txn.as_deref().unwrap_or("-")),
        _ => ("-", "-"),
    };
    let who = who.as_ref().map_or("-", Who::as_str);
    let (method, path) = (&seen.method, seen.path.as_deref().unwrap_or("-"));
    let status = response.status().as_u16();
    let reason = reason.unwrap_or("-");
    let latency_us = elapsed.as_micros() as u64;
    match seen.direction {
        Direction::Inbound => tracing::info!(
            target: "trustgate::access",
            direction, %method, path, status, caller = who, issuer, user, txn, outcome, reason,
            latency_us, trace_id = seen.trace.as_str(),
        ),
        Direction::Outbound => tracing::info!(
            target: "trustgate::access",
            direction, %method, path, host = who, status, outcome, reason, latency_us,
            trace_id = seen.trace.as_str(),
        ),
    }
    response
}

/// An answer the callee's sidecar made itself (it carries `trustgate-hop` naming an
/// inbound side), by what its status says.
fn callee_refusal(resp: &Response<Body>) -> Option<&'static str> {
    let hop = resp.headers().get(HOP)?.as_bytes();
    if !hop.ends_with(b"/inbound") {
        return None;
    }
    Some(match resp.status().as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "limited",
        503 => "unavailable",
        502 | 504 => "upstream_error",
        _ => "refused",
    })
}

/// The trace id of a W3C `traceparent` (Trace Context §3.2), for the access log, so that
/// a search for one id finds every hop of a request. The header itself passes through
/// both sides untouched; only a well-formed one is read (`-` otherwise).
#[derive(Clone, Copy)]
pub struct TraceId(Option<[u8; 32]>);

impl TraceId {
    pub fn of(headers: &http::HeaderMap) -> Self {
        let mut values = headers.get_all(TRACEPARENT).iter();
        // Two traceparent fields: ignored, as the specification says.
        let (Some(v), None) = (values.next(), values.next()) else {
            return TraceId(None);
        };
        TraceId(parse_traceparent(v.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Checked to be lowercase hex when parsed.
            Some(id) => std::str::from_utf8(id).unwrap_or("-"),
            None => "-",
        }
    }
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// `version "-" trace-id "-" parent-id "-" flags`: 2, 32, 16, 2 lowercase hex digits;
/// version `ff` and all-zero ids are invalid; a future version may append fields.
fn parse_traceparent(v: &[u8]) -> Option<[u8; 32]> {
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    if !hex(version) || version == b"ff" || !hex(trace) || !hex(parent) || !hex(flags) {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return None;
    }
    // Version 00 is exactly 55 bytes; later versions continue with '-'.
    if (version == b"00" && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    trace.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn traceparent_trace_ids() {
        let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            &parse_traceparent(ok).unwrap(),
            b"4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let future = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(parse_traceparent(future).is_some());
        for bad in [
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
