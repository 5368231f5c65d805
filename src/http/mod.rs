//! HTTP plumbing shared by the data plane, the admin listener, the key fetcher and the
//! configuration check: the body type, header-name folding, header hygiene (RFC 9110
//! §7.6.1 hop-by-hop fields, `x-forwarded-for`/`forwarded`), short JSON responses and
//! error chains for logs.
pub mod host;
pub mod path;

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};

/// The transaction token (DESIGN.md "End users"), to the app and on to the next hop.
pub const TXN_TOKEN: HeaderName = HeaderName::from_static("txn-token");
/// The person, to the app: names trustgate sets, protected like `x-service-caller`.
pub const USER_SUBJECT: HeaderName = HeaderName::from_static("x-user-subject");
pub const USER_ISSUER: HeaderName = HeaderName::from_static("x-user-issuer");
pub const TRANSACTION_ID: HeaderName = HeaderName::from_static("x-transaction-id");

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body trustgate sends: a streamed upstream/downstream body or a small JSON one.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A short JSON answer `{"error": ..., "reason": ...}`. Details go to the log, not here.
pub fn json_response(status: StatusCode, error: &str, reason: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": error, "reason": reason }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Is this a gRPC request? (Its failures are answered in gRPC's own terms.)
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Is this gRPC proper (`application/grpc`, `application/grpc+proto`, …), which needs
/// HTTP/2 to the app? gRPC-Web (`application/grpc-web`) is made for HTTP/1.1 and is not.
pub fn is_grpc_proper<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
}

/// Is this an HTTP/1.1 upgrade request (WebSocket and friends)?
pub fn is_upgrade<B>(req: &http::Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_has(req.headers(), "upgrade")
}

/// A header name as app servers read it: case-insensitive, and every character other
/// than a letter or a digit the same as `-`. CGI/WSGI (`HTTP_X_SERVICE_CALLER`), Rack,
/// PHP and Apache's environment mapping fold `-`, `_` (and Apache any other
/// punctuation) into one variable, so `x_service_caller` and `X.Service-Caller` are the
/// same header to the app as `x-service-caller`.
fn fold(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// `name` and `other` are the same header to an app that folds names (see [`fold`]).
pub fn names_alike(name: &[u8], other: &[u8]) -> bool {
    name.len() == other.len() && name.iter().zip(other).all(|(&a, &b)| fold(a) == fold(b))
}

/// `name` starts with `prefix` once both are folded (see [`fold`]).
pub fn name_starts_alike(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && names_alike(&name[..prefix.len()], prefix)
}

/// The prefix of every header trustgate sets for the app (`x-service-caller`,
/// `x-service-caller-roles`).
const CALLER_PREFIX: &[u8] = b"x-service-caller";

/// A header name an app could read as one trustgate sets: `x-service-caller*` or a
/// signed-context header, in any spelling an app server folds together
/// ([`names_alike`]).
pub fn is_protected(name: &[u8], signed: &[HeaderName]) -> bool {
    name_starts_alike(name, CALLER_PREFIX)
        || signed
            .iter()
            .any(|s| names_alike(name, s.as_str().as_bytes()))
}

/// Identity cannot be spoofed: every field whose name an app could read as
/// `x-service-caller*` or as a signed-context header is dropped — from the request head
/// before anything else looks at it, on every path and in every mode, and from the
/// request's trailers as they stream (some app servers merge trailers into headers).
pub fn scrub(headers: &mut HeaderMap, signed: &[HeaderName]) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_protected(k.as_str().as_bytes(), signed))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// The tokens of every `Connection` header (RFC 9110 §7.6.1), trimmed.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1: those named in `Connection`, and the
/// classic set. `te: trailers` survives (gRPC over HTTP/2 needs it end to end); an
/// upgrade's `Upgrade`/`Connection: upgrade` survive when `upgrade` is set. `Trailer` is
/// not hop-by-hop (RFC 9110 §6.6.2): it stays, and hyper writes only declared trailers.
///
/// Both sides call this on a request before setting any header of their own, so a
/// `Connection` header can only ever remove what the client itself sent.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names (standard ones compare as enum tags), noting which of the
    // classic set are present: most messages carry none, or only `Connection:
    // keep-alive`, and then nothing is allocated and only what is there is removed.
    // Bit i of `present` is CLASSIC[i].
    const CLASSIC: [HeaderName; 8] = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    const CONNECTION: u8 = 1;
    const TE: u8 = 1 << 5;
    const UPGRADE: u8 = 1 << 7;
    let mut present = 0u8;
    for n in headers.keys() {
        if let Some(i) = CLASSIC.iter().position(|c| c == n) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Names the `Connection` header nominates. `keep-alive` is in the classic set
    // already; anything else (rare) is collected, and only then is memory allocated.
    let mut named: Vec<HeaderName> = Vec::new();
    if present & CONNECTION != 0 {
        // The same tokens the inbound screen reads (`connection_tokens`), so what it
        // refuses and what is stripped here are read from the bytes the same way.
        for t in connection_tokens(headers) {
            if t.eq_ignore_ascii_case(b"keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(t) {
                named.push(name);
            }
        }
    }
    let upgrade_value = if present & UPGRADE != 0 {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let te_trailers = present & TE != 0
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for name in named {
        headers.remove(name);
    }
    for (i, name) in CLASSIC.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        if let Some(v) = upgrade_value {
            headers.insert(header::UPGRADE, v);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends the peer to `x-forwarded-for` and `forwarded` (RFC 7239).
pub fn append_forwarded(headers: &mut HeaderMap, peer: SocketAddr, tls: bool) {
    let ip = peer.ip();
    let prev_xff = headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let prev_fwd = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let (xff, forwarded) = match (prev_xff, prev_fwd) {
        // The common case, the same for every request of a peer: made once per thread
        // and peer, then cloned (a reference count).
        (None, None) => own_forwarded(ip, tls),
        (prev_xff, prev_fwd) => {
            let (own_xff, own_fwd) = forwarded_values(ip, tls);
            let join = |prev: Option<&str>, own: String| match prev {
                Some(prev) => format!("{prev}, {own}"),
                None => own,
            };
            (
                HeaderValue::from_str(&join(prev_xff, own_xff)).ok(),
                HeaderValue::from_str(&join(prev_fwd, own_fwd)).ok(),
            )
        }
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(v) = forwarded {
        headers.insert(header::FORWARDED, v);
    }
}

/// This hop's own `X-Forwarded-For` and `Forwarded` elements.
fn forwarded_values(ip: std::net::IpAddr, tls: bool) -> (String, String) {
    let node = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let proto = if tls { "https" } else { "http" };
    (ip.to_string(), format!("for={node};proto={proto}"))
}

type OwnForwarded = (Option<HeaderValue>, Option<HeaderValue>);

/// [`forwarded_values`] as header values, remembered for the last peer of this thread.
fn own_forwarded(ip: std::net::IpAddr, tls: bool) -> OwnForwarded {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, bool, OwnForwarded)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((lip, ltls, values)) = last.as_ref() {
            if *lip == ip && *ltls == tls {
                return values.clone();
            }
        }
        let (xff, fwd) = forwarded_values(ip, tls);
        let values = (
            HeaderValue::from_str(&xff).ok(),
            HeaderValue::from_str(&fwd).ok(),
        );
        *last = Some((ip, tls, values.clone()));
        values
    })
}

/// 404 with the usual JSON body.
pub fn not_found() -> Response<Body> {
    json_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The whole cause chain in one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers, deflate".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn a_connection_value_beyond_ascii_still_names_its_fields() {
        // Read as bytes, like the inbound screen reads them: a value with obs-text does
        // not hide the fields it nominates.
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-hop, caf\xe9").unwrap(),
        );
        h.insert("x-hop", "1".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-hop").is_none(), "{h:?}");
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade, keep-alive".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn trailer_declaration_is_end_to_end() {
        let mut h = HeaderMap::new();
        h.insert(header::TRAILER, "grpc-status, x-checksum".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h[header::TRAILER], "grpc-status, x-checksum");
    }

    #[test]
    fn folded_names() {
        assert!(names_alike(b"x_service_caller", b"x-service-caller"));
        assert!(names_alike(b"X.Service_CALLER", b"x-service-caller"));
        assert!(!names_alike(b"x-service-callers", b"x-service-caller"));
        assert!(name_starts_alike(
            b"x_service_caller_roles",
            b"x-service-caller"
        ));
        assert!(!name_starts_alike(b"x-service", b"x-service-caller"));
    }

    #[test]
    fn forwarded_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        append_forwarded(&mut h, "[::1]:5000".parse().unwrap(), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(h["forwarded"], "for=\"[::1]\";proto=http");
        // Without earlier hops, the per-peer values are remembered: never another peer's.
        for (peer, tls, xff, fwd) in [
            ("10.1.1.1:1", false, "10.1.1.1", "for=10.1.1.1;proto=http"),
            ("10.1.1.1:2", true, "10.1.1.1", "for=10.1.1.1;proto=https"),
            ("10.2.2.2:1", true, "10.2.2.2", "for=10.2.2.2;proto=https"),
            ("10.1.1.1:3", false, "10.1.1.1", "for=10.1.1.1;proto=http"),
        ] {
            let mut h = HeaderMap::new();
            append_forwarded(&mut h, peer.parse().unwrap(), tls);
            assert_eq!(h["x-forwarded-for"], xff);
            assert_eq!(h["forwarded"], fwd);
        }
    }
}
