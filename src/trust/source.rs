//! One source of keys — an `<identity>.url` entry or an issuer — and its state: the
//! keys it holds ([`Held`]) × whether a fetch runs ([`Fetching`]). [`super::sources`]
//! moves it.
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use http::Uri;
use tokio::sync::watch;
use tokio::time::Instant;

use super::issuer::IssuerSource;
use crate::keys::{is_spiffe_id_in, IssuerKind, UrlSource, VerifyingKey, Vouch};
use crate::token::Peeked;

/// One `<identity>.url` entry, or one issuer.
pub struct Source {
    /// The identity its keys speak for; `issuer:<name>` for an issuer (the label of its
    /// metrics and logs).
    pub identity: String,
    /// What is fetched (an issuer's first request: its JWKS or its discovery document).
    pub url: Uri,
    /// The `.url` file; `issuer:<name>` for an issuer.
    pub file: PathBuf,
    /// An issuer: how it is fetched and what its keys vouch for.
    pub(super) issuer: Option<Arc<IssuerSource>>,
    /// When this source was configured: a source never fetched is as old as this.
    pub(super) added: Instant,
    pub(super) status: Mutex<Status>,
    /// Bumped after every fetch attempt; waiters watch it.
    pub(super) attempts: watch::Sender<u64>,
}

/// The keys a source holds.
pub(super) enum Held {
    /// Never fetched successfully: the identity fails closed (503).
    Never,
    /// The last good keys, from the success at `at` (wall clock for `/trust`, monotonic
    /// for the age).
    Keys {
        keys: Vec<VerifyingKey>,
        at: (SystemTime, Instant),
    },
    /// Dropped: no success within `trust.max_stale` of the one at `at`. Fails closed.
    Dropped { at: (SystemTime, Instant) },
}

/// Whether a fetch runs.
pub(super) enum Fetching {
    Idle { next: Instant },
    InFlight,
}

pub(super) struct Status {
    pub(super) held: Held,
    pub(super) fetching: Fetching,
    /// When the last fetch started (the cooldown counts from it).
    pub(super) last_attempt: Option<Instant>,
    pub(super) last_error: Option<String>,
    /// Failures in a row (the backoff doubles with each).
    pub(super) failures: u32,
    pub(super) unknown_kids: HashSet<String>,
    /// An issuer's rules, from its last successful fetch.
    pub(super) vouch: Option<Arc<Vouch>>,
    /// An issuer's `iss` as last resolved (unknown kids select the issuer by it).
    pub(super) iss: Option<String>,
    /// An issuer's JWKS URL, from its last successful fetch (discovered, perhaps).
    pub(super) jwks_uri: Option<String>,
}

impl Status {
    pub(super) fn new(now: Instant, iss: Option<String>) -> Self {
        Status {
            held: Held::Never,
            fetching: Fetching::Idle { next: now },
            last_attempt: None,
            last_error: None,
            failures: 0,
            unknown_kids: HashSet::new(),
            vouch: None,
            iss,
            jwks_uri: None,
        }
    }

    pub(super) fn keys(&self) -> &[VerifyingKey] {
        match &self.held {
            Held::Keys { keys, .. } => keys,
            _ => &[],
        }
    }

    pub(super) fn usable(&self) -> bool {
        matches!(self.held, Held::Keys { .. })
    }

    pub(super) fn last_success(&self) -> Option<(SystemTime, Instant)> {
        match self.held {
            Held::Never => None,
            Held::Keys { at, .. } | Held::Dropped { at } => Some(at),
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        matches!(self.fetching, Fetching::InFlight)
    }

    /// Marks a fetch started now.
    pub(super) fn claim(&mut self, now: Instant) {
        self.fetching = Fetching::InFlight;
        self.last_attempt = Some(now);
    }

    /// The next fetch, no later than `at` (an idle source only).
    pub(super) fn fetch_by(&mut self, at: Instant) {
        if let Fetching::Idle { next } = &mut self.fetching {
            *next = (*next).min(at);
        }
    }
}

impl Source {
    pub(super) fn new(f: &UrlSource, now: Instant) -> Self {
        Source {
            identity: f.identity.clone(),
            url: f.url.clone(),
            file: f.file.clone(),
            issuer: None,
            added: now,
            status: Mutex::new(Status::new(now, None)),
            attempts: watch::channel(0).0,
        }
    }

    pub(super) fn issuer(i: IssuerSource, now: Instant) -> Self {
        let label = i.label();
        // Known before the first fetch, so that unknown kids can select it at once (for
        // `kubernetes:///`, if this pod's token is readable now).
        let iss = i.issuer_now().ok().flatten();
        Source {
            identity: label.clone(),
            url: i.first_url(),
            file: PathBuf::from(label),
            issuer: Some(Arc::new(i)),
            added: now,
            status: Mutex::new(Status::new(now, iss)),
            attempts: watch::channel(0).0,
        }
    }

    /// Whether a token claiming `claimed` may be signed by a key of this source: a URL
    /// source's identity is the claimed `iss`; an issuer's `iss` is, or for a SPIFFE
    /// issuer that checks none, the `sub` is in its trust domain.
    pub(super) fn selects(&self, claimed: &Peeked) -> bool {
        let Some(issuer) = &self.issuer else {
            return claimed.iss.as_deref() == Some(self.identity.as_str());
        };
        let cfg = &issuer.cfg;
        if cfg.kind == IssuerKind::Spiffe && cfg.issuer.is_empty() {
            return claimed
                .sub
                .as_deref()
                .is_some_and(|sub| is_spiffe_id_in(sub, &cfg.trust_domain));
        }
        let st = self.status();
        st.iss.is_some() && st.iss == claimed.iss
    }

    pub(super) fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}
