//! Outbound routes that present a token from a file (`token_file`: a projected
//! service-account token the kubelet writes) instead of signing one — a material of the
//! trust plane like the others: read at start, re-read off the request path when its
//! directory changes (the kubelet rewrites the file well before the token expires, by the
//! `..data` symlink swap) or at the periodic rescan, swapped in atomically, counted in
//! `trustgate_reloads_total{material="token_file"}`. A request only loads the current
//! token. A file that cannot be read keeps the last good token (logged); a route whose
//! file was never readable answers 503 `token_unavailable`. The token is never logged.
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arc_swap::ArcSwapOption;

use super::issuer::read_token_file;
use crate::config::Config;
use crate::token::Issued;

/// Every route's token file, by route host.
#[derive(Default)]
pub struct TokenFiles {
    by_host: HashMap<String, TokenFile>,
}

struct TokenFile {
    path: PathBuf,
    issued: ArcSwapOption<Issued>,
    /// What the path named when last read: a reload reads only a file that changed.
    stamp: Mutex<Option<Stamp>>,
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

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime: (m.mtime(), m.mtime_nsec()),
        len: m.len(),
    })
}

/// What a look at one file did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Looked {
    Unchanged,
    /// A new token is presented from now on.
    Read,
    /// Unreadable or empty: the last good token (if any) stays.
    Failed,
}

impl TokenFiles {
    /// Reads every route's token file once.
    pub fn load(cfg: &Config) -> Self {
        let routes = cfg.outbound.iter().flat_map(|o| &o.routes);
        let by_host = routes
            .filter_map(|r| {
                let file = TokenFile {
                    path: r.token_file.as_deref()?.to_path_buf(),
                    issued: ArcSwapOption::empty(),
                    stamp: Mutex::new(None),
                };
                file.look();
                Some((r.host.clone(), file))
            })
            .collect();
        TokenFiles { by_host }
    }

    /// The token the route presents now: `None` if the route has no token file, `Some(None)`
    /// if its file has never been readable.
    pub fn get(&self, host: &str) -> Option<Option<Issued>> {
        let file = self.by_host.get(host)?;
        Some(file.issued.load().as_deref().cloned())
    }

    /// The directories to watch: each file's own (where the kubelet's `..data` swap
    /// happens).
    pub fn dirs(cfg: &Config) -> Vec<PathBuf> {
        let routes = cfg.outbound.iter().flat_map(|o| &o.routes);
        routes
            .filter_map(|r| r.token_file.as_deref()?.parent().map(Path::to_path_buf))
            .collect()
    }

    /// Looks at every file again, reading those that changed.
    pub fn reload(&self) -> Vec<Looked> {
        self.by_host.values().map(TokenFile::look).collect()
    }
}

impl TokenFile {
    fn look(&self) -> Looked {
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path);
        let had = self.issued.load().is_some();
        if now.is_some() && now == *last && had {
            return Looked::Unchanged;
        }
        let read = read_token_file(&self.path)
            .and_then(|t| Issued::new(t.into()).map_err(|e| e.to_string()));
        match read {
            Ok(issued) => {
                let same = self
                    .issued
                    .load()
                    .as_ref()
                    .is_some_and(|i| i.token == issued.token);
                *last = now;
                if same {
                    return Looked::Unchanged;
                }
                if had {
                    tracing::info!(file = %self.path.display(), "token file re-read");
                }
                self.issued.store(Some(issued.into()));
                Looked::Read
            }
            Err(error) => {
                tracing::error!(
                    %error, kept = had,
                    "token_file cannot be read{}",
                    if had { "; presenting the last good token" } else { "" }
                );
                Looked::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_swap_is_read_and_a_broken_file_keeps_the_last_token() {
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
        let text = format!(
            "[identity]\nname = \"orders\"\nprivate_key = \"/k\"\n[trust]\nauthorized_keys = \"/a\"\n\
             [outbound]\n[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b\"\ntoken_file = \"{}\"\n\
             [[outbound.routes]]\nhost = \"ledger\"\nupstream = \"http://l\"\ntoken_file = \"{}\"\n\
             [[outbound.routes]]\nhost = \"signed\"\nupstream = \"http://s\"\n",
            dir.path().join("token").display(),
            dir.path().join("none").display()
        );
        let cfg = crate::config::from_toml_str(&text, "t.toml", Vec::new()).unwrap();
        let files = TokenFiles::load(&cfg);
        let token = |host| files.get(host).unwrap().map(|i| i.token.to_string());
        assert_eq!(token("billing").as_deref(), Some("aaa.bbb.ccc"), "trimmed");
        assert_eq!(token("ledger"), None, "never readable");
        assert!(files.get("signed").is_none(), "no token file");
        assert_eq!(TokenFiles::dirs(&cfg), [dir.path(), dir.path()]);

        // Nothing is read on the request path: the swap shows once reloaded.
        swap("..v2", "ddd.eee.fff");
        assert_eq!(token("billing").as_deref(), Some("aaa.bbb.ccc"));
        let mut looked = files.reload();
        looked.sort_by_key(|l| *l as u8);
        assert_eq!(looked, [Looked::Read, Looked::Failed]);
        assert_eq!(token("billing").as_deref(), Some("ddd.eee.fff"));
        assert!(files.reload().contains(&Looked::Unchanged));

        // Gone: the last good token stays.
        std::fs::remove_file(dir.path().join("..data")).unwrap();
        assert_eq!(files.reload(), [Looked::Failed, Looked::Failed]);
        assert_eq!(token("billing").as_deref(), Some("ddd.eee.fff"));
    }
}
