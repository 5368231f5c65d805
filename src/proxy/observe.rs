//! The ending both sides share: whatever the steps decided becomes one response, one
//! count in `trustgate_requests_total`, one latency observation and one access-log line.
//! A failure becomes its status code here ([`Failure::into_response_for`]), and only
//! failures of our own or of the upstream are logged as warnings.
use std::time::Instant;

use http::{Method, Request, Response, Uri};

use super::http::Body;
use super::rescue::Failure;
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// What is known of a request when it arrives (the steps may consume the request).
pub struct Seen {
    direction: Direction,
    start: Instant,
    method: Method,
    uri: Uri,
    grpc: bool,
}

impl Seen {
    pub fn new<B>(direction: Direction, req: &Request<B>) -> Self {
        Seen {
            direction,
            start: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            grpc: super::http::is_grpc(req),
        }
    }
}

/// What the steps decided.
pub struct Handled {
    /// The metric/log word: `ok`, `public`, `audit`, `passthrough`, or a failure's.
    pub outcome: &'static str,
    pub reason: Option<&'static str>,
    /// Inbound: the verified caller. Outbound: the destination host.
    pub who: Option<String>,
    pub result: Result<Response<Body>, Failure>,
}

impl Handled {
    /// Forwarded: the upstream's response, or why there is none.
    pub fn forwarded(outcome: &'static str, result: Result<Response<Body>, Failure>) -> Self {
        Handled {
            outcome,
            reason: None,
            who: None,
            result,
        }
    }

    /// Stopped by a step.
    pub fn failed(failure: Failure) -> Self {
        Handled {
            outcome: failure.outcome(),
            reason: Some(failure.reason()),
            who: None,
            result: Err(failure),
        }
    }

    pub fn by(mut self, who: Option<String>) -> Self {
        self.who = who;
        self
    }

    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// Counts, logs and answers.
pub fn finish(metrics: &Metrics, seen: Seen, handled: Handled) -> Response<Body> {
    let Handled {
        mut outcome,
        mut reason,
        who,
        result,
    } = handled;
    let direction = seen.direction.as_str();
    let response = match result {
        Ok(resp) => resp,
        Err(failure) => {
            if matches!(failure, Failure::Upstream(_) | Failure::Internal(_)) {
                tracing::warn!(direction, error = %failure, "request failed");
            }
            outcome = failure.outcome();
            reason = Some(failure.reason());
            failure.into_response_for(seen.grpc)
        }
    };
    let elapsed = seen.start.elapsed();
    let index = match seen.direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    };
    metrics
        .per_request
        .observe(metrics, index, outcome, elapsed.as_secs_f64());
    let who = who.as_deref().unwrap_or("-");
    let (method, path) = (&seen.method, seen.uri.path());
    let status = response.status().as_u16();
    let reason = reason.unwrap_or("-");
    let latency_us = elapsed.as_micros() as u64;
    match seen.direction {
        Direction::Inbound => tracing::info!(
            target: "trustgate::access",
            direction, %method, path, status, caller = who, outcome, reason, latency_us,
        ),
        Direction::Outbound => tracing::info!(
            target: "trustgate::access",
            direction, %method, path, host = who, status, outcome, reason, latency_us,
        ),
    }
    response
}
