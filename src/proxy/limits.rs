//! Per-caller limits (`[callers.<name>] rate_limit`, `burst`, `max_concurrent`).
//!
//! Each configured caller has its own GCRA bucket (`governor`'s direct limiter: one
//! atomic word, no lock) and its own in-flight counter, so one noisy caller never waits
//! on — or slows — another. Only callers named in the configuration have limits: memory
//! is bounded by the configuration, whatever the number of callers that show up.
//!
//! A caller whose `rate_limit_scope` is `"fleet"` is rated by the fleet's store instead
//! (one round trip, [`crate::fleet`]); its own bucket here decides only while the store
//! cannot answer and `fleet.on_error` is `"local"`. Concurrency is always this sidecar's.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use http_body_util::BodyExt as _;

use crate::config::{Caller, OnError, Rate, Scope};
use crate::fleet::{self, Fleet};
use crate::http::Body;
use crate::proxy::rescue::{Failure, Limit};

/// The limits of every caller that has one.
#[derive(Default)]
pub struct CallerLimits {
    by_caller: HashMap<String, Limits>,
    clock: DefaultClock,
    fleet: Option<Arc<Fleet>>,
}

struct Limits {
    rate: Option<DefaultDirectRateLimiter>,
    /// `rate_limit_scope = "fleet"`: the quota the fleet's store keeps.
    fleet: Option<fleet::Quota>,
    concurrent: Option<(u32, Arc<AtomicU32>)>,
}

/// One request of a concurrency-limited caller in flight; dropped when it ends.
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The GCRA quota of a rate and its bucket.
pub fn quota(rate: Rate, burst: Option<u32>) -> Option<Quota> {
    let burst = NonZeroU32::new(burst.unwrap_or_else(|| rate.default_burst()))?;
    Some(Quota::with_period(rate.per / rate.count)?.allow_burst(burst))
}

impl CallerLimits {
    /// `fleet`: the store of callers whose scope is `"fleet"` (without one, every bucket
    /// is this sidecar's — the configuration check refuses that combination).
    pub fn new<'a>(
        callers: impl IntoIterator<Item = (&'a String, &'a Caller)>,
        fleet: Option<Arc<Fleet>>,
    ) -> Self {
        let by_caller = callers
            .into_iter()
            .filter_map(|(name, c)| {
                let rate = c
                    .rate_limit
                    .and_then(|r| quota(r, c.burst))
                    .map(RateLimiter::direct);
                let fleet = match (c.rate_limit_scope, c.rate_limit, &fleet) {
                    (Scope::Fleet, Some(r), Some(_)) => fleet::Quota::of(r, c.burst),
                    _ => None,
                };
                let concurrent = c.max_concurrent.map(|n| (n, Arc::new(AtomicU32::new(0))));
                (rate.is_some() || concurrent.is_some()).then(|| {
                    let limits = Limits {
                        rate,
                        fleet,
                        concurrent,
                    };
                    (name.clone(), limits)
                })
            })
            .collect();
        CallerLimits {
            by_caller,
            clock: DefaultClock::default(),
            fleet,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_caller.is_empty()
    }

    /// Admits one request of `caller`, or says which limit it is over. A concurrency-
    /// limited caller's request holds an [`InFlight`] until it ends. The rate is counted
    /// only for requests the concurrency limit admits.
    pub async fn admit(&self, caller: &str) -> Result<Option<InFlight>, Failure> {
        let limited = |limit| Failure::Limited {
            caller: caller.to_owned(),
            limit,
        };
        let Some(l) = self.by_caller.get(caller) else {
            return Ok(None);
        };
        let in_flight = match &l.concurrent {
            Some((max, count)) => {
                let admitted = count
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < *max).then_some(n + 1)
                    })
                    .is_ok();
                if !admitted {
                    return Err(limited(Limit::Concurrency));
                }
                Some(InFlight(count.clone()))
            }
            None => None,
        };
        if let (Some(q), Some(fleet)) = (l.fleet, &self.fleet) {
            match fleet.rate(caller, q).await {
                Ok(None) => return Ok(in_flight),
                Ok(Some(retry_after)) => return Err(limited(Limit::Rate { retry_after })),
                Err(_) => fleet_fallback(fleet.on_error, "rate")?,
            }
        }
        if let Some(rate) = &l.rate {
            if let Err(not_until) = rate.check() {
                let wait = not_until.wait_time_from(self.clock.now());
                // Whole seconds, rounded up: a client retrying then fits.
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(limited(Limit::Rate { retry_after }));
            }
        }
        Ok(in_flight)
    }
}

/// A fleet operation the store could not answer (`op`: `rate`, `replay`), decided in one
/// place for limits and single use: `Ok` — this sidecar decides with its own state
/// (`on_error` / `replay_on_error = "local"`) — or 503 `fleet_unavailable`.
pub(crate) fn fleet_fallback(on_error: OnError, op: &'static str) -> Result<(), Failure> {
    match on_error {
        OnError::Local => Ok(()),
        OnError::Refuse => Err(Failure::FleetUnavailable(op)),
    }
}

/// The answer, holding `in_flight` until its body has been sent (or dropped): a
/// streaming download counts as in flight as long as it streams, and an upgrade (a
/// WebSocket) as long as its tunnel is open.
pub fn hold(resp: http::Response<Body>, in_flight: InFlight) -> http::Response<Body> {
    if let Some(tunnel) = resp
        .extensions()
        .get::<crate::proxy::forward::TunnelGuards>()
    {
        tunnel.keep(in_flight);
        return resp;
    }
    resp.map(|inner| {
        Held {
            inner,
            _in_flight: in_flight,
        }
        .boxed()
    })
}

struct Held {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Held {
    type Data = bytes::Bytes;
    type Error = crate::http::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn caller(rate: Option<Rate>, burst: Option<u32>, max: Option<u32>) -> Caller {
        Caller {
            rate_limit: rate,
            burst,
            max_concurrent: max,
            ..Caller::default()
        }
    }

    #[tokio::test]
    async fn a_bucket_of_burst_then_the_rate_and_another_caller_untouched() {
        let per_minute = Rate {
            count: 60,
            per: Duration::from_secs(60),
        };
        let callers = [
            ("noisy".to_owned(), caller(Some(per_minute), Some(3), None)),
            ("calm".to_owned(), caller(Some(per_minute), None, None)),
        ];
        let limits = CallerLimits::new(callers.iter().map(|(n, c)| (n, c)), None);
        for _ in 0..3 {
            assert!(limits.admit("noisy").await.is_ok());
        }
        match limits.admit("noisy").await {
            Err(Failure::Limited {
                limit: Limit::Rate { retry_after },
                ..
            }) => assert_eq!(retry_after, 1, "one a second"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(
            limits.admit("calm").await.is_ok(),
            "another caller's bucket"
        );
        assert!(limits.admit("unlimited").await.unwrap().is_none());
        assert_eq!(per_minute.default_burst(), 1, "one second's worth of 60/m");
    }

    #[tokio::test]
    async fn concurrency_is_released_when_a_request_ends() {
        let callers = [("o".to_owned(), caller(None, None, Some(2)))];
        let limits = CallerLimits::new(callers.iter().map(|(n, c)| (n, c)), None);
        let a = limits.admit("o").await.unwrap();
        let _b = limits.admit("o").await.unwrap();
        assert!(matches!(
            limits.admit("o").await,
            Err(Failure::Limited {
                limit: Limit::Concurrency,
                ..
            })
        ));
        drop(a);
        assert!(limits.admit("o").await.is_ok());
    }
}
