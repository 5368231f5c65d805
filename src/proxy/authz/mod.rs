//! The external authorizer (`[authz]`, DESIGN.md "Inside Envoy"): Envoy, Istio or Envoy
//! Gateway keep their proxy and ask trustgate about each request.
//!
//! One pipeline, another door: the request Envoy describes (method, target, host, header
//! fields) is made into the request the inbound's [`steps`] take — the same screen,
//! canonical path, tokens, person, policy, limits and single use as the proxy's, with the
//! proxy's observer ([`Serve`]) — and the verdict is read back as Envoy applies it:
//! - sent on → allowed, with the headers the steps set (what the app would get from the
//!   proxy) to *set*, and the ones they took away (credentials, spoofed identity, in every
//!   spelling they arrived in) to *remove* ([`Allowed`]);
//! - answered here → refused with the proxy's own answer (status, `WWW-Authenticate`,
//!   `Retry-After`, JSON body).
//!
//! What Envoy cannot be told is refused here rather than left out: a path whose canonical
//! form is not the one Envoy will forward (the proxy rewrites it; an authorizer cannot), so
//! the rules never match a path the app does not receive. [`grpc`] and [`http`] are the two
//! wire forms of the same answer.
pub mod grpc;
pub mod http;

use std::sync::Arc;

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use ::http::{Method, Request, Response, Uri, Version};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::proxy::answer::{self, Decision, Direction, Handled, Seen, Who};
use crate::proxy::inbound::{steps, Serve};
use crate::proxy::rescue::{BadRequest, Failure};
use crate::proxy::state::{InboundState, State};

/// The verdict, as the door's wire form needs it.
pub enum Answered {
    Allowed(Allowed),
    /// The proxy's answer to the request, for Envoy to send instead of forwarding it.
    Refused(Response<Bytes>, Meta),
}

/// An allowed request: what Envoy changes before it forwards it.
pub struct Allowed {
    /// Set (overwriting every value there), in order; a name with several values comes
    /// once per value.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the request: every field the steps took away that is not being set.
    pub remove: Vec<HeaderName>,
    pub meta: Meta,
}

/// Who the request concerned, for Envoy's access log (dynamic metadata).
#[derive(Default)]
pub struct Meta {
    pub caller: Option<String>,
    pub user: Option<String>,
    pub txn: Option<String>,
}

impl Meta {
    fn of(who: Option<&Who>) -> Meta {
        let Some(who) = who else {
            return Meta::default();
        };
        let (caller, user, txn) = who.names();
        Meta {
            caller: (caller != "-").then(|| caller.to_owned()),
            user: user.map(str::to_owned),
            txn: txn.map(str::to_owned),
        }
    }
}

/// The request Envoy describes, made into the steps' request: `fields` are the header
/// fields one by one (pseudo-headers skipped: the method, target and host come apart).
pub fn request<'a>(
    method: &str,
    target: &str,
    host: &str,
    version: Version,
    fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Request<()>, Failure> {
    let bad = |b| Failure::BadRequest(b);
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad(BadRequest::BadMethod))?;
    // Only an origin-form target (or `*`): an absolute one would carry another authority.
    if !target.starts_with('/') && target != "*" {
        return Err(bad(BadRequest::TargetNotForwardable));
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| bad(BadRequest::TargetNotForwardable))?;
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        if name.starts_with(':') {
            continue;
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad(BadRequest::BadHeader))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| bad(BadRequest::BadHeader))?;
        headers.append(name, value);
    }
    if !host.is_empty() && !headers.contains_key(::http::header::HOST) {
        let host = HeaderValue::from_str(host).map_err(|_| bad(BadRequest::InvalidHost))?;
        headers.insert(::http::header::HOST, host);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(req)
}

impl Answered {
    /// Counted in `trustgate_authz_checks_total{mode,result}`.
    pub fn count(&self, state: &State, mode: &str) {
        let result = match self {
            Answered::Allowed(_) => "allowed",
            Answered::Refused(..) => "refused",
        };
        state
            .metrics
            .authz_checks
            .with_label_values(&[mode, result])
            .inc();
    }
}

/// The HTTP version Envoy names (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`).
pub fn version(protocol: &str) -> Version {
    match protocol {
        "HTTP/1.0" => Version::HTTP_10,
        "HTTP/2" => Version::HTTP_2,
        "HTTP/3" => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

/// The verdict on one request: the inbound's steps, counted and logged as the proxy's
/// (`trustgate_requests_total`, the access line).
pub async fn check(state: &Arc<State>, side: &InboundState, req: Request<()>) -> Answered {
    let seen = Seen::new(Direction::Inbound, &req);
    // The request as the app would get it from Envoy without trustgate: the hop-by-hop
    // fields are Envoy's to handle, never a removal of ours.
    let mut arrived = req.headers().clone();
    crate::http::strip_hop_by_hop(&mut arrived, crate::http::is_upgrade(&req));
    let handled = match forwardable(side, &req) {
        Err(failure) => Handled::failed(failure),
        Ok(()) => {
            let mut serve = Serve {
                state,
                in_flight: None,
            };
            match steps(state, side, req, &mut serve).await {
                Decision::Forward(verdict, req) => {
                    let meta = Meta::of(verdict.who());
                    let allowed = changes(&arrived, req.headers(), meta);
                    let ok = Response::new(crate::http::empty());
                    answer::finish(state, seen, verdict.forwarded(Ok(ok)), &"-");
                    return Answered::Allowed(allowed);
                }
                Decision::Answer(handled) => handled,
            }
        }
    };
    answered(state, seen, handled).await
}

/// A request Envoy described in a way that is not a request ([`request`]'s failure):
/// answered and counted as the proxy answers a malformed one.
pub async fn refusal(state: &Arc<State>, failure: Failure) -> Answered {
    let seen = Seen::new(Direction::Inbound, &Request::new(()));
    answered(state, seen, Handled::failed(failure)).await
}

/// The proxy's own answer, counted and logged, whole in memory (JSON, the JWKS).
async fn answered(state: &Arc<State>, seen: Seen, handled: Handled) -> Answered {
    let meta = Meta::of(handled.who());
    let (parts, body) = answer::finish(state, seen, handled, &"-").into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    Answered::Refused(Response::from_parts(parts, body), meta)
}

/// A path whose canonical form is not the one Envoy will forward is refused before any
/// step (which could spend a limit or a single use): the proxy rewrites such a path, an
/// authorizer cannot, and the rules must never match a path the app does not receive.
/// (A path that has no canonical form at all is the request line step's to refuse.)
fn forwardable(side: &InboundState, req: &Request<()>) -> Result<(), Failure> {
    let path = req.uri().path();
    match crate::http::path::canonical(path, side.cfg.merge_slashes) {
        Ok(c) if c.forward != path => Err(Failure::BadRequest(BadRequest::NonCanonicalPath)),
        _ => Ok(()),
    }
}

/// What the steps changed in the request's fields: names whose values differ are set
/// (all their values), names that are gone are removed — but never a name being set
/// (Envoy removes after it sets).
fn changes(arrived: &HeaderMap, sent: &HeaderMap, meta: Meta) -> Allowed {
    let mut set = Vec::new();
    for name in sent.keys() {
        let now = sent.get_all(name);
        if !now.iter().eq(arrived.get_all(name).iter()) {
            set.extend(now.iter().map(|v| (name.clone(), v.clone())));
        }
    }
    let remove = arrived
        .keys()
        .filter(|n| !sent.contains_key(*n))
        .cloned()
        .collect();
    Allowed { set, remove, meta }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_as_envoy_describes_it() {
        let fields = [
            (":authority", &b"billing"[..]),
            (":path", b"/x"),
            ("x-a", b"1"),
            ("x-a", b"2"),
        ];
        let req = request("GET", "/x?y=1", "billing:8080", Version::HTTP_2, fields).unwrap();
        assert_eq!(req.uri(), "/x?y=1");
        assert_eq!(req.headers()["host"], "billing:8080");
        assert_eq!(req.headers().get_all("x-a").iter().count(), 2);
        assert!(req.headers().keys().all(|n| !n.as_str().starts_with(':')));
        for (method, target) in [("GET", "http://evil/x"), ("G T", "/"), ("GET", "x")] {
            assert!(request(method, target, "h", Version::HTTP_11, []).is_err());
        }
        let bad = [("x-a", &b"1\r\n"[..])];
        assert_eq!(
            request("GET", "/", "h", Version::HTTP_11, bad)
                .unwrap_err()
                .reason(),
            "bad_header"
        );
    }

    #[test]
    fn set_what_changed_remove_what_is_gone_never_both() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        let arrived = h(&[
            ("authorization", "Bearer t"),
            ("x-service-caller", "admin"),
            ("x_service_caller", "admin"),
            ("x-kept", "1"),
        ]);
        let sent = h(&[
            ("x-service-caller", "orders"),
            ("x-kept", "1"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ]);
        let a = changes(&arrived, &sent, Meta::default());
        let set: Vec<_> = a
            .set
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            set,
            [
                ("x-service-caller", "orders"),
                ("x-multi", "a"),
                ("x-multi", "b")
            ]
        );
        let remove: Vec<_> = a.remove.iter().map(HeaderName::as_str).collect();
        assert_eq!(remove, ["authorization", "x_service_caller"]);
    }
}
