//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/.well-known/jwks.json`,
//! `/trust`. It shows what is loaded now and never a secret: public keys and kids only,
//! and nothing at all of a shared secret.
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::state::State;
use crate::http::{full, json_response, not_found, Body};

pub async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET only",
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.health.not_ready() {
            None => text(StatusCode::OK, "ready\n".into()),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            state.trust.update_scrape_metrics();
            state.metrics.ready.set(i64::from(state.is_ready()));
            let mut resp = Response::new(full(state.metrics.render()));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/.well-known/jwks.json" => jwks_response(state, req.method()),
        "/trust" => json(&state.trust.describe()),
        _ => not_found(),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The JWKS document as an answer (also on the inbound listener, `inbound.publish_jwks`):
/// `GET`/`HEAD` only, never cached longer than a minute so that a rotation is seen.
pub fn jwks_response(state: &State, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET only",
        );
    }
    let mut resp = json(&jwks(state));
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    resp
}

/// This service's public key(s): the current one and, for `trust.jwks_grace` after a
/// rotation, the previous ones. Empty in shared-key mode: a secret is never published.
pub fn jwks(state: &State) -> serde_json::Value {
    serde_json::json!({ "keys": state.trust.published_jwks() })
}
