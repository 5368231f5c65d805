//! The trust plane: whom this trustgate trusts and what it signs with, kept current off
//! the request path. It is the only writer of trust material; the data plane holds a
//! [`Trust`] handle and only reads it (one snapshot per decision, the signer, the JWKS to
//! publish) — and asks it about a kid nobody knows through [`Trust::unknown_kid`].
//!
//! Read in the order the material arrives: [`files`] loads it from disk (one loader, used
//! by `run`, `check`, `verify` and every reload), [`sources`] fetches the keys of
//! `<identity>.url` entries through [`fetch`], [`watch`] notices changes on disk and
//! [`reload`] re-reads what changed and publishes it.
pub mod fetch;
pub mod files;
pub mod issuer;
pub mod reload;
mod source;
pub mod sources;
pub mod token_files;
pub mod watch;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use jsonwebtoken::jwk::Jwk;

use crate::config::Config;
use crate::keys::{Keyring, Speaks};
use crate::metrics::Metrics;
use crate::tls::TlsSetupError;
use crate::token::{Peeked, Rejection, TokenSigner};
pub use files::{FileCheck, FileTrust, Loaded};
pub use sources::Sources;

/// The trust material of one moment: a request sees one snapshot, never a mix.
pub struct TrustSnapshot {
    pub keyring: Keyring,
    /// Increases with every published snapshot; verified-cache entries of an older
    /// generation are never used.
    pub generation: u64,
}

/// Why a token whose kid nobody knew is still refused (see [`Trust::unknown_kid`]).
#[derive(Debug)]
pub enum KidRefusal {
    /// Still unknown: 401 `unknown_key`.
    Unknown,
    /// The identity's keys live at a URL and none are usable (never fetched, or dropped
    /// as stale): 503 `keys_unavailable`, the caller did nothing wrong.
    Unavailable,
    /// Verified again against new keys, and refused for another reason.
    Rejected(Rejection),
}

/// The handle on the trust material: the keyring snapshot, the signing key, the key URL
/// sources. Cloned as an `Arc` into the data plane (reads) and the reload and fetch tasks
/// (writes, all through this module).
pub struct Trust {
    cfg: Arc<Config>,
    metrics: Metrics,
    snapshot: ArcSwap<TrustSnapshot>,
    /// The file part of the last keyring; held while a keyring is composed and published,
    /// so that file reloads and fetches publish one after the other.
    files: Mutex<FileTrust>,
    signer: ArcSwapOption<TokenSigner>,
    /// Public keys of previous signing keys, published until the instant given, so that
    /// peers fetching the JWKS during a rotation still find them.
    previous_jwks: Mutex<Vec<(Jwk, Instant)>>,
    generation: AtomicU64,
    sources: Sources,
    /// Outbound routes' token files.
    token_files: token_files::TokenFiles,
}

impl Trust {
    /// The trust plane from material loaded by [`files::load_checked`]; the key URLs the
    /// files name are fetched once [`reload::spawn`] runs.
    pub fn new(
        cfg: Arc<Config>,
        loaded: Loaded,
        metrics: Metrics,
    ) -> Result<Arc<Trust>, TlsSetupError> {
        let sources = Sources::new(&cfg)?;
        Ok(Self::with_sources(cfg, loaded, metrics, sources))
    }

    /// As [`Trust::new`], with the URL sources given (tests give them a fetcher of their
    /// own).
    pub fn with_sources(
        cfg: Arc<Config>,
        loaded: Loaded,
        metrics: Metrics,
        sources: Sources,
    ) -> Arc<Trust> {
        let Loaded { files, signer } = loaded;
        let keyring = files::compose(&files, Vec::new());
        for p in keyring.problems() {
            tracing::warn!(file = %p.file.display(), reason = %p.reason, "key file skipped");
        }
        warn_shared(&keyring);
        metrics.trusted_keys.set(keyring.len() as i64);
        metrics.trust_problems.set(keyring.problems().len() as i64);
        sources.set(&files.sources);
        let token_files = token_files::TokenFiles::load(&cfg);
        Arc::new(Trust {
            cfg,
            metrics,
            snapshot: ArcSwap::from_pointee(TrustSnapshot {
                keyring,
                generation: 1,
            }),
            files: Mutex::new(files),
            signer: ArcSwapOption::new(signer.map(Arc::new)),
            previous_jwks: Mutex::new(Vec::new()),
            generation: AtomicU64::new(1),
            sources,
            token_files,
        })
    }

    /// The snapshot to use for one whole decision.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<TrustSnapshot>> {
        self.snapshot.load()
    }

    pub fn signer(&self) -> Option<Arc<TokenSigner>> {
        self.signer.load_full()
    }

    /// The token an outbound route presents from its `token_file`: `None` if the route
    /// has none, `Some(None)` if the file has never been readable.
    pub fn route_token(&self, host: &str) -> Option<Option<crate::token::Issued>> {
        self.token_files.get(host)
    }

    /// Whether any keys live at a URL or with an issuer (only then can an unknown kid fetch).
    pub fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// A token's kid is in no key of the snapshot. When what it claims (not yet verified:
    /// it only picks among the sources configured — an identity's key URL, an issuer) has a
    /// source, its keys may be fetched once (single-flight, cooldown: see [`sources`]) and
    /// `verify_again` is then called against the new snapshot. `Err(Unknown)` without a
    /// source: this is not the sources' business.
    pub async fn unknown_kid<T>(
        self: &Arc<Self>,
        claimed: &Peeked,
        verify_again: impl FnOnce() -> Result<T, Rejection>,
    ) -> Result<T, KidRefusal> {
        use sources::KidOutcome;
        match self.sources.unknown_kid(self, claimed).await {
            KidOutcome::NotUrl | KidOutcome::Unknown => Err(KidRefusal::Unknown),
            KidOutcome::Unavailable => Err(KidRefusal::Unavailable),
            KidOutcome::Retry => match verify_again() {
                Ok(v) => Ok(v),
                Err(Rejection::UnknownKey) => {
                    self.sources.remember_unknown(claimed);
                    if self.sources.unavailable(claimed) {
                        Err(KidRefusal::Unavailable)
                    } else {
                        Err(KidRefusal::Unknown)
                    }
                }
                Err(other) => {
                    if other == Rejection::IssuerMismatch {
                        // The kid is someone else's, still not this source's: no more
                        // fetches for it until the next refresh, as for an unknown one.
                        self.sources.remember_unknown(claimed);
                    }
                    Err(KidRefusal::Rejected(other))
                }
            },
        }
    }

    /// Waits until every key URL has been tried once, or `bound` has passed (readiness
    /// waits for this).
    pub async fn first_fetches(&self, bound: Duration) {
        self.sources.wait_first_fetches(bound).await
    }

    /// Public keys to publish: the current signing key, then previous ones in grace.
    /// Empty in shared-key mode: a secret is never published.
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

    /// Whether a caller by this name could be trusted at all: a key of its own (a file, or
    /// a key URL named for it), an issuer mapping a subject to it, or the shared key
    /// (whose holders may claim any name). `explain --caller` asks.
    pub fn could_trust(&self, caller: &str) -> bool {
        let snapshot = self.snapshot();
        let ring = &snapshot.keyring;
        ring.keys()
            .iter()
            .any(|k| matches!(&k.speaks, Speaks::Anyone) || k.speaks.identity() == Some(caller))
            || self
                .sources
                .describe()
                .iter()
                .any(|s| s["issuer"].is_null() && s["identity"] == caller)
            || self
                .cfg
                .trust
                .issuers
                .iter()
                .any(|i| i.callers.values().any(|c| c == caller))
    }

    /// `/trust`: what is trusted now, what could not be loaded, and each key URL.
    pub fn describe(&self) -> serde_json::Value {
        let snapshot = self.snapshot();
        let ring = &snapshot.keyring;
        let keys: Vec<_> = ring
            .keys()
            .into_iter()
            .map(|k| {
                serde_json::json!({
                    "identity": k.speaks.label(),
                    "kid": k.key.kid,
                    "alg": k.key.alg.as_str(),
                    "file": k.source,
                    "revoked": ring.is_revoked(&k.key.kid),
                })
            })
            .collect();
        let (issuers, url_sources): (Vec<_>, Vec<_>) = self
            .sources
            .describe()
            .into_iter()
            .partition(|s| !s["issuer"].is_null());
        let mut revoked: Vec<_> = ring.revoked().iter().collect();
        revoked.sort();
        // Each caller and every source it is reachable from ("self": its own keys, or
        // an issuer's name), so that one caller from two sources is plain to see.
        let mut callers: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for k in ring.keys() {
            if let Some(id) = k.speaks.identity() {
                callers
                    .entry(id)
                    .or_default()
                    .push(crate::config::Sources::SELF);
            }
        }
        for issuer in &self.cfg.trust.issuers {
            for caller in issuer.callers.values() {
                callers.entry(caller).or_default().push(&issuer.name);
            }
        }
        for from in callers.values_mut() {
            from.dedup();
        }
        serde_json::json!({
            "identity": self.cfg.identity.name,
            "generation": snapshot.generation,
            "trusted_keys": ring.len(),
            "keys": keys,
            "revoked": revoked,
            "problems": ring.problems(),
            "shared_kids": ring.shared(),
            "callers": callers,
            "signing_kid": self.signer().map(|s| s.kid().to_owned()),
            "url_sources": url_sources,
            "issuers": issuers,
        })
    }

    /// At scrape time: the key URL sources' age gauges (see
    /// [`Sources::update_age_metrics`]).
    pub fn update_scrape_metrics(&self) {
        self.sources.update_age_metrics(&self.metrics);
    }

    /// Composes the keyring from the current files and fetched keys and publishes it if
    /// a request would see a difference. `true` if published.
    fn republish(&self) -> bool {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let keyring = files::compose(&files, self.sources.keys());
        if keyring.same_as(&self.snapshot().keyring) {
            return false;
        }
        self.publish_keyring(keyring);
        true
    }

    /// Publishes a new keyring; returns its generation. (The verified-token cache drops
    /// entries of older generations on its next insert.)
    fn publish_keyring(&self, keyring: Keyring) -> u64 {
        self.metrics.trusted_keys.set(keyring.len() as i64);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.snapshot.store(Arc::new(TrustSnapshot {
            keyring,
            generation,
        }));
        generation
    }

    /// Replaces the signing key; the old public key stays published until `grace_until`.
    /// (The outbound token cache drops tokens of another kid on its next insert.)
    fn publish_signer(&self, signer: TokenSigner, grace_until: Instant) {
        let old = self.signer.load_full();
        if let Some(jwk) = old.as_ref().and_then(|o| o.key().public_jwk().cloned()) {
            let mut prev = self.previous_jwks.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            prev.retain(|(j, t)| *t > now && j.common.key_id.as_deref() != Some(signer.kid()));
            prev.push((jwk, grace_until));
        }
        self.signer.store(Some(Arc::new(signer)));
    }
}

/// A kid two sources trust for different identities: both keep it (a token's `iss` picks),
/// but one of them publishes a key that is not its own, which an operator wants to know.
pub(crate) fn warn_shared(keyring: &Keyring) {
    for line in keyring.shared_lines() {
        tracing::warn!("{line}");
    }
}
