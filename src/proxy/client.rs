//! The forwarding client: pooled keep-alive connections to upstreams, `https://` by
//! rustls (aws-lc), and the typed errors that become 502/504 in one place.
//!
//! Two pools, one per protocol, and each offers by ALPN only its own protocol: a TLS
//! upstream can never switch an HTTP/1.1 request to HTTP/2 behind the caller's back
//! (which broke every HTTP/1.1 app behind a TLS sidecar link). Which pool a request
//! takes is the caller's decision ([`Protocol`], from `upstream_protocol`).
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::http::Body;
use crate::tls::TlsSetupError;

/// Why a request did not get an upstream response. Mapped to a status in
/// [`super::rescue`], nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    /// The TLS handshake with an `https://` upstream failed: which check, then the chain.
    #[error("upstream TLS handshake failed ({check}): {chain}")]
    Tls { check: String, chain: String },
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream failed: {0}")]
    Failed(String),
}

/// Options of the forwarding client.
pub struct ClientOptions<'a> {
    pub connect_timeout: Duration,
    /// Until the response head arrives (then bodies stream without a limit).
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub ca_file: Option<&'a Path>,
    pub client_cert: Option<(&'a Path, &'a Path)>,
}

type Stream = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
type Connector = tower::util::MapResponse<
    HttpsConnector<HttpConnector>,
    fn(Stream) -> super::upstream_io::ForgivingWrites<Stream>,
>;
type Pool = Client<Connector, Body>;

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
}

impl Upstreams {
    pub fn new(opts: &ClientOptions<'_>) -> Result<Self, TlsSetupError> {
        let tls = crate::tls::client_config(opts.ca_file, opts.client_cert)?;
        let connector = |h2_only: bool| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(opts.connect_timeout));
            let b = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http();
            let https = if h2_only {
                b.enable_http2().wrap_connector(http)
            } else {
                b.enable_http1().wrap_connector(http)
            };
            let forgiving: fn(Stream) -> super::upstream_io::ForgivingWrites<Stream> =
                super::upstream_io::ForgivingWrites::new;
            tower::ServiceExt::map_response(https, forgiving)
        };
        let http1 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(opts.idle_timeout)
            .build(connector(false));
        let http2 = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(opts.idle_timeout)
            .http2_only(true)
            .build(connector(true));
        Ok(Upstreams {
            http1,
            http2,
            request_timeout: opts.request_timeout,
        })
    }

    /// Sends `req` (absolute URI); the response head must arrive within the request
    /// timeout. Errors are classified by type, never by message.
    // Boxed: one allocation, and the future's `Send` is proven here where the types are
    // concrete.
    pub fn send(
        &self,
        mut req: Request<Body>,
        protocol: Protocol,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Incoming>, UpstreamError>> + Send>> {
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

/// The whole cause chain in one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
