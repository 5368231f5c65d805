//! Every reload, in one place: the trust material (authorized_keys, shared key, revocation
//! list), the signing key and the inbound TLS certificate — their first load at start and
//! every one after. Watches the directories they live in; on any change (after a short
//! debounce) or every `trust.rescan_interval`, rebuilds everything from disk off the
//! request path, checks it, and publishes it atomically. Requests keep using the snapshot
//! they started with; the next request sees the new one, on open keep-alive connections
//! too. Each reload is counted: `trustgate_reloads_total{material,result}` (and, as the
//! contract names it, `trustgate_keyring_reloads_total{result}` for keys).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::state::{FileTrust, State, TrustState};
use crate::config::{Config, SigningKeySource};
use crate::keys::watch::DirWatch;
use crate::keys::{self, KeyError, Keyring, TrustedKey};
use crate::tls::CertResolver;
use crate::token::TokenSigner;

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Published,
    Failed,
}

/// The first load, at start: the signing key and the trust material (the key URLs it
/// names are fetched later, by [`super::sources`]), or the reason the process must not
/// start.
pub fn load_initial(cfg: &Config) -> Result<(TrustState, Vec<keys::UrlSource>), KeyError> {
    let signer = cfg
        .identity
        .key()
        .map(|source| load_signer(cfg, &source))
        .transpose()?;
    let files = load_files(cfg, None)?;
    let keyring = compose(&files, Vec::new());
    for p in keyring.problems() {
        tracing::warn!(file = %p.file.display(), reason = %p.reason, "key file skipped");
    }
    let sources = files.sources.clone();
    Ok((TrustState::new(files, keyring, signer), sources))
}

/// The keyring of the files' keys and the fetched ones.
fn compose(files: &FileTrust, fetched: Vec<TrustedKey>) -> Keyring {
    let mut keys = files.keys.clone();
    keys.extend(fetched);
    Keyring::new(keys, files.revoked.clone(), files.problems.clone())
}

/// Composes the keyring from the current files and fetched keys and publishes it if a
/// request would see a difference. `true` if published.
pub fn republish(state: &State) -> bool {
    let files = state.trust.files.lock().unwrap_or_else(|p| p.into_inner());
    let keyring = compose(&files, state.sources.keys());
    if keyring.same_as(&state.trust.snapshot().keyring) {
        return false;
    }
    publish(state, keyring);
    true
}

fn publish(state: &State, keyring: Keyring) {
    state.metrics.trusted_keys.set(keyring.len() as i64);
    state.trust.publish_keyring(keyring);
    // Entries of the old generation can never be used again: free them.
    if let Some(inbound) = &state.inbound {
        inbound.verified.clear();
    }
}

/// Owns what reloads write: the shared state's trust material and the TLS certificate.
pub struct Reloader {
    pub state: Arc<State>,
    pub certs: Option<Arc<CertResolver>>,
}

impl Reloader {
    fn count(&self, material: &str, result: &str) {
        self.state
            .metrics
            .reloads
            .with_label_values(&[material, result])
            .inc();
        if material != "tls_certificate" {
            self.state
                .metrics
                .keyring_reloads
                .with_label_values(&[result])
                .inc();
        }
    }

    /// Rebuilds the trust material from disk and publishes it if anything a request can
    /// see changed. A directory that cannot be read keeps the previous snapshot in
    /// force; a file that no longer parses keeps the keys it held before (see
    /// [`load_files`]). `force_count` counts the attempt even when nothing changed (a
    /// watcher event), so that every reload an operator caused is visible in metrics.
    pub fn reload_trust(&self, force_count: bool) -> ReloadOutcome {
        let state = &self.state;
        let timer = state.metrics.reload_duration.start_timer();
        let current = state.trust.snapshot();
        let result = load_files(&state.cfg, Some(&current.keyring));
        timer.observe_duration();
        match result {
            Ok(files) => {
                // One composition at a time: a fetch finishing now waits for this one.
                let mut held = state.trust.files.lock().unwrap_or_else(|p| p.into_inner());
                state.sources.set(&files.sources);
                let keyring = compose(&files, state.sources.keys());
                *held = files;
                let changed = !keyring.same_as(&current.keyring);
                let has_problems = !keyring.problems().is_empty();
                state.metrics.trust_unreadable.set(0);
                state
                    .metrics
                    .trust_problems
                    .set(keyring.problems().len() as i64);
                if changed || force_count {
                    self.count("trust", if has_problems { "error" } else { "ok" });
                }
                if !changed {
                    return ReloadOutcome::Unchanged;
                }
                for p in keyring.problems() {
                    tracing::error!(file = %p.file.display(), reason = %p.reason, "key file problem");
                }
                tracing::info!(
                    trusted_keys = keyring.len(),
                    problems = keyring.problems().len(),
                    "keyring reloaded"
                );
                publish(state, keyring);
                ReloadOutcome::Published
            }
            Err(e) => {
                self.count("trust", "error");
                state.metrics.trust_unreadable.set(1);
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
        let state = &self.state;
        let Some(source) = state.cfg.identity.key() else {
            return ReloadOutcome::Unchanged;
        };
        let signer = match load_signer(&state.cfg, &source) {
            Ok(s) => s,
            Err(e) => {
                self.count("signing_key", "error");
                tracing::error!(error = %e, "signing key unreadable: keeping the current one");
                return ReloadOutcome::Failed;
            }
        };
        let old = state.trust.signer();
        if old.as_ref().is_some_and(|o| o.kid() == signer.kid()) {
            return ReloadOutcome::Unchanged;
        }
        tracing::info!(
            old_kid = old.as_ref().map(|o| o.kid()).unwrap_or("-"),
            new_kid = signer.kid(),
            "signing key rotated"
        );
        let grace_until = std::time::Instant::now() + state.cfg.trust.jwks_grace;
        state.trust.publish_signer(signer, grace_until);
        if let Some(outbound) = &state.outbound {
            outbound.tokens.clear();
        }
        self.count("signing_key", "ok");
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
                self.count("tls_certificate", "ok");
                tracing::info!("inbound TLS certificate reloaded");
                ReloadOutcome::Published
            }
            Ok(false) => ReloadOutcome::Unchanged,
            Err(e) => {
                self.count("tls_certificate", "error");
                tracing::error!(error = %e, "inbound TLS certificate unreadable: keeping the current one");
                ReloadOutcome::Failed
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

/// Reads authorized_keys, the shared key and the revocation list.
///
/// With a `previous` keyring, a key file that fails to load keeps the keys it held in
/// it: a half-written or broken copy of `orders.pem` must not cut `orders` off. (A file
/// that is *gone* is a removal, and its keys go.)
pub fn load_files(cfg: &Config, previous: Option<&Keyring>) -> Result<FileTrust, KeyError> {
    let mut trusted = Vec::new();
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    if let Some(dir) = &cfg.trust.authorized_keys {
        let load = keys::load_dir(dir)?;
        trusted.extend(load.keys);
        sources = load.sources;
        for mut p in load.problems {
            if let Some(prev) = previous {
                let kept: Vec<TrustedKey> = prev
                    .keys()
                    .into_iter()
                    .filter(|k| k.source == p.file && p.file.extension() != Some("url".as_ref()))
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
    Ok(FileTrust {
        keys: trusted,
        revoked,
        problems,
        sources,
    })
}

/// Quiet time after an event before reloading: a kubelet update is several events in a
/// few milliseconds; a plain `cp` can be two writes.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A steady stream of events still reloads at least this often.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

fn parent(p: &Path) -> Option<PathBuf> {
    p.parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .map(Path::to_path_buf)
}

/// The directories whose changes matter. The authorized_keys directory is watched along
/// with its parent, so that deleting and re-creating it is noticed.
pub fn watched_dirs(cfg: &Config) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = &cfg.trust.authorized_keys {
        dirs.push(d.to_path_buf());
        dirs.extend(parent(d));
    }
    let files = [
        cfg.trust.revoked.as_deref(),
        cfg.trust.shared_key.as_deref(),
        cfg.identity.private_key.as_deref(),
        cfg.identity.shared_key.as_deref(),
    ];
    dirs.extend(files.into_iter().flatten().filter_map(parent));
    if let Some(i) = &cfg.inbound {
        dirs.extend(
            [&i.tls_cert, &i.tls_key]
                .into_iter()
                .flatten()
                .filter_map(|p| parent(p)),
        );
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Installs the watches. Called before the trust material is first read, so that no
/// change can fall between the first load and the first watch.
pub fn new_watch(dirs: &[PathBuf]) -> Option<DirWatch> {
    match DirWatch::new(dirs) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "file watcher unavailable; relying on the periodic rescan");
            None
        }
    }
}

async fn next_change(watch: &mut Option<DirWatch>) {
    match watch {
        Some(w) => {
            if w.changes.recv().await.is_none() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Runs until `stop` turns true, starting from the watches `watcher` installed.
pub async fn run(
    reloader: Reloader,
    mut watcher: Option<DirWatch>,
    mut stop: watch::Receiver<bool>,
) {
    let reloader = Arc::new(reloader);
    let state = reloader.state.clone();
    let dirs = watched_dirs(&state.cfg);
    let mut watched_ids = dir_ids(&dirs);
    let mut rescan = tokio::time::interval(state.cfg.trust.rescan_interval);
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rescan.tick().await;
    let mut recheck = false;
    loop {
        let from_event = if recheck {
            recheck = false;
            true
        } else {
            tokio::select! {
                _ = stop.changed() => return,
                _ = next_change(&mut watcher) => true,
                _ = rescan.tick() => false,
            }
        };
        if from_event {
            let start = Instant::now();
            // Debounce: wait for a quiet DEBOUNCE, at most MAX_DEBOUNCE.
            while let Some(w) = watcher.as_mut() {
                let quiet = tokio::time::sleep(DEBOUNCE);
                tokio::select! {
                    more = w.changes.recv() => {
                        if more.is_none() || start.elapsed() >= MAX_DEBOUNCE {
                            break;
                        }
                    }
                    _ = quiet => break,
                }
            }
        }
        let r = reloader.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            r.reload_trust(from_event);
            r.reload_signer();
            r.reload_tls();
        })
        .await;
        if let Err(e) = reloaded {
            tracing::error!(error = %e, "reload task failed");
        }
        // A directory deleted and re-created is a new inode that the old watch does not
        // see: watch it afresh, then look once more for changes made in between. Watches
        // that are still good are kept, so no event is lost to a re-install.
        let ids = dir_ids(&dirs);
        let stale = watcher.as_ref().is_none_or(|w| !w.unwatched.is_empty());
        if ids != watched_ids || stale {
            watcher = new_watch(&dirs);
            watched_ids = ids;
            recheck = watcher.as_ref().is_some_and(|w| w.unwatched.is_empty());
        }
    }
}

/// (device, inode) of each directory, `None` where missing.
fn dir_ids(dirs: &[PathBuf]) -> Vec<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt as _;
    dirs.iter()
        .map(|d| std::fs::metadata(d).ok().map(|m| (m.dev(), m.ino())))
        .collect()
}
