//! The baseline of `benches/load.sh`: the libraries trustgate is built on (tokio, hyper
//! 1.x, hyper-util's auto server and pooled client) forwarding requests with nothing else
//! on the path — no checks, no header rewriting, no metrics, no logs. Whatever trustgate
//! costs above this is its own.
//!
//! Same runtime choice as trustgate: single-threaded when the process may use one CPU.
//!
//!     cargo build --release --example minimal_proxy
//!     target/release/examples/minimal_proxy 127.0.0.1:9000 127.0.0.1:8080 [h2]
//!
//! With `h2` the upstream is spoken to in HTTP/2 with prior knowledge (an h2c app; the
//! `host` field dropped, as RFC 9113 §8.3.1 wants), else HTTP/1.1; clients in either.
use std::convert::Infallible;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt as _, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1).cloned(), args.get(2).cloned()) else {
        eprintln!("usage: minimal_proxy LISTEN UPSTREAM (host:port each)");
        std::process::exit(2);
    };
    let one_cpu = std::thread::available_parallelism().map_or(true, |n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build().expect("runtime");
    let h2 = args.get(3).is_some_and(|a| a == "h2");
    runtime.block_on(serve(listen, upstream, h2));
}

async fn serve(listen: String, upstream: String, h2: bool) {
    let listener = TcpListener::bind(&listen).await.expect("bind");
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let pq = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                let uri: Result<Uri, _> = format!("http://{upstream}{pq}").parse();
                async move {
                    let Ok(uri) = uri else {
                        return Ok::<_, Infallible>(status(StatusCode::BAD_REQUEST));
                    };
                    *req.uri_mut() = uri;
                    if h2 {
                        req.headers_mut().remove(http::header::HOST);
                        *req.version_mut() = http::Version::HTTP_2;
                    } else {
                        *req.version_mut() = http::Version::HTTP_11;
                    }
                    Ok(match client.request(req).await {
                        Ok(resp) => resp.map(|b| b.boxed()),
                        Err(_) => status(StatusCode::BAD_GATEWAY),
                    })
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|e: Infallible| match e {}).boxed());
    *resp.status_mut() = code;
    resp
}
