//! What the request paths share, split by who reads it:
//!
//! - [`Trust`]: the keyring snapshot and the signing key — the trust plane's handle,
//!   written only by `crate::trust` (atomic swaps), read by every request.
//! - [`InboundState`] / [`OutboundState`]: each side's configuration, caches and
//!   precomputed values. Nothing else reads them.
//! - [`Health`]: readiness, read by the admin listener.
//! - the forwarding client and the metrics, used by both sides.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};

use crate::config::{Config, Inbound, Outbound};
use crate::metrics::Metrics;
use crate::proxy::forward::client::Upstreams;
use crate::token::{OutboundTokenCache, ReplayCache, VerifiedCache, VerifyPolicy};
use crate::trust::Trust;

/// Everything the listeners share.
pub struct State {
    pub cfg: Arc<Config>,
    pub trust: Arc<Trust>,
    pub inbound: Option<InboundState>,
    pub outbound: Option<OutboundState>,
    pub health: Health,
    pub upstreams: Upstreams,
    pub metrics: Metrics,
    /// `[fleet]`: the store the replicas share (limits, replay).
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// `trustgate-hop` of this sidecar's own answers: `<identity>/inbound`,
    /// `<identity>/outbound` (see [`crate::proxy::answer::HOP`]).
    pub hops: [http::HeaderValue; 2],
}

/// The headers that name the person to the app: trustgate's, removed from every request
/// in every spelling (and from trailers), like `x-service-caller`.
const PERSON_HEADERS: [HeaderName; 3] = [
    crate::http::USER_SUBJECT,
    crate::http::USER_ISSUER,
    crate::http::TRANSACTION_ID,
];

/// What only the inbound side reads.
pub struct InboundState {
    pub cfg: Inbound,
    /// The client that dials the app (over TCP, or its Unix socket).
    pub app: Upstreams,
    /// The names trustgate sets besides `x-service-caller*`: `cfg.signed_headers` and the
    /// `cfg.claim_headers` names. Scrubbed from requests in every spelling, and shared with
    /// the request bodies that scrub their trailers.
    pub protected: Arc<[HeaderName]>,
    /// What leaves the request's trailers in every spelling as they stream: the
    /// [`InboundState::protected`] names and the credentials (the caller's token header,
    /// the person's, `txn-token`) — a trailer is never verified.
    pub trailers_removed: Arc<[HeaderName]>,
    /// The token headers verified here: the caller's, and the person's where this side
    /// takes people's tokens (any other spelling of them is screened away).
    pub credentials: Vec<HeaderName>,
    /// `[callers.<name>]` rate and concurrency limits.
    pub limits: crate::proxy::limits::CallerLimits,

    pub policy: VerifyPolicy,
    pub verified: VerifiedCache,
    /// Persons of transaction tokens seen before (same bytes, same keyring generation).
    pub persons: VerifiedCache<crate::token::Person>,
    /// Persons of their own tokens seen before (the same: a person's request costs the
    /// one signature its transaction token needs). Apart from `persons`: one kind of
    /// token never answers for the other.
    pub users_verified: VerifiedCache<crate::token::Person>,
    pub replay: ReplayCache,
    /// `inbound.replay_scope = "fleet"`: the replay cache shared through `[fleet]`.
    pub fleet_replay: Option<Arc<crate::fleet::Fleet>>,
    /// The keys of the DPoP proofs seen, by header (one parse per client key).
    pub dpop_keys: crate::token::dpop::ProofKeys,
    /// Roles by caller, and the `x-service-caller-roles` value joined once.
    pub roles: HashMap<String, (Vec<String>, HeaderValue)>,
    /// `trust.transaction_token_issuers` names someone: `txn-token` is verified and
    /// passed on; otherwise it is removed like an identity header.
    pub accepts_txn: bool,
    /// `[inbound.users] callers = "optional"`: a request without a service token may
    /// come for a person.
    pub caller_optional: bool,
    /// `[inbound.users]` or a minter listed: the person step runs.
    pub takes_persons: bool,
    /// `trustgate_transaction_tokens_total{action="verified",result="ok"}`, resolved once.
    pub txn_verified: Option<prometheus::IntCounter>,
    /// `trustgate_user_tokens_total{result="valid"}` and
    /// `trustgate_transaction_tokens_total{action="minted",result="ok"}`, resolved once
    /// where this side takes people's tokens.
    pub person_counters: Option<[prometheus::IntCounter; 2]>,
}

impl InboundState {
    pub(crate) fn new(
        cfg: &Config,
        inbound: &Inbound,
        app: Upstreams,
        fleet: Option<&Arc<crate::fleet::Fleet>>,
    ) -> Self {
        let fleet = fleet.cloned();
        let mut policy = VerifyPolicy::new(cfg.identity.name.clone());
        policy.leeway = cfg.trust.leeway;
        policy.max_ttl = cfg.trust.max_token_ttl;
        policy.allow_multi_audience = cfg.trust.allow_multi_audience;
        let roles = cfg
            .callers
            .iter()
            .filter_map(|(caller, c)| {
                let joined = HeaderValue::from_str(&c.roles.join(",")).ok()?;
                Some((caller.clone(), (c.roles.clone(), joined)))
            })
            .collect();
        let protected: Arc<[HeaderName]> = inbound
            .signed_headers
            .iter()
            .chain(inbound.claim_headers.iter().map(|h| &h.name))
            .chain(
                inbound
                    .users
                    .iter()
                    .flat_map(|u| u.context_headers.iter().map(|(h, _)| h)),
            )
            .chain(&PERSON_HEADERS)
            .cloned()
            .collect();
        let credentials = [
            inbound.token_header.clone(),
            crate::http::TXN_TOKEN,
            http::HeaderName::from_static("dpop"),
        ]
        .into_iter()
        .chain(inbound.users.iter().map(|u| u.token_header.clone()));
        let trailers_removed = protected.iter().cloned().chain(credentials).collect();
        let credentials = std::iter::once(inbound.token_header.clone())
            .chain(inbound.users.iter().map(|u| u.token_header.clone()))
            .collect();
        InboundState {
            cfg: inbound.clone(),
            app,
            protected,
            trailers_removed,
            credentials,
            limits: crate::proxy::limits::CallerLimits::new(&cfg.callers, fleet.clone()),

            policy,
            verified: VerifiedCache::new(inbound.verified_cache_size),
            persons: VerifiedCache::new(inbound.verified_cache_size),
            users_verified: VerifiedCache::new(match inbound.users {
                Some(_) => inbound.verified_cache_size,
                None => 0,
            }),
            replay: ReplayCache::new(inbound.replay_cache_size, cfg.trust.leeway),
            dpop_keys: crate::token::dpop::ProofKeys::new(1024),
            fleet_replay: fleet
                .clone()
                .filter(|_| inbound.replay_scope == crate::config::Scope::Fleet),
            roles,
            accepts_txn: !cfg.trust.transaction_token_issuers.is_empty(),
            takes_persons: inbound.users.is_some()
                || !cfg.trust.transaction_token_issuers.is_empty(),
            txn_verified: None,
            person_counters: None,
            caller_optional: inbound
                .users
                .as_ref()
                .is_some_and(|u| u.callers == crate::config::UsersMode::Optional),
        }
    }

    /// What `[callers.<name>]` grants `caller`: its roles, and their header value.
    pub fn granted(&self, caller: &str) -> Granted<'_> {
        Granted(self.roles.get(caller))
    }
}

/// A caller's roles, looked up once per request (the rules and the roles header read
/// them).
#[derive(Clone, Copy)]
pub struct Granted<'a>(Option<&'a (Vec<String>, HeaderValue)>);

impl<'a> Granted<'a> {
    pub fn roles(self) -> &'a [String] {
        self.0.map_or(&[], |(r, _)| r.as_slice())
    }

    /// `x-service-caller-roles`, when there are roles.
    pub fn header(self) -> Option<&'a HeaderValue> {
        self.0.map(|(_, h)| h).filter(|h| !h.is_empty())
    }
}

/// What only the outbound side reads.
pub struct OutboundState {
    pub cfg: Outbound,
    pub tokens: OutboundTokenCache,
}

/// Readiness: ready once keys are loaded and listeners bound, until shutdown begins —
/// and, with `inbound.app_exposure = "refuse"`, not while the app is exposed.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
    /// Why the exposure check refuses readiness (refuse mode, while the app is exposed).
    refusal: Mutex<Option<String>>,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why `/readyz` answers 503, if it does.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining.load(Ordering::Acquire) {
            return Some("draining".into());
        }
        if !self.ready.load(Ordering::Acquire) {
            return Some("starting".into());
        }
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Set or clear the exposure check's refusal.
    pub fn refuse(&self, why: Option<String>) {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

impl State {
    /// Builds the shared state from a checked configuration and loaded material.
    pub fn new(
        cfg: Arc<Config>,
        trust: Arc<Trust>,
        upstreams: Upstreams,
        app: Upstreams,
        metrics: Metrics,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Arc<Self> {
        // The series a rule can alert on exist from the start, at 0.
        if let Some(i) = &cfg.inbound {
            for rule in i.allow.iter().chain(&i.deny).filter(|r| r.audit) {
                for result in ["match", "no_match"] {
                    metrics
                        .policy_audit
                        .with_label_values(&[&rule.name, result]);
                }
            }
            for h in &i.claim_headers {
                metrics
                    .claim_headers_withheld
                    .with_label_values(&[h.name.as_str()]);
            }
            for (name, c) in &cfg.callers {
                let limits = [
                    (c.rate_limit.is_some(), "rate_limited"),
                    (c.max_concurrent.is_some(), "concurrency_limited"),
                ];
                for (_, reason) in limits.iter().filter(|(on, _)| *on) {
                    metrics
                        .caller_limited
                        .with_label_values(&[name.as_str(), reason]);
                }
            }
        }
        Arc::new(State {
            inbound: cfg.inbound.as_ref().map(|i| {
                let mut side = InboundState::new(&cfg, i, app, fleet.as_ref());
                side.txn_verified = side.accepts_txn.then(|| {
                    metrics
                        .transaction_tokens
                        .with_label_values(&["verified", "ok"])
                });
                side.person_counters = i.users.is_some().then(|| {
                    [
                        metrics.user_tokens.with_label_values(&["valid"]),
                        metrics
                            .transaction_tokens
                            .with_label_values(&["minted", "ok"]),
                    ]
                });
                side
            }),
            outbound: cfg.outbound.as_ref().map(|o| OutboundState {
                cfg: o.clone(),
                tokens: OutboundTokenCache::new(10_000),
            }),
            health: Health::default(),
            trust,
            upstreams,
            metrics,
            fleet,
            hops: ["inbound", "outbound"].map(|side| {
                http::HeaderValue::from_str(&format!("{}/{side}", cfg.identity.name))
                    .unwrap_or(http::HeaderValue::from_static("-"))
            }),
            cfg,
        })
    }

    /// Readiness (shorthand for `health.is_ready()`).
    pub fn is_ready(&self) -> bool {
        self.health.is_ready()
    }
}
