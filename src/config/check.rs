//! The one check pass: what no single key can know alone (pairs of keys, contradictions,
//! duplicates, defaults derived from other keys). The files the configuration names are
//! loaded and checked by the trust plane's loader (`trust::files::load_checked`).
use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::parse::Problems;
use super::{AppExposure, Config, Inbound, Outbound};
use crate::http::{name_starts_alike, names_alike};
use crate::keys::is_valid_identity;

pub(super) fn check(cfg: &mut Config, p: &mut Problems) {
    check_trust(cfg, p);
    check_identity(cfg, p);
    check_sides(cfg, p);
    check_limits(cfg, p);
    check_listeners(cfg, p);
}

fn check_trust(cfg: &Config, p: &mut Problems) {
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
    if cfg.inbound.as_ref().is_some_and(|i| !i.enabled) {
        cfg.inbound = None;
    }
    if let Some(inbound) = &cfg.inbound {
        check_inbound(inbound, p);
        let trust = &cfg.trust;
        if trust.authorized_keys.is_none() && trust.shared_key.is_none() {
            p.add(
                "trust.authorized_keys",
                "is required with [inbound] (or trust.shared_key in shared-key mode)",
            );
        }
    }
    if let Some(outbound) = &mut cfg.outbound {
        check_outbound(outbound, p);
        if cfg.identity.key().is_none() {
            p.add(
                "identity.private_key",
                "is required with [outbound] (or identity.shared_key in shared-key mode)",
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
    if let Some(i) = &cfg.inbound {
        listeners.push(("inbound.listen", i.listen));
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
    for h in &i.signed_headers {
        let name = h.as_str().as_bytes();
        if name_starts_alike(name, b"x-service-caller")
            || names_alike(name, i.token_header.as_str().as_bytes())
        {
            p.add(
                "inbound.signed_headers",
                format!("\"{h}\" is reserved for trustgate's own headers"),
            );
        }
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
    for (n, rule) in i.allow.iter().enumerate() {
        let key = p.element("inbound.allow", n);
        if rule.callers.is_empty()
            && rule.roles.is_empty()
            && rule.methods.is_empty()
            && rule.paths.is_empty()
            && !p.failed(&format!("{key}.callers"))
            && !p.failed(&format!("{key}.methods"))
            && !(0..4).any(|k| p.failed(&format!("{key}.paths[{k}]")))
        {
            p.add(
                &key,
                "an empty rule would allow everything; name callers, roles, methods or paths",
            );
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
