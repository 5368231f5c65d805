//! gRPC end to end through two sidecars, with tonic as a real gRPC client and server:
//! unary and bidirectional streaming calls, trailers (grpc-status) intact, and the caller
//! identity visible to the server as metadata.
use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::StreamExt as _;
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(string, tag = "2")]
    caller: String,
}

const SAY: &str = "/test.Echo/Say";
const CHAT: &str = "/test.Echo/Chat";
const FAIL: &str = "/test.Echo/Fail";

fn caller_of<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("x-service-caller")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

async fn grpc_app(
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
    let resp = match path.as_str() {
        SAY => {
            let svc = tower::service_fn(|r: Request<Msg>| async move {
                let caller = caller_of(&r);
                let m = r.into_inner();
                Ok::<_, Status>(Response::new(Msg {
                    text: format!("echo: {}", m.text),
                    caller,
                }))
            });
            grpc.unary(svc, req).await
        }
        FAIL => {
            let svc = tower::service_fn(|_r: Request<Msg>| async move {
                Err::<Response<Msg>, _>(Status::permission_denied("no way"))
            });
            grpc.unary(svc, req).await
        }
        CHAT => {
            let svc = tower::service_fn(|r: Request<Streaming<Msg>>| async move {
                let caller = caller_of(&r);
                let out = r.into_inner().map(move |m| {
                    m.map(|m| Msg {
                        text: m.text.to_uppercase(),
                        caller: caller.clone(),
                    })
                });
                Ok::<_, Status>(Response::new(out))
            });
            grpc.streaming(svc, req).await
        }
        _ => Status::unimplemented("no such method").into_http(),
    };
    Ok(resp)
}

async fn spawn_grpc_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(grpc_app))
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn grpc_unary_and_streaming_through_two_sidecars() {
    let keys = Keys::new();
    let orders = keys.make("orders");
    let billing = keys.make("billing");
    let trusted = keys.trust_dir("trusted", &[&orders]);
    let app = spawn_grpc_app().await;
    let billing_side = Conf::new("billing", &billing.private)
        .inbound(&trusted, app)
        .start()
        .await;
    let orders_side = Conf::new("orders", &orders.private)
        .route("billing", format!("http://{}", billing_side.inbound()))
        .start()
        .await;

    // The app dials its sidecar and names the service it wants in :authority.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", orders_side.outbound()))
            .unwrap()
            .origin("http://billing".parse().unwrap())
            .connect()
            .await
            .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);

    for i in 0..3 {
        grpc.ready().await.unwrap();
        let resp = grpc
            .unary(
                Request::new(Msg {
                    text: format!("hi {i}"),
                    caller: String::new(),
                }),
                PathAndQuery::from_static(SAY),
                ProstCodec::<Msg, Msg>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.text, format!("echo: hi {i}"));
        assert_eq!(resp.caller, "orders");
    }

    // An error status travels in the trailers.
    grpc.ready().await.unwrap();
    let err = grpc
        .unary(
            Request::new(Msg::default()),
            PathAndQuery::from_static(FAIL),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "no way");

    // Bidirectional streaming.
    grpc.ready().await.unwrap();
    let outgoing = futures_util::stream::iter(["one", "two", "three", "four"].map(|t| Msg {
        text: t.into(),
        caller: String::new(),
    }));
    let mut incoming = grpc
        .streaming(
            Request::new(outgoing),
            PathAndQuery::from_static(CHAT),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = incoming.message().await.unwrap() {
        assert_eq!(m.caller, "orders");
        got.push(m.text);
    }
    assert_eq!(got, ["ONE", "TWO", "THREE", "FOUR"]);

    // A gRPC call without a token is refused by billing's sidecar with HTTP 401, which a
    // gRPC client sees as an error status.
    let direct =
        tonic::transport::Endpoint::from_shared(format!("http://{}", billing_side.inbound()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut grpc = tonic::client::Grpc::new(direct);
    grpc.ready().await.unwrap();
    let err = grpc
        .unary(
            Request::new(Msg::default()),
            PathAndQuery::from_static(SAY),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}
