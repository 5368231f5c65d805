//! Listeners and connections: accept with a connection limit, terminate TLS where
//! configured, serve HTTP/1.1 (keep-alive, upgrades) and HTTP/2 (prior knowledge or ALPN)
//! with a header-read timeout, and shut down gracefully.
//!
//! Shutdown order: readiness turns 503, the inbound and outbound listeners stop
//! accepting, their connections finish in-flight requests (bounded by `shutdown_grace`),
//! and only then does the admin listener stop, so probes see the 503 throughout.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::client::{load_certs, load_private_key, provider};
use super::http::Body;
use super::{inbound, outbound, StartError, State};
use crate::config::{Config, ServerTls};
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Inbound,
    Outbound,
    Admin,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Inbound => "inbound",
            Side::Outbound => "outbound",
            Side::Admin => "admin",
        }
    }
}

/// A proxy whose listeners are bound (so their addresses are known) but not yet serving.
pub struct Proxy {
    state: Arc<State>,
    watcher: Option<crate::keys::watch::DirWatch>,
    inbound: Option<(TcpListener, Option<TlsAcceptor>)>,
    outbound: Option<TcpListener>,
    admin: TcpListener,
}

/// The addresses actually bound (port 0 in the configuration gets a real port here).
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    pub admin: SocketAddr,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

impl Proxy {
    /// Loads keys and TLS material and binds every listener. Nothing is served yet.
    pub async fn bind(cfg: Config, registry: Registry) -> Result<Proxy, StartError> {
        let metrics = Metrics::new(registry)?;
        let watcher = super::reload::new_watch(&super::reload::watched_dirs(&cfg));
        let (tls, certs) = match cfg.inbound.as_ref().and_then(|i| i.tls.as_ref()) {
            Some(t) => {
                let (acceptor, certs) = server_tls(t)?;
                (Some(acceptor), Some(certs))
            }
            None => (None, None),
        };
        let state = State::new(cfg, metrics, certs)?;
        let cfg = &state.cfg;
        let inbound = match &cfg.inbound {
            Some(i) => Some((bind("inbound.listen", i.listen).await?, tls)),
            None => None,
        };
        let outbound = match &cfg.outbound {
            Some(o) => Some(bind("outbound.listen", o.listen).await?),
            None => None,
        };
        let admin = bind("admin.listen", cfg.admin.listen).await?;
        Ok(Proxy {
            state,
            watcher,
            inbound,
            outbound,
            admin,
        })
    }

    pub fn addrs(&self) -> Addrs {
        Addrs {
            inbound: self.inbound.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            outbound: self.outbound.as_ref().and_then(|l| l.local_addr().ok()),
            admin: self
                .admin
                .local_addr()
                .unwrap_or_else(|_| self.state.cfg.admin.listen),
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains (see the module comment).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let state = self.state;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut traffic = Vec::new();
        if let Some((l, tls)) = self.inbound {
            traffic.push(tokio::spawn(run_listener(
                Side::Inbound,
                l,
                tls,
                state.clone(),
                stop_rx.clone(),
            )));
        }
        if let Some(l) = self.outbound {
            traffic.push(tokio::spawn(run_listener(
                Side::Outbound,
                l,
                None,
                state.clone(),
                stop_rx.clone(),
            )));
        }
        let (admin_tx, admin_rx) = watch::channel(false);
        let admin = tokio::spawn(run_listener(
            Side::Admin,
            self.admin,
            None,
            state.clone(),
            admin_rx,
        ));
        let (reload_stop_tx, reload_stop_rx) = watch::channel(false);
        let reloader = tokio::spawn(super::reload::run(
            state.clone(),
            self.watcher,
            reload_stop_rx,
        ));
        state.set_ready();
        tracing::info!("ready");

        shutdown.await;
        tracing::info!(
            grace = ?state.cfg.limits.shutdown_grace,
            "shutting down: readiness 503, listeners closed, finishing in-flight requests"
        );
        state.start_draining();
        let _ = stop_tx.send(true);
        for t in traffic {
            let _ = t.await;
        }
        let _ = reload_stop_tx.send(true);
        let _ = reloader.await;
        let _ = admin_tx.send(true);
        let _ = admin.await;
        tracing::info!("shutdown complete");
    }
}

/// The inbound certificate, behind an atomic pointer so a renewed certificate applies to
/// the next handshake without a restart.
#[derive(Debug)]
pub struct CertResolver {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
    /// The PEM bytes loaded, to tell a real change from a touch.
    loaded: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertResolver {
    fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<rustls::sign::CertifiedKey, StartError> {
        let certs = load_certs(cert)?;
        let key_der = load_private_key(key)?;
        let signing = provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(super::client::TlsSetupError::from)?;
        Ok(rustls::sign::CertifiedKey::new(certs, signing))
    }

    fn new(t: &ServerTls) -> Result<Self, StartError> {
        let ck = Self::load(&t.cert, &t.key)?;
        Ok(CertResolver {
            cert: t.cert.clone(),
            key: t.key.clone(),
            current: arc_swap::ArcSwap::from_pointee(ck),
            loaded: std::sync::Mutex::new((
                std::fs::read(&t.cert).unwrap_or_default(),
                std::fs::read(&t.key).unwrap_or_default(),
            )),
        })
    }

    /// Re-reads the certificate and key; swaps them in if they changed and load.
    pub fn reload(&self) -> Result<bool, StartError> {
        let bytes = (
            std::fs::read(&self.cert).unwrap_or_default(),
            std::fs::read(&self.key).unwrap_or_default(),
        );
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded == bytes {
            return Ok(false);
        }
        let ck = Self::load(&self.cert, &self.key)?;
        self.current.store(Arc::new(ck));
        *loaded = bytes;
        Ok(true)
    }

    pub fn paths(&self) -> [&std::path::Path; 2] {
        [&self.cert, &self.key]
    }
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn server_tls(t: &ServerTls) -> Result<(TlsAcceptor, Arc<CertResolver>), StartError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(super::client::TlsSetupError::from)?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(super::client::TlsSetupError::from)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| StartError::Config(format!("inbound.client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let resolver = Arc::new(CertResolver::new(t)?);
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), resolver))
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

async fn run_listener(
    side: Side,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&state));
    let graceful = GracefulShutdown::new();
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
        let state = state.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let gauge = gauge.clone();
        tokio::spawn(async move {
            gauge.inc();
            let header_timeout = state.cfg.limits.header_read_timeout;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let io = TokioIo::new(tls_stream);
                            serve_conn(side, &builder, io, state, peer, true, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    let io = TokioIo::new(stream);
                    serve_conn(side, &builder, io, state, peer, false, watcher).await
                }
            }
            gauge.dec();
            drop(permit);
        });
    }
    drop(listener);
    let grace = state.cfg.limits.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    // Settle: an HTTP/1.1 connection whose request bytes have arrived but are not parsed
    // yet counts as idle, and a graceful shutdown would close it unanswered. Connections
    // keep being served for a short, bounded moment first (cut short once none is open),
    // so every request already sent on an accepted connection is answered.
    let settle = SETTLE.min(grace / 2);
    let settle_end = tokio::time::Instant::now() + settle;
    while graceful.count() > 0 && tokio::time::Instant::now() < settle_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep_until(deadline) => {
            tracing::warn!(listener = side.name(), ?grace, "shutdown grace expired; closing remaining connections");
        }
    }
}

/// How long connections keep being served after the listeners close, before idle ones
/// are closed (see `run_listener`).
const SETTLE: Duration = Duration::from_millis(500);

async fn serve_conn<I>(
    side: Side,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    state: Arc<State>,
    peer: SocketAddr,
    tls: bool,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(dispatch(side, state, req, peer, tls).await) }
    });
    let conn = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn dispatch(
    side: Side,
    state: Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let cfg = state.cfg.clone();
    match side {
        Side::Inbound => match &cfg.inbound {
            Some(i) => inbound::handle(state, i, req, peer, tls).await,
            None => crate::admin::not_found(),
        },
        Side::Outbound => match &cfg.outbound {
            Some(o) => outbound::handle(state, o, req, peer).await,
            None => crate::admin::not_found(),
        },
        Side::Admin => crate::admin::handle(&state, req).await,
    }
}
