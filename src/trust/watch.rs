//! The file watcher: tells the reloader which directories holding trust material changed.
//! What changed inside them does not matter: each material touched is rebuilt from disk.
//!
//! Directories are watched, never files: Kubernetes updates a Secret volume by renaming
//! `..data` over a new timestamped directory, and no event ever names the visible files
//! (FIELD-NOTES.md). Watches are non-recursive (a recursive watch would follow `..data`
//! and fire before the swap), and `Access` events are ignored (reading the files during
//! a reload must not trigger another).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::config::Config;

/// What a batch of events touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Every directory an event named (an entry's parent, and the entry itself).
    pub dirs: BTreeSet<PathBuf>,
    /// Events were lost (the queue overflowed) or named no path: assume everything.
    pub all: bool,
}

impl Touched {
    pub fn everything() -> Self {
        Touched {
            dirs: BTreeSet::new(),
            all: true,
        }
    }

    /// Whether any of `dirs` was touched.
    pub fn any(&self, dirs: &[PathBuf]) -> bool {
        self.all || dirs.iter().any(|d| self.dirs.contains(d))
    }

    pub fn merge(&mut self, other: Touched) {
        self.all |= other.all;
        self.dirs.extend(other.dirs);
    }
}

/// A live set of directory watches; `changes` yields what each event touched.
pub struct DirWatch {
    _watcher: RecommendedWatcher,
    pub changes: mpsc::UnboundedReceiver<Touched>,
    /// Directories that could not be watched (missing): the periodic rescan covers them.
    pub unwatched: Vec<PathBuf>,
}

impl DirWatch {
    pub fn new(dirs: &[PathBuf]) -> Result<DirWatch, notify::Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let touched = match &res {
                    Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => return,
                    Ok(ev) if !ev.paths.is_empty() => Touched {
                        dirs: ev
                            .paths
                            .iter()
                            .flat_map(|p| [Some(p.clone()), parent(p)])
                            .flatten()
                            .collect(),
                        all: false,
                    },
                    // An overflowed queue lost events: a reload of everything is the
                    // safe answer.
                    _ => Touched::everything(),
                };
                let _ = tx.send(touched);
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

/// The directories of each material.
#[derive(Clone, Debug, Default)]
pub struct Dirs {
    /// authorized_keys (and its parent, so that deleting and re-creating it is noticed),
    /// the shared key's and the revocation list's directories.
    pub trust: Vec<PathBuf>,
    pub signing_key: Vec<PathBuf>,
    pub tls_certificate: Vec<PathBuf>,
    /// Outbound routes' `token_file` directories.
    pub token_files: Vec<PathBuf>,
}

impl Dirs {
    pub fn of(cfg: &Config) -> Self {
        let mut trust = Vec::new();
        if let Some(d) = &cfg.trust.authorized_keys {
            trust.push(d.to_path_buf());
            trust.extend(parent(d));
        }
        let files = [
            cfg.trust.revoked.as_deref(),
            cfg.trust.shared_key.as_deref(),
        ];
        trust.extend(files.into_iter().flatten().filter_map(parent));
        let signing = [
            cfg.identity.private_key.as_deref(),
            cfg.identity.shared_key.as_deref(),
        ];
        let tls = cfg
            .inbound
            .iter()
            .flat_map(|i| [&i.tls_cert, &i.tls_key])
            .flatten()
            .filter_map(|p| parent(p));
        Dirs {
            trust: sorted(trust),
            signing_key: sorted(signing.into_iter().flatten().filter_map(parent).collect()),
            tls_certificate: sorted(tls.collect()),
            token_files: sorted(super::token_files::TokenFiles::dirs(cfg)),
        }
    }

    /// Every directory to watch, once.
    pub fn all(&self) -> Vec<PathBuf> {
        sorted(
            [
                &self.trust,
                &self.signing_key,
                &self.tls_certificate,
                &self.token_files,
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        )
    }
}

fn sorted(mut dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.sort();
    dirs.dedup();
    dirs
}

/// (device, inode) of each directory, `None` where missing.
pub fn dir_ids(dirs: &[PathBuf]) -> Vec<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt as _;
    dirs.iter()
        .map(|d| std::fs::metadata(d).ok().map(|m| (m.dev(), m.ino())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_material_has_its_directories() {
        let cfg = crate::config::from_toml_str(
            "[identity]\nname = \"billing\"\nprivate_key = \"/id/billing.pem\"\n\
             [trust]\nauthorized_keys = \"/trust/keys\"\nrevoked = \"/trust/revoked.txt\"\n\
             [inbound]\ntls_cert = \"/tls/tls.crt\"\ntls_key = \"/tls/tls.key\"\n",
            "t.toml",
            std::iter::empty::<(String, String)>(),
        )
        .unwrap();
        let dirs = Dirs::of(&cfg);
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(dirs.trust, [p("/trust"), p("/trust/keys")]);
        assert_eq!(dirs.signing_key, [p("/id")]);
        assert_eq!(dirs.tls_certificate, [p("/tls")]);
        assert_eq!(dirs.all().len(), 4);
        // A kubelet swap in the certificate's volume touches the certificate only.
        let swap = Touched {
            dirs: [p("/tls"), p("/tls/..data")].into(),
            all: false,
        };
        assert!(swap.any(&dirs.tls_certificate));
        assert!(!swap.any(&dirs.trust) && !swap.any(&dirs.signing_key));
        assert!(Touched::everything().any(&dirs.trust));
    }
}
