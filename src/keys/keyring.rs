//! The keyring: an immutable snapshot of everything trusted at one moment.
//!
//! A reload builds a whole new `Keyring` off the request path and publishes it at once
//! (arc-swap), so a request sees either the old or the new trust, never a mix.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::{VerifyingKey, Vouch};

/// Whom a trusted key may speak for.
#[derive(Debug, Clone)]
pub enum Speaks {
    /// One identity: the key file's name up to the first `.` (or the `.url` file's).
    Identity(String),
    /// The shared secret of shared-key mode: its holders can claim any identity
    /// (documented as the weaker mode).
    Anyone,
    /// The subjects an issuer vouches for, mapped to callers by its rules.
    Issuer(Arc<Vouch>),
}

impl PartialEq for Speaks {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Speaks::Identity(a), Speaks::Identity(b)) => a == b,
            (Speaks::Anyone, Speaks::Anyone) => true,
            (Speaks::Issuer(a), Speaks::Issuer(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }
}

impl Eq for Speaks {}

impl Speaks {
    /// How `/trust`, `keys` and logs name it: the identity, `*`, or `issuer:<name>`.
    pub fn label(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Speaks::Identity(i) => i.as_str().into(),
            Speaks::Anyone => "*".into(),
            Speaks::Issuer(v) => format!("issuer:{}", v.name).into(),
        }
    }

    /// The identity, for a key trusted for one.
    pub fn identity(&self) -> Option<&str> {
        match self {
            Speaks::Identity(i) => Some(i),
            _ => None,
        }
    }
}

/// A trusted key, and whom it speaks for.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub speaks: Speaks,
    pub key: VerifyingKey,
    /// The file the key was read from (`issuer:<name>` for an issuer's).
    pub source: PathBuf,
}

/// One file that could not be loaded, and why. Reported in logs, metrics and `/trust`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    pub file: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Keyring {
    keys: HashMap<String, Arc<TrustedKey>>,
    revoked: HashSet<String>,
    problems: Vec<FileProblem>,
}

impl Keyring {
    /// Builds a snapshot. A kid claimed by two different identities is trusted for
    /// neither (one of the two files is wrong, and we cannot tell which): both files are
    /// reported. The same key listed twice for the same identity is kept once.
    pub fn new(
        keys: Vec<TrustedKey>,
        revoked: HashSet<String>,
        mut problems: Vec<FileProblem>,
    ) -> Self {
        let mut map: HashMap<String, Arc<TrustedKey>> = HashMap::with_capacity(keys.len());
        let mut conflicted: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for key in keys {
            let kid = key.key.kid.clone();
            match map.get(&kid) {
                Some(existing) if existing.speaks != key.speaks => {
                    conflicted
                        .entry(kid)
                        .or_insert_with(|| vec![existing.source.clone()])
                        .push(key.source);
                }
                Some(_) => {}
                None => {
                    if let Some(files) = conflicted.get_mut(&kid) {
                        files.push(key.source);
                    } else {
                        map.insert(kid, Arc::new(key));
                    }
                }
            }
        }
        let mut conflicted: Vec<_> = conflicted.into_iter().collect();
        conflicted.sort();
        for (kid, files) in conflicted {
            map.remove(&kid);
            for file in &files {
                problems.push(FileProblem {
                    file: file.clone(),
                    reason: format!(
                        "key {kid} is claimed by more than one identity ({}); trusted for none",
                        files
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        problems.sort_by(|a, b| a.file.cmp(&b.file));
        Keyring {
            keys: map,
            revoked,
            problems,
        }
    }

    /// The trusted key with this kid. A revoked key is still returned (so that the
    /// rejection can say `revoked` rather than `unknown_key`); check [`Self::is_revoked`].
    pub fn get(&self, kid: &str) -> Option<&Arc<TrustedKey>> {
        self.keys.get(kid)
    }

    pub fn is_revoked(&self, kid: &str) -> bool {
        self.revoked.contains(kid)
    }

    /// Number of usable keys: trusted and not revoked.
    pub fn len(&self) -> usize {
        self.keys
            .keys()
            .filter(|k| !self.revoked.contains(*k))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every trusted key (revoked ones included), sorted by identity then kid.
    pub fn keys(&self) -> Vec<&Arc<TrustedKey>> {
        let mut v: Vec<_> = self.keys.values().collect();
        v.sort_by(|a, b| (a.speaks.label(), &a.key.kid).cmp(&(b.speaks.label(), &b.key.kid)));
        v
    }

    pub fn revoked(&self) -> &HashSet<String> {
        &self.revoked
    }

    /// Same trusted keys (kid, identity, file), revocations and problems: publishing
    /// `other` instead of `self` would change nothing a request can see.
    pub fn same_as(&self, other: &Keyring) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().all(|(kid, k)| {
                other
                    .keys
                    .get(kid)
                    .is_some_and(|o| o.speaks == k.speaks && o.source == k.source)
            })
            && self.revoked == other.revoked
            && self.problems == other.problems
    }

    /// Files that could not be loaded into this snapshot.
    pub fn problems(&self) -> &[FileProblem] {
        &self.problems
    }
}
