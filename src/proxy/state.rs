//! What the request paths share, split by who reads it:
//!
//! - [`TrustState`]: the keyring snapshot and the signing key. Written only by
//!   [`super::reload`] (atomic swaps), read by every request.
//! - [`InboundState`] / [`OutboundState`]: each side's configuration, caches and
//!   precomputed values. Nothing else reads them.
//! - [`Health`]: readiness, read by the admin listener.
//! - the forwarding client and the metrics, used by both sides.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{HeaderName, HeaderValue};
use jsonwebtoken::jwk::Jwk;

use super::client::Upstreams;
use crate::config::{Config, Inbound, Outbound};
use crate::keys::{FileProblem, Keyring, TrustedKey, UrlSource};
use crate::metrics::Metrics;
use crate::token::{OutboundTokenCache, ReplayCache, TokenSigner, VerifiedCache, VerifyPolicy};

/// Everything the listeners share.
pub struct State {
    pub cfg: Arc<Config>,
    pub trust: TrustState,
    /// Key URL sources (`authorized_keys/<identity>.url`).
    pub sources: super::sources::Sources,
    pub inbound: Option<InboundState>,
    pub outbound: Option<OutboundState>,
    pub health: Health,
    pub upstreams: Upstreams,
    pub metrics: Metrics,
}

/// The trust material of one moment: a request sees one snapshot, never a mix.
pub struct TrustSnapshot {
    pub keyring: Keyring,
    /// Increases with every published snapshot; verified-cache entries of an older
    /// generation are never used.
    pub generation: u64,
}

/// What the files of the trust material hold (authorized_keys, shared key, revocation
/// list): the part of the keyring that is not fetched.
#[derive(Default)]
pub struct FileTrust {
    pub keys: Vec<TrustedKey>,
    pub revoked: HashSet<String>,
    pub problems: Vec<FileProblem>,
    /// `<identity>.url` entries.
    pub sources: Vec<UrlSource>,
}

/// The keyring and the signing key, swapped atomically by reloads.
pub struct TrustState {
    snapshot: ArcSwap<TrustSnapshot>,
    /// The file part of the last keyring; held while a keyring is composed and
    /// published, so that file reloads and fetches publish one after the other.
    pub(super) files: Mutex<FileTrust>,
    signer: ArcSwapOption<TokenSigner>,
    /// Public keys of previous signing keys, published until the instant given, so that
    /// peers fetching the JWKS during a rotation still find them.
    previous_jwks: Mutex<Vec<(Jwk, Instant)>>,
    generation: AtomicU64,
}

impl TrustState {
    pub fn new(files: FileTrust, keyring: Keyring, signer: Option<TokenSigner>) -> Self {
        TrustState {
            snapshot: ArcSwap::from_pointee(TrustSnapshot {
                keyring,
                generation: 1,
            }),
            files: Mutex::new(files),
            signer: ArcSwapOption::new(signer.map(Arc::new)),
            previous_jwks: Mutex::new(Vec::new()),
            generation: AtomicU64::new(1),
        }
    }

    /// The snapshot to use for one whole decision.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<TrustSnapshot>> {
        self.snapshot.load()
    }

    pub fn signer(&self) -> Option<Arc<TokenSigner>> {
        self.signer.load_full()
    }

    /// Publishes a new keyring; returns its generation.
    pub(super) fn publish_keyring(&self, keyring: Keyring) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.snapshot.store(Arc::new(TrustSnapshot {
            keyring,
            generation,
        }));
        generation
    }

    /// Replaces the signing key; the old public key stays published until `grace_until`.
    pub(super) fn publish_signer(&self, signer: TokenSigner, grace_until: Instant) {
        let old = self.signer.load_full();
        if let Some(jwk) = old.as_ref().and_then(|o| o.key().public_jwk().cloned()) {
            let mut prev = self.previous_jwks.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            prev.retain(|(j, t)| *t > now && j.common.key_id.as_deref() != Some(signer.kid()));
            prev.push((jwk, grace_until));
        }
        self.signer.store(Some(Arc::new(signer)));
    }

    /// Public keys to publish: the current signing key, then previous ones in grace.
    pub fn published_jwks(&self) -> Vec<Jwk> {
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

/// What only the inbound side reads.
pub struct InboundState {
    pub cfg: Inbound,
    /// The client that dials the app (over TCP, or its Unix socket).
    pub app: Upstreams,
    /// `cfg.signed_headers`, shared with the request bodies that scrub their trailers.
    pub signed: Arc<[HeaderName]>,
    pub policy: VerifyPolicy,
    pub verified: VerifiedCache,
    pub replay: ReplayCache,
    /// Roles by caller, and the `x-service-caller-roles` value joined once.
    pub roles: HashMap<String, (Vec<String>, HeaderValue)>,
}

impl InboundState {
    pub(crate) fn new(cfg: &Config, inbound: &Inbound, app: Upstreams) -> Self {
        let mut policy = VerifyPolicy::new(cfg.identity.name.clone());
        policy.leeway = cfg.trust.leeway;
        policy.max_ttl = cfg.trust.max_token_ttl;
        policy.allow_multi_audience = cfg.trust.allow_multi_audience;
        let roles = cfg
            .callers
            .iter()
            .filter_map(|(caller, c)| {
                let joined = HeaderValue::from_str(&c.roles.join(",")).ok()?;
                Some((caller.clone(), (c.roles.clone(), joined)))
            })
            .collect();
        InboundState {
            cfg: inbound.clone(),
            app,
            signed: inbound.signed_headers.clone().into(),
            policy,
            verified: VerifiedCache::new(inbound.verified_cache_size),
            replay: ReplayCache::new(inbound.replay_cache_size, cfg.trust.leeway),
            roles,
        }
    }

    /// The roles granted to `caller` (none if it has no `[callers.<name>]`).
    pub fn roles_of(&self, caller: &str) -> &[String] {
        self.roles
            .get(caller)
            .map(|(r, _)| r.as_slice())
            .unwrap_or(&[])
    }
}

/// What only the outbound side reads.
pub struct OutboundState {
    pub cfg: Outbound,
    pub tokens: OutboundTokenCache,
}

/// Readiness: ready once keys are loaded and listeners bound, until shutdown begins —
/// and, with `inbound.app_exposure = "refuse"`, not while the app is exposed.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
    /// Why the exposure check refuses readiness (refuse mode, while the app is exposed).
    refusal: Mutex<Option<String>>,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why `/readyz` answers 503, if it does.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining.load(Ordering::Acquire) {
            return Some("draining".into());
        }
        if !self.ready.load(Ordering::Acquire) {
            return Some("starting".into());
        }
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Set or clear the exposure check's refusal.
    pub fn refuse(&self, why: Option<String>) {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

impl State {
    /// Builds the shared state from a checked configuration and loaded material.
    pub fn new(
        cfg: Config,
        trust: TrustState,
        sources: super::sources::Sources,
        upstreams: Upstreams,
        app: Upstreams,
        metrics: Metrics,
    ) -> Arc<Self> {
        let cfg = Arc::new(cfg);
        let keyring = &trust.snapshot().keyring;
        metrics.trusted_keys.set(keyring.len() as i64);
        metrics.trust_problems.set(keyring.problems().len() as i64);
        Arc::new(State {
            inbound: cfg
                .inbound
                .as_ref()
                .map(|i| InboundState::new(&cfg, i, app)),
            outbound: cfg.outbound.as_ref().map(|o| OutboundState {
                cfg: o.clone(),
                tokens: OutboundTokenCache::new(10_000),
            }),
            health: Health::default(),
            trust,
            sources,
            upstreams,
            metrics,
            cfg,
        })
    }

    /// Readiness (shorthand for `health.is_ready()`).
    pub fn is_ready(&self) -> bool {
        self.health.is_ready()
    }
}
