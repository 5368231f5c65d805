//! The one check pass: what no single key can know alone (pairs of keys, contradictions,
//! duplicates, defaults derived from other keys). The files the configuration names are
//! loaded and checked by the trust plane's loader (`trust::files::load_checked`).
use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::parse::Problems;
use super::{AppExposure, Config, Inbound, Outbound, Rule, Scope, Sources, ISSUER_FROM_POD};
use crate::http::names_alike;
use crate::keys::{is_spiffe_id_in, is_valid_identity, IssuerKind};

pub(super) fn check(cfg: &mut Config, p: &mut Problems) {
    check_trust(cfg, p);
    check_identity(cfg, p);
    check_sides(cfg, p);
    check_limits(cfg, p);
    check_listeners(cfg, p);
    check_fleet(cfg, p);
    super::authz::check(cfg, p);
    super::dpop::check(cfg, p);
}

/// `[fleet]` and the scopes that need it: a fleet scope without a store, or with nothing
/// to share, is a mistake someone would otherwise find in production.
fn check_fleet(cfg: &mut Config, p: &mut Problems) {
    let name = cfg.identity.name.clone();
    if let Some(f) = &mut cfg.fleet {
        if let Err(e) = super::check_fleet_url(&f.redis) {
            p.add("fleet.redis", e);
        }
        if f.timeout.is_zero() {
            p.add("fleet.timeout", "must be greater than zero");
        } else if f.timeout > std::time::Duration::from_secs(5) {
            p.add(
                "fleet.timeout",
                "is longer than 5s: every limited request would wait that long for a store that is gone",
            );
        }
        if f.ca_file.is_some() && !f.redis.starts_with("rediss://") {
            p.add("fleet.ca_file", "is only for rediss:// (TLS)");
        }
        if f.key_prefix.is_empty() {
            f.key_prefix = format!("trustgate:{name}:");
        }
    }
    let fleet = cfg.fleet.is_some();
    let none = "is \"fleet\" but there is no [fleet] section (the store the replicas share)";
    for (caller, c) in &cfg.callers {
        if c.rate_limit_scope != Scope::Fleet {
            continue;
        }
        let key = format!("callers.{caller}.rate_limit_scope");
        if !fleet {
            p.add(&key, none);
        }
        if c.rate_limit.is_none() {
            p.add(&key, "is \"fleet\" but there is no rate_limit to share (max_concurrent is always per sidecar)");
        }
    }
    if let Some(i) = cfg
        .inbound
        .as_ref()
        .filter(|i| i.replay_scope == Scope::Fleet)
    {
        if !fleet {
            p.add("inbound.replay_scope", none);
        }
        let dpop = i
            .users
            .as_ref()
            .is_some_and(|u| u.dpop != super::DpopMode::Off);
        if !i.require_request_binding && !dpop {
            p.add(
                "inbound.replay_scope",
                "is \"fleet\" but inbound.require_request_binding is false and no DPoP proof is checked here: only request-bound tokens and DPoP proofs are single-use",
            );
        }
    }
}

fn check_trust(cfg: &mut Config, p: &mut Problems) {
    check_issuers(cfg, p);
    check_sources(cfg, p);
    check_users(cfg, p);
    let trust = &cfg.trust;
    if trust.rescan_interval.is_zero() {
        p.add("trust.rescan_interval", "must be greater than zero");
    }

    if trust.fetch_timeout.is_zero() {
        p.add("trust.fetch_timeout", "must be greater than zero");
    }
    if trust.fetch_cooldown.is_zero() {
        p.add(
            "trust.fetch_cooldown",
            "must be greater than zero (it bounds the fetches a caller can cause)",
        );
    }
    if trust.fetch_interval < trust.fetch_cooldown {
        p.add(
            "trust.fetch_interval",
            format!(
                "{} is shorter than trust.fetch_cooldown ({})",
                humantime::format_duration(trust.fetch_interval),
                humantime::format_duration(trust.fetch_cooldown)
            ),
        );
    }
}

fn check_identity(cfg: &Config, p: &mut Problems) {
    let (identity, trust) = (&cfg.identity, &cfg.trust);
    if identity.name.is_empty() && !p.failed("identity.name") {
        p.add("identity.name", "is required (this service's identity)");
    }
    if identity.private_key.is_some() && identity.shared_key.is_some() {
        p.add(
            "identity.shared_key",
            "set either identity.private_key or identity.shared_key, not both",
        );
    }
    if identity.token_ttl.as_secs() == 0 {
        p.add("identity.token_ttl", "must be at least 1s");
    } else if identity.token_ttl > trust.max_token_ttl {
        p.add(
            "identity.token_ttl",
            format!(
                "{} is longer than trust.max_token_ttl ({}); peers with the same limit would refuse these tokens",
                humantime::format_duration(identity.token_ttl),
                humantime::format_duration(trust.max_token_ttl)
            ),
        );
    }
    for caller in cfg.callers.keys() {
        if !is_valid_identity(caller) {
            p.add(
                &format!("callers.{caller}"),
                format!("\"{caller}\" is not a valid identity (a DNS label: lower-case letters, digits, '-')"),
            );
        }
    }
}

/// Each side's own checks, and what a side needs of the rest.
fn check_sides(cfg: &mut Config, p: &mut Problems) {
    // `enabled = false` keeps the rules only for an authorizer (`[authz]`).
    super::authz::prepare(cfg);
    if cfg.authz.is_none() && cfg.inbound.as_ref().is_some_and(|i| !i.enabled) {
        cfg.inbound = None;
    }
    check_caller_limits(cfg, p);
    if let Some(inbound) = &mut cfg.inbound {
        check_rules(inbound, p);
    }
    if let Some(inbound) = &cfg.inbound {
        check_inbound(inbound, p);
        let trust = &cfg.trust;
        if trust.authorized_keys.is_none() && trust.shared_key.is_none() && trust.issuers.is_empty()
        {
            p.add(
                "trust.authorized_keys",
                "is required with [inbound] (or trust.shared_key in shared-key mode, or \
                 [[trust.issuers]])",
            );
        }
    }
    if let Some(outbound) = &mut cfg.outbound {
        check_outbound(outbound, p);
        // Routes that present a token file sign nothing.
        let signs =
            outbound.routes.iter().any(|r| r.token_file.is_none()) || outbound.routes.is_empty();
        if signs && cfg.identity.key().is_none() {
            p.add(
                "identity.private_key",
                "is required with [outbound] (or identity.shared_key in shared-key mode; \
                 not needed when every route has a token_file)",
            );
        }
    }
    if cfg.inbound.is_none() && cfg.outbound.is_none() && p.is_empty() {
        p.add(
            "inbound",
            "neither [inbound] nor [outbound] is configured: nothing to do",
        );
    }
}

fn check_limits(cfg: &Config, p: &mut Problems) {
    let limits = &cfg.limits;
    for (key, d) in [
        ("limits.header_read_timeout", limits.header_read_timeout),
        ("limits.connect_timeout", limits.connect_timeout),
        ("limits.request_timeout", limits.request_timeout),
    ] {
        if d.is_zero() {
            p.add(key, "must be greater than zero");
        }
    }
    if limits.max_header_bytes < 8192 {
        p.add(
            "limits.max_header_bytes",
            "must be at least 8192 (a token alone may be 8 KiB)",
        );
    }
    if limits.max_connections == 0 {
        p.add("limits.max_connections", "must be at least 1");
    }
    if tracing_subscriber::EnvFilter::try_new(&cfg.log.level).is_err() {
        p.add(
            "log.level",
            format!("\"{}\" is not a log filter", cfg.log.level),
        );
    }
}

/// No two listeners on one address (port 0 excepted: each gets its own).
fn check_listeners(cfg: &Config, p: &mut Problems) {
    let mut listeners: Vec<(&str, SocketAddr)> = vec![("admin.listen", cfg.admin.listen)];
    if let Some(i) = cfg.inbound.as_ref().filter(|i| i.enabled) {
        listeners.push(("inbound.listen", i.listen));
    }
    if let Some(a) = &cfg.authz {
        listeners.extend(a.listen.map(|l| ("authz.listen", l)));
        listeners.extend(a.http_listen.map(|l| ("authz.http_listen", l)));
    }
    if let Some(o) = &cfg.outbound {
        listeners.push(("outbound.listen", o.listen));
    }
    for (i, (ka, a)) in listeners.iter().enumerate() {
        for (kb, b) in &listeners[i + 1..] {
            if a == b && a.port() != 0 {
                p.add(kb, format!("{b} is also {ka}"));
            }
        }
    }
}

fn check_inbound(i: &Inbound, p: &mut Problems) {
    if i.app_exposure != AppExposure::Off && i.app_exposure_interval.is_zero() {
        p.add("inbound.app_exposure_interval", "must be greater than zero");
    }
    match (&i.tls_cert, &i.tls_key) {
        (Some(_), None) => p.add("inbound.tls_key", "is required with inbound.tls_cert"),
        (None, Some(_)) => p.add("inbound.tls_cert", "is required with inbound.tls_key"),
        (None, None) if i.client_ca.is_some() => p.add(
            "inbound.client_ca",
            "needs inbound.tls_cert and inbound.tls_key",
        ),
        _ => {}
    }
    super::headers::check(i, p);
}

/// `issuers` of rules and claim headers name `[[trust.issuers]]` entries or `"self"`.
fn check_sources(cfg: &Config, p: &mut Problems) {
    let Some(i) = &cfg.inbound else { return };
    let known = |n: &str| n == Sources::SELF || cfg.trust.issuers.iter().any(|x| x.name == n);
    let mut check = |key: String, sources: &Sources| {
        for n in sources.names().unwrap_or_default() {
            if !known(n) {
                p.add(
                    &key,
                    format!(
                        "\"{n}\" is neither a [[trust.issuers]] name nor \"self\" (callers' own keys)"
                    ),
                );
            }
        }
    };
    for (list, rules) in [("allow", &i.allow), ("deny", &i.deny)] {
        for (n, rule) in rules.iter().enumerate() {
            check(format!("inbound.{list}[{n}].issuers"), &rule.issuers);
        }
    }
    for h in &i.claim_headers {
        check(
            format!("inbound.claim_headers.\"{}\".issuers", h.name),
            &h.sources,
        );
    }
}

/// Rule names: defaults as errors name them, each name once.
fn check_rules(i: &mut Inbound, p: &mut Problems) {
    let mut names = BTreeSet::new();
    for (list, rules) in [("allow", &mut i.allow), ("deny", &mut i.deny)] {
        let array = format!("inbound.{list}");
        for (n, rule) in rules.iter_mut().enumerate() {
            let key = p.element(&array, n);
            if rule.name.is_empty() {
                rule.name = key["inbound.".len()..].to_owned();
            }
            if !names.insert(rule.name.clone()) {
                p.add(
                    &format!("{key}.name"),
                    format!("\"{}\" names two rules", rule.name),
                );
            }
            // A field whose value was refused (or an element of it) is not "not given".
            let failed = Rule::FIELDS.iter().any(|f| {
                let field = format!("{key}.{f}");
                p.failed(&field) || p.failed_under(&format!("{field}["))
            });
            if rule.is_empty() && !failed {
                p.add(
                    &key,
                    format!(
                        "an empty rule would {} everything; name {}",
                        if list == "allow" { "allow" } else { "deny" },
                        Rule::FIELDS.join(", ")
                    ),
                );
            }
        }
    }
}

/// Per-caller limits: a burst needs a rate; neither may be zero.
fn check_caller_limits(cfg: &Config, p: &mut Problems) {
    for (name, c) in &cfg.callers {
        let key = |k: &str| format!("callers.{name}.{k}");
        if c.burst == Some(0) {
            p.add(&key("burst"), "must be at least 1");
        }
        if c.burst.is_some() && c.rate_limit.is_none() {
            p.add(
                &key("burst"),
                "needs a rate_limit (the rate the bucket refills at)",
            );
        }
        if c.max_concurrent == Some(0) {
            p.add(&key("max_concurrent"), "must be at least 1");
        }
    }
}

fn check_outbound(o: &mut Outbound, p: &mut Problems) {
    match (&o.client_cert, &o.client_key) {
        (Some(_), None) => p.add(
            "outbound.client_key",
            "is required with outbound.client_cert",
        ),
        (None, Some(_)) => p.add(
            "outbound.client_cert",
            "is required with outbound.client_key",
        ),
        _ => {}
    }
    let mut seen = BTreeSet::new();
    for (n, route) in o.routes.iter_mut().enumerate() {
        let key = p.element("outbound.routes", n);
        if !seen.insert(route.host.clone()) {
            p.add(
                &format!("{key}.host"),
                format!("\"{}\" has two routes", route.host),
            );
        }
        if route.audience.is_empty() {
            // The default audience is the host's first label: `billing` for
            // `billing.default.svc.cluster.local`.
            route.audience = route
                .host
                .split(['.', ':'])
                .next()
                .unwrap_or_default()
                .to_owned();
            if !is_valid_identity(&route.audience) {
                p.add(
                    &format!("{key}.audience"),
                    format!(
                        "\"{}\" (from the host) is not a valid identity; set audience",
                        route.audience
                    ),
                );
            }
        }
    }
}

/// `[[trust.issuers]]`: names unique, an issuer to fetch from, subjects well-formed for
/// the kind. One caller may be mapped by several issuers (the same service account in two
/// clusters): `trust::files::load_checked` warns, rules tell them apart by `issuers`.
fn check_issuers(cfg: &mut Config, p: &mut Problems) {
    let own = cfg.identity.name.clone();
    let allow_http = cfg.trust.allow_http_fetch;
    let multi = cfg.trust.allow_multi_audience;
    let mut names = BTreeSet::new();
    for (n, issuer) in cfg.trust.issuers.iter_mut().enumerate() {
        let key = p.element("trust.issuers", n);
        issuer.allow_multi_audience.get_or_insert(multi);
        if !names.insert(issuer.name.clone()) {
            p.add(
                &format!("{key}.name"),
                format!("\"{}\" names two issuers", issuer.name),
            );
        }
        if issuer.users {
            check_user_issuer(issuer, &key, p);
            check_issuer_source(issuer, allow_http, &key, p);
            continue;
        }
        if issuer.audiences.is_empty() {
            issuer.audiences = vec![own.clone()];
        }
        if issuer.max_token_ttl.is_zero() {
            p.add(&format!("{key}.max_token_ttl"), "must be greater than zero");
        }
        check_issuer_source(issuer, allow_http, &key, p);
        for (subject, caller) in &issuer.callers {
            let at = format!("{key}.callers.\"{subject}\"");
            if let Err(why) = subject_shape(issuer, subject) {
                p.add(&at, why);
            }
            if !is_valid_identity(caller) {
                p.add(
                    &at,
                    format!("\"{caller}\" is not a valid identity (a DNS label)"),
                );
            }
        }
        if issuer.callers.is_empty() {
            p.add(
                &format!("{key}.callers"),
                "maps no subject to a caller: every token of this issuer would be refused",
            );
        }
    }
}

/// A user issuer: people's tokens, an OIDC provider's, for audiences it names.
fn check_user_issuer(issuer: &super::IssuerConfig, key: &str, p: &mut Problems) {
    if issuer.kind != IssuerKind::Oidc {
        p.add(
            &format!("{key}.users"),
            "people's tokens come from an oidc issuer",
        );
    }
    if !issuer.callers.is_empty() {
        p.add(
            &format!("{key}.callers"),
            "a user issuer's tokens are people's, never a caller's: no callers map",
        );
    }
    if issuer.audiences.is_empty() {
        p.add(
            &format!("{key}.audiences"),
            "is required for a user issuer (the audience its people's tokens name for this service)",
        );
    }
}

/// `[inbound.users]`: what minting and requiring a person need; the headers it sets.
fn check_users(cfg: &Config, p: &mut Problems) {
    let Some(users) = cfg.inbound.as_ref().and_then(|i| i.users.as_ref()) else {
        if !cfg.trust.transaction_token_issuers.is_empty() && cfg.inbound.is_none() {
            p.add(
                "trust.transaction_token_issuers",
                "needs an [inbound] section: transaction tokens are verified on calls received",
            );
        }
        return;
    };
    let user_issuer = cfg.trust.issuers.iter().any(|i| i.users);
    let inbound_header = cfg.inbound.as_ref().map(|i| &i.token_header);
    if inbound_header.is_some_and(|h| {
        names_alike(
            h.as_str().as_bytes(),
            users.token_header.as_str().as_bytes(),
        )
    }) {
        p.add(
            "inbound.users.token_header",
            "is also inbound.token_header: a person's token and a caller's need a header each (at an edge, move inbound.token_header)",
        );
    }
    let txn = !cfg.trust.transaction_token_issuers.is_empty();
    if users.mint_transaction_token && !user_issuer {
        p.add(
            "inbound.users.mint_transaction_token",
            "needs a user issuer ([[trust.issuers]] with users = true) whose people it vouches for",
        );
    }
    if users.mint_transaction_token && cfg.identity.key().is_none() {
        p.add(
            "inbound.users.mint_transaction_token",
            "needs identity.private_key (transaction tokens are signed with it)",
        );
    }
    if users.mode == super::UsersMode::Required && !user_issuer && !txn {
        p.add(
            "inbound.users.mode",
            "\"required\" needs a user issuer or trust.transaction_token_issuers to satisfy it",
        );
    }
    if users.transaction_ttl.is_zero() || users.transaction_ttl > cfg.trust.max_transaction_ttl {
        p.add(
            "inbound.users.transaction_ttl",
            "must be greater than zero and at most trust.max_transaction_ttl",
        );
    }
}

/// Where an issuer's keys come from: an explicit `jwks_url`, or discovery at an
/// `https://` issuer, or the API server for `kubernetes:///`.
fn check_issuer_source(
    issuer: &super::IssuerConfig,
    allow_http: bool,
    key: &str,
    p: &mut Problems,
) {
    let url_ok = |u: &str| u.starts_with("https://") || (allow_http && u.starts_with("http://"));
    match issuer.kind {
        IssuerKind::Spiffe => {
            if issuer.jwks_url.is_none() && issuer.issuer.is_empty() {
                p.add(
                    &format!("{key}.jwks_url"),
                    "is required for a spiffe issuer without issuer",
                );
            }
            if issuer.trust_domain.is_empty() {
                p.add(
                    &format!("{key}.trust_domain"),
                    "is required for a spiffe issuer",
                );
            }
        }
        IssuerKind::Kubernetes | IssuerKind::Oidc => {
            if issuer.issuer.is_empty() {
                p.add(
                    &format!("{key}.issuer"),
                    "is required (the exact iss of its tokens)",
                );
            }
            if issuer.from_pod() && issuer.kind != IssuerKind::Kubernetes {
                p.add(
                    &format!("{key}.issuer"),
                    "kubernetes:/// is for kind = \"kubernetes\" only",
                );
            }
        }
    }
    if !issuer.issuer.is_empty()
        && !issuer.from_pod()
        && issuer.jwks_url.is_none()
        && !url_ok(&issuer.issuer)
    {
        p.add(
            &format!("{key}.issuer"),
            format!(
                "\"{}\" is not an https:// URL to discover keys at; set jwks_url \
                 (or trust.allow_http_fetch = true, for a provider on plain http://)",
                issuer.issuer
            ),
        );
    }
    if let Some(u) = &issuer.jwks_url {
        if !url_ok(&u.to_string()) {
            p.add(
                &format!("{key}.jwks_url"),
                "must be https:// (or set trust.allow_http_fetch = true)",
            );
        }
    }
    if issuer.from_pod() && issuer.bearer_path().is_none() {
        p.add(
            &format!("{key}.bearer_token_file"),
            format!("{ISSUER_FROM_POD} reads the issuer from this pod's token: it cannot be \"\""),
        );
    }
}

/// A `callers` key as the issuer's kind names subjects.
fn subject_shape(issuer: &super::IssuerConfig, subject: &str) -> Result<(), String> {
    match issuer.kind {
        IssuerKind::Kubernetes => {
            let ok = subject.split_once('/').is_some_and(|(ns, sa)| {
                is_valid_identity(ns) && !sa.is_empty() && !sa.contains(['/', ':'])
            });
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "\"{subject}\" is not \"<namespace>/<serviceaccount>\""
                ))
            }
        }
        IssuerKind::Spiffe if !is_spiffe_id_in(subject, &issuer.trust_domain) => Err(format!(
            "\"{subject}\" is not a SPIFFE ID in trust domain \"{}\"",
            issuer.trust_domain
        )),
        _ if subject.is_empty() => Err("an empty subject".into()),
        _ => Ok(()),
    }
}
