//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/.well-known/jwks.json`,
//! `/trust`. It shows what is loaded now and never a secret: public keys and kids only,
//! and nothing at all of a shared secret.
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::{full, json_response, not_found, Body};
use crate::proxy::answer::jwks;
use crate::proxy::state::State;

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
        "/.well-known/jwks.json" => jwks::response(state, req.method()),
        "/trust" => jwks::json(&state.trust.describe()),
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
