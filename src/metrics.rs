//! Every metric trustgate exports, registered on a registry the caller passes in (never
//! the global one, so tests and embedders can run several proxies in one process).
//!
//! Label values are bounded: `direction` is `inbound`/`outbound`, `outcome` a fixed list,
//! `reason` one of [`crate::token::Rejection`]'s reasons or a policy/infrastructure word.
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// Every `outcome` label value of `trustgate_requests_total`; its index is the series'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Public,
    Jwks,
    Rejected,
    Denied,
    Audit,
    Unavailable,
    UpstreamError,
    Timeout,
    NoRoute,
    Passthrough,
    BadRequest,
    InternalError,
    /// A per-caller limit: 429.
    Limited,
    /// Outbound: the callee's sidecar answered itself (a refusal, or its app failing),
    /// not the callee's app: `trustgate-hop` names it.
    CalleeRefused,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::Public,
        Outcome::Jwks,
        Outcome::Rejected,
        Outcome::Denied,
        Outcome::Audit,
        Outcome::Unavailable,
        Outcome::UpstreamError,
        Outcome::Timeout,
        Outcome::NoRoute,
        Outcome::Passthrough,
        Outcome::BadRequest,
        Outcome::InternalError,
        Outcome::Limited,
        Outcome::CalleeRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Public => "public",
            Outcome::Jwks => "jwks",
            Outcome::Rejected => "rejected",
            Outcome::Denied => "denied",
            Outcome::Audit => "audit",
            Outcome::Unavailable => "unavailable",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::NoRoute => "no_route",
            Outcome::Passthrough => "passthrough",
            Outcome::BadRequest => "bad_request",
            Outcome::InternalError => "internal_error",
            Outcome::Limited => "limited",
            Outcome::CalleeRefused => "callee_refused",
        }
    }
}

/// The per-request series, resolved once at start: a request does no label hashing.
#[derive(Clone)]
pub struct RequestSeries {
    /// By direction (inbound, outbound), then by [`Outcome`] (its discriminant); a side
    /// this sidecar does not have exports no series.
    sides: [Option<(Vec<IntCounter>, Histogram)>; 2],
}

impl RequestSeries {
    fn new(
        requests: &IntCounterVec,
        duration: &HistogramVec,
        sides: [bool; 2],
    ) -> Result<Self, prometheus::Error> {
        let side = |d: &str, on: bool| -> Result<_, prometheus::Error> {
            if !on {
                return Ok(None);
            }
            let counts = Outcome::ALL
                .iter()
                .map(|o| requests.get_metric_with_label_values(&[d, o.as_str()]))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((counts, duration.get_metric_with_label_values(&[d])?)))
        };
        Ok(RequestSeries {
            sides: [side("inbound", sides[0])?, side("outbound", sides[1])?],
        })
    }

    /// Counts one request of `direction` (0 inbound, 1 outbound) and observes its
    /// duration.
    pub fn observe(&self, direction: usize, outcome: Outcome, seconds: f64) {
        if let Some((counts, duration)) = &self.sides[direction] {
            counts[outcome as usize].inc();
            duration.observe(seconds);
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `direction` × `outcome` (`ok`, `rejected`, `denied`, `audit`, `public`,
    /// `upstream_error`, `timeout`, `no_route`, `passthrough`).
    pub requests: IntCounterVec,
    pub inbound_rejections: IntCounterVec,
    /// Audit rules (`audit = true`): `rule` × `result` (`match`, `no_match`).
    pub policy_audit: IntCounterVec,
    /// Requests refused by a per-caller limit: `caller` × `reason` (`rate_limited`,
    /// `concurrency_limited`). Callers are those the configuration names.
    pub caller_limited: IntCounterVec,
    /// Claim headers not sent because the app would read the value otherwise than the
    /// rules matched it, by header (the names `[inbound.claim_headers]` configures).
    pub claim_headers_withheld: IntCounterVec,
    pub request_duration: HistogramVec,
    pub trusted_keys: IntGauge,
    pub keyring_reloads: IntCounterVec,
    /// `material` (`trust`, `signing_key`, `tls_certificate`) × `result` (`ok`, `error`).
    pub reloads: IntCounterVec,
    pub tokens_signed: IntCounter,
    pub token_cache_hits: IntCounter,
    pub verified_cache_hits: IntCounter,
    pub open_connections: prometheus::IntGaugeVec,
    pub reload_duration: Histogram,
    /// `requests` and `request_duration`, resolved per label set at start.
    pub per_request: RequestSeries,
    /// Key URL fetches by identity and result (`ok`, `error`).
    pub trust_fetches: IntCounterVec,
    /// Failed key URL fetches by identity and reason (`refused`, `unreachable`,
    /// `timeout`, `http_status`, `redirect`, `too_large`, `invalid`).
    pub trust_fetch_errors: IntCounterVec,
    /// Fetched keys dropped because no fetch succeeded within `trust.max_stale`.
    pub trust_keys_dropped: IntCounterVec,
    /// Seconds since an identity's URL source last fetched successfully.
    pub trust_source_age: prometheus::GaugeVec,
    /// Files under the trust directories that could not be used (unreadable, invalid).
    pub trust_problems: IntGauge,
    /// 1 while the trust directory cannot be read (the previous keyring stays in force).
    pub trust_unreadable: IntGauge,
    /// 1 when `/readyz` answers 200; set when `/metrics` is scraped.
    pub ready: IntGauge,
    /// 1 while the app answers on a pod address, around the sidecar (the exposure check).
    pub app_exposed: IntGauge,
}

impl Metrics {
    /// Both sides' request series.
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        Self::for_sides(registry, true, true)
    }

    /// The request series of the sides this sidecar has (an outbound-only one exports
    /// no inbound series).
    pub fn for_sides(
        registry: Registry,
        inbound: bool,
        outbound: bool,
    ) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "trustgate_requests_total",
                "Requests handled, by direction and outcome.",
            ),
            &["direction", "outcome"],
        )?;
        let inbound_rejections = IntCounterVec::new(
            Opts::new(
                "trustgate_inbound_rejections_total",
                "Inbound requests refused (or, in audit mode, that would have been), by reason.",
            ),
            &["reason"],
        )?;
        let policy_audit = IntCounterVec::new(
            Opts::new(
                "trustgate_policy_audit_total",
                "Audit rules evaluated (they decide nothing), by rule name and result (match, no_match).",
            ),
            &["rule", "result"],
        )?;
        let caller_limited = IntCounterVec::new(
            Opts::new(
                "trustgate_caller_limited_total",
                "Inbound requests refused by a per-caller limit, by caller and reason (rate_limited, concurrency_limited).",
            ),
            &["caller", "reason"],
        )?;
        let claim_headers_withheld = IntCounterVec::new(
            Opts::new(
                "trustgate_claim_headers_withheld_total",
                "Claim headers not sent to the app because it would read the value otherwise than the rules matched it (surrounding whitespace, a comma inside one value, control or non-ASCII characters, not text), by header.",
            ),
            &["header"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "trustgate_request_duration_seconds",
                "Time from request received to response headers sent, by direction.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["direction"],
        )?;
        let trusted_keys = IntGauge::new(
            "trustgate_trusted_keys",
            "Keys in the current keyring that are trusted and not revoked.",
        )?;
        let keyring_reloads = IntCounterVec::new(
            Opts::new(
                "trustgate_keyring_reloads_total",
                "Rebuilds of the trust state from disk, by result (ok or error).",
            ),
            &["result"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "trustgate_reloads_total",
                "Reloads of trust material, signing key and TLS certificate, by material and result.",
            ),
            &["material", "result"],
        )?;
        let tokens_signed = IntCounter::new(
            "trustgate_tokens_signed_total",
            "Tokens signed for outbound calls.",
        )?;
        let token_cache_hits = IntCounter::new(
            "trustgate_token_cache_hits_total",
            "Outbound calls that reused a cached token instead of signing.",
        )?;
        let verified_cache_hits = IntCounter::new(
            "trustgate_verified_cache_hits_total",
            "Inbound tokens accepted from the verified-token cache without a signature check.",
        )?;
        let open_connections = prometheus::IntGaugeVec::new(
            Opts::new(
                "trustgate_open_connections",
                "Open downstream connections, by listener.",
            ),
            &["listener"],
        )?;
        let reload_duration = Histogram::with_opts(
            HistogramOpts::new(
                "trustgate_keyring_reload_duration_seconds",
                "Time to rebuild the trust state from disk.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let trust_fetches = IntCounterVec::new(
            Opts::new(
                "trustgate_trust_fetches_total",
                "Fetches of key URLs (authorized_keys/<identity>.url), by identity and result (ok, error).",
            ),
            &["identity", "result"],
        )?;
        let trust_fetch_errors = IntCounterVec::new(
            Opts::new(
                "trustgate_trust_fetch_errors_total",
                "Failed fetches of key URLs, by identity and reason.",
            ),
            &["identity", "reason"],
        )?;
        let trust_keys_dropped = IntCounterVec::new(
            Opts::new(
                "trustgate_trust_keys_dropped_total",
                "Fetched keys dropped after trust.max_stale without a successful fetch, by identity.",
            ),
            &["identity"],
        )?;
        let trust_source_age = prometheus::GaugeVec::new(
            Opts::new(
                "trustgate_trust_source_age_seconds",
                "Seconds since the key URL of an identity was last fetched successfully (since it was configured, if never).",
            ),
            &["identity"],
        )?;
        let trust_problems = IntGauge::new(
            "trustgate_trust_problems",
            "Files in the trust directories (authorized_keys, revoked) skipped as unreadable or invalid.",
        )?;
        let trust_unreadable = IntGauge::new(
            "trustgate_trust_unreadable",
            "1 while the trust directory cannot be read and the previous keyring stays in force.",
        )?;
        let ready = IntGauge::new(
            "trustgate_ready",
            "1 when the sidecar is ready (what /readyz answers), 0 otherwise.",
        )?;
        registry.register(Box::new(trust_problems.clone()))?;
        registry.register(Box::new(trust_unreadable.clone()))?;
        let app_exposed = IntGauge::new(
            "trustgate_app_exposed",
            "1 while the app answers on a pod address, so that callers can reach it around the sidecar with forged identity headers; 0 otherwise.",
        )?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(app_exposed.clone()))?;
        registry.register(Box::new(trust_fetches.clone()))?;
        registry.register(Box::new(trust_source_age.clone()))?;
        registry.register(Box::new(trust_fetch_errors.clone()))?;
        registry.register(Box::new(trust_keys_dropped.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(inbound_rejections.clone()))?;
        registry.register(Box::new(policy_audit.clone()))?;
        registry.register(Box::new(caller_limited.clone()))?;
        registry.register(Box::new(claim_headers_withheld.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(trusted_keys.clone()))?;
        registry.register(Box::new(keyring_reloads.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(tokens_signed.clone()))?;
        registry.register(Box::new(token_cache_hits.clone()))?;
        registry.register(Box::new(verified_cache_hits.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(reload_duration.clone()))?;
        // Every reload series exists from the start at 0, so that the first failure is
        // an increase a rule can see (a series born at 1 has no increase to show).
        for result in ["ok", "error"] {
            keyring_reloads.with_label_values(&[result]);
            for material in ["trust", "signing_key", "tls_certificate"] {
                reloads.with_label_values(&[material, result]);
            }
        }
        let per_request = RequestSeries::new(&requests, &request_duration, [inbound, outbound])?;
        Ok(Metrics {
            per_request,
            registry,
            requests,
            inbound_rejections,
            policy_audit,
            caller_limited,
            claim_headers_withheld,
            request_duration,
            trusted_keys,
            keyring_reloads,
            reloads,
            tokens_signed,
            token_cache_hits,
            verified_cache_hits,
            open_connections,
            reload_duration,
            trust_fetches,
            trust_fetch_errors,
            trust_keys_dropped,
            trust_source_age,
            trust_problems,
            trust_unreadable,
            ready,
            app_exposed,
        })
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which the typed
        // constructors above cannot produce; an empty page is the fallback.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            buf.clear();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
