//! The file watcher: turns changes in the directories that hold trust material into a
//! "something changed" signal. What changed does not matter: the reloader rebuilds the
//! whole state from disk.
//!
//! Directories are watched, never files: Kubernetes updates a Secret volume by renaming
//! `..data` over a new timestamped directory, and no event ever names the visible files
//! (FIELD-NOTES.md). Watches are non-recursive (a recursive watch would follow `..data`
//! and fire before the swap), and `Access` events are ignored (reading the files during
//! a reload must not trigger another).
use std::path::PathBuf;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// A live set of directory watches; `changes` yields once per batch of events.
pub struct DirWatch {
    _watcher: RecommendedWatcher,
    pub changes: mpsc::UnboundedReceiver<()>,
    /// Directories that could not be watched (missing): the periodic rescan covers them.
    pub unwatched: Vec<PathBuf>,
}

impl DirWatch {
    pub fn new(dirs: &[PathBuf]) -> Result<DirWatch, notify::Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let relevant = match &res {
                    Ok(ev) => !matches!(ev.kind, EventKind::Access(_)),
                    // An overflowed queue lost events: a reload is the safe answer.
                    Err(_) => true,
                };
                if relevant {
                    let _ = tx.send(());
                }
            })?;
        let mut unwatched = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for dir in dirs {
            if !seen.insert(dir.clone()) {
                continue;
            }
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; relying on the periodic rescan");
                unwatched.push(dir.clone());
            }
        }
        Ok(DirWatch {
            _watcher: watcher,
            changes: rx,
            unwatched,
        })
    }
}
