//! The forwarding client: pooled keep-alive connections to upstreams, `https://` by
//! rustls (aws-lc), and the typed errors that become 502/504 in one place.
//!
//! Two pools, one per protocol, and each offers by ALPN only its own protocol: a TLS
//! upstream can never switch an HTTP/1.1 request to HTTP/2 behind the caller's back
//! (which broke every HTTP/1.1 app behind a TLS sidecar link). Which pool a request
//! takes is the caller's decision ([`Protocol`], from `upstream_protocol`).
//!
//! How connections are made is [`Dial`] (`dial.rs`): by host name over TCP (TLS for `https://`), or
//! — an app listening on a Unix socket in a volume it shares with the sidecar, and on no
//! TCP port anyone else could reach — always that socket, whatever the request's
//! authority (which then only names the pool and the kept connection).
pub use super::dial::Dial;
use super::dial::{connect_unix, PinnedConnector, UnixConnector};
pub use crate::proxy::rescue::UpstreamError;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Sleep;

use crate::http::{error_chain, Body};
use crate::tls::TlsSetupError;

/// Options of the forwarding client.
pub struct ClientOptions<'a> {
    pub connect_timeout: Duration,
    /// Until the response head arrives (then bodies stream without a limit).
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub ca_file: Option<&'a Path>,
    pub client_cert: Option<(&'a Path, &'a Path)>,
    pub dial: Dial,
}

type Stream = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
type Connector = PinnedConnector<
    tower::util::MapResponse<
        HttpsConnector<HttpConnector>,
        fn(Stream) -> crate::proxy::forward::upstream_io::ForgivingWrites<Stream>,
    >,
>;

/// One protocol's pool, over the network or over the Unix socket.
#[derive(Clone)]
enum Pool {
    Net(Client<Connector, Body>),
    Unix(Client<UnixConnector, Body>),
}

impl Pool {
    fn request(&self, req: Request<Body>) -> ResponseFuture {
        match self {
            Pool::Net(c) => c.request(req),
            Pool::Unix(c) => c.request(req),
        }
    }
}

/// One request's exchange with its upstream, until the response head.
pub type Exchange<'a> =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, UpstreamError>> + Send + 'a>>;

/// The protocol a request is sent upstream in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The client: one hyper-util pool per protocol, a timeout to the response head around
/// pool.
#[derive(Clone)]
pub struct Upstreams {
    http1: Pool,
    http2: Pool,
    request_timeout: Duration,
    connect_timeout: Duration,
    dial: Dial,
    /// The TCP connector the pools wrap, for the kept connections' own dials.
    tcp: HttpConnector,
}

/// Connection affinity: the plain HTTP/1.1 upstream connection one downstream connection
/// keeps for its requests, instead of a pool checkout per request. A downstream
/// HTTP/1.1 connection sends one request at a time, so one upstream connection serves
/// it; HTTP/2 downstream connections (several requests at once: the forwarder does not
/// offer them affinity), a request that finds the kept connection taken, upgrades,
/// HTTP/2 and TLS upstreams use the pools. Dropped with the downstream connection,
/// which closes the upstream one.
#[derive(Default)]
pub struct Affinity(std::sync::Mutex<Held>);

#[derive(Default)]
struct Held {
    conn: Option<(Authority, SendRequest<Body>)>,
    /// A request has the connection (or is opening it): another one at the same time
    /// takes the pool instead of opening a connection that would replace this one.
    busy: bool,
    /// The request timeout's timer, reused from one request to the next: moving a
    /// registered timer's deadline later is one atomic operation in tokio, where a new
    /// timer per request is an insertion into and a removal from the timer wheel.
    clock: Option<Pin<Box<Sleep>>>,
}

/// What a downstream connection holds for a request to one upstream.
enum Kept {
    /// Its connection to this upstream (taken out; put back after the exchange).
    This(SendRequest<Body>),
    /// Nothing yet: open one and keep it.
    Nothing,
    /// A connection to another upstream, or this one in use by another request: the
    /// request takes the pool and the kept one stays, so an app alternating destinations
    /// through one proxy connection (`HTTP_PROXY`) does not get a new connection per
    /// request, and parallel requests do not replace (close) each other's.
    Other,
}

impl Affinity {
    /// One lock per request, and one after it.
    fn take(&self, to: &Authority) -> (Kept, Option<Pin<Box<Sleep>>>) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held.busy {
            return (Kept::Other, None);
        }
        let kept = match held.conn.take() {
            Some((a, sender)) if a == *to => Kept::This(sender),
            None => Kept::Nothing,
            other => {
                held.conn = other;
                return (Kept::Other, None);
            }
        };
        held.busy = true;
        (kept, held.clock.take())
    }

    /// After an exchange: the connection, if it can serve the next request, and the timer.
    fn put(&self, conn: Option<(Authority, SendRequest<Body>)>, clock: Pin<Box<Sleep>>) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_some() {
            held.conn = conn;
        }
        held.busy = false;
        held.clock = Some(clock);
    }
}

/// How long a kept connection may take to finish its previous exchange before a new
/// one is opened instead (it is normally ready at once: the previous response was read
/// to its end before the downstream client could send the next request).
const READY_WAIT: Duration = Duration::from_millis(50);

impl Upstreams {
    pub fn new(opts: &ClientOptions<'_>) -> Result<Self, TlsSetupError> {
        let tls = crate::tls::client_config(opts.ca_file, opts.client_cert)?;
        // One TCP connector for the pools and the kept connections alike (happy
        // eyeballs, the connect timeout, nodelay, one kind of error).
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(opts.connect_timeout));
        let connector = |h2_only: bool| {
            let http = tcp.clone();
            let b = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            let https = if h2_only {
                b.enable_http2().wrap_connector(http)
            } else {
                b.enable_http1().wrap_connector(http)
            };
            let forgiving: fn(
                Stream,
            )
                -> crate::proxy::forward::upstream_io::ForgivingWrites<Stream> =
                crate::proxy::forward::upstream_io::ForgivingWrites::new;
            PinnedConnector {
                to: match &opts.dial {
                    Dial::Pinned(to) => Some(to.clone()),
                    _ => None,
                },
                inner: tower::ServiceExt::map_response(https, forgiving),
            }
        };
        let builder = |h2_only: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(opts.idle_timeout)
                .http2_only(h2_only);
            b
        };
        let pool = |h2_only: bool| match &opts.dial {
            Dial::Net | Dial::Pinned(_) => Pool::Net(builder(h2_only).build(connector(h2_only))),
            Dial::Unix(path) => Pool::Unix(builder(h2_only).build(UnixConnector {
                path: path.clone(),
                timeout: opts.connect_timeout,
            })),
        };
        Ok(Upstreams {
            http1: pool(false),
            http2: pool(true),
            request_timeout: opts.request_timeout,
            connect_timeout: opts.connect_timeout,
            dial: opts.dial.clone(),
            tcp,
        })
    }

    /// Whether where a request goes is independent of its URI's authority (an app on a
    /// Unix socket, or at a pinned address): the authority can then be the one the client
    /// named.
    pub fn dials_fixed(&self) -> bool {
        !matches!(self.dial, Dial::Net)
    }

    /// Sends `req` (absolute URI); the response head must arrive within the request
    /// timeout. Errors are classified by type, never by message. With `affinity`, a
    /// plain HTTP/1.1 request goes over the downstream connection's own upstream
    /// connection (see [`Affinity`]).
    // Boxed: one allocation, and the future's `Send` is proven here where the types are
    // concrete.
    pub fn send<'a>(
        &'a self,
        mut req: Request<Body>,
        protocol: Protocol,
        affinity: Option<&'a Affinity>,
    ) -> Exchange<'a> {
        if let Some(affinity) = affinity {
            if protocol == Protocol::Http1 && req.uri().scheme() == Some(&Scheme::HTTP) {
                if let Some(to) = req.uri().authority().cloned() {
                    match affinity.take(&to) {
                        (Kept::Other, _) => {}
                        (Kept::This(sender), clock) => {
                            return Box::pin(self.send_affine(
                                affinity,
                                to,
                                Some(sender),
                                clock,
                                req,
                            ))
                        }
                        (Kept::Nothing, clock) => {
                            return Box::pin(self.send_affine(affinity, to, None, clock, req))
                        }
                    }
                }
            }
        }
        // `request` borrows the pool (no `Client` clone per request) and returns a
        // 'static future.
        let pool = match protocol {
            Protocol::Http2 => {
                *req.version_mut() = Version::HTTP_2;
                &self.http2
            }
            Protocol::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                &self.http1
            }
        };
        let response = pool.request(req);
        let request_timeout = self.request_timeout;
        Box::pin(async move {
            match tokio::time::timeout(request_timeout, response).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(classify(&e)),
                Err(_) => Err(UpstreamError::Timeout(request_timeout)),
            }
        })
    }
}

/// What an affine exchange gives: the response head, and the connection again if it can
/// serve the next request.
type Affine = (
    Result<Response<Incoming>, UpstreamError>,
    Option<(Authority, SendRequest<Body>)>,
);

impl Upstreams {
    async fn send_affine(
        &self,
        affinity: &Affinity,
        to: Authority,
        kept: Option<SendRequest<Body>>,
        clock: Option<Pin<Box<Sleep>>>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // What the pool's client does for HTTP/1.1: origin-form target, a Host header.
        let origin = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(origin);
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(to.as_str()) {
                req.headers_mut().insert(HOST, v);
            }
        }
        let request_timeout = self.request_timeout;
        let deadline = tokio::time::Instant::now() + request_timeout;
        let mut clock = match clock {
            Some(mut clock) => {
                clock.as_mut().reset(deadline);
                clock
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        // The response head, and the connection again if it can serve the next request.
        let exchange = self.exchange(to, kept, req);
        // `tokio::time::timeout`, with the kept timer.
        let mut exchange = std::pin::pin!(exchange);
        let (result, conn) = std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = exchange.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            clock
                .as_mut()
                .poll(cx)
                .map(|()| (Err(UpstreamError::Timeout(request_timeout)), None))
        })
        .await;
        affinity.put(conn, clock);
        result
    }

    /// One exchange on the kept connection (or a new one), sent again on a new one after
    /// HTTP/1.1's keep-alive race where that is safe; the response head, and the
    /// connection if it can serve the next request.
    async fn exchange(
        &self,
        to: Authority,
        kept: Option<SendRequest<Body>>,
        mut req: Request<Body>,
    ) -> Affine {
        let mut kept = match kept {
            // Normally ready at once: no timer for the wait.
            Some(sender) if sender.is_ready() => Some(sender),
            Some(mut sender) => match tokio::time::timeout(READY_WAIT, sender.ready()).await {
                Ok(Ok(())) => Some(sender),
                _ => None,
            },
            None => None,
        };
        loop {
            let reused = kept.is_some();
            let mut sender = match kept.take() {
                Some(sender) => sender,
                None => match self.connect(&to).await {
                    Ok(sender) => sender,
                    Err(e) => return (Err(e), None),
                },
            };
            // On a kept connection, an idempotent request without a body keeps a
            // copy of its head: if the app closed the connection just as the request
            // went out (HTTP/1.1's keep-alive race), it is sent again on a new one
            // (RFC 9112 §9.3.1).
            let spare = (reused && Self::retryable(&req)).then(|| HeadCopy::of(&req));
            match sender.try_send_request(req).await {
                Ok(resp) => return (Ok(resp), Some((to, sender))),
                Err(mut e) => {
                    if reused {
                        // Not sent at all: it goes as it is.
                        if let Some(again) = e.take_message() {
                            req = again;
                            continue;
                        }
                        let closed = e.error().is_incomplete_message()
                            || e.error().is_canceled()
                            || e.error().is_closed();
                        if let (Some(copy), true) = (spare, closed) {
                            if let Some(again) = copy.request() {
                                req = again;
                                continue;
                            }
                        }
                    }
                    let failed = UpstreamError::Failed(error_chain(&e.into_error()));
                    return (Err(failed), None);
                }
            }
        }
    }

    /// Safe to send again after a connection closed under it: an idempotent method
    /// (RFC 9110 §9.2.2) and no body to replay.
    fn retryable(req: &Request<Body>) -> bool {
        use http::Method;
        matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) && hyper::body::Body::is_end_stream(req.body())
    }

    /// A new plain HTTP/1.1 connection to `to` (or to the socket), its connection task
    /// spawned.
    async fn connect(&self, to: &Authority) -> Result<SendRequest<Body>, UpstreamError> {
        if let Dial::Unix(path) = &self.dial {
            let stream = connect_unix(path, self.connect_timeout)
                .await
                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
            return handshake(stream).await;
        }
        let uri = match &self.dial {
            Dial::Pinned(app) => app.clone(),
            _ => Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(to.clone())
                .path_and_query("/")
                .build()
                .map_err(|e| UpstreamError::Connect(e.to_string()))?,
        };
        let stream = tower::ServiceExt::oneshot(self.tcp.clone(), uri)
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&e)))?
            .into_inner();
        handshake(stream).await
    }
}

/// HTTP/1.1 over a new connection, its connection task spawned.
async fn handshake<S>(stream: S) -> Result<SendRequest<Body>, UpstreamError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = crate::proxy::forward::upstream_io::ForgivingWrites::new(TokioIo::new(stream));
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| UpstreamError::Connect(error_chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        match find_rustls_error(e) {
            Some(tls) => UpstreamError::Tls {
                check: tls_check(tls),
                chain: error_chain(e),
            },
            None => UpstreamError::Connect(error_chain(e)),
        }
    } else {
        UpstreamError::Failed(error_chain(e))
    }
}

/// The rustls error somewhere in a cause chain. An `io::Error` hides its inner error from
/// `source()` (it returns the inner error's source), so it is looked into by `get_ref`.
fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = find_rustls_error(inner) {
                return Some(tls);
            }
        }
        next = e.source();
    }
    None
}

/// Which check of the upstream's certificate failed, in words an operator acts on.
fn tls_check(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "certificate not signed by a trusted CA (outbound.ca_file or the system roots)"
                    .into()
            }
            C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate not valid for the upstream's host name".into()
            }
            C::Revoked => "certificate revoked".into(),
            C::BadSignature => "certificate signature invalid".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "certificate not valid for TLS server authentication".into()
            }
            other => format!("certificate rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the upstream refused the handshake (alert {alert:?}; client certificate?)")
        }
        other => format!("handshake failed: {other}"),
    }
}

/// A request head copied into one flat buffer (method, target, then each field's name and
/// value, each behind its length) for sending it again after HTTP/1.1's keep-alive race.
/// One allocation and a memcpy per request, and no reference into the downstream
/// connection's read buffer (a cloned `HeaderMap` shares it, which made hyper allocate a
/// second read buffer for every connection waiting on the app). Read back only when a
/// request is actually sent again.
struct HeadCopy(Vec<u8>);

impl HeadCopy {
    fn of<B>(req: &Request<B>) -> Self {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let size = req
            .headers()
            .iter()
            .map(|(n, v)| 8 + n.as_str().len() + v.len())
            .sum::<usize>();
        let mut buf = Vec::with_capacity(8 + req.method().as_str().len() + pq.len() + size);
        let mut put = |bytes: &[u8]| {
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        };
        put(req.method().as_str().as_bytes());
        put(pq.as_bytes());
        for (name, value) in req.headers() {
            put(name.as_str().as_bytes());
            put(value.as_bytes());
        }
        HeadCopy(buf)
    }

    /// The request again, bodiless, HTTP/1.1 (`None` only if the copy were corrupt).
    fn request(&self) -> Option<Request<Body>> {
        let mut rest = self.0.as_slice();
        let mut next = || -> Option<&[u8]> {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let (piece, tail) = tail.split_at_checked(len)?;
            rest = tail;
            Some(piece)
        };
        let mut req = Request::new(crate::http::empty());
        *req.method_mut() = http::Method::from_bytes(next()?).ok()?;
        *req.uri_mut() = Uri::try_from(next()?).ok()?;
        *req.version_mut() = Version::HTTP_11;
        while let Some(name) = next() {
            let name = http::HeaderName::from_bytes(name).ok()?;
            let value = HeaderValue::from_bytes(next()?).ok()?;
            req.headers_mut().append(name, value);
        }
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_head_comes_back_whole() {
        let mut req = Request::new(crate::http::empty());
        *req.method_mut() = http::Method::OPTIONS;
        *req.uri_mut() = "http://app:8080/a/b?x=1&y=%20".parse().unwrap();
        let h = req.headers_mut();
        h.append("accept", HeaderValue::from_static("text/plain"));
        h.append("x-one", HeaderValue::from_static("1"));
        h.append("accept", HeaderValue::from_static("application/json"));
        h.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9 \t!").unwrap());
        h.append("x-empty", HeaderValue::from_static(""));
        let again = HeadCopy::of(&req).request().expect("round trip");
        assert_eq!(again.method(), http::Method::OPTIONS);
        assert_eq!(again.uri(), "/a/b?x=1&y=%20", "origin form, as sent");
        assert_eq!(again.version(), Version::HTTP_11);
        let fields = |r: &Request<Body>| -> Vec<(String, Vec<u8>)> {
            r.headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            fields(&again),
            fields(&req),
            "every field, repeats in order"
        );
        assert!(hyper::body::Body::is_end_stream(again.body()));
    }

    /// As tokio-rustls reports it: the rustls error inside an `io::Error`, under the
    /// connector's own error.
    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_failed_certificate_check_is_found_and_named() {
        let cases = [
            (
                rustls::CertificateError::UnknownIssuer,
                "not signed by a trusted CA",
            ),
            (rustls::CertificateError::Expired, "expired"),
            (rustls::CertificateError::NotValidForName, "host name"),
        ];
        for (cert, words) in cases {
            let io = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(cert),
            );
            let outer = Outer(io);
            let found = find_rustls_error(&outer).expect("found through io::Error");
            assert!(tls_check(found).contains(words), "{}", tls_check(found));
        }
        let plain = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(find_rustls_error(&plain).is_none());
    }
}
