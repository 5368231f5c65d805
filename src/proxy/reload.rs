//! Hot reload: watch the directories of the trust material, the signing key and the TLS
//! certificate; on any change (after a short debounce) or every `trust.rescan_interval`,
//! rebuild everything from disk off the request path, check it, and publish it
//! atomically. Requests keep using the snapshot they started with; the next request sees
//! the new one, on open keep-alive connections too.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::State;
use crate::config::Config;
use crate::keys::watch::DirWatch;

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
    state: Arc<State>,
    mut watcher: Option<DirWatch>,
    mut stop: watch::Receiver<bool>,
) {
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
        let s = state.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            let trust = s.reload_trust(from_event);
            let signer = s.reload_signer();
            if let Some(certs) = &s.tls_certs {
                match certs.reload() {
                    Ok(true) => tracing::info!("inbound TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "inbound TLS certificate unreadable: keeping the current one"),
                }
            }
            (trust, signer)
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
