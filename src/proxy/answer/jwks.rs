//! The answer trustgate makes itself with this service's public keys: the JWKS, on the
//! admin listener and (`inbound.publish_jwks`) on the inbound one.
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use crate::http::{full, json_response, Body};
use crate::proxy::state::State;

/// A JSON answer.
pub fn json(value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The JWKS document as an answer (also on the inbound listener, `inbound.publish_jwks`):
/// `GET`/`HEAD` only, never cached longer than a minute so that a rotation is seen.
pub fn response(state: &State, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET only",
        );
    }
    let mut resp = json(&document(state));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    resp
}

/// This service's public key(s): the current one and, for `trust.jwks_grace` after a
/// rotation, the previous ones. Empty in shared-key mode: a secret is never published.
pub fn document(state: &State) -> serde_json::Value {
    serde_json::json!({ "keys": state.trust.published_jwks() })
}
