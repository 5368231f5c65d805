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
    /// By kid: every source's key with that kid (nearly always one). A kid is looked up
    /// with the token's `iss`, as Envoy and Istio look keys up by (issuer, kid): a source
    /// that publishes another's kid never takes it from its owner.
    keys: HashMap<String, Box<[Arc<TrustedKey>]>>,
    revoked: HashSet<String>,
    problems: Vec<FileProblem>,
    /// Kids trusted for more than one identity or issuer, with whom (reported, not refused).
    shared: Vec<SharedKid>,
}

/// A kid that more than one source trusts for a different identity or issuer. Each keeps
/// it: a token's `iss` says which one it means.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedKid {
    pub kid: String,
    /// Whom each source trusts it for (`orders`, `issuer:cluster`), with the source.
    pub trusted_for: Vec<(String, PathBuf)>,
}

/// The outcome of looking a kid up for a token's `iss`.
pub enum Selected<'k> {
    /// A key of the source the `iss` names.
    Own(&'k Arc<TrustedKey>),
    /// The kid is known, but for other sources only: the token will be refused as claiming
    /// an identity the key does not speak for.
    Other(&'k Arc<TrustedKey>),
}

impl<'k> Selected<'k> {
    pub fn key(&self) -> &'k Arc<TrustedKey> {
        match self {
            Selected::Own(k) | Selected::Other(k) => k,
        }
    }
}

impl Keyring {
    /// Builds a snapshot. A kid trusted for two different identities or issuers is kept
    /// for both (a token's `iss` picks one, see [`Self::select`]) and reported in
    /// [`Self::shared`]; the same key listed twice for the same identity is kept once.
    pub fn new(
        keys: Vec<TrustedKey>,
        revoked: HashSet<String>,
        mut problems: Vec<FileProblem>,
    ) -> Self {
        let mut map: HashMap<String, Vec<Arc<TrustedKey>>> = HashMap::with_capacity(keys.len());
        for key in keys {
            let list = map.entry(key.key.kid.clone()).or_default();
            if !list.iter().any(|k| k.speaks == key.speaks) {
                list.push(Arc::new(key));
            }
        }
        let mut shared: Vec<SharedKid> = map
            .iter()
            .filter(|(_, list)| list.len() > 1)
            .map(|(kid, list)| SharedKid {
                kid: kid.clone(),
                trusted_for: list
                    .iter()
                    .map(|k| (k.speaks.label().into_owned(), k.source.clone()))
                    .collect(),
            })
            .collect();
        shared.sort_by(|a, b| a.kid.cmp(&b.kid));
        problems.sort_by(|a, b| a.file.cmp(&b.file));
        Keyring {
            keys: map
                .into_iter()
                .map(|(kid, mut list)| {
                    // A stable order, so that a fallback is the same in every snapshot.
                    list.sort_by(|a, b| {
                        (a.speaks.label(), &a.source).cmp(&(b.speaks.label(), &b.source))
                    });
                    (kid, list.into_boxed_slice())
                })
                .collect(),
            revoked,
            problems,
            shared,
        }
    }

    /// The trusted key with this kid when only one source has it (the common case: no
    /// `iss` needed), else the one the token's `iss` (read by `iss()`, unverified: it only
    /// picks among keys already trusted) selects: an identity's own key, then an issuer
    /// whose `iss` it is, then a SPIFFE issuer that does not check `iss`, then the shared
    /// key. A revoked key is still returned (so that the rejection can say `revoked`
    /// rather than `unknown_key`); check [`Self::is_revoked`].
    pub fn select(&self, kid: &str, iss: impl FnOnce() -> Option<String>) -> Option<Selected<'_>> {
        let list = self.keys.get(kid)?;
        if let [only] = &**list {
            return Some(Selected::Own(only));
        }
        let iss = iss();
        let iss = iss.as_deref();
        let rank = |k: &TrustedKey| match &k.speaks {
            Speaks::Identity(i) if Some(i.as_str()) == iss => Some(0),
            Speaks::Issuer(v) if v.issuer.is_some() && v.issuer.as_deref() == iss => Some(1),
            Speaks::Issuer(v) if v.issuer.is_none() => Some(2),
            Speaks::Anyone => Some(3),
            _ => None,
        };
        match list
            .iter()
            .filter_map(|k| Some((rank(k)?, k)))
            .min_by_key(|(r, _)| *r)
        {
            Some((_, k)) => Some(Selected::Own(k)),
            None => Some(Selected::Other(&list[0])),
        }
    }

    /// Every source's key with this kid.
    pub fn get(&self, kid: &str) -> &[Arc<TrustedKey>] {
        self.keys.get(kid).map_or(&[], |l| l)
    }

    /// Kids trusted for more than one identity or issuer.
    pub fn shared(&self) -> &[SharedKid] {
        &self.shared
    }

    /// [`Self::shared`] in words, one line each: each source keeps the key (a token's
    /// `iss` picks), but one of them publishes a key that is not its own.
    pub fn shared_lines(&self) -> Vec<String> {
        self.shared
            .iter()
            .map(|s| {
                let whom: Vec<String> = s
                    .trusted_for
                    .iter()
                    .map(|(who, file)| format!("{who} ({})", file.display()))
                    .collect();
                format!(
                    "key {} is trusted for several identities: {} (a token's iss picks)",
                    s.kid,
                    whom.join(", ")
                )
            })
            .collect()
    }

    pub fn is_revoked(&self, kid: &str) -> bool {
        self.revoked.contains(kid)
    }

    /// Number of usable keys: trusted and not revoked (a kid two sources trust counts
    /// for each).
    pub fn len(&self) -> usize {
        self.keys
            .iter()
            .filter(|(kid, _)| !self.revoked.contains(*kid))
            .map(|(_, list)| list.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every trusted key (revoked ones included), sorted by identity then kid.
    pub fn keys(&self) -> Vec<&Arc<TrustedKey>> {
        let mut v: Vec<_> = self.keys.values().flat_map(|l| l.iter()).collect();
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
            && self.keys.iter().all(|(kid, list)| {
                other.keys.get(kid).is_some_and(|o| {
                    o.len() == list.len()
                        && o.iter()
                            .zip(list.iter())
                            .all(|(o, k)| o.speaks == k.speaks && o.source == k.source)
                })
            })
            && self.revoked == other.revoked
            && self.problems == other.problems
    }

    /// Files that could not be loaded into this snapshot.
    pub fn problems(&self) -> &[FileProblem] {
        &self.problems
    }
}
