//! Outbound routes that present a token from a file (`token_file`: a projected
//! service-account token the kubelet writes) instead of signing one.
//!
//! The kubelet rewrites the file well before the token expires (at 80 % of its life),
//! atomically, by the `..data` symlink swap. The file is looked at again at most once a
//! second, by the request that finds the last look older than that: one `stat` (through
//! the symlinks), and a read only when what it names changed. A file that cannot be read
//! keeps the last good token (logged); a route whose file was never readable answers
//! 503 `token_unavailable`. The token is never logged.
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Outbound;
use crate::token::Issued;
use crate::trust::issuer::read_token_file;

/// How long a look at a token file stands.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Every route's token file, by route host.
#[derive(Default)]
pub struct TokenFiles {
    by_host: HashMap<String, TokenFile>,
}

impl TokenFiles {
    /// Reads every route's token file once.
    pub fn new(cfg: &Outbound) -> Self {
        let by_host = cfg
            .routes
            .iter()
            .filter_map(|r| Some((r.host.clone(), TokenFile::new(r.token_file.as_deref()?))))
            .collect();
        TokenFiles { by_host }
    }

    /// The route's token file, if it has one.
    pub fn of(&self, host: &str) -> Option<&TokenFile> {
        self.by_host.get(host)
    }
}

pub struct TokenFile {
    path: PathBuf,
    current: ArcSwap<Look>,
    looking: AtomicBool,
}

/// One look at the file: the token then (or the last good one), and what the path named.
struct Look {
    at: Instant,
    stamp: Option<Stamp>,
    issued: Option<Issued>,
}

/// What distinguishes one version of the file from the next (after the `..data` swap,
/// another inode).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    len: u64,
}

impl TokenFile {
    pub fn new(path: &Path) -> Self {
        let file = TokenFile {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(Look {
                at: Instant::now(),
                stamp: None,
                issued: None,
            }),
            looking: AtomicBool::new(false),
        };
        file.look(None);
        file
    }

    /// The token to present now; `None` if the file has never been readable.
    pub fn get(&self) -> Option<Issued> {
        let look = self.current.load();
        if look.at.elapsed() >= LOOK_AGAIN && !self.looking.swap(true, Ordering::AcqRel) {
            let prev = arc_swap::Guard::into_inner(look);
            self.look(Some(&prev));
            self.looking.store(false, Ordering::Release);
            return self.current.load().issued.clone();
        }
        look.issued.clone()
    }

    /// Looks at the file, reading it if it changed since `prev`.
    fn look(&self, prev: Option<&Arc<Look>>) {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            len: m.len(),
        });
        let kept = prev.and_then(|p| p.issued.clone());
        if let (Some(p), Some(s)) = (prev, stamp) {
            if p.stamp == Some(s) && p.issued.is_some() {
                self.current.store(Arc::new(Look {
                    at: Instant::now(),
                    stamp,
                    issued: kept,
                }));
                return;
            }
        }
        let issued = match read_token_file(&self.path)
            .and_then(|t| Issued::new(t.into()).map_err(|e| e.to_string()))
        {
            Ok(issued) => {
                if prev.is_some() {
                    tracing::info!(file = %self.path.display(), "token file re-read");
                }
                Some(issued)
            }
            Err(error) => {
                tracing::error!(
                    %error, kept = kept.is_some(),
                    "token_file cannot be read{}",
                    if kept.is_some() { "; presenting the last good token" } else { "" }
                );
                kept
            }
        };
        self.current.store(Arc::new(Look {
            at: Instant::now(),
            stamp,
            issued,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_swap_is_picked_up_and_a_broken_file_keeps_the_last_token() {
        let dir = tempfile::tempdir().unwrap();
        let swap = |name: &str, token: &str| {
            let data = dir.path().join(name);
            std::fs::create_dir(&data).unwrap();
            std::fs::write(data.join("token"), token).unwrap();
            let tmp = dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(name, &tmp).unwrap();
            std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
        };
        swap("..v1", "aaa.bbb.ccc\n");
        std::os::unix::fs::symlink("..data/token", dir.path().join("token")).unwrap();
        let file = TokenFile::new(&dir.path().join("token"));
        assert_eq!(&*file.get().unwrap().token, "aaa.bbb.ccc", "trimmed");
        swap("..v2", "ddd.eee.fff");
        // Within a second of the last look, the same token.
        assert_eq!(&*file.get().unwrap().token, "aaa.bbb.ccc");
        let deadline = Instant::now() + Duration::from_secs(5);
        while &*file.get().unwrap().token != "ddd.eee.fff" {
            assert!(
                Instant::now() < deadline,
                "the new token was never presented"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Gone: the last good token stays.
        std::fs::remove_file(dir.path().join("..data")).unwrap();
        let until = Instant::now() + LOOK_AGAIN * 2;
        while Instant::now() < until {
            assert_eq!(&*file.get().unwrap().token, "ddd.eee.fff");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(TokenFile::new(&dir.path().join("none")).get().is_none());
    }
}
