//! Every metric trustgate exports, registered on a registry the caller passes in (never
//! the global one, so tests and embedders can run several proxies in one process).
//!
//! Label values are bounded: `direction` is `inbound`/`outbound`, `outcome` a fixed list,
//! `reason` one of [`crate::token::Rejection`]'s reasons or a policy/infrastructure word.
use prometheus::{
    register_gauge_vec_with_registry, register_histogram_vec_with_registry,
    register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_vec_with_registry,
    register_int_gauge_with_registry, Encoder as _, Histogram, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Registry, TextEncoder,
};

words! {
    /// Every `outcome` label value of `trustgate_requests_total`; its index is the series'.
    pub enum Outcome as as_str {
        Ok = "ok",
        Public = "public",
        Jwks = "jwks",
        Rejected = "rejected",
        Denied = "denied",
        Audit = "audit",
        Unavailable = "unavailable",
        UpstreamError = "upstream_error",
        Timeout = "timeout",
        NoRoute = "no_route",
        Passthrough = "passthrough",
        BadRequest = "bad_request",
        InternalError = "internal_error",
        /// A per-caller limit: 429.
        Limited = "limited",
        /// Outbound: the callee's sidecar answered itself (a refusal, or its app failing),
        /// not the callee's app: `trustgate-hop` names it.
        CalleeRefused = "callee_refused",
    }
}

words! {
    /// A reloadable material: the `material` label of `trustgate_reloads_total`.
    pub enum Material as label {
        Trust = "trust",
        SigningKey = "signing_key",
        TlsCertificate = "tls_certificate",
        /// An outbound route's `token_file`.
        TokenFile = "token_file",
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
    /// People's tokens checked, by result (`valid`, or the reason: `user_expired`, ...).
    pub user_tokens: IntCounterVec,
    /// Transaction tokens `minted` (at the edge) or `verified` (downstream), by result
    /// (`ok`, or the reason: `txn_expired`, ...).
    pub transaction_tokens: IntCounterVec,
    /// The external authorizer's checks (`[authz]`), by `mode` (`grpc`, `http`) and
    /// `result` (`allowed`, `refused`); each is also one inbound request of
    /// `trustgate_requests_total`, with its outcome.
    pub authz_checks: IntCounterVec,
    /// DPoP proofs checked (RFC 9449), by `result` (`valid`, or the reason: `stale`, ...).
    pub dpop_proofs: IntCounterVec,
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
    /// no inbound series). Each metric is declared once, where it is registered.
    pub fn for_sides(
        registry: Registry,
        inbound: bool,
        outbound: bool,
    ) -> Result<Self, prometheus::Error> {
        let r = &registry;
        let requests = register_int_counter_vec_with_registry!(
            "trustgate_requests_total",
            "Requests handled, by direction and outcome.",
            &["direction", "outcome"],
            r
        )?;
        let request_duration = register_histogram_vec_with_registry!(
            "trustgate_request_duration_seconds",
            "Time from request received to response headers sent, by direction.",
            &["direction"],
            vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ],
            r
        )?;
        let keyring_reloads = register_int_counter_vec_with_registry!(
            "trustgate_keyring_reloads_total",
            "Rebuilds of the trust state from disk, by result (ok or error).",
            &["result"],
            r
        )?;
        let reloads = register_int_counter_vec_with_registry!(
            "trustgate_reloads_total",
            "Reloads of trust material, signing key, TLS certificate and token files, by material and result.",
            &["material", "result"],
            r
        )?;
        // Every reload series exists from the start at 0, so that the first failure is
        // an increase a rule can see (a series born at 1 has no increase to show).
        for result in ["ok", "error"] {
            keyring_reloads.with_label_values(&[result]);
            for material in Material::ALL {
                reloads.with_label_values(&[material.label(), result]);
            }
        }
        Ok(Metrics {
            per_request: RequestSeries::new(&requests, &request_duration, [inbound, outbound])?,
            requests,
            request_duration,
            keyring_reloads,
            reloads,
            inbound_rejections: register_int_counter_vec_with_registry!(
                "trustgate_inbound_rejections_total",
                "Inbound requests refused (or, in audit mode, that would have been), by reason.",
                &["reason"],
                r
            )?,
            authz_checks: register_int_counter_vec_with_registry!(
                "trustgate_authz_checks_total",
                "Checks answered as Envoy's external authorizer, by mode (grpc, http) and result (allowed, refused).",
                &["mode", "result"],
                r
            )?,
            dpop_proofs: register_int_counter_vec_with_registry!(
                "trustgate_dpop_proofs_total",
                "DPoP proofs checked with people's tokens bound to a key, by result (valid, or the reason: missing, stale, replayed, ...).",
                &["result"],
                r
            )?,
            policy_audit: register_int_counter_vec_with_registry!(
                "trustgate_policy_audit_total",
                "Audit rules evaluated (they decide nothing), by rule name and result (match, no_match).",
                &["rule", "result"],
                r
            )?,
            caller_limited: register_int_counter_vec_with_registry!(
                "trustgate_caller_limited_total",
                "Inbound requests refused by a per-caller limit, by caller and reason (rate_limited, concurrency_limited).",
                &["caller", "reason"],
                r
            )?,
            claim_headers_withheld: register_int_counter_vec_with_registry!(
                "trustgate_claim_headers_withheld_total",
                "Claim headers not sent to the app because it would read the value otherwise than the rules matched it (surrounding whitespace, a comma inside one value, control or non-ASCII characters, not text), by header.",
                &["header"],
                r
            )?,
            user_tokens: register_int_counter_vec_with_registry!(
                "trustgate_user_tokens_total",
                "People's tokens checked ([inbound.users]), by result (valid, or the reason).",
                &["result"],
                r
            )?,
            transaction_tokens: register_int_counter_vec_with_registry!(
                "trustgate_transaction_tokens_total",
                "Transaction tokens minted here or verified here, by action (minted, verified) and result (ok, or the reason).",
                &["action", "result"],
                r
            )?,
            trusted_keys: register_int_gauge_with_registry!(
                "trustgate_trusted_keys",
                "Keys in the current keyring that are trusted and not revoked.",
                r
            )?,
            tokens_signed: register_int_counter_with_registry!(
                "trustgate_tokens_signed_total",
                "Tokens signed for outbound calls.",
                r
            )?,
            token_cache_hits: register_int_counter_with_registry!(
                "trustgate_token_cache_hits_total",
                "Outbound calls that reused a cached token instead of signing.",
                r
            )?,
            verified_cache_hits: register_int_counter_with_registry!(
                "trustgate_verified_cache_hits_total",
                "Inbound tokens accepted from the verified-token cache without a signature check.",
                r
            )?,
            open_connections: register_int_gauge_vec_with_registry!(
                "trustgate_open_connections",
                "Open downstream connections, by listener.",
                &["listener"],
                r
            )?,
            reload_duration: register_histogram_with_registry!(
                "trustgate_keyring_reload_duration_seconds",
                "Time to rebuild the trust state from disk.",
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                r
            )?,
            trust_fetches: register_int_counter_vec_with_registry!(
                "trustgate_trust_fetches_total",
                "Fetches of key URLs (authorized_keys/<identity>.url), by identity and result (ok, error).",
                &["identity", "result"],
                r
            )?,
            trust_fetch_errors: register_int_counter_vec_with_registry!(
                "trustgate_trust_fetch_errors_total",
                "Failed fetches of key URLs, by identity and reason.",
                &["identity", "reason"],
                r
            )?,
            trust_keys_dropped: register_int_counter_vec_with_registry!(
                "trustgate_trust_keys_dropped_total",
                "Fetched keys dropped after trust.max_stale without a successful fetch, by identity.",
                &["identity"],
                r
            )?,
            trust_source_age: register_gauge_vec_with_registry!(
                "trustgate_trust_source_age_seconds",
                "Seconds since the key URL of an identity was last fetched successfully (since it was configured, if never).",
                &["identity"],
                r
            )?,
            trust_problems: register_int_gauge_with_registry!(
                "trustgate_trust_problems",
                "Files in the trust directories (authorized_keys, revoked) skipped as unreadable or invalid.",
                r
            )?,
            trust_unreadable: register_int_gauge_with_registry!(
                "trustgate_trust_unreadable",
                "1 while the trust directory cannot be read and the previous keyring stays in force.",
                r
            )?,
            ready: register_int_gauge_with_registry!(
                "trustgate_ready",
                "1 when the sidecar is ready (what /readyz answers), 0 otherwise.",
                r
            )?,
            app_exposed: register_int_gauge_with_registry!(
                "trustgate_app_exposed",
                "1 while the app answers on a pod address, so that callers can reach it around the sidecar with forged identity headers; 0 otherwise.",
                r
            )?,
            registry,
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
