//! The upstream connection as hyper's HTTP/1.1 client sees it, with one change: a write
//! that fails because the app closed or reset the connection does not fail the exchange.
//!
//! An app that answers early (413, 401) and closes while the upload is still streaming
//! leaves its answer in our socket's receive buffer, followed by a reset. hyper's client
//! reads and writes in one loop; when the write error comes first, it fails the whole
//! exchange and the answer already received is lost (a 502 instead of the app's 413, in
//! about one request in ten against Node and Java apps). Here the first write error ends
//! writing: later writes are accepted and discarded, so hyper goes on to read what the
//! app sent. If the app sent nothing, reading fails just the same and the request is a
//! 502 as before. The connection does not go back to the pool: the peer has closed it,
//! which the pool sees (and an app answering early also says `connection: close`).
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// See the module comment.
pub struct ForgivingWrites<T> {
    inner: T,
    write_failed: Arc<AtomicBool>,
}

impl<T> ForgivingWrites<T> {
    pub fn new(inner: T) -> Self {
        ForgivingWrites {
            inner,
            write_failed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn failed(&self) -> bool {
        self.write_failed.load(Ordering::Relaxed)
    }
}

/// The peer is gone for writing; what it sent may still be readable.
fn peer_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<T: Read + Unpin> Read for ForgivingWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for ForgivingWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.failed() {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                tracing::debug!(error = %e, "upstream stopped reading; reading its answer");
                self.write_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                self.write_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.failed() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) if peer_closed(&e) => {
                self.write_failed.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
            }
            other => other,
        }
    }
}

impl<T: Connection> Connection for ForgivingWrites<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
