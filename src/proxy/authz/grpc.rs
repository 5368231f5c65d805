//! `envoy.service.auth.v3.Authorization/Check` (Envoy's `ext_authz` with a `grpc_service`):
//! the request's attributes in, [`super::check`]'s verdict out as Envoy applies it.
//!
//! - The header fields come from `header_map` when Envoy sends raw headers
//!   (`encode_raw_headers: true`: each field apart, as it arrived), else from the joined
//!   `headers` map (a field sent twice arrives as one, its values joined by `,`).
//! - Allowed: `OK`, `ok_response.headers` set (overwriting; a second value of one
//!   name appended), `headers_to_remove`, and `dynamic_metadata` (`caller`,
//!   `user`, `txn`) for Envoy's access log (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:caller)%`).
//! - Refused: the proxy's status, headers and body in `denied_response`, and the gRPC
//!   code that says the same (`UNAUTHENTICATED`, `PERMISSION_DENIED`,
//!   `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `INVALID_ARGUMENT`).
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as EnvoyHeader, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower::ServiceExt;

use super::{Allowed, Answered, Meta};
use crate::http::Body;
use crate::proxy::state::State;

/// The service on `authz.listen`.
#[derive(Clone)]
pub struct Authorizer {
    state: Arc<State>,
}

/// gRPC status codes.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// One request on the gRPC listener: `Check`, or gRPC's own `UNIMPLEMENTED`.
pub async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let server = AuthorizationServer::new(Authorizer {
        state: state.clone(),
    });
    let resp = match server.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    // A unary answer is one message and its trailers: collected (tonic's body is not
    // `Sync`, the listener's is), trailers kept.
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(whole) => Response::from_parts(parts, whole.map_err(|never| match never {}).boxed()),
        Err(status) => Response::from_parts(parts, crate::http::empty()).map(|b| {
            tracing::debug!(error = %status, "authz: the gRPC answer could not be written");
            b
        }),
    }
}

#[tonic::async_trait]
impl Authorization for Authorizer {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let Some(side) = &self.state.inbound else {
            return Err(tonic::Status::unavailable("no inbound rules"));
        };
        let check = request.into_inner();
        let Some(http) = check
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
        else {
            return Err(tonic::Status::invalid_argument(
                "attributes.request.http is missing",
            ));
        };
        let version = super::version(&http.protocol);
        let req = match &http.header_map {
            Some(map) => super::request(
                &http.method,
                &http.path,
                &http.host,
                version,
                map.headers.iter().map(|h| {
                    let value = match h.raw_value.is_empty() {
                        true => h.value.as_bytes(),
                        false => &h.raw_value[..],
                    };
                    (h.key.as_str(), value)
                }),
            ),
            None => super::request(
                &http.method,
                &http.path,
                &http.host,
                version,
                http.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            ),
        };
        let answered = match req {
            Ok(req) => super::check(&self.state, side, req).await,
            Err(failure) => super::refusal(&self.state, failure).await,
        };
        answered.count(&self.state, "grpc");
        Ok(tonic::Response::new(response(answered)))
    }
}

fn response(answered: Answered) -> CheckResponse {
    match answered {
        Answered::Allowed(Allowed { set, remove, meta }) => {
            let mut headers: Vec<HeaderValueOption> = Vec::with_capacity(set.len());
            for (i, (name, value)) in set.iter().enumerate() {
                // Overwrite the first value of a name, append the others.
                let again = i > 0 && set[i - 1].0 == *name;
                headers.push(option(name, value, again));
            }
            CheckResponse {
                status: Some(status(OK, "")),
                dynamic_metadata: metadata(&meta),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove: remove.iter().map(|n| n.as_str().to_owned()).collect(),
                    ..Default::default()
                })),
            }
        }
        Answered::Refused(resp, meta) => {
            let code = match resp.status().as_u16() {
                400 | 405 => INVALID_ARGUMENT,
                401 => UNAUTHENTICATED,
                429 => RESOURCE_EXHAUSTED,
                503 => UNAVAILABLE,
                _ => PERMISSION_DENIED,
            };
            let (parts, body) = resp.into_parts();
            let headers = parts
                .headers
                .iter()
                .filter(|(n, _)| *n != http::header::CONTENT_LENGTH)
                .map(|(n, v)| option(n, v, false))
                .collect();
            CheckResponse {
                status: Some(status(code, parts.status.canonical_reason().unwrap_or(""))),
                dynamic_metadata: metadata(&meta),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(parts.status.as_u16()),
                    }),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })),
            }
        }
    }
}

fn status(code: i32, message: &str) -> rpc::Status {
    rpc::Status {
        code,
        message: message.to_owned(),
        details: Vec::new(),
    }
}

/// A header to set: overwriting every value Envoy has for the name, or appended.
fn option(name: &HeaderName, value: &HeaderValue, append: bool) -> HeaderValueOption {
    let (value, raw_value) = match value.to_str() {
        Ok(v) => (v.to_owned(), Vec::new()),
        Err(_) => (String::new(), value.as_bytes().to_vec()),
    };
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: name.as_str().to_owned(),
            value,
            raw_value,
        }),
        append_action: match append {
            true => HeaderAppendAction::AppendIfExistsOrAdd,
            false => HeaderAppendAction::OverwriteIfExistsOrAdd,
        } as i32,
        ..Default::default()
    }
}

/// `caller`, `user`, `txn` (those the request has) for Envoy's access log.
fn metadata(meta: &Meta) -> Option<Struct> {
    let fields: std::collections::BTreeMap<String, Value> = [
        ("caller", &meta.caller),
        ("user", &meta.user),
        ("txn", &meta.txn),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        let v = v.as_ref()?;
        Some((
            k.to_owned(),
            Value {
                kind: Some(Kind::StringValue(v.clone())),
            },
        ))
    })
    .collect();
    (!fields.is_empty()).then(|| Struct {
        fields: fields.into_iter().collect(),
    })
}
