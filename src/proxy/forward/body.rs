//! The request body on its way upstream: the client's bytes, streamed, with three duties
//! an intermediary has and a bare `Incoming` does not.
//!
//! - **`Expect: 100-continue`**: hyper's server answers `100 Continue` by itself the
//!   moment the body is first read. Forwarding the body at once would send that promise
//!   before the app has decided. The body is held back until the app says `100
//!   Continue` (seen through hyper's informational-response hook) or [`EXPECT_WAIT`]
//!   passes without a word from it (RFC 9110 §10.1.1 lets a client go on after a
//!   while; curl waits 1 s), or the app answers first: then the body is never read and
//!   the client gets the app's final status without a `100` before it.
//! - **Whose fault**: a body the client framed badly (a bad chunk size, a reset stream)
//!   makes the upstream request fail. [`BodyState::downstream_failed`] records that, so the
//!   failure is answered 400 and counted as the client's, not as an upstream error.
//! - **Lingering close**: when the app answers early (413, 401) and the rest of the
//!   upload is still arriving, closing the client connection with unread bytes makes
//!   the kernel send a reset that can destroy the answer before the client reads it.
//!   An unfinished body is drained in the background instead, bounded by
//!   [`LINGER_TOTAL`] and [`LINGER_IDLE`], as nginx's `lingering_close` does.
//! - **Trailers** (inbound): a trailer field with a protected name (`x-service-caller`,
//!   a signed header, in any spelling an app folds together) or a credential's (the
//!   token headers, `txn-token`: a trailer is never verified) is removed as the trailers
//!   pass. The head was scrubbed before any decision; trailers arrive after it, and some
//!   app servers merge them into the headers the app reads.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::http::{scrub, BoxError};

/// How long the body waits for the app's `100 Continue` before being sent anyway.
pub const EXPECT_WAIT: Duration = Duration::from_secs(1);
/// Longest time an unread request body is drained after the answer.
pub const LINGER_TOTAL: Duration = Duration::from_secs(30);
/// Draining stops when the client sends nothing for this long.
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// What the forwarding code learns from the body as it streams.
#[derive(Default)]
pub struct BodyState {
    downstream_failed: AtomicBool,
    continue_seen: AtomicBool,
    wake: tokio::sync::Notify,
}

impl BodyState {
    /// The client's body broke (bad framing, reset, disconnect) while being forwarded.
    pub fn downstream_failed(&self) -> bool {
        self.downstream_failed.load(Ordering::Acquire)
    }

    /// The app sent `100 Continue`: the held-back body may go.
    pub fn open(&self) {
        self.continue_seen.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

type Gate = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The client's request body as forwarded upstream.
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Present while the body is held back for `Expect: 100-continue`. In a mutex only
    /// to make the body `Sync`; it is reached through `&mut self` (`get_mut`), never locked.
    gate: Option<Mutex<Gate>>,
    state: Arc<BodyState>,
    /// Inbound: the signed-context names; protected names are removed from trailers.
    protected: Option<Arc<[HeaderName]>>,
}

impl RequestBody {
    /// Wraps `inner`; with `expect_continue` the body waits for [`BodyState::open`] or
    /// [`EXPECT_WAIT`]; with `protected` (the signed-context names), identity fields are
    /// removed from its trailers.
    pub fn new(
        inner: Incoming,
        expect_continue: bool,
        protected: Option<Arc<[HeaderName]>>,
    ) -> (Self, Arc<BodyState>) {
        let state = Arc::new(BodyState::default());
        let gate = expect_continue.then(|| {
            let state = state.clone();
            let wait: Gate = Box::pin(async move {
                if state.continue_seen.load(Ordering::Acquire) {
                    return;
                }
                let _ = tokio::time::timeout(EXPECT_WAIT, state.wake.notified()).await;
            });
            Mutex::new(wait)
        });
        let body = RequestBody {
            inner: Some(inner),
            gate,
            state: state.clone(),
            protected,
        };
        (body, state)
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(gate) = &mut this.gate {
            let gate = gate.get_mut().unwrap_or_else(|p| p.into_inner());
            match gate.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => this.gate = None,
            }
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.state.downstream_failed.store(true, Ordering::Release);
                this.inner = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(mut frame))) => {
                if let (Some(signed), Some(trailers)) = (&this.protected, frame.trailers_mut()) {
                    scrub(trailers, signed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // A body still held back was never promised a `100 Continue`: the client has
        // not sent it, and reading it now would make hyper send that `100` after all.
        if self.gate.is_some() {
            return;
        }
        if let Some(inner) = self.inner.take() {
            linger(inner);
        }
    }
}

/// Drains what is left of a request body in the background (see the module comment).
pub fn linger(body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut body = body;
        let deadline = tokio::time::Instant::now() + LINGER_TOTAL;
        loop {
            let idle = tokio::time::Instant::now() + LINGER_IDLE;
            match tokio::time::timeout_at(idle.min(deadline), body.frame()).await {
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
        }
    });
}

/// The upstream's response body, with one change: when the upstream breaks off before
/// the body ends (an app that answers an upload early and resets the connection, as Java's
/// `HttpServer` does, loses the body it had not sent yet), the error is held back for one
/// poll. hyper writes a response head together with its body's first frame, so an error
/// on the first poll dropped the head too and the client saw only a reset where a direct
/// call shows the app's status; on `Pending` hyper flushes what it holds, then the error
/// ends the exchange as before (the client sees the status, then the connection cut).
pub struct ResponseBody {
    inner: Incoming,
    failed: Option<hyper::Error>,
}

impl ResponseBody {
    pub fn new(inner: Incoming) -> Self {
        ResponseBody {
            inner,
            failed: None,
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e.into())));
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Err(e)) => {
                self.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => Poll::Ready(other.map(|r| r.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
