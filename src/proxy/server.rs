//! Listeners and connections: accept with a connection limit, terminate TLS where
//! configured, serve HTTP/1.1 (keep-alive, upgrades) and HTTP/2 (prior knowledge or ALPN)
//! with a header-read timeout and a per-connection watchdog, and drain gracefully when
//! told to (the order is [`super::Proxy::serve`]'s).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::{inbound, outbound};
use crate::proxy::forward::Downstream;
use crate::proxy::state::State;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Inbound,
    Outbound,
    Admin,
    /// `authz.listen`: Envoy's `Authorization/Check` over gRPC.
    Authz,
    /// `authz.http_listen`: Envoy's HTTP mode.
    AuthzHttp,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
            Side::Admin => "admin",
            Side::Authz => "authz",
            Side::AuthzHttp => "authz_http",
        }
    }
}

fn http_builder(state: &State) -> auto::Builder<TokioExecutor> {
    let limits = &state.cfg.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

pub(super) async fn run_listener(
    side: Side,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&state));
    // Connections are told to finish through `conns_stop`; each holds a clone of
    // `conns_done`, so `recv()` returns `None` once the last one has ended.
    let (conns_stop_tx, conns_stop) = watch::channel(false);
    let (conns_done, all_done) = tokio::sync::mpsc::channel::<()>(1);
    let open = Arc::new(AtomicUsize::new(0));
    let limit = Arc::new(Semaphore::new(state.cfg.limits.max_connections));
    let gauge = state
        .metrics
        .open_connections
        .with_label_values(&[side.name()]);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: log and keep accepting; the
                // short pause keeps a persistent error from spinning a core.
                tracing::warn!(listener = side.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(
                listener = side.name(),
                %peer,
                max = state.cfg.limits.max_connections,
                "connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let slot = Slot::take(permit, gauge.clone(), open.clone(), conns_done.clone());
        let limits = &state.cfg.limits;
        // One clock from accept: the TLS handshake, protocol detection (the HTTP/2
        // preface) and the first request head all fit in header_read_timeout. Once a
        // connection has served requests, it may idle longer than the upstream pools of
        // peer sidecars keep theirs (limits.idle_timeout), so the client side always
        // closes first and never races a server-side close.
        let activity = Activity::new(
            limits.header_read_timeout,
            limits.idle_timeout + limits.header_read_timeout,
        );
        let (state, builder, conn_stop) = (state.clone(), builder.clone(), conns_stop.clone());
        spawn_conn(
            side,
            peer,
            stream,
            &tls,
            (state, builder, conn_stop),
            activity,
            slot,
        );
    }
    drop(listener);
    drop(conns_done);
    drain(side, &state, &open, conns_stop_tx, all_done).await;
}

/// A connection's task. Plain and TLS connections are tasks of their own types: a task
/// is as large as its future, and a plain connection's need not hold room for a TLS
/// session.
fn spawn_conn(
    side: Side,
    peer: SocketAddr,
    stream: tokio::net::TcpStream,
    tls: &Option<TlsAcceptor>,
    (state, builder, conn_stop): (
        Arc<State>,
        Arc<auto::Builder<TokioExecutor>>,
        watch::Receiver<bool>,
    ),
    activity: Arc<Activity>,
    slot: Slot,
) {
    match tls {
        None => {
            tokio::spawn(async move {
                let conn = Conn {
                    side,
                    peer,
                    tls: false,
                };
                let io = TokioIo::new(stream);
                serve_conn(conn, &builder, io, state, activity, conn_stop).await;
                drop(slot);
            });
        }
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout_at(activity.first_deadline(), handshake).await {
                    Ok(Ok(tls_stream)) => {
                        let conn = Conn {
                            side,
                            peer,
                            tls: true,
                        };
                        let io = TokioIo::new(tls_stream);
                        serve_conn(conn, &builder, io, state, activity, conn_stop).await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
                drop(slot);
            });
        }
    }
}

/// The listener is closed: serve what has arrived for a short, bounded moment, then tell
/// every connection to finish and wait for them, at most `shutdown_grace`.
async fn drain(
    side: Side,
    state: &State,
    open: &AtomicUsize,
    conns_stop_tx: watch::Sender<bool>,
    mut all_done: tokio::sync::mpsc::Receiver<()>,
) {
    let grace = state.cfg.limits.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    // Settle: an HTTP/1.1 connection whose request bytes have arrived but are not parsed
    // yet counts as idle, and a graceful shutdown would close it unanswered. Connections
    // keep being served for a short, bounded moment first (cut short once none is open),
    // so every request already sent on an accepted connection is answered.
    // `all_done` ends once the last connection's slot is dropped: no polling.
    let settle_end = tokio::time::Instant::now() + SETTLE.min(grace / 2);
    if open.load(Ordering::Acquire) == 0
        || tokio::time::timeout_at(settle_end, all_done.recv())
            .await
            .is_ok()
    {
        return;
    }
    let _ = conns_stop_tx.send(true);
    tokio::select! {
        _ = all_done.recv() => {}
        _ = tokio::time::sleep_until(deadline) => {
            tracing::warn!(listener = side.name(), ?grace, "shutdown grace expired; closing remaining connections");
        }
    }
}

/// A connection's place under the listener's limit, held by its task: counted in the
/// open-connections gauge and in `open` while it lives; dropping it (the task ended, or
/// was dropped at shutdown) frees the place and tells `run_listener` one fewer is left.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
    open: Arc<AtomicUsize>,
    _done: tokio::sync::mpsc::Sender<()>,
}

impl Slot {
    fn take(
        permit: tokio::sync::OwnedSemaphorePermit,
        gauge: prometheus::IntGauge,
        open: Arc<AtomicUsize>,
        done: tokio::sync::mpsc::Sender<()>,
    ) -> Self {
        gauge.inc();
        open.fetch_add(1, Ordering::AcqRel);
        Slot {
            _permit: permit,
            gauge,
            open,
            _done: done,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// How long connections keep being served after the listeners close, before idle ones
/// are closed (see `run_listener`).
const SETTLE: Duration = Duration::from_millis(500);

/// Who is on the other end of a connection.
#[derive(Clone, Copy)]
struct Conn {
    side: Side,
    peer: SocketAddr,
    tls: bool,
}

/// When a connection last did something useful, for the watchdog in [`serve_conn`].
///
/// hyper's own `header_read_timeout` starts only once HTTP/1.1 has been detected, and
/// HTTP/2 has none: a socket that sends nothing, half a preface, or a HEADERS frame
/// without END_HEADERS would otherwise hold a connection slot for as long as it likes.
struct Activity {
    start: tokio::time::Instant,
    /// For the first request head (from accept).
    timeout: Duration,
    /// Without a request in flight, once at least one was served.
    idle_timeout: Duration,
    /// Milliseconds after `start` when the last request ended (or began, while none had).
    last_ms: AtomicU64,
    inflight: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    fn new(timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Activity {
            start: tokio::time::Instant::now(),
            timeout,
            idle_timeout,
            last_ms: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        })
    }

    fn first_deadline(&self) -> tokio::time::Instant {
        self.start + self.timeout
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request head has arrived; the guard marks its end.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves when the connection has had no request in flight for its timeout:
    /// `true` if it never delivered a request at all.
    async fn idle(&self) -> bool {
        loop {
            if self.inflight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(self.timeout).await;
                continue;
            }
            let timeout = if self.requests.load(Ordering::Relaxed) == 0 {
                self.timeout
            } else {
                self.idle_timeout
            };
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let wake = last + timeout;
            if tokio::time::Instant::now() >= wake && self.inflight.load(Ordering::Acquire) == 0 {
                return self.requests.load(Ordering::Relaxed) == 0;
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in flight on a connection (dropped when its response head is produced,
/// or when the client gives up on it).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_conn<I>(
    who: Conn,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    state: Arc<State>,
    activity: Arc<Activity>,
    stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let tracker = activity.clone();
    // One per connection: its peer, and the upstream connection its requests keep.
    let down = Arc::new(Downstream::new(who.peer, who.tls));
    // hyper keeps the future of a connection's request in an allocation made once per
    // connection and sized for it: what the steps hold at once is paid per connection.
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        let down = down.clone();
        let in_flight = tracker.begin();
        async move {
            let resp = match who.side {
                Side::Inbound => match &state.inbound {
                    Some(side) => inbound::handle(&state, side, req, &down).await,
                    None => crate::http::not_found(),
                },
                Side::Outbound => match &state.outbound {
                    Some(side) => outbound::handle(&state, side, req, &down).await,
                    None => crate::http::not_found(),
                },
                Side::Admin => crate::proxy::operator::admin::handle(&state, req).await,
                Side::Authz => crate::proxy::authz::grpc::handle(&state, req).await,
                Side::AuthzHttp => crate::proxy::authz::http::handle(&state, req).await,
            };
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    // The watchdog (drain, idle and header deadlines) runs in a task of its own and
    // orders this one through `control`: the connection's task, woken several times per
    // request, polls only the connection, not the watchdog's timer and channel too.
    let control = Arc::new(Control::default());
    let watchdog = tokio::spawn(watchdog(control.clone(), activity, stop));
    let peer = who.peer;
    let mut closing = false;
    let ended = std::future::poll_fn(|cx| {
        control.register(cx.waker());
        match control.order.load(Ordering::SeqCst) {
            CLOSE => return std::task::Poll::Ready(None),
            GRACEFUL if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ => {}
        }
        std::future::Future::poll(conn.as_mut(), cx).map(Some)
    })
    .await;
    watchdog.abort();
    match ended {
        Some(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        Some(Ok(())) => {}
        None => {
            tracing::debug!(%peer, "no complete request head within header_read_timeout; closing")
        }
    }
}

/// A connection's watchdog: orders a graceful end at drain or after idling, and a close
/// when no request ever came (a slot held without a request).
async fn watchdog(control: Arc<Control>, activity: Arc<Activity>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = stop.changed() => control.order(GRACEFUL),
        never_requested = activity.idle() => {
            // Nothing to finish: a slot held without a request is closed at once. Idle:
            // HTTP/2 gets a GOAWAY (open streams finish), HTTP/1.1 closes.
            control.order(if never_requested { CLOSE } else { GRACEFUL })
        }
    }
}

const GRACEFUL: u8 = 1;
const CLOSE: u8 = 2;

/// What a connection's watchdog orders (`GRACEFUL`, `CLOSE`), and the waker of the
/// connection's task to tell it.
#[derive(Default)]
struct Control {
    order: std::sync::atomic::AtomicU8,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl Control {
    fn register(&self, waker: &std::task::Waker) {
        let mut held = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !held.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *held = Some(waker.clone());
        }
    }

    fn order(&self, order: u8) {
        self.order.store(order, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(1);
    const IDLE: Duration = Duration::from_secs(5);

    /// When `idle()` resolves, measured on tokio's paused clock from now, and what it said.
    async fn idle_after(activity: &Arc<Activity>) -> (Duration, bool) {
        let start = tokio::time::Instant::now();
        let never = activity.idle().await;
        (start.elapsed(), never)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_a_request_is_closed_at_the_head_timeout() {
        let activity = Activity::new(HEAD, IDLE);
        assert_eq!(idle_after(&activity).await, (HEAD, true));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request_and_never_during_one() {
        let activity = Activity::new(HEAD, IDLE);
        tokio::time::advance(Duration::from_millis(500)).await;
        let request = activity.begin();
        // A request in flight for 20 s (a slow upstream): never idle meanwhile.
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { idle_after(&activity).await }
        });
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!watch.is_finished(), "idle while a request was in flight");
        drop(request);
        let (after, never) = watch.await.unwrap();
        assert!(!never, "a request was served");
        // 20 s in flight, then the idle timeout from its end (rounded to whole ms, and
        // the in-flight wait polls every head timeout).
        let idle_from_end = after - Duration::from_secs(20);
        assert!(
            idle_from_end >= IDLE && idle_from_end <= IDLE + HEAD,
            "idle {idle_from_end:?} after the request ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_pushes_the_idle_deadline_back() {
        let activity = Activity::new(HEAD, IDLE);
        drop(activity.begin());
        let watch = tokio::spawn({
            let activity = activity.clone();
            async move { idle_after(&activity).await }
        });
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        drop(activity.begin());
        let (after, never) = watch.await.unwrap();
        assert!(!never);
        assert_eq!(after, IDLE - Duration::from_secs(1) + IDLE);
    }
}
