//! The one loader of trust material from disk — authorized_keys, the shared key, the
//! revocation list and the signing key — used by `run` (once, at start), `check`,
//! `verify` and every reload, so that what each accepts cannot drift apart.
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, FilePath, SigningKeySource};
use crate::keys::{self, FileProblem, KeyError, Keyring, TrustedKey, UrlSource};
use crate::rule::Field as _;
use crate::token::TokenSigner;

/// What the files of the trust material hold (authorized_keys, shared key, revocation
/// list): the part of the keyring that is not fetched.
#[derive(Default)]
pub struct FileTrust {
    pub keys: Vec<TrustedKey>,
    pub revoked: HashSet<String>,
    pub problems: Vec<FileProblem>,
    /// `<identity>.url` entries.
    pub sources: Vec<UrlSource>,
}

/// Everything loaded at start: the files' trust and the signing key.
pub struct Loaded {
    pub files: FileTrust,
    pub signer: Option<TokenSigner>,
}

/// Where the trust material lives (from the configuration, or `verify`'s flags).
#[derive(Clone, Copy, Default)]
pub struct TrustFiles<'a> {
    pub authorized_keys: Option<&'a Path>,
    pub shared_key: Option<&'a Path>,
    pub revoked: Option<&'a Path>,
}

impl<'a> TrustFiles<'a> {
    pub fn of(cfg: &'a Config) -> Self {
        TrustFiles {
            authorized_keys: cfg.trust.authorized_keys.as_deref(),
            shared_key: cfg.trust.shared_key.as_deref(),
            revoked: cfg.trust.revoked.as_deref(),
        }
    }
}

/// A part of the trust material that cannot be loaded, named by its configuration key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {error}")]
pub struct LoadError {
    pub key: &'static str,
    pub error: KeyError,
}

fn at(key: &'static str) -> impl Fn(KeyError) -> LoadError {
    move |error| LoadError { key, error }
}

/// Reads authorized_keys, the shared key and the revocation list; the first part that
/// cannot be read is the error (a reload keeps the previous keyring then).
///
/// With a `previous` keyring, a key file that fails to load keeps the keys it held in
/// it: a half-written or broken copy of `orders.pem` must not cut `orders` off. (A file
/// that is *gone* is a removal, and its keys go.)
pub fn load(files: &TrustFiles, previous: Option<&Keyring>) -> Result<FileTrust, LoadError> {
    let (trust, errors) = load_parts(files, previous);
    match errors.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(trust),
    }
}

/// Every part that loads, and why each other one does not: [`load`] stops at the first
/// error, [`load_checked`] reports them all.
fn load_parts(files: &TrustFiles, previous: Option<&Keyring>) -> (FileTrust, Vec<LoadError>) {
    let mut errors = Vec::new();
    let mut trust = match files.authorized_keys.map(|dir| load_dir(dir, previous)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            errors.push(at("trust.authorized_keys")(e));
            FileTrust::default()
        }
        None => FileTrust::default(),
    };
    match files.shared_key.map(shared_key) {
        Some(Ok(k)) => trust.keys.push(k),
        Some(Err(e)) => errors.push(at("trust.shared_key")(e)),
        None => {}
    }
    match files.revoked.map(keys::load_revoked) {
        Some(Ok(r)) => trust.revoked = r,
        Some(Err(e)) => errors.push(at("trust.revoked")(e)),
        None => {}
    }
    (trust, errors)
}

fn load_dir(dir: &Path, previous: Option<&Keyring>) -> Result<FileTrust, KeyError> {
    let load = keys::load_dir(dir)?;
    let mut trust = FileTrust {
        keys: load.keys,
        sources: load.sources,
        ..FileTrust::default()
    };
    for mut p in load.problems {
        if let Some(prev) = previous {
            let kept: Vec<TrustedKey> = prev
                .keys()
                .into_iter()
                .filter(|k| k.source == p.file && p.file.extension() != Some("url".as_ref()))
                .map(|k| (**k).clone())
                .collect();
            if !kept.is_empty() {
                p.reason = format!(
                    "{}; keeping the {} key(s) it held before",
                    p.reason,
                    kept.len()
                );
                trust.keys.extend(kept);
            }
        }
        trust.problems.push(p);
    }
    Ok(trust)
}

fn shared_key(path: &Path) -> Result<TrustedKey, KeyError> {
    let key = keys::load_shared_key(path)?;
    Ok(TrustedKey {
        speaks: keys::Speaks::Anyone,
        key: key.verifying_key().clone(),
        source: path.to_path_buf(),
    })
}

/// The keyring of the files' keys and the fetched ones.
pub fn compose(files: &FileTrust, fetched: Vec<TrustedKey>) -> Keyring {
    let mut keys = files.keys.clone();
    keys.extend(fetched);
    Keyring::new(keys, files.revoked.clone(), files.problems.clone())
}

/// The signing key the configuration names, if any.
pub fn load_signer(cfg: &Config) -> Result<Option<TokenSigner>, LoadError> {
    let Some(source) = cfg.identity.key() else {
        return Ok(None);
    };
    let loaded = match &source {
        SigningKeySource::Private(p) => keys::load_signing_key(p),
        SigningKeySource::Shared(p) => keys::load_shared_key(p),
    };
    let key = loaded.map_err(at(source.config_key()))?;
    Ok(Some(TokenSigner::new(
        cfg.identity.name.clone(),
        Arc::new(key),
        cfg.identity.token_ttl,
    )))
}

/// Problems with the files a configuration names. Errors stop `run`; warnings are logged.
#[derive(Debug, Default)]
pub struct FileCheck {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Files of the key directories that cannot be used: `run` logs them and loads the
    /// others (a bad file never takes down the rest); `check` fails on them, as `keys`
    /// does.
    pub key_files: Vec<String>,
}

/// Loads every file the configuration names, as `run` does (and `run` uses what it
/// loaded), and reports every problem at once: the material if nothing is in error.
pub fn load_checked(cfg: &Config) -> (Option<Loaded>, FileCheck) {
    let mut check = FileCheck::default();
    let signer = load_signer(cfg).map_err(|e| check.errors.push(e.to_string()));
    if let Some(source) = cfg.identity.key() {
        if let Some(w) = loose_permissions(source.path()) {
            check.warnings.push(format!("{}: {w}", source.config_key()));
        }
    }
    let (trust, errors) = load_parts(&TrustFiles::of(cfg), None);
    warn_about_dir(cfg, &trust, &mut check);
    warn_about_sources(cfg, &trust, &mut check);
    check.errors.extend(errors.iter().map(ToString::to_string));
    readable_file(&mut check, "trust.fetch_ca_file", &cfg.trust.fetch_ca_file);
    tls_files_readable(cfg, &mut check);
    platform_files_readable(cfg, &mut check);
    let loaded = match signer {
        Ok(signer) if check.errors.is_empty() => Some(Loaded {
            files: trust,
            signer,
        }),
        _ => None,
    };
    (loaded, check)
}

/// The key directory as `keys` sees it: a file that cannot be used (private key
/// material, junk, a weak key) is reported in `key_files`; no key at all, and nothing else
/// to trust, is a warning — every call would be `unknown_key`.
fn warn_about_dir(cfg: &Config, trust: &FileTrust, check: &mut FileCheck) {
    for p in &trust.problems {
        check.key_files.push(format!(
            "trust.authorized_keys: {}: {}",
            p.file.display(),
            p.reason
        ));
    }
    if let Some(w) = nothing_trusted(cfg, trust) {
        check.warnings.push(w);
    }
    for s in &trust.sources {
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

/// One caller reachable from several sources (the same service account in two clusters'
/// issuers, or a key file and an issuer) is allowed; the operator is told, as rules that
/// must tell them apart name `issuers`. Rules whose claims no configured source can give
/// never match: a deny rule that reads nothing refuses nothing.
fn warn_about_sources(cfg: &Config, trust: &FileTrust, check: &mut FileCheck) {
    let mut by_caller: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let mut own: Vec<(&str, String)> = trust
        .keys
        .iter()
        .filter_map(|k| Some((k.speaks.identity()?, k.source.display().to_string())))
        .chain(
            trust
                .sources
                .iter()
                .map(|s| (s.identity.as_str(), s.file.display().to_string())),
        )
        .collect();
    own.sort();
    own.dedup_by(|a, b| a.0 == b.0);
    for (caller, file) in own {
        by_caller
            .entry(caller)
            .or_default()
            .push(format!("its own key ({file})"));
    }
    for issuer in &cfg.trust.issuers {
        for (subject, caller) in &issuer.callers {
            by_caller
                .entry(caller.as_str())
                .or_default()
                .push(format!("issuer \"{}\" (subject {subject})", issuer.name));
        }
    }
    for (caller, from) in by_caller.iter().filter(|(_, from)| from.len() > 1) {
        check.warnings.push(format!(
            "caller \"{caller}\" is reachable from {} sources: {}; a rule naming issuers tells them apart",
            from.len(),
            from.join(", ")
        ));
    }
    let Some(inbound) = &cfg.inbound else { return };
    let configured = |sources: &crate::config::Sources| match sources.names() {
        Some(_) => true,
        None => !cfg.trust.issuers.is_empty(),
    };
    for (list, rules) in [("allow", &inbound.allow), ("deny", &inbound.deny)] {
        for (n, rule) in rules.iter().enumerate() {
            if rule.claims.is_given() && !configured(&rule.issuers) {
                check.warnings.push(format!(
                    "inbound.{list}[{n}].claims: read from the issuers' tokens only, and no [[trust.issuers]] is configured: the rule never matches (callers' own claims, such as /ctx/..., need issuers = [\"self\"])"
                ));
            }
        }
    }
    for h in &inbound.claim_headers {
        if !configured(&h.sources) {
            check.warnings.push(format!(
                "inbound.claim_headers.\"{}\": read from the issuers' tokens only, and no [[trust.issuers]] is configured: never sent (callers' own claims need {{ pointer = \"{}\", issuers = [\"self\"] }})",
                h.name, h.pointer
            ));
        }
    }
}

/// "No trusted keys": the directory holds no usable key, and no key URL, issuer or shared
/// key could vouch for a caller either.
pub fn nothing_trusted(cfg: &Config, trust: &FileTrust) -> Option<String> {
    let dir = cfg.trust.authorized_keys.as_deref()?;
    let empty = trust.keys.is_empty()
        && trust.sources.is_empty()
        && cfg.trust.issuers.is_empty()
        && cfg.trust.shared_key.is_none();
    empty.then(|| {
        format!(
            "trust.authorized_keys: no trusted keys in {} (no key file, no key URL, no issuer): every call will be refused unknown_key until one is added",
            dir.display()
        )
    })
}

fn tls_files_readable(cfg: &Config, check: &mut FileCheck) {
    let mut readable = |key: &str, p: &Option<FilePath>| readable_file(check, key, p);
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
}

/// Issuers' CA bundles (an error: the issuer could never be fetched) and bearer tokens (a
/// warning: fetches fail until the file appears); routes' token files (an error).
fn platform_files_readable(cfg: &Config, check: &mut FileCheck) {
    for (n, issuer) in cfg.trust.issuers.iter().enumerate() {
        if let Some(ca) = issuer.ca_path(&cfg.trust) {
            if let Err(e) = std::fs::File::open(ca) {
                check
                    .errors
                    .push(format!("trust.issuers[{n}].ca_file: {}: {e}", ca.display()));
            }
        }
        if let Some(token) = issuer.bearer_path() {
            if let Err(e) = super::issuer::read_token_file(token) {
                check.warnings.push(format!(
                    "trust.issuers[{n}].bearer_token_file: {e}; fetches of issuer \"{}\" fail until it can be read",
                    issuer.name
                ));
            }
        }
    }
    for (n, route) in cfg
        .outbound
        .iter()
        .flat_map(|o| o.routes.iter().enumerate())
    {
        if let Some(file) = &route.token_file {
            if let Err(e) = super::issuer::read_token_file(file) {
                check
                    .errors
                    .push(format!("outbound.routes[{n}].token_file: {e}"));
            }
        }
    }
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
pub fn loose_permissions(p: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    // A Secret volume the kubelet writes (its `..data` beside the file) is read-only and
    // mounted into this container alone: without a pod fsGroup its files are 0444, and
    // nothing the operator could chmod. Nothing to warn about.
    if p.parent()
        .is_some_and(|d| std::fs::symlink_metadata(d.join("..data")).is_ok())
    {
        return None;
    }
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
pub fn loose_permissions(_: &Path) -> Option<String> {
    None
}
