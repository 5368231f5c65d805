//! How the forwarding client reaches an upstream ([`Dial`]): by the request's host over
//! TCP, or always one place whatever the request's authority — the app's Unix socket, or
//! the app's address (so HTTP/2's `:authority` can be the host the client named). The
//! pools' connectors for each.
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

pub(super) type UnixIo = crate::proxy::forward::upstream_io::ForgivingWrites<TokioIo<UnixStream>>;

/// How the client reaches its upstreams.
#[derive(Clone, Debug, Default)]
pub enum Dial {
    /// By the request's host and port over TCP (happy eyeballs, TLS for `https://`).
    #[default]
    Net,
    /// Always this Unix socket (`inbound.upstream = "unix:///run/app/app.sock"`).
    Unix(Arc<Path>),
    /// Always this `http://` address over TCP (the app): a request's authority names the
    /// host the app is told (HTTP/2's `:authority`) and the pool, not where to connect.
    Pinned(Uri),
}

/// The network pools' connector: the request's URI, or always [`Dial::Pinned`]'s.
#[derive(Clone)]
pub(super) struct PinnedConnector<C> {
    pub(super) to: Option<Uri>,
    pub(super) inner: C,
}

impl<C: tower::Service<Uri>> tower::Service<Uri> for PinnedConnector<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        self.inner.call(self.to.clone().unwrap_or(dst))
    }
}

/// The pools' connector for [`Dial::Unix`]: every URI is the one socket.
#[derive(Clone)]
pub(super) struct UnixConnector {
    pub(super) path: Arc<Path>,
    pub(super) timeout: Duration,
}

impl tower::Service<Uri> for UnixConnector {
    type Response = UnixIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<UnixIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (path, timeout) = (self.path.clone(), self.timeout);
        Box::pin(async move {
            let stream = connect_unix(&path, timeout).await?;
            Ok(crate::proxy::forward::upstream_io::ForgivingWrites::new(
                TokioIo::new(stream),
            ))
        })
    }
}

/// A connection to the app's socket, the error naming the socket.
pub(super) async fn connect_unix(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("unix socket {}: {e}", path.display()))
    };
    match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
        Ok(r) => r.map_err(named),
        Err(_) => Err(named(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect timed out after {timeout:?}"),
        ))),
    }
}
