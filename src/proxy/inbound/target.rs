//! The request line and its host, read once before anything decides on them, as the app
//! will read them (DESIGN.md "Inbound", Paths and Methods):
//! - the method: one with lower-case letters is refused (`bad_method`) — methods are
//!   case-sensitive, but Werkzeug and Django upper-case `REQUEST_METHOD`, so `delete`
//!   would run a DELETE view past a rule on `DELETE`; `CONNECT` is refused (405): the
//!   app's 200 would be read as a tunnel;
//! - the target: bytes outside RFC 3986 in the query too, `*` only with `OPTIONS`, and the
//!   path made canonical ([`path::canonical`]) and *rewritten in the request*, so the
//!   rules, the public paths and the app see one path;
//! - the host: two `Host` fields, or one that is neither empty nor `host[:port]`, are
//!   refused (RFC 9112 §3.2: app servers take the first, the last, or a part).
//!
//! The path the rules match and the target as it arrived ride in the request's
//! extensions when they differ from its URI ([`path::rule_path`], [`arrived_target`]).
use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::{Method, Request, Uri};

use crate::http::host::host_fields_valid;
use crate::http::path::{self, arrived_target, ArrivedTarget, RulePath};
use crate::proxy::rescue::{BadRequest, Failure};

/// Method, host and target checked; the path rewritten to its canonical form.
pub(crate) fn request_line<B>(req: &mut Request<B>, merge_slashes: bool) -> Result<(), Failure> {
    let bad = |b| Err(Failure::BadRequest(b));
    let method = req.method();
    if *method == Method::CONNECT {
        return bad(BadRequest::MethodNotAllowed);
    }
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return bad(BadRequest::BadMethod);
    }
    if !host_fields_valid(req.headers(), req.uri()) {
        return bad(BadRequest::InvalidHost);
    }
    let uri = req.uri();
    if uri.path() == "*" && *method != Method::OPTIONS {
        return non_canonical(uri.path(), "'*' is a target only for OPTIONS");
    }
    if let Some(query) = uri.query() {
        if query
            .bytes()
            .any(|b| !b.is_ascii() || b <= b' ' || b == 0x7f)
        {
            return non_canonical(uri.path(), "a byte outside RFC 3986 in the query");
        }
    }
    let canonical = match path::canonical(uri.path(), merge_slashes) {
        Ok(c) => c,
        Err(why) => return non_canonical(uri.path(), why),
    };
    // Most paths need nothing: borrowed throughout, nothing compared or copied.
    if let (Cow::Borrowed(_), Cow::Borrowed(_), None) =
        (&canonical.forward, &canonical.rules, &canonical.stripped)
    {
        return Ok(());
    }
    let rules = (canonical.rules != canonical.forward || canonical.stripped.is_some())
        .then(|| RulePath::new(&canonical.rules, canonical.stripped.as_deref()));
    let forward = (canonical.forward != uri.path()).then(|| canonical.forward.into_owned());
    if let Some(forward) = forward {
        let arrived = arrived_target(req).to_owned();
        let target = match req.uri().query() {
            Some(q) => format!("{forward}?{q}"),
            None => forward,
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            PathAndQuery::try_from(target)
                .map_err(|_| Failure::BadRequest(BadRequest::NonCanonicalPath))?,
        );
        *req.uri_mut() = Uri::from_parts(parts)
            .map_err(|_| Failure::BadRequest(BadRequest::NonCanonicalPath))?;
        req.extensions_mut().insert(ArrivedTarget::new(arrived));
    }
    if let Some(rules) = rules {
        req.extensions_mut().insert(rules);
    }
    Ok(())
}

fn non_canonical(path: &str, why: &'static str) -> Result<(), Failure> {
    tracing::debug!(path, why, "non-canonical request target refused");
    Err(Failure::BadRequest(BadRequest::NonCanonicalPath))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::{arrived_path, rule_path};
    use http::header::HOST;

    fn line(
        method: &str,
        target: &str,
        hosts: &[&str],
        merge: bool,
    ) -> Result<Request<()>, &'static str> {
        let mut b = Request::builder().method(method).uri(target);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        let mut req = b.body(()).unwrap();
        request_line(&mut req, merge).map_err(|f| f.reason())?;
        Ok(req)
    }

    #[test]
    fn methods_as_frameworks_read_them() {
        assert!(line("DELETE", "/x", &["billing"], false).is_ok());
        assert!(line("PROPFIND", "/x", &["billing"], false).is_ok());
        for m in ["delete", "Delete", "gEt", "x-custom"] {
            assert_eq!(
                line(m, "/x", &["billing"], false).unwrap_err(),
                "bad_method",
                "{m}"
            );
        }
        let connect = line("CONNECT", "billing:443", &["billing"], false).unwrap_err();
        assert_eq!(connect, "method_not_allowed");
        let f = Failure::BadRequest(BadRequest::MethodNotAllowed);
        assert_eq!(f.answer().status, http::StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn asterisk_only_for_options() {
        assert!(line("OPTIONS", "*", &["billing"], false).is_ok());
        assert_eq!(
            line("GET", "*", &["billing"], false).unwrap_err(),
            "non_canonical_path"
        );
    }

    #[test]
    fn one_valid_host() {
        assert!(line("GET", "/x", &[], false).is_ok(), "absent (HTTP/1.0)");
        assert!(line("GET", "/x", &[""], false).is_ok(), "empty");
        assert!(line("GET", "/x", &["billing:8443"], false).is_ok());
        for hosts in [&["a", "b"][..], &["a b"], &["a,b"], &["a:1:2"], &["a/b"]] {
            assert_eq!(
                line("GET", "/x", hosts, false).unwrap_err(),
                "invalid_host",
                "{hosts:?}"
            );
        }
    }

    #[test]
    fn the_path_is_rewritten_and_the_arrival_kept() {
        let req = line("GET", "/%64ebug/vars?q=%64", &["b"], false).unwrap();
        assert_eq!(req.uri().path_and_query().unwrap(), "/debug/vars?q=%64");
        assert_eq!(rule_path(&req), "/debug/vars");
        assert_eq!(arrived_target(&req), "/%64ebug/vars?q=%64");
        assert_eq!(arrived_path(&req), "/%64ebug/vars");

        assert_eq!(
            line("GET", "//debug/vars", &["b"], false).unwrap_err(),
            "non_canonical_path"
        );
        let merged = line("GET", "//debug///vars", &["b"], true).unwrap();
        assert_eq!(merged.uri().path(), "/debug/vars");

        let params = line("GET", "/debug;x=1/vars", &["b"], false).unwrap();
        assert_eq!(params.uri().path(), "/debug;x=1/vars", "sent on as it came");
        assert_eq!(
            rule_path(&params),
            "/debug;x=1/vars",
            "as Node and uvicorn route it"
        );
        let tomcat = crate::http::path::stripped_rule_path(&params);
        assert_eq!(tomcat, Some("/debug/vars"), "and as Tomcat routes it");
        assert_eq!(arrived_target(&params), "/debug;x=1/vars");

        let plain = line("GET", "http://billing/a/b?c", &["billing"], false).unwrap();
        assert_eq!(plain.uri(), "http://billing/a/b?c");
        assert!(
            plain.extensions().get::<ArrivedTarget>().is_none(),
            "nothing copied"
        );
        assert!(plain.extensions().get::<RulePath>().is_none());
    }
}
