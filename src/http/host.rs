//! The host a request is for, read once, the same way for both sides: outbound routes by
//! it, inbound rules match it (`hosts`). A host is compared without its port, without a
//! trailing dot, case-insensitively (RFC 9110 §4.2.3: the host is case-insensitive; a
//! fully qualified `billing.shop.` names the same host as `billing.shop`).
use http::header::HOST;
use http::Request;

/// The host of an authority, as routes and rules name it: no port, no trailing dot.
/// Case is kept: compare with `eq_ignore_ascii_case`.
pub fn host_part(authority: &str) -> &str {
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal: [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.trim_end_matches('.')
}

/// The host an inbound request is for, as the app behind the sidecar will read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestHost<'a> {
    /// Neither a `Host` field nor an authority in the request target.
    Absent,
    /// The host (no port, no trailing dot; case as sent).
    Named(&'a str),
    /// Two `Host` fields, or one that is not an authority (`a, b`, `x y`, `h:port:x`,
    /// non-ASCII): app servers read it differently (the first, the last, a part of it),
    /// so it matches nothing a rule could rely on.
    Ambiguous,
}

/// The host of a request as the app will read it: its one `Host` field (sent on as it
/// came, so the app reads that one), else the request target's authority (HTTP/2
/// `:authority`, which becomes the app's `Host` when it has none).
pub fn request_host<B>(req: &Request<B>) -> RequestHost<'_> {
    host_of(req.headers(), req.uri())
}

/// [`request_host`] of a request's parts.
pub fn host_of<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> RequestHost<'a> {
    let mut fields = headers.get_all(HOST).iter();
    let authority = match (fields.next(), fields.next()) {
        (Some(_), Some(_)) => return RequestHost::Ambiguous,
        (Some(one), None) => match one.to_str() {
            Ok(text) => text.trim_matches([' ', '\t']),
            Err(_) => return RequestHost::Ambiguous,
        },
        (None, _) => match uri.authority() {
            Some(a) => a.as_str(),
            None => return RequestHost::Absent,
        },
    };
    if !is_authority(authority) {
        return RequestHost::Ambiguous;
    }
    RequestHost::Named(host_part(authority))
}

/// A request's host as RFC 9112 §3.2 allows it: one `Host` field, empty or `host[:port]`
/// (optional whitespace around it); or none, and the target's authority (HTTP/2's
/// `:authority`, an absolute-form target), if any, `host[:port]` (no userinfo).
pub fn host_fields_valid(headers: &http::HeaderMap, uri: &http::Uri) -> bool {
    let mut fields = headers.get_all(HOST).iter();
    match (fields.next(), fields.next()) {
        (None, _) => uri.authority().is_none_or(|a| is_authority(a.as_str())),
        (Some(_), Some(_)) => false,
        (Some(one), None) => match one.to_str() {
            Ok(text) => {
                let text = text.trim_matches([' ', '\t']);
                text.is_empty() || is_authority(text)
            }
            Err(_) => false,
        },
    }
}

/// `host [":" port]` (RFC 9110 §7.2): a registered name or IPv4 address of letters,
/// digits, `-`, `.`, `_`, or a bracketed IPv6 literal; a port of digits.
fn is_authority(a: &str) -> bool {
    let (host_ok, rest) = match a.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((v6, rest)) => (
                !v6.is_empty()
                    && v6
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                rest,
            ),
            None => return false,
        },
        None => {
            let end = a.find(':').unwrap_or(a.len());
            (is_name(&a[..end]), &a[end..])
        }
    };
    let port_ok = match rest.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => rest.is_empty(),
    };
    host_ok && port_ok
}

fn is_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(target: &str, fields: &[&[u8]]) -> RequestHost<'static> {
        let mut req = Request::builder().uri(target);
        for f in fields {
            req = req.header(HOST, http::HeaderValue::from_bytes(f).unwrap());
        }
        let req = Box::leak(Box::new(req.body(()).unwrap()));
        request_host(req)
    }

    #[test]
    fn the_host_the_app_reads() {
        use RequestHost::*;
        assert_eq!(host("/", &[b"Billing.Shop.:8080"]), Named("Billing.Shop"));
        assert_eq!(host("/", &[b"[::1]:8080"]), Named("::1"));
        assert_eq!(host("/", &[b" billing "]), Named("billing"));
        assert_eq!(host("http://h2.example/x", &[]), Named("h2.example"));
        // The app reads Host, not the absolute-form target.
        assert_eq!(
            host("http://public.example/x", &[b"internal"]),
            Named("internal")
        );
        assert_eq!(host("/", &[]), Absent);
        for bad in [
            &[&b"a"[..], b"b"][..],
            &[b"a, b"],
            &[b"a b"],
            &[b"a:80:1"],
            &[b"a:x"],
            &[b""],
            &[b"caf\xc3\xa9"],
            &[b"[]"],
            &[b"a/b"],
            &[b"user@a"],
        ] {
            assert_eq!(host("/", bad), Ambiguous, "{bad:?}");
        }
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_part("billing:8080"), "billing");
        assert_eq!(host_part("billing."), "billing");
        assert_eq!(host_part("[fe80::1]:443"), "fe80::1");
    }
}
