//! The one check pass: what no single key can know alone (pairs of keys, contradictions,
//! duplicates, defaults derived from other keys), then — for `check` and `run` — the files
//! the configuration names ([`validate_files`]).
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use super::parse::Problems;
use super::{AppExposure, Config, FilePath, Inbound, Outbound, SigningKeySource};
use crate::keys::{self, is_valid_identity};
use crate::proxy::http::{name_starts_alike, names_alike};

pub(super) fn check(cfg: &mut Config, p: &mut Problems) {
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
    let identity = &cfg.identity;
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

    if cfg.inbound.as_ref().is_some_and(|i| !i.enabled) {
        cfg.inbound = None;
    }
    if let Some(inbound) = &cfg.inbound {
        check_inbound(inbound, p);
        if trust.authorized_keys.is_none() && trust.shared_key.is_none() {
            p.add(
                "trust.authorized_keys",
                "is required with [inbound] (or trust.shared_key in shared-key mode)",
            );
        }
    }
    if let Some(outbound) = &mut cfg.outbound {
        check_outbound(outbound, p);
        if identity.key().is_none() {
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

/// Problems with the files a configuration names. Errors stop `run`; warnings are logged.
#[derive(Debug, Default)]
pub struct FileCheck {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Loads every file the configuration names, as `run` will, and reports what is wrong.
pub fn validate_files(cfg: &Config) -> FileCheck {
    let mut check = FileCheck::default();
    match &cfg.identity.key() {
        Some(SigningKeySource::Private(p)) => {
            if let Err(e) = keys::load_signing_key(p) {
                check.errors.push(format!("identity.private_key: {e}"));
            }
            if let Some(w) = loose_permissions(p) {
                check.warnings.push(format!("identity.private_key: {w}"));
            }
        }
        Some(SigningKeySource::Shared(p)) => {
            if let Err(e) = keys::load_shared_key(p) {
                check.errors.push(format!("identity.shared_key: {e}"));
            }
            if let Some(w) = loose_permissions(p) {
                check.warnings.push(format!("identity.shared_key: {w}"));
            }
        }
        None => {}
    }
    if let Some(dir) = &cfg.trust.authorized_keys {
        match keys::load_dir(dir) {
            Ok(load) => {
                for p in load.problems {
                    check.warnings.push(format!(
                        "trust.authorized_keys: {}: {}",
                        p.file.display(),
                        p.reason
                    ));
                }
                for s in load.sources {
                    if s.url.scheme_str() == Some("http") && !cfg.trust.allow_http_fetch {
                        check.warnings.push(format!(
                            "trust.authorized_keys: {}: http:// key URLs are refused (keys \
                             must travel over TLS; trust.allow_http_fetch = true allows them): \
                             {} will fail closed",
                            s.file.display(),
                            s.identity
                        ));
                    }
                }
            }
            Err(e) => check.errors.push(format!("trust.authorized_keys: {e}")),
        }
    }
    if let Some(p) = &cfg.trust.shared_key {
        if let Err(e) = keys::load_shared_key(p) {
            check.errors.push(format!("trust.shared_key: {e}"));
        }
    }
    readable_file(&mut check, "trust.fetch_ca_file", &cfg.trust.fetch_ca_file);
    if let Some(p) = &cfg.trust.revoked {
        if let Err(e) = keys::load_revoked(p) {
            check.errors.push(format!("trust.revoked: {e}"));
        }
    }
    let mut readable = |key: &str, p: &Option<FilePath>| readable_file(&mut check, key, p);
    if let Some(i) = &cfg.inbound {
        readable("inbound.tls_cert", &i.tls_cert);
        readable("inbound.tls_key", &i.tls_key);
        readable("inbound.client_ca", &i.client_ca);
    }
    if let Some(o) = &cfg.outbound {
        readable("outbound.ca_file", &o.ca_file);
        readable("outbound.client_cert", &o.client_cert);
        readable("outbound.client_key", &o.client_key);
    }
    check
}

fn readable_file(check: &mut FileCheck, key: &str, p: &Option<FilePath>) {
    if let Some(p) = p {
        if let Err(e) = std::fs::File::open(p) {
            check.errors.push(format!("{key}: {}: {e}", p.display()));
        }
    }
}

/// A private key readable by others, or by a group we are not in, deserves a warning.
/// Group-readable by our own group is what Kubernetes does with `fsGroup` (a 0400 Secret
/// file becomes 0440 root:<fsGroup>), so that alone is not warned about.
#[cfg(unix)]
pub(super) fn loose_permissions(p: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(p).ok()?;
    let mode = meta.permissions().mode();
    let own_group = own_gids().contains(&meta.gid());
    let loose = mode & 0o007 != 0 || (mode & 0o070 != 0 && !own_group);
    loose.then(|| {
        format!(
            "{} is readable by {} (mode {:o}); chmod 600 it",
            p.display(),
            if mode & 0o007 != 0 {
                "others"
            } else {
                "a group this process is not in"
            },
            mode & 0o777
        )
    })
}

/// Our real, effective and supplementary group ids, from /proc (no libc needed).
#[cfg(unix)]
fn own_gids() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("Gid:") || l.starts_with("Groups:"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[cfg(not(unix))]
pub(super) fn loose_permissions(_: &Path) -> Option<String> {
    None
}
