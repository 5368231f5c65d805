//! The screen (contract step 1): what happens to a request's headers before any decision
//! — hop-by-hop fields, `Connection` abuse, identity headers in any spelling — and what a
//! request forwarded without a verdict on its credentials leaves at the sidecar.
use http::header::{HeaderMap, HeaderName};
use http::Request;

use super::person;
use crate::http::{
    connection_tokens, is_protected, is_upgrade, names_alike, scrub, strip_hop_by_hop,
};
use crate::proxy::rescue::{BadRequest, Failure};
use crate::proxy::state::InboundState;

/// Everything that happens to a request's headers before any decision, in this order:
///
/// 1. a `Connection` header naming a header trustgate sets is refused (400): it could
///    only be there to make a hop-by-hop pass remove the verified identity;
/// 2. the hop-by-hop fields go, *before* trustgate sets any header of its own;
/// 3. every header an app could read as an identity header is removed ([`scrub`]);
/// 4. `txn-token` in any other spelling too, and in its own where this side verifies no
///    transaction token (`accepts_txn`): the app forwards only one it was meant to get;
/// 5. the token headers (`inbound.token_header`, the person's) in any spelling but their
///    own: trustgate verifies the one it names, and an app server folding
///    `X_User_Token` into `x-user-token` must not find another there.
pub(crate) fn screen<B>(
    protected: &[HeaderName],
    accepts_txn: bool,
    credentials: &[HeaderName],
    req: &mut Request<B>,
) -> Result<(), Failure> {
    if connection_tokens(req.headers()).any(|token| is_protected(token, protected)) {
        return Err(Failure::BadRequest(
            BadRequest::ConnectionNamesProtectedHeader,
        ));
    }
    let upgrade = is_upgrade(req);
    strip_hop_by_hop(req.headers_mut(), upgrade);
    scrub(req.headers_mut(), protected);
    let txn = person::TXN_TOKEN;
    let spelled: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|n| names_alike(n.as_str().as_bytes(), txn.as_str().as_bytes()))
        .filter(|n| !accepts_txn || **n != txn)
        .chain(req.headers().keys().filter(|n| {
            credentials
                .iter()
                .any(|c| *n != c && names_alike(n.as_str().as_bytes(), c.as_str().as_bytes()))
        }))
        .cloned()
        .collect();
    for name in spelled {
        req.headers_mut().remove(name);
    }
    Ok(())
}

/// A request forwarded without a verdict on its credentials (a public path, audit mode's
/// refusal): the caller's token, the person's (unless `forward_user_token`) and a
/// transaction token nobody verified here and a DPoP proof stay at the sidecar.
pub(super) fn withhold_credentials(side: &InboundState, headers: &mut HeaderMap) {
    let users = side.cfg.users.as_ref().filter(|u| !u.forward_user_token);
    let user = users.map(|u| &u.token_header);
    let credential =
        |n: &HeaderName| *n == side.cfg.token_header || *n == person::TXN_TOKEN || Some(n) == user;
    let credential = |n: &HeaderName| credential(n) || *n == super::dpop::DPOP;
    let present: Vec<HeaderName> = headers.keys().filter(|n| credential(n)).cloned().collect();
    for name in present {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::super::bearer::tests::headers;
    use super::super::tests::{request, side};
    use super::*;

    #[test]
    fn step_screen() {
        let side = side("");
        let mut req = request(
            "GET",
            "/",
            &[
                ("x_service_caller", "admin"),
                ("X-User-Id", "spoofed"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
                ("x-kept", "1"),
            ],
        );
        screen(&side.protected, false, &side.credentials, &mut req).unwrap();
        let names: Vec<_> = req.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        let mut req = request("GET", "/", &[("connection", "X_Service_Caller")]);
        assert_eq!(
            screen(&side.protected, false, &side.credentials, &mut req)
                .unwrap_err()
                .reason(),
            "connection_names_protected_header"
        );
    }

    #[test]
    fn scrub_removes_spoofed_identity() {
        let mut h = headers(&[
            ("x-service-caller", "admin"),
            ("X-Service-Caller-Roles", "root"),
            ("x-service-caller-anything", "1"),
            ("x_service_caller", "admin"),
            ("X_Service_Caller_Roles", "root"),
            ("x-service_caller", "admin"),
            ("x.service.caller", "admin"),
            ("x-user-id", "7"),
            ("x_user_id", "7"),
            ("X_USER-ID", "7"),
            ("x-other", "kept"),
        ]);
        scrub(&mut h, &[HeaderName::from_static("x-user-id")]);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-other"], "kept");
    }
}
