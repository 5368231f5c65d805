//! The sidecar: inbound verification and outbound signing on tokio + hyper + rustls.
//!
//! Read in the order a request travels: [`server`] accepts connections (limits, TLS,
//! HTTP/1.1 and HTTP/2, graceful shutdown), [`inbound`] or [`outbound`] decides what to do
//! with a request, [`client`] forwards it, and [`rescue`] turns every failure into the one
//! status code it deserves. [`State`] is what all of them share: the current trust
//! snapshot and signing key (swapped atomically by reloads), caches and metrics.
pub mod body;
pub mod client;
pub mod forward;
pub mod http;
pub mod inbound;
pub mod outbound;
pub mod path;
pub mod reload;
pub mod rescue;
pub mod server;
pub mod upstream_io;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Public keys of previous signing keys, published until the instant given, so
    /// that peers fetching the JWKS during a rotation still find them.
    previous_jwks: Mutex<Vec<(jsonwebtoken::jwk::Jwk, Instant)>>,
    /// The inbound TLS certificate, swapped on reload.
    pub tls_certs: Option<Arc<server::CertResolver>>,
    ready: AtomicBool,
    draining: AtomicBool,
    generation: AtomicU64,
}

impl State {
    /// Builds the state from a validated configuration: loads the signing key and the
    /// trust material (refusing to start without them) and the TLS client.
    pub fn new(
        cfg: Config,
        metrics: Metrics,
        tls_certs: Option<Arc<server::CertResolver>>,
    ) -> Result<Arc<Self>, StartError> {
        let cfg = Arc::new(cfg);
        let signer = match &cfg.identity.key() {
            Some(source) => Some(Arc::new(load_signer(&cfg, source)?)),
            None => None,
        };
        let keyring = load_trust(&cfg, None)?;
        for p in keyring.problems() {
            tracing::warn!(file = %p.file.display(), reason = %p.reason, "key file skipped");
        }
        metrics.trusted_keys.set(keyring.len() as i64);
        let mut policy = VerifyPolicy::new(cfg.identity.name.clone());
        policy.leeway = cfg.trust.leeway;
        policy.max_ttl = cfg.trust.max_token_ttl;
        policy.allow_multi_audience = cfg.trust.allow_multi_audience;
        let inbound = cfg.inbound.as_ref();
        let roles = cfg
            .callers
            .iter()
            .filter_map(|(caller, c)| {
                let joined = ::http::HeaderValue::from_str(&c.roles.join(",")).ok()?;
                Some((caller.clone(), (c.roles.clone(), joined)))
            })
            .collect();
        let outbound = cfg.outbound.as_ref();
        let upstreams = client::Upstreams::new(&client::ClientOptions {
            connect_timeout: cfg.limits.connect_timeout,
            request_timeout: cfg.limits.request_timeout,
            idle_timeout: cfg.limits.idle_timeout,
            ca_file: outbound.and_then(|o| o.ca_file.as_deref()),
            client_cert: outbound.and_then(|o| o.client_identity()),
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
            previous_jwks: Mutex::new(Vec::new()),
            tls_certs,
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

    /// Rebuilds the trust material from disk and publishes it if anything a request
    /// can see changed. A directory that cannot be read keeps the previous snapshot in
    /// force; a file that no longer parses keeps the keys it held before (see
    /// [`load_trust`]). `force_count` counts the attempt even when nothing changed (a
    /// watcher event), so that every reload an operator caused is visible in metrics.
    pub fn reload_trust(&self, force_count: bool) -> ReloadOutcome {
        let timer = self.metrics.reload_duration.start_timer();
        let current = self.trust.load_full();
        let result = load_trust(&self.cfg, Some(&current.keyring));
        timer.observe_duration();
        let count = |result: &str| {
            self.metrics
                .keyring_reloads
                .with_label_values(&[result])
                .inc();
        };
        match result {
            Ok(keyring) => {
                let changed = !keyring.same_as(&current.keyring);
                let has_problems = !keyring.problems().is_empty();
                if changed || force_count {
                    count(if has_problems { "error" } else { "ok" });
                }
                if changed {
                    for p in keyring.problems() {
                        tracing::error!(file = %p.file.display(), reason = %p.reason, "key file problem");
                    }
                    tracing::info!(
                        trusted_keys = keyring.len(),
                        problems = keyring.problems().len(),
                        "keyring reloaded"
                    );
                    self.publish_keyring(keyring);
                    ReloadOutcome::Published
                } else {
                    ReloadOutcome::Unchanged
                }
            }
            Err(e) => {
                count("error");
                tracing::error!(
                    error = %e,
                    "TRUST MATERIAL UNREADABLE: keeping the previous keyring until it is back"
                );
                ReloadOutcome::Failed
            }
        }
    }

    /// Re-reads the signing key; a new kid replaces the signer (new tokens use it at
    /// once, the outbound cache is emptied) and the old public key stays in the JWKS for
    /// `trust.jwks_grace`. A key that does not load keeps the current one in force.
    pub fn reload_signer(&self) -> ReloadOutcome {
        let Some(source) = &self.cfg.identity.key() else {
            return ReloadOutcome::Unchanged;
        };
        let signer = match load_signer(&self.cfg, source) {
            Ok(s) => s,
            Err(e) => {
                self.metrics
                    .keyring_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(error = %e, "signing key unreadable: keeping the current one");
                return ReloadOutcome::Failed;
            }
        };
        let old = self.signer.load_full();
        if old.as_ref().is_some_and(|o| o.kid() == signer.kid()) {
            return ReloadOutcome::Unchanged;
        }
        if let Some(jwk) = old.as_ref().and_then(|o| o.key().public_jwk().cloned()) {
            let until = Instant::now() + self.cfg.trust.jwks_grace;
            let mut prev = self.previous_jwks.lock().unwrap_or_else(|p| p.into_inner());
            prev.retain(|(j, t)| {
                *t > Instant::now() && j.common.key_id.as_deref() != Some(signer.kid())
            });
            prev.push((jwk, until));
        }
        tracing::info!(
            old_kid = old.as_ref().map(|o| o.kid()).unwrap_or("-"),
            new_kid = signer.kid(),
            "signing key rotated"
        );
        self.signer.store(Some(Arc::new(signer)));
        self.outbound_tokens.clear();
        self.metrics
            .keyring_reloads
            .with_label_values(&["ok"])
            .inc();
        ReloadOutcome::Published
    }

    /// Public keys to publish: the current signing key, then previous ones in grace.
    pub fn published_jwks(&self) -> Vec<jsonwebtoken::jwk::Jwk> {
        let mut keys: Vec<_> = self
            .signer
            .load_full()
            .and_then(|s| s.key().public_jwk().cloned())
            .into_iter()
            .collect();
        let now = Instant::now();
        let prev = self.previous_jwks.lock().unwrap_or_else(|p| p.into_inner());
        keys.extend(
            prev.iter()
                .filter(|(_, until)| *until > now)
                .map(|(j, _)| j.clone()),
        );
        keys
    }
}

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Published,
    Failed,
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
///
/// With a `previous` keyring, a file that fails to load keeps the keys it held in it:
/// a half-written or broken copy of `orders.pem` must not cut `orders` off. (A file that
/// is *gone* is a removal, and its keys go.)
pub fn load_trust(cfg: &Config, previous: Option<&Keyring>) -> Result<Keyring, KeyError> {
    let mut trusted = Vec::new();
    let mut problems = Vec::new();
    if let Some(dir) = &cfg.trust.authorized_keys {
        let load = keys::load_dir(dir)?;
        trusted.extend(load.keys);
        for mut p in load.problems {
            if let Some(prev) = previous {
                let kept: Vec<TrustedKey> = prev
                    .keys()
                    .into_iter()
                    .filter(|k| k.source == p.file)
                    .map(|k| (**k).clone())
                    .collect();
                if !kept.is_empty() {
                    p.reason = format!(
                        "{}; keeping the {} key(s) it held before",
                        p.reason,
                        kept.len()
                    );
                    trusted.extend(kept);
                }
            }
            problems.push(p);
        }
    }
    if let Some(path) = &cfg.trust.shared_key {
        let key = keys::load_shared_key(path)?;
        trusted.push(TrustedKey {
            identity: None,
            key: key.verifying_key().clone(),
            source: path.to_path_buf(),
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
