//! The sidecar: inbound verification and outbound signing on tokio + hyper + rustls.
//!
//! Read in the order a request travels: [`server`] accepts connections (limits, TLS,
//! HTTP/1.1 and HTTP/2, graceful shutdown), [`inbound`] or [`outbound`] decides what to do
//! with a request, [`client`] forwards it, and [`rescue`] turns every failure into the one
//! status code it deserves. [`State`] is what all of them share: the current trust
//! snapshot and signing key (swapped atomically by reloads), caches and metrics.
pub mod client;
pub mod forward;
pub mod http;
pub mod inbound;
pub mod outbound;
pub mod rescue;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::{Config, SigningKeySource};
use crate::keys::{self, KeyError, Keyring, TrustedKey};
use crate::metrics::Metrics;
use crate::token::{OutboundTokenCache, ReplayCache, TokenSigner, VerifiedCache, VerifyPolicy};

/// Why the proxy could not start. Each names the file, key or address concerned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] client::TlsSetupError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The trust material of one moment: a request sees one snapshot, never a mix.
pub struct TrustSnapshot {
    pub keyring: Keyring,
    /// Increases with every published snapshot; verified-cache entries of an older
    /// generation are never used.
    pub generation: u64,
}

/// Everything the request paths share.
pub struct State {
    pub cfg: Arc<Config>,
    pub trust: ArcSwap<TrustSnapshot>,
    pub signer: ArcSwapOption<TokenSigner>,
    pub policy: VerifyPolicy,
    pub metrics: Metrics,
    pub verified: VerifiedCache,
    pub replay: ReplayCache,
    pub outbound_tokens: OutboundTokenCache,
    /// `x-service-caller-roles` values by caller, joined once.
    pub roles: HashMap<String, (Vec<String>, ::http::HeaderValue)>,
    pub upstreams: client::Upstreams,
    ready: AtomicBool,
    draining: AtomicBool,
    generation: AtomicU64,
}

impl State {
    /// Builds the state from a validated configuration: loads the signing key and the
    /// trust material (refusing to start without them) and the TLS client.
    pub fn new(cfg: Config, metrics: Metrics) -> Result<Arc<Self>, StartError> {
        let cfg = Arc::new(cfg);
        let signer = match &cfg.identity.key {
            Some(source) => Some(Arc::new(load_signer(&cfg, source)?)),
            None => None,
        };
        let keyring = load_trust(&cfg)?;
        for p in keyring.problems() {
            tracing::warn!(file = %p.file.display(), reason = %p.reason, "key file skipped");
        }
        metrics.trusted_keys.set(keyring.len() as i64);
        let mut policy = VerifyPolicy::new(cfg.identity.name.clone());
        policy.leeway = cfg.trust.leeway;
        policy.max_ttl = cfg.trust.max_token_ttl;
        let inbound = cfg.inbound.as_ref();
        let roles = cfg
            .callers
            .iter()
            .filter_map(|(caller, roles)| {
                let joined = ::http::HeaderValue::from_str(&roles.join(",")).ok()?;
                Some((caller.clone(), (roles.clone(), joined)))
            })
            .collect();
        let outbound = cfg.outbound.as_ref();
        let upstreams = client::Upstreams::new(&client::ClientOptions {
            connect_timeout: cfg.limits.connect_timeout,
            idle_timeout: cfg.limits.idle_timeout,
            ca_file: outbound.and_then(|o| o.ca_file.as_deref()),
            client_cert: outbound
                .and_then(|o| o.client_cert.as_ref())
                .map(|(c, k)| (c.as_path(), k.as_path())),
        })?;
        Ok(Arc::new(State {
            policy,
            verified: VerifiedCache::new(inbound.map_or(0, |i| i.verified_cache_size)),
            replay: ReplayCache::new(inbound.map_or(1, |i| i.replay_cache_size), cfg.trust.leeway),
            outbound_tokens: OutboundTokenCache::new(10_000),
            trust: ArcSwap::from_pointee(TrustSnapshot {
                keyring,
                generation: 1,
            }),
            signer: ArcSwapOption::new(signer),
            metrics,
            roles,
            upstreams,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            cfg,
        }))
    }

    /// Ready once keys are loaded and listeners bound, until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Publishes a new keyring: requests from now on see it, verified-token cache
    /// entries of the old one are dead.
    pub fn publish_keyring(&self, keyring: Keyring) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.trusted_keys.set(keyring.len() as i64);
        self.trust.store(Arc::new(TrustSnapshot {
            keyring,
            generation,
        }));
        self.verified.clear();
    }

    /// Rebuilds the trust material from disk and publishes it; on failure the previous
    /// snapshot stays in force. Counted either way.
    pub fn reload_trust(&self) -> Result<(), KeyError> {
        let timer = self.metrics.reload_duration.start_timer();
        let result = load_trust(&self.cfg);
        timer.observe_duration();
        match result {
            Ok(keyring) => {
                self.metrics
                    .keyring_reloads
                    .with_label_values(&["ok"])
                    .inc();
                self.publish_keyring(keyring);
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .keyring_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(error = %e, "trust reload failed; keeping the previous keyring");
                Err(e)
            }
        }
    }
}

fn load_signer(cfg: &Config, source: &SigningKeySource) -> Result<TokenSigner, KeyError> {
    let key = match source {
        SigningKeySource::Private(p) => keys::load_signing_key(p)?,
        SigningKeySource::Shared(p) => keys::load_shared_key(p)?,
    };
    Ok(TokenSigner::new(
        cfg.identity.name.clone(),
        Arc::new(key),
        cfg.identity.token_ttl,
    ))
}

/// Reads authorized_keys, the shared key and the revocation list into one keyring.
pub fn load_trust(cfg: &Config) -> Result<Keyring, KeyError> {
    let mut trusted = Vec::new();
    let mut problems = Vec::new();
    if let Some(dir) = &cfg.trust.authorized_keys {
        let load = keys::load_dir(dir)?;
        trusted.extend(load.keys);
        problems.extend(load.problems);
    }
    if let Some(path) = &cfg.trust.shared_key {
        let key = keys::load_shared_key(path)?;
        trusted.push(TrustedKey {
            identity: None,
            key: key.verifying_key().clone(),
            source: path.clone(),
        });
    }
    let revoked = match &cfg.trust.revoked {
        Some(p) => keys::load_revoked(p)?,
        None => Default::default(),
    };
    Ok(Keyring::new(trusted, revoked, problems))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
