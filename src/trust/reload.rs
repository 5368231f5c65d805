//! Every reload after the first load: the trust material (authorized_keys, shared key,
//! revocation list), the signing key, the inbound TLS certificate and the outbound routes'
//! token files. Watches the directories they live in; on a change in a material's
//! directories (after a short debounce) that material is rebuilt from disk off the
//! request path, checked and published atomically; every `trust.rescan_interval` all of
//! them are. Requests keep using the snapshot they started with; the next request sees
//! the new one, on open keep-alive connections too. Each reload is counted:
//! `trustgate_reloads_total{material,result}` (and, as the contract names it,
//! `trustgate_keyring_reloads_total{result}` for keys).
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::files::{self, TrustFiles};
use super::token_files::Looked;
use super::watch::{dir_ids, new_watch, DirWatch, Dirs, Touched};
use super::Trust;
use crate::keys::Keyring;
pub use crate::metrics::Material;
use crate::tls::CertResolver;

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Published,
    Failed,
}

/// Owns what reloads write: the trust material and the TLS certificate.
pub struct Reloader {
    pub trust: Arc<Trust>,
    pub certs: Option<Arc<CertResolver>>,
}

impl Reloader {
    fn count(&self, material: Material, result: &str) {
        let m = &self.trust.metrics;
        m.reloads
            .with_label_values(&[material.label(), result])
            .inc();
        if material != Material::TlsCertificate {
            m.keyring_reloads.with_label_values(&[result]).inc();
        }
    }

    /// Rebuilds the trust material from disk and publishes it if anything a request can
    /// see changed. A directory that cannot be read keeps the previous snapshot in
    /// force; a file that no longer parses keeps the keys it held before (see
    /// [`files::load`]). `force_count` counts the attempt even when nothing changed (a
    /// watcher event), so that every reload an operator caused is visible in metrics.
    pub fn reload_trust(&self, force_count: bool) -> ReloadOutcome {
        let trust = &self.trust;
        let m = &trust.metrics;
        let timer = m.reload_duration.start_timer();
        let current = trust.snapshot();
        let result = files::load(&TrustFiles::of(&trust.cfg), Some(&current.keyring));
        timer.observe_duration();
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                self.count(Material::Trust, "error");
                m.trust_unreadable.set(1);
                tracing::error!(
                    error = %e,
                    "TRUST MATERIAL UNREADABLE: keeping the previous keyring until it is back"
                );
                return ReloadOutcome::Failed;
            }
        };
        // One composition at a time: a fetch finishing now waits for this one.
        let mut held = trust.files.lock().unwrap_or_else(|p| p.into_inner());
        trust.sources.set(&loaded.sources);
        let keyring = files::compose(&loaded, trust.sources.keys());
        *held = loaded;
        let changed = !keyring.same_as(&current.keyring);
        if m.trust_unreadable.get() == 1 {
            tracing::info!("trust material readable again: reloading from it");
        }
        m.trust_unreadable.set(0);
        m.trust_problems.set(keyring.problems().len() as i64);
        if changed || force_count {
            let problems = !keyring.problems().is_empty();
            self.count(Material::Trust, if problems { "error" } else { "ok" });
        }
        if !changed {
            return ReloadOutcome::Unchanged;
        }
        for p in keyring.problems() {
            tracing::error!(file = %p.file.display(), reason = %p.reason, "key file problem");
        }
        super::warn_shared(&keyring);
        let d = diff(&current.keyring, &keyring);
        let (trusted_keys, problems) = (keyring.len(), keyring.problems().len());
        // Published first: what the line says is in force when it is read.
        trust.publish_keyring(keyring);
        tracing::info!(
            trusted_keys,
            problems,
            added = %d.added.join(" "),
            removed = %d.removed.join(" "),
            revoked = %d.revoked.join(" "),
            unrevoked = %d.unrevoked.join(" "),
            "keyring reloaded"
        );
        for who in &d.orphaned {
            tracing::warn!(
                identity = %who,
                "{who} has no trusted key left: its calls are refused until one is added"
            );
        }
        ReloadOutcome::Published
    }

    /// Re-reads the signing key; a new kid replaces the signer (new tokens use it at
    /// once) and the old public key stays in the JWKS for `trust.jwks_grace`. A key that
    /// does not load keeps the current one in force.
    pub fn reload_signer(&self) -> ReloadOutcome {
        let trust = &self.trust;
        let signer = match files::load_signer(&trust.cfg) {
            Ok(Some(s)) => s,
            Ok(None) => return ReloadOutcome::Unchanged,
            Err(e) => {
                self.count(Material::SigningKey, "error");
                tracing::error!(error = %e, "signing key unreadable: keeping the current one");
                return ReloadOutcome::Failed;
            }
        };
        let old = trust.signer();
        if old.as_ref().is_some_and(|o| o.kid() == signer.kid()) {
            return ReloadOutcome::Unchanged;
        }
        tracing::info!(
            old_kid = old.as_ref().map(|o| o.kid()).unwrap_or("-"),
            new_kid = signer.kid(),
            "signing key rotated"
        );
        let grace_until = std::time::Instant::now() + trust.cfg.trust.jwks_grace;
        trust.publish_signer(signer, grace_until);
        self.count(Material::SigningKey, "ok");
        ReloadOutcome::Published
    }

    /// Re-reads the inbound certificate and key; a pair that does not load keeps the
    /// current one in force.
    pub fn reload_tls(&self) -> ReloadOutcome {
        let Some(certs) = &self.certs else {
            return ReloadOutcome::Unchanged;
        };
        match certs.reload() {
            Ok(true) => {
                self.count(Material::TlsCertificate, "ok");
                tracing::info!("inbound TLS certificate reloaded");
                ReloadOutcome::Published
            }
            Ok(false) => ReloadOutcome::Unchanged,
            Err(e) => {
                self.count(Material::TlsCertificate, "error");
                tracing::error!(error = %e, "inbound TLS certificate unreadable: keeping the current one");
                ReloadOutcome::Failed
            }
        }
    }

    /// Looks at the outbound routes' token files again: each one read anew is counted
    /// `ok`, each unreadable one `error` (its last good token stays).
    pub fn reload_token_files(&self) -> ReloadOutcome {
        let mut outcome = ReloadOutcome::Unchanged;
        for looked in self.trust.token_files.reload() {
            match looked {
                Looked::Unchanged => {}
                Looked::Read => {
                    self.count(Material::TokenFile, "ok");
                    if outcome == ReloadOutcome::Unchanged {
                        outcome = ReloadOutcome::Published;
                    }
                }
                Looked::Failed => {
                    self.count(Material::TokenFile, "error");
                    outcome = ReloadOutcome::Failed;
                }
            }
        }
        outcome
    }

    /// Reloads each material whose directories `touched` names (from an event: counted
    /// even when unchanged), or all of them (the periodic rescan: `None`).
    pub fn reload(&self, dirs: &Dirs, touched: Option<&Touched>) {
        let due = |d: &[std::path::PathBuf]| touched.is_none_or(|t| t.any(d));
        if due(&dirs.trust) {
            self.reload_trust(touched.is_some());
        }
        if due(&dirs.signing_key) {
            self.reload_signer();
        }
        if due(&dirs.tls_certificate) {
            self.reload_tls();
        }
        if due(&dirs.token_files) {
            self.reload_token_files();
        }
    }
}

/// Quiet time after an event before reloading: a kubelet update is several events in a
/// few milliseconds; a plain `cp` can be two writes.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A steady stream of events still reloads at least this often.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

async fn next_change(watch: &mut Option<DirWatch>) -> Touched {
    match watch {
        Some(w) => match w.changes.recv().await {
            Some(t) => t,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Waits for a quiet DEBOUNCE (at most MAX_DEBOUNCE), gathering what the events touched.
async fn debounce(watcher: &mut Option<DirWatch>, touched: &mut Touched) {
    let start = Instant::now();
    while let Some(w) = watcher.as_mut() {
        tokio::select! {
            more = w.changes.recv() => match more {
                Some(t) => {
                    touched.merge(t);
                    if start.elapsed() >= MAX_DEBOUNCE {
                        break;
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep(DEBOUNCE) => break,
        }
    }
}

/// Starts the trust plane's tasks — the reloads (from the watches `watcher` installed)
/// and the key URL scheduler — until `stop` turns true.
pub fn spawn(
    reloader: Reloader,
    watcher: Option<DirWatch>,
    stop: watch::Receiver<bool>,
) -> [JoinHandle<()>; 2] {
    let sources = tokio::spawn(super::sources::run(reloader.trust.clone(), stop.clone()));
    [tokio::spawn(run(reloader, watcher, stop)), sources]
}

async fn run(reloader: Reloader, mut watcher: Option<DirWatch>, mut stop: watch::Receiver<bool>) {
    let reloader = Arc::new(reloader);
    let dirs = Dirs::of(&reloader.trust.cfg);
    let all = dirs.all();
    let mut watched_ids = dir_ids(&all);
    let mut rescan = tokio::time::interval(reloader.trust.cfg.trust.rescan_interval);
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rescan.tick().await;
    let mut recheck = false;
    loop {
        let mut touched = if recheck {
            recheck = false;
            Some(Touched::everything())
        } else {
            tokio::select! {
                _ = stop.changed() => return,
                t = next_change(&mut watcher) => Some(t),
                _ = rescan.tick() => None,
            }
        };
        if let Some(t) = touched.as_mut() {
            debounce(&mut watcher, t).await;
        }
        let (r, d) = (reloader.clone(), dirs.clone());
        let reloaded = tokio::task::spawn_blocking(move || r.reload(&d, touched.as_ref())).await;
        if let Err(e) = reloaded {
            tracing::error!(error = %e, "reload task failed");
        }
        // A directory deleted and re-created is a new inode that the old watch does not
        // see: watch it afresh, then look once more for changes made in between. Watches
        // that are still good are kept, so no event is lost to a re-install.
        let ids = dir_ids(&all);
        let stale = watcher.as_ref().is_none_or(|w| !w.unwatched.is_empty());
        if ids != watched_ids || stale {
            watcher = new_watch(&all);
            watched_ids = ids;
            recheck = watcher.as_ref().is_some_and(|w| w.unwatched.is_empty());
        }
    }
}

/// What a reload changed, in words an operator can act on: kids as `identity:kid`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyringDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub revoked: Vec<String>,
    pub unrevoked: Vec<String>,
    /// Identities (or issuers) that had a usable key before and have none now.
    pub orphaned: Vec<String>,
}

pub fn diff(before: &Keyring, after: &Keyring) -> KeyringDiff {
    use std::collections::BTreeSet;
    let keys = |r: &Keyring| -> BTreeSet<(String, String)> {
        r.keys()
            .iter()
            .map(|k| (k.speaks.label().into_owned(), k.key.kid.clone()))
            .collect()
    };
    let usable = |r: &Keyring| -> BTreeSet<String> {
        r.keys()
            .iter()
            .filter(|k| !r.is_revoked(&k.key.kid))
            .map(|k| k.speaks.label().into_owned())
            .collect()
    };
    let (b, a) = (keys(before), keys(after));
    let named = |set: &BTreeSet<(String, String)>, other: &BTreeSet<(String, String)>| {
        set.difference(other)
            .map(|(who, kid)| format!("{who}:{kid}"))
            .collect()
    };
    let revoked_now = |r: &Keyring, o: &Keyring| {
        let mut v: Vec<String> = r.revoked().difference(o.revoked()).cloned().collect();
        v.sort();
        v
    };
    KeyringDiff {
        added: named(&a, &b),
        removed: named(&b, &a),
        revoked: revoked_now(after, before),
        unrevoked: revoked_now(before, after),
        orphaned: usable(before).difference(&usable(after)).cloned().collect(),
    }
}
