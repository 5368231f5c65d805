//! The sidecar: inbound verification and outbound signing on tokio + hyper + rustls.
//!
//! Read in the order a request travels — the folders follow it: [`server`] accepts
//! connections (limits, TLS, HTTP/1.1 and HTTP/2, graceful shutdown); [`inbound`] (a
//! caller's request: screen, canonical [`inbound::path`], token, rules, per-caller
//! [`limits`]) or [`outbound`] (the app's request: route, token) runs it through
//! its steps; [`forward`] sends it on through its [`forward::client`], bodies streamed by
//! [`forward::body`]; [`answer`] turns the result into metrics, an access-log line and —
//! for a failure — the one answer it deserves ([`rescue`], the table every failure is
//! answered from). [`state`] is what they
//! share; the trust material in it is `crate::trust`'s, read here and written only there.
//! Beside the data path, [`operator`]: the admin listener, `trustgate explain` and the
//! exposure check.
//!
//! [`Proxy`] ties them together: bind everything (nothing half-started), then serve until
//! told to stop, then drain.
pub mod answer;
pub mod authz;
pub mod forward;
pub mod inbound;
pub mod limits;
pub mod operator;
pub mod outbound;
pub mod rescue;
pub mod server;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::tls::{CertResolver, TlsSetupError};
pub use crate::token::unix_now;
use crate::trust::files::{self, Loaded};
use crate::trust::reload::{self, Reloader};
use crate::trust::watch::{new_watch, DirWatch, Dirs};
use crate::trust::Trust;
use server::Side;
pub use state::State;

/// Why the proxy could not start. Each names the file, key or address concerned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Files the configuration names that cannot be loaded (each line names its key).
    #[error("{}", .0.join("\n"))]
    Files(Vec<String>),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    // Causes are part of the message, not also a `source()`: a printed chain says each
    // once (it said "Address already in use (os error 98)" twice).
    #[error("cannot listen on {addr} ({what}): {error}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(prometheus::Error),
    #[error("{0}")]
    Fleet(String),
}

impl From<prometheus::Error> for StartError {
    fn from(e: prometheus::Error) -> Self {
        StartError::Metrics(e)
    }
}

/// A proxy whose listeners are bound (so their addresses are known) but not yet serving.
pub struct Proxy {
    state: Arc<State>,
    certs: Option<Arc<CertResolver>>,
    watcher: Option<DirWatch>,
    inbound: Option<(TcpListener, Option<TlsAcceptor>)>,
    outbound: Option<TcpListener>,
    /// `[authz]`'s listeners (gRPC, HTTP mode) and their TLS.
    authz: Vec<(server::Side, TcpListener, Option<TlsAcceptor>)>,
    admin: TcpListener,
}

/// The addresses actually bound (port 0 in the configuration gets a real port here).
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    /// `authz.listen` (gRPC) and `authz.http_listen` (Envoy's HTTP mode).
    pub authz: Option<SocketAddr>,
    pub authz_http: Option<SocketAddr>,
    pub admin: SocketAddr,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Bind { what, addr, error })
}

/// The state every request path shares, from a checked configuration and its loaded
/// material: the trust plane, the forwarding clients, the metrics. `run` serves it;
/// `explain` asks it one question.
pub fn shared_state(
    cfg: Arc<Config>,
    loaded: Loaded,
    metrics: Metrics,
) -> Result<Arc<State>, StartError> {
    let trust = Trust::new(cfg.clone(), loaded, metrics.clone())?;
    let outbound = cfg.outbound.as_ref();
    let mut opts = forward::client::ClientOptions {
        connect_timeout: cfg.limits.connect_timeout,
        request_timeout: cfg.limits.request_timeout,
        idle_timeout: cfg.limits.idle_timeout,
        ca_file: outbound.and_then(|o| o.ca_file.as_deref()),
        client_cert: outbound.and_then(|o| o.client_identity()),
        dial: forward::client::Dial::Net,
    };
    let upstreams = forward::client::Upstreams::new(&opts)?;
    // The app has a client of its own: on a Unix socket always that socket, over plain
    // TCP always its address (so HTTP/2's :authority can be the host the client named);
    // an https:// app shares the outbound's pools.
    let app = match cfg.inbound.as_ref().map(|i| &i.upstream) {
        Some(up) if up.socket.is_some() || up.uri.scheme() == Some(&http::uri::Scheme::HTTP) => {
            opts.dial = match up.socket.as_deref() {
                Some(socket) => forward::client::Dial::Unix(socket.into()),
                None => forward::client::Dial::Pinned(up.uri.clone()),
            };
            forward::client::Upstreams::new(&opts)?
        }
        _ => upstreams.clone(),
    };
    let fleet = match &cfg.fleet {
        Some(f) => Some(crate::fleet::Fleet::new(f, &metrics.registry).map_err(StartError::Fleet)?),
        None => None,
    };
    Ok(State::new(cfg, trust, upstreams, app, metrics, fleet))
}

impl Proxy {
    /// Loads keys and TLS material and binds every listener. Nothing is served yet.
    pub async fn bind(cfg: Config, registry: Registry) -> Result<Proxy, StartError> {
        // Watches first, so that no change falls between the first load and the watch.
        let watcher = new_watch(&Dirs::of(&cfg).all());
        let (loaded, mut check) = files::load_checked(&cfg);
        let (errors, warnings) = operator::exposure::config_problems(&cfg);
        check.errors.extend(errors);
        check.errors.extend(crate::fleet::file_problems(&cfg));
        check.warnings.extend(warnings);
        // (`key_files` are logged by the trust plane as it skips them.)
        for w in &check.warnings {
            tracing::warn!("{w}");
        }
        match loaded {
            Some(loaded) if check.errors.is_empty() => {
                Self::bind_loaded(cfg, loaded, watcher, registry).await
            }
            _ => Err(StartError::Files(check.errors)),
        }
    }

    async fn bind_loaded(
        cfg: Config,
        loaded: Loaded,
        watcher: Option<DirWatch>,
        registry: Registry,
    ) -> Result<Proxy, StartError> {
        // (An inbound section kept with `enabled = false` serves the authorizer.)
        let metrics = Metrics::for_sides(registry, cfg.inbound.is_some(), cfg.outbound.is_some())?;
        let (tls, certs) = match cfg.inbound.as_ref().and_then(|i| i.tls()) {
            Some(t) => {
                let (acceptor, certs) = crate::tls::server_acceptor(&t)?;
                (Some(acceptor), Some(certs))
            }
            None => (None, None),
        };
        let state = shared_state(Arc::new(cfg), loaded, metrics)?;
        let cfg = &state.cfg;
        let inbound = match cfg.inbound.as_ref().filter(|i| i.enabled) {
            Some(i) => Some((bind("inbound.listen", i.listen).await?, tls)),
            None => None,
        };
        let authz = bind_authz(cfg).await?;
        let outbound = match &cfg.outbound {
            Some(o) => Some(bind("outbound.listen", o.listen).await?),
            None => None,
        };
        let admin = bind("admin.listen", cfg.admin.listen).await?;
        Ok(Proxy {
            state,
            certs,
            watcher,
            inbound,
            outbound,
            authz,
            admin,
        })
    }

    pub fn addrs(&self) -> Addrs {
        Addrs {
            inbound: self.inbound.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            outbound: self.outbound.as_ref().and_then(|l| l.local_addr().ok()),
            authz: self.authz_addr(server::Side::Authz),
            authz_http: self.authz_addr(server::Side::AuthzHttp),
            admin: self
                .admin
                .local_addr()
                .unwrap_or_else(|_| self.state.cfg.admin.listen),
        }
    }

    fn authz_addr(&self, side: server::Side) -> Option<SocketAddr> {
        let (_, l, _) = self.authz.iter().find(|(s, _, _)| *s == side)?;
        l.local_addr().ok()
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: readiness turns 503, the inbound
    /// and outbound listeners stop accepting, their connections finish in-flight requests
    /// (bounded by `shutdown_grace`), and only then does the admin listener stop, so
    /// probes see the 503 throughout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let state = self.state;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut traffic = spawn_traffic(&state, self.inbound, self.outbound, &stop_rx);
        for (side, listener, tls) in self.authz {
            let (state, stop) = (state.clone(), stop_rx.clone());
            traffic.push(tokio::spawn(server::run_listener(
                side, listener, tls, state, stop,
            )));
        }
        let (admin_tx, admin_rx) = watch::channel(false);
        let admin = tokio::spawn(server::run_listener(
            Side::Admin,
            self.admin,
            None,
            state.clone(),
            admin_rx,
        ));
        if let Some(fleet) = &state.fleet {
            fleet.start();
        }
        let (trust_stop_tx, trust_stop_rx) = watch::channel(false);
        let trust_tasks = reload::spawn(
            Reloader {
                trust: state.trust.clone(),
                certs: self.certs,
            },
            self.watcher,
            trust_stop_rx,
        );
        // Readiness waits (bounded) for the first fetch of every key URL; sources still
        // failing then fail closed (503 keys_unavailable) until they succeed.
        let first_fetches = state
            .trust
            .first_fetches(state.cfg.trust.fetch_timeout + std::time::Duration::from_secs(1));
        // The exposure check's first round comes before readiness, so that with
        // `app_exposure = "refuse"` an exposed app's pod never reports ready.
        let mut exposure = operator::exposure::Check::new(&state);
        let first_exposure = async {
            if let Some(check) = exposure.as_mut() {
                check.once().await;
            }
        };
        tokio::pin!(shutdown);
        let stopped_early = tokio::select! {
            _ = async { tokio::join!(first_fetches, first_exposure) } => false,
            _ = &mut shutdown => true,
        };
        let (exposure_stop_tx, exposure_stop_rx) = watch::channel(false);
        let exposure = exposure.map(|check| tokio::spawn(check.run(exposure_stop_rx)));
        if !stopped_early {
            state.health.set_ready();
            tracing::info!("ready");
            shutdown.await;
        }
        tracing::info!(
            grace = ?state.cfg.limits.shutdown_grace,
            "shutting down: readiness 503, listeners closed, finishing in-flight requests"
        );
        state.health.start_draining();
        let _ = stop_tx.send(true);
        for t in traffic {
            let _ = t.await;
        }
        let _ = trust_stop_tx.send(true);
        for t in trust_tasks {
            let _ = t.await;
        }
        let _ = exposure_stop_tx.send(true);
        if let Some(exposure) = exposure {
            let _ = exposure.await;
        }
        let _ = admin_tx.send(true);
        let _ = admin.await;
        tracing::info!("shutdown complete");
    }
}

/// `[authz]`'s listeners, bound with their TLS (the same for both).
async fn bind_authz(
    cfg: &Config,
) -> Result<Vec<(server::Side, TcpListener, Option<TlsAcceptor>)>, StartError> {
    let Some(a) = &cfg.authz else {
        return Ok(Vec::new());
    };
    let tls = match a.tls() {
        Some(t) => Some(crate::tls::server_acceptor(&t)?.0),
        None => None,
    };
    let mut bound = Vec::new();
    if let Some(addr) = a.listen {
        let l = bind("authz.listen", addr).await?;
        bound.push((server::Side::Authz, l, tls.clone()));
    }
    if let Some(addr) = a.http_listen {
        let l = bind("authz.http_listen", addr).await?;
        bound.push((server::Side::AuthzHttp, l, tls));
    }
    Ok(bound)
}

/// The inbound and outbound listeners' tasks, until `stop` turns true.
fn spawn_traffic(
    state: &Arc<State>,
    inbound: Option<(TcpListener, Option<TlsAcceptor>)>,
    outbound: Option<TcpListener>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut traffic = Vec::new();
    if let Some((l, tls)) = inbound {
        let (state, stop) = (state.clone(), stop.clone());
        traffic.push(tokio::spawn(server::run_listener(
            Side::Inbound,
            l,
            tls,
            state,
            stop,
        )));
    }
    if let Some(l) = outbound {
        let (state, stop) = (state.clone(), stop.clone());
        traffic.push(tokio::spawn(server::run_listener(
            Side::Outbound,
            l,
            None,
            state,
            stop,
        )));
    }
    traffic
}
