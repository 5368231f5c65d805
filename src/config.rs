//! Configuration: one TOML file plus `TRUSTGATE_<SECTION>_<KEY>` environment overrides →
//! a validated, frozen [`Config`].
//!
//! The file is parsed whole and every problem is reported at once, each naming the file
//! (or environment variable) and the key: unknown keys, bad values, contradictions. Only
//! then are the files it names checked ([`validate_files`]). Nothing binds a port before
//! all of this has passed, so the process never starts half-configured.
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use serde::Deserialize;

use crate::keys::{self, is_valid_identity};

/// Every problem found, one sentence each.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The frozen configuration

#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub identity: Identity,
    pub trust: Trust,
    /// `None` when the `[inbound]` section is absent: no inbound listener.
    pub inbound: Option<Inbound>,
    /// `None` when the `[outbound]` section is absent: no outbound listener.
    pub outbound: Option<Outbound>,
    /// `[callers.<name>]`: roles by caller identity.
    pub callers: BTreeMap<String, Vec<String>>,
    pub admin: Admin,
    pub limits: Limits,
    pub log: Log,
}

#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub key: Option<SigningKeySource>,
    pub token_ttl: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigningKeySource {
    /// `identity.private_key`: PKCS#8 / SEC1 PEM or private JWK.
    Private(PathBuf),
    /// `identity.shared_key`: shared-key mode (HS256).
    Shared(PathBuf),
}

impl SigningKeySource {
    pub fn path(&self) -> &Path {
        match self {
            SigningKeySource::Private(p) | SigningKeySource::Shared(p) => p,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Trust {
    pub authorized_keys: Option<PathBuf>,
    pub revoked: Option<PathBuf>,
    pub shared_key: Option<PathBuf>,
    pub leeway: Duration,
    pub max_token_ttl: Duration,
    pub rescan_interval: Duration,
    /// How long the previous signing key stays in `/.well-known/jwks.json` after rotation.
    pub jwks_grace: Duration,
    /// Accept tokens whose `aud` also names other services (off: such a token could be
    /// replayed by any of them against this one).
    pub allow_multi_audience: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundMode {
    Enforce,
    Audit,
}

/// The protocol trustgate speaks to an upstream (`inbound.upstream_protocol`, a route's
/// `upstream_protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// Inbound: HTTP/2 for gRPC, HTTP/1.1 for everything else (every app server speaks
    /// it). Outbound: the protocol the app called in, so an HTTP/2 client multiplexes
    /// over the sidecar link and an HTTP/1.1 one (upgrades included) keeps HTTP/1.1.
    #[default]
    Auto,
    Http1,
    Http2,
}

impl UpstreamProtocol {
    fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("auto") => Ok(UpstreamProtocol::Auto),
            Some("http1") => Ok(UpstreamProtocol::Http1),
            Some("http2") => Ok(UpstreamProtocol::Http2),
            Some(other) => Err(format!(
                "\"{other}\" is not \"auto\", \"http1\" or \"http2\""
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Inbound {
    pub listen: SocketAddr,
    pub upstream: Uri,
    pub upstream_protocol: UpstreamProtocol,
    pub public_paths: Vec<String>,
    pub token_header: HeaderName,
    pub mode: InboundMode,
    pub signed_headers: Vec<HeaderName>,
    pub require_request_binding: bool,
    pub tls: Option<ServerTls>,
    pub verified_cache_size: usize,
    pub replay_cache_size: usize,
    pub allow: Vec<AllowRule>,
}

/// One `[[inbound.allow]]` rule: every non-empty field must match.
#[derive(Clone, Debug, Default)]
pub struct AllowRule {
    pub callers: Vec<String>,
    pub roles: Vec<String>,
    pub methods: Vec<Method>,
    pub paths: Vec<PathPattern>,
}

impl AllowRule {
    pub fn matches(&self, caller: &str, roles: &[String], method: &Method, path: &str) -> bool {
        (self.callers.is_empty() || self.callers.iter().any(|c| c == caller))
            && (self.roles.is_empty() || self.roles.iter().any(|r| roles.contains(r)))
            && (self.methods.is_empty() || self.methods.contains(method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
    }
}

/// A path pattern: `*` (any), `/prefix/*` (the prefix itself and anything under it), or
/// an exact path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl PathPattern {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(PathPattern::Any);
        }
        if !s.starts_with('/') {
            return Err(format!("\"{s}\" must start with '/' (or be \"*\")"));
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            if prefix.contains('*') {
                return Err(format!("\"{s}\": '*' is only allowed as the last segment"));
            }
            return Ok(PathPattern::Prefix(prefix.to_owned()));
        }
        if s.contains('*') {
            return Err(format!("\"{s}\": '*' is only allowed as a final \"/*\""));
        }
        Ok(PathPattern::Exact(s.to_owned()))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => {
                path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outbound {
    pub listen: SocketAddr,
    pub token_header: HeaderName,
    pub passthrough_unknown: bool,
    pub signed_headers: Vec<HeaderName>,
    pub bind_request: bool,
    pub ca_file: Option<PathBuf>,
    /// (certificate chain, private key) for `https://` upstreams that want one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug)]
pub struct Route {
    /// Lower-case host as the app names it (`billing`, `billing.default.svc`).
    pub host: String,
    pub upstream: Uri,
    pub upstream_protocol: UpstreamProtocol,
    pub audience: String,
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

// ---------------------------------------------------------------------------------------
// The file as written

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    identity: RawIdentity,
    trust: RawTrust,
    inbound: Option<RawInbound>,
    callers: BTreeMap<String, RawCaller>,
    outbound: Option<RawOutbound>,
    admin: RawAdmin,
    limits: RawLimits,
    log: RawLog,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawIdentity {
    name: Option<String>,
    private_key: Option<PathBuf>,
    shared_key: Option<PathBuf>,
    token_ttl: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTrust {
    authorized_keys: Option<PathBuf>,
    revoked: Option<PathBuf>,
    shared_key: Option<PathBuf>,
    leeway: Option<String>,
    max_token_ttl: Option<String>,
    rescan_interval: Option<String>,
    jwks_grace: Option<String>,
    allow_multi_audience: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInbound {
    listen: Option<String>,
    upstream: Option<String>,
    upstream_protocol: Option<String>,
    public_paths: Vec<String>,
    token_header: Option<String>,
    mode: Option<String>,
    signed_headers: Vec<String>,
    require_request_binding: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    verified_cache_size: Option<usize>,
    replay_cache_size: Option<usize>,
    allow: Vec<RawAllow>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAllow {
    callers: Vec<String>,
    roles: Vec<String>,
    methods: Vec<String>,
    paths: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCaller {
    roles: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOutbound {
    listen: Option<String>,
    token_header: Option<String>,
    passthrough_unknown: bool,
    signed_headers: Vec<String>,
    bind_request: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRoute {
    host: Option<String>,
    upstream: Option<String>,
    upstream_protocol: Option<String>,
    audience: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAdmin {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLimits {
    header_read_timeout: Option<String>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Environment overrides

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    List,
}

/// The keys an environment variable may override. Arrays of tables (`inbound.allow`,
/// `outbound.routes`) and `[callers.*]` are file-only: they are structures, not values.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("identity", "name", Kind::Str),
    ("identity", "private_key", Kind::Str),
    ("identity", "shared_key", Kind::Str),
    ("identity", "token_ttl", Kind::Str),
    ("trust", "authorized_keys", Kind::Str),
    ("trust", "revoked", Kind::Str),
    ("trust", "shared_key", Kind::Str),
    ("trust", "leeway", Kind::Str),
    ("trust", "max_token_ttl", Kind::Str),
    ("trust", "rescan_interval", Kind::Str),
    ("trust", "jwks_grace", Kind::Str),
    ("trust", "allow_multi_audience", Kind::Bool),
    ("inbound", "listen", Kind::Str),
    ("inbound", "upstream", Kind::Str),
    ("inbound", "upstream_protocol", Kind::Str),
    ("inbound", "public_paths", Kind::List),
    ("inbound", "token_header", Kind::Str),
    ("inbound", "mode", Kind::Str),
    ("inbound", "signed_headers", Kind::List),
    ("inbound", "require_request_binding", Kind::Bool),
    ("inbound", "tls_cert", Kind::Str),
    ("inbound", "tls_key", Kind::Str),
    ("inbound", "client_ca", Kind::Str),
    ("inbound", "verified_cache_size", Kind::Int),
    ("inbound", "replay_cache_size", Kind::Int),
    ("outbound", "listen", Kind::Str),
    ("outbound", "token_header", Kind::Str),
    ("outbound", "passthrough_unknown", Kind::Bool),
    ("outbound", "signed_headers", Kind::List),
    ("outbound", "bind_request", Kind::Bool),
    ("outbound", "ca_file", Kind::Str),
    ("outbound", "client_cert", Kind::Str),
    ("outbound", "client_key", Kind::Str),
    ("admin", "listen", Kind::Str),
    ("limits", "header_read_timeout", Kind::Str),
    ("limits", "connect_timeout", Kind::Str),
    ("limits", "request_timeout", Kind::Str),
    ("limits", "idle_timeout", Kind::Str),
    ("limits", "shutdown_grace", Kind::Str),
    ("limits", "max_header_bytes", Kind::Int),
    ("limits", "max_connections", Kind::Int),
    ("log", "format", Kind::Str),
    ("log", "level", Kind::Str),
];

/// Variables with the prefix that are not configuration keys.
fn env_ignored(name: &str) -> bool {
    name == "TRUSTGATE_CONFIG"
        || name.starts_with("TRUSTGATE_TEST")
        || name == "TRUSTGATE_REQUIRE_INTEROP"
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) {
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("TRUSTGATE_") && !env_ignored(k))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let rest = name["TRUSTGATE_".len()..].to_ascii_lowercase();
        let found = ENV_KEYS.iter().find(|(section, key, _)| {
            rest.len() == section.len() + 1 + key.len()
                && rest.starts_with(section)
                && rest[section.len()..].starts_with('_')
                && rest.ends_with(key)
        });
        let Some(&(section, key, kind)) = found else {
            problems.push(format!(
                "environment variable {name}: not a configuration key \
                 (TRUSTGATE_<SECTION>_<KEY>, e.g. TRUSTGATE_INBOUND_LISTEN)"
            ));
            continue;
        };
        let parsed = match kind {
            Kind::Str => Ok(toml::Value::String(value.clone())),
            Kind::Bool => match value.trim() {
                "true" | "1" => Ok(toml::Value::Boolean(true)),
                "false" | "0" => Ok(toml::Value::Boolean(false)),
                v => Err(format!("\"{v}\" is not true or false")),
            },
            Kind::Int => value
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("\"{value}\" is not a whole number")),
            Kind::List => {
                let v = value.trim();
                if v.starts_with('[') {
                    format!("v = {v}")
                        .parse::<toml::Table>()
                        .ok()
                        .and_then(|mut t| t.remove("v"))
                        .ok_or_else(|| format!("\"{v}\" is not a TOML array"))
                } else {
                    Ok(toml::Value::Array(
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| toml::Value::String(s.to_owned()))
                            .collect(),
                    ))
                }
            }
        };
        match parsed {
            Ok(v) => {
                let entry = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                match entry.as_table_mut() {
                    Some(t) => {
                        t.insert(key.to_owned(), v);
                    }
                    None => problems.push(format!(
                        "environment variable {name}: [{section}] is not a table in the file"
                    )),
                }
            }
            Err(reason) => problems.push(format!("environment variable {name}: {reason}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading and validation

/// Reads `path`, applies `env` overrides, validates. Relative paths in the file are
/// resolved against the file's directory.
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![format!(
            "{}: cannot read configuration: {e}",
            path.display()
        )],
    })?;
    let mut cfg = from_toml_str(&text, &path.display().to_string(), env)?;
    cfg.source = path.to_path_buf();
    if let Some(base) = path.parent() {
        resolve_paths(&mut cfg, base);
    }
    Ok(cfg)
}

fn resolve_paths(cfg: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(k) = &mut cfg.identity.key {
        match k {
            SigningKeySource::Private(p) | SigningKeySource::Shared(p) => fix(p),
        }
    }
    for p in [
        &mut cfg.trust.authorized_keys,
        &mut cfg.trust.revoked,
        &mut cfg.trust.shared_key,
    ]
    .into_iter()
    .flatten()
    {
        fix(p);
    }
    if let Some(tls) = cfg.inbound.as_mut().and_then(|i| i.tls.as_mut()) {
        fix(&mut tls.cert);
        fix(&mut tls.key);
        if let Some(ca) = &mut tls.client_ca {
            fix(ca);
        }
    }
    if let Some(out) = &mut cfg.outbound {
        if let Some(ca) = &mut out.ca_file {
            fix(ca);
        }
        if let Some((c, k)) = &mut out.client_cert {
            fix(c);
            fix(k);
        }
    }
}

/// Parses and validates configuration text. `source` names it in messages. Touches no
/// files: see [`validate_files`] for that.
pub fn from_toml_str(
    text: &str,
    source: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
        problems: vec![
            format!("{source}: not valid TOML: {}", e.message())
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        ],
    })?;
    apply_env(&mut table, env, &mut problems);

    let mut unknown = Vec::new();
    let raw: Raw = serde_ignored::deserialize(toml::Value::Table(table), |path| {
        unknown.push(key_path(&path))
    })
    .map_err(|e| ConfigError {
        problems: vec![format!("{source}: {e}")],
    })?;
    for key in unknown {
        problems.push(format!("{source}: {key}: unknown key"));
    }
    let cfg = Validator {
        source,
        problems: &mut problems,
    }
    .build(raw);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError { problems })
    }
}

/// `inbound.allow[0].methodz`, as a user writes it (serde_ignored's own Display shows
/// `Option` layers as `?`).
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

struct Validator<'a> {
    source: &'a str,
    problems: &'a mut Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, key: &str, reason: impl std::fmt::Display) {
        self.problems
            .push(format!("{}: {key}: {reason}", self.source));
    }

    fn duration(&mut self, key: &str, value: Option<String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => match humantime::parse_duration(&v) {
                Ok(d) => d,
                Err(e) => {
                    self.problem(
                        key,
                        format!("\"{v}\" is not a duration ({e}); write e.g. \"60s\" or \"500ms\""),
                    );
                    default
                }
            },
        }
    }

    fn addr(&mut self, key: &str, value: Option<String>, default: &str) -> SocketAddr {
        let v = value.unwrap_or_else(|| default.to_owned());
        v.parse().unwrap_or_else(|_| {
            self.problem(key, format!("\"{v}\" is not a socket address (ip:port)"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn upstream(&mut self, key: &str, v: &str) -> Uri {
        match v.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/") =>
            {
                uri
            }
            _ => {
                self.problem(
                    key,
                    format!("\"{v}\" is not an http:// or https:// URL with a host and no path"),
                );
                Uri::from_static("http://127.0.0.1")
            }
        }
    }

    fn header(&mut self, key: &str, v: &str) -> HeaderName {
        HeaderName::from_bytes(v.to_ascii_lowercase().as_bytes()).unwrap_or_else(|_| {
            self.problem(key, format!("\"{v}\" is not a valid header name"));
            HeaderName::from_static("invalid")
        })
    }

    fn identity(&mut self, key: &str, v: &str) {
        if !is_valid_identity(v) {
            self.problem(
                key,
                format!("\"{v}\" is not a valid identity (a DNS label: lower-case letters, digits, '-')"),
            );
        }
    }

    fn build(mut self, raw: Raw) -> Config {
        let Raw {
            identity,
            trust,
            inbound,
            callers,
            outbound,
            admin,
            limits,
            log,
        } = raw;

        // [trust]
        let trust = Trust {
            leeway: self.duration("trust.leeway", trust.leeway, Duration::from_secs(30)),
            max_token_ttl: self.duration(
                "trust.max_token_ttl",
                trust.max_token_ttl,
                Duration::from_secs(300),
            ),
            rescan_interval: self.duration(
                "trust.rescan_interval",
                trust.rescan_interval,
                Duration::from_secs(30),
            ),
            jwks_grace: self.duration(
                "trust.jwks_grace",
                trust.jwks_grace,
                Duration::from_secs(600),
            ),
            allow_multi_audience: trust.allow_multi_audience,
            authorized_keys: trust.authorized_keys,
            revoked: trust.revoked,
            shared_key: trust.shared_key,
        };
        if trust.rescan_interval.is_zero() {
            self.problem("trust.rescan_interval", "must be greater than zero");
        }

        // [identity]
        let name = identity.name.unwrap_or_default();
        if name.is_empty() {
            self.problem("identity.name", "is required (this service's identity)");
        } else {
            self.identity("identity.name", &name);
        }
        let key = match (identity.private_key, identity.shared_key) {
            (Some(_), Some(_)) => {
                self.problem(
                    "identity.shared_key",
                    "set either identity.private_key or identity.shared_key, not both",
                );
                None
            }
            (Some(p), None) => Some(SigningKeySource::Private(p)),
            (None, Some(p)) => Some(SigningKeySource::Shared(p)),
            (None, None) => None,
        };
        let token_ttl = self.duration(
            "identity.token_ttl",
            identity.token_ttl,
            Duration::from_secs(60),
        );
        if token_ttl.as_secs() == 0 {
            self.problem("identity.token_ttl", "must be at least 1s");
        } else if token_ttl > trust.max_token_ttl {
            self.problem(
                "identity.token_ttl",
                format!(
                    "{} is longer than trust.max_token_ttl ({}); peers with the same limit would refuse these tokens",
                    humantime::format_duration(token_ttl),
                    humantime::format_duration(trust.max_token_ttl)
                ),
            );
        }

        // [callers.*]
        let mut caller_roles = BTreeMap::new();
        for (caller, c) in callers {
            self.identity(&format!("callers.{caller}"), &caller);
            caller_roles.insert(caller, c.roles);
        }

        // [inbound]
        let inbound = inbound.map(|i| self.inbound(i));
        if inbound.is_some() && trust.authorized_keys.is_none() && trust.shared_key.is_none() {
            self.problem(
                "trust.authorized_keys",
                "is required with [inbound] (or trust.shared_key in shared-key mode)",
            );
        }

        // [outbound]
        let outbound = outbound.map(|o| self.outbound(o));
        if outbound.is_some() && key.is_none() {
            self.problem(
                "identity.private_key",
                "is required with [outbound] (or identity.shared_key in shared-key mode)",
            );
        }
        if inbound.is_none() && outbound.is_none() && self.problems.is_empty() {
            self.problem(
                "inbound",
                "neither [inbound] nor [outbound] is configured: nothing to do",
            );
        }

        let admin = Admin {
            listen: self.addr("admin.listen", admin.listen, "127.0.0.1:15000"),
        };
        let limits = Limits {
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                limits.header_read_timeout,
                Duration::from_secs(10),
            ),
            connect_timeout: self.duration(
                "limits.connect_timeout",
                limits.connect_timeout,
                Duration::from_secs(5),
            ),
            request_timeout: self.duration(
                "limits.request_timeout",
                limits.request_timeout,
                Duration::from_secs(60),
            ),
            idle_timeout: self.duration(
                "limits.idle_timeout",
                limits.idle_timeout,
                Duration::from_secs(90),
            ),
            shutdown_grace: self.duration(
                "limits.shutdown_grace",
                limits.shutdown_grace,
                Duration::from_secs(20),
            ),
            max_header_bytes: limits.max_header_bytes.unwrap_or(64 * 1024),
            max_connections: limits.max_connections.unwrap_or(10_000),
        };
        for (key, d) in [
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.connect_timeout", limits.connect_timeout),
            ("limits.request_timeout", limits.request_timeout),
        ] {
            if d.is_zero() {
                self.problem(key, "must be greater than zero");
            }
        }
        if limits.max_header_bytes < 8192 {
            self.problem(
                "limits.max_header_bytes",
                "must be at least 8192 (a token alone may be 8 KiB)",
            );
        }
        if limits.max_connections == 0 {
            self.problem("limits.max_connections", "must be at least 1");
        }
        let log = Log {
            format: match log.format.as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    self.problem(
                        "log.format",
                        format!("\"{other}\" is not \"text\" or \"json\""),
                    );
                    LogFormat::Text
                }
            },
            level: log.level.unwrap_or_else(|| "info".into()),
        };
        if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
            self.problem(
                "log.level",
                format!("\"{}\" is not a log filter", log.level),
            );
        }

        let mut listeners: Vec<(&str, SocketAddr)> = vec![("admin.listen", admin.listen)];
        if let Some(i) = &inbound {
            listeners.push(("inbound.listen", i.listen));
        }
        if let Some(o) = &outbound {
            listeners.push(("outbound.listen", o.listen));
        }
        for (i, (ka, a)) in listeners.iter().enumerate() {
            for (kb, b) in &listeners[i + 1..] {
                if a == b && a.port() != 0 {
                    self.problem(kb, format!("{b} is also {ka}"));
                }
            }
        }

        Config {
            source: PathBuf::from(self.source),
            identity: Identity {
                name,
                key,
                token_ttl,
            },
            trust,
            inbound,
            outbound,
            callers: caller_roles,
            admin,
            limits,
            log,
        }
    }

    fn inbound(&mut self, i: RawInbound) -> Inbound {
        let listen = self.addr("inbound.listen", i.listen, "0.0.0.0:8443");
        let upstream_text = i.upstream.unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let upstream = self.upstream("inbound.upstream", &upstream_text);
        let upstream_protocol = UpstreamProtocol::parse(i.upstream_protocol.as_deref())
            .unwrap_or_else(|reason| {
                self.problem("inbound.upstream_protocol", reason);
                UpstreamProtocol::Auto
            });
        for p in &i.public_paths {
            if !p.starts_with('/') {
                self.problem(
                    "inbound.public_paths",
                    format!("\"{p}\" must start with '/'"),
                );
            }
        }
        let token_header = self.header(
            "inbound.token_header",
            i.token_header.as_deref().unwrap_or("authorization"),
        );
        let mode = match i.mode.as_deref() {
            None | Some("enforce") => InboundMode::Enforce,
            Some("audit") => InboundMode::Audit,
            Some(other) => {
                self.problem(
                    "inbound.mode",
                    format!("\"{other}\" is not \"enforce\" or \"audit\""),
                );
                InboundMode::Enforce
            }
        };
        let signed_headers: Vec<_> = i
            .signed_headers
            .iter()
            .map(|h| self.header("inbound.signed_headers", h))
            .collect();
        for h in &signed_headers {
            let name = h.as_str().as_bytes();
            if crate::proxy::http::name_starts_alike(name, b"x-service-caller")
                || crate::proxy::http::names_alike(name, token_header.as_str().as_bytes())
            {
                self.problem(
                    "inbound.signed_headers",
                    format!("\"{h}\" is reserved for trustgate's own headers"),
                );
            }
        }
        let tls = match (i.tls_cert, i.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert,
                key,
                client_ca: i.client_ca,
            }),
            (None, None) => {
                if i.client_ca.is_some() {
                    self.problem(
                        "inbound.client_ca",
                        "needs inbound.tls_cert and inbound.tls_key",
                    );
                }
                None
            }
            (Some(_), None) => {
                self.problem("inbound.tls_key", "is required with inbound.tls_cert");
                None
            }
            (None, Some(_)) => {
                self.problem("inbound.tls_cert", "is required with inbound.tls_key");
                None
            }
        };
        let mut allow = Vec::new();
        for (n, rule) in i.allow.into_iter().enumerate() {
            let key = format!("inbound.allow[{n}]");
            if rule.callers.is_empty()
                && rule.roles.is_empty()
                && rule.methods.is_empty()
                && rule.paths.is_empty()
            {
                self.problem(
                    &key,
                    "an empty rule would allow everything; name callers, roles, methods or paths",
                );
            }
            for c in &rule.callers {
                self.identity(&format!("{key}.callers"), c);
            }
            let methods = rule
                .methods
                .iter()
                .filter_map(|m| {
                    let upper = m.to_ascii_uppercase();
                    match Method::from_bytes(upper.as_bytes()) {
                        Ok(method) if is_standard_method(&method) => Some(method),
                        _ => {
                            self.problem(
                                &format!("{key}.methods"),
                                format!("\"{m}\" is not an HTTP method"),
                            );
                            None
                        }
                    }
                })
                .collect();
            let paths = rule
                .paths
                .iter()
                .filter_map(|p| match PathPattern::parse(p) {
                    Ok(p) => Some(p),
                    Err(reason) => {
                        self.problem(&format!("{key}.paths"), reason);
                        None
                    }
                })
                .collect();
            allow.push(AllowRule {
                callers: rule.callers,
                roles: rule.roles,
                methods,
                paths,
            });
        }
        Inbound {
            listen,
            upstream,
            upstream_protocol,
            public_paths: i.public_paths,
            token_header,
            mode,
            signed_headers,
            require_request_binding: i.require_request_binding,
            tls,
            verified_cache_size: i.verified_cache_size.unwrap_or(10_000),
            replay_cache_size: i.replay_cache_size.unwrap_or(100_000),
            allow,
        }
    }

    fn outbound(&mut self, o: RawOutbound) -> Outbound {
        let listen = self.addr("outbound.listen", o.listen, "127.0.0.1:15001");
        let token_header = self.header(
            "outbound.token_header",
            o.token_header.as_deref().unwrap_or("authorization"),
        );
        let signed_headers = o
            .signed_headers
            .iter()
            .map(|h| self.header("outbound.signed_headers", h))
            .collect();
        let client_cert = match (o.client_cert, o.client_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    "outbound.client_key",
                    "is required with outbound.client_cert",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    "outbound.client_cert",
                    "is required with outbound.client_key",
                );
                None
            }
        };
        let mut seen = BTreeSet::new();
        let mut routes = Vec::new();
        for (n, r) in o.routes.into_iter().enumerate() {
            let key = format!("outbound.routes[{n}]");
            let Some(host) = r.host.map(|h| h.to_ascii_lowercase()) else {
                self.problem(&format!("{key}.host"), "is required");
                continue;
            };
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                self.problem(
                    &format!("{key}.host"),
                    format!("\"{host}\" is not a host name"),
                );
            }
            if !seen.insert(host.clone()) {
                self.problem(&format!("{key}.host"), format!("\"{host}\" has two routes"));
            }
            let upstream = match r.upstream {
                Some(u) => self.upstream(&format!("{key}.upstream"), &u),
                None => {
                    self.problem(&format!("{key}.upstream"), "is required");
                    continue;
                }
            };
            let audience = r.audience.unwrap_or_else(|| {
                // The default audience is the host's first label: `billing` for
                // `billing.default.svc.cluster.local`.
                host.split(['.', ':']).next().unwrap_or_default().to_owned()
            });
            self.identity(&format!("{key}.audience"), &audience);
            let upstream_protocol = UpstreamProtocol::parse(r.upstream_protocol.as_deref())
                .unwrap_or_else(|reason| {
                    self.problem(&format!("{key}.upstream_protocol"), reason);
                    UpstreamProtocol::Auto
                });
            routes.push(Route {
                host,
                upstream,
                upstream_protocol,
                audience,
            });
        }
        Outbound {
            listen,
            token_header,
            passthrough_unknown: o.passthrough_unknown,
            signed_headers,
            bind_request: o.bind_request,
            ca_file: o.ca_file,
            client_cert,
            routes,
        }
    }
}

fn is_standard_method(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ]
    .contains(m)
}

// ---------------------------------------------------------------------------------------
// The files a configuration names

/// Problems with the files a configuration names. Errors stop `run`; warnings are logged.
#[derive(Debug, Default)]
pub struct FileCheck {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Loads every file the configuration names, as `run` will, and reports what is wrong.
pub fn validate_files(cfg: &Config) -> FileCheck {
    let mut check = FileCheck::default();
    match &cfg.identity.key {
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
            }
            Err(e) => check.errors.push(format!("trust.authorized_keys: {e}")),
        }
    }
    if let Some(p) = &cfg.trust.shared_key {
        if let Err(e) = keys::load_shared_key(p) {
            check.errors.push(format!("trust.shared_key: {e}"));
        }
    }
    if let Some(p) = &cfg.trust.revoked {
        if let Err(e) = keys::load_revoked(p) {
            check.errors.push(format!("trust.revoked: {e}"));
        }
    }
    let mut readable = |key: &str, p: &Path| {
        if let Err(e) = std::fs::File::open(p) {
            check.errors.push(format!("{key}: {}: {e}", p.display()));
        }
    };
    if let Some(tls) = cfg.inbound.as_ref().and_then(|i| i.tls.as_ref()) {
        readable("inbound.tls_cert", &tls.cert);
        readable("inbound.tls_key", &tls.key);
        if let Some(ca) = &tls.client_ca {
            readable("inbound.client_ca", ca);
        }
    }
    if let Some(o) = &cfg.outbound {
        if let Some(ca) = &o.ca_file {
            readable("outbound.ca_file", ca);
        }
        if let Some((c, k)) = &o.client_cert {
            readable("outbound.client_cert", c);
            readable("outbound.client_key", k);
        }
    }
    check
}

/// A private key readable by others, or by a group we are not in, deserves a warning.
/// Group-readable by our own group is what Kubernetes does with `fsGroup` (a 0400 Secret
/// file becomes 0440 root:<fsGroup>), so that alone is not warned about.
#[cfg(unix)]
fn loose_permissions(p: &Path) -> Option<String> {
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
fn loose_permissions(_: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        from_toml_str(text, "t.toml", Vec::new())
    }

    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        from_toml_str(
            text,
            "t.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text).unwrap_err().problems
    }

    const MIN: &str = r#"
[identity]
name = "orders"
private_key = "/k/orders.key"
[trust]
authorized_keys = "/k/authorized_keys"
[inbound]
[outbound]
"#;

    #[test]
    fn defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.identity.token_ttl, Duration::from_secs(60));
        assert_eq!(c.trust.leeway, Duration::from_secs(30));
        assert_eq!(c.trust.max_token_ttl, Duration::from_secs(300));
        assert_eq!(c.trust.rescan_interval, Duration::from_secs(30));
        let i = c.inbound.unwrap();
        assert_eq!(i.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(i.upstream, "http://127.0.0.1:8080");
        assert_eq!(i.token_header, "authorization");
        assert_eq!(i.mode, InboundMode::Enforce);
        let o = c.outbound.unwrap();
        assert_eq!(o.listen, "127.0.0.1:15001".parse().unwrap());
        assert_eq!(c.admin.listen, "127.0.0.1:15000".parse().unwrap());
        assert_eq!(c.limits.shutdown_grace, Duration::from_secs(20));
    }

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
[identity]
name = "orders"
private_key = "/etc/trustgate/identity/orders.key"
token_ttl = "60s"

[trust]
authorized_keys = "/etc/trustgate/authorized_keys"
leeway = "30s"

[inbound]
listen = "0.0.0.0:8443"
upstream = "http://127.0.0.1:8080"
public_paths = ["/healthz"]

[[inbound.allow]]
callers = ["billing"]
methods = ["GET", "POST"]
paths = ["/orders", "/orders/*"]

[callers.billing]
roles = ["IMPERSONATION"]

[outbound]
listen = "127.0.0.1:15001"

[[outbound.routes]]
host = "billing"
upstream = "http://billing.default.svc.cluster.local:8443"

[admin]
listen = "127.0.0.1:15000"
"#;
        let c = parse(text).unwrap();
        let rule = &c.inbound.as_ref().unwrap().allow[0];
        assert!(rule.matches("billing", &[], &Method::GET, "/orders/7"));
        assert!(rule.matches("billing", &[], &Method::POST, "/orders"));
        assert!(!rule.matches("billing", &[], &Method::DELETE, "/orders"));
        assert!(!rule.matches("billing", &[], &Method::GET, "/ordersx"));
        assert!(!rule.matches("search", &[], &Method::GET, "/orders"));
        assert_eq!(c.callers["billing"], vec!["IMPERSONATION"]);
        assert_eq!(c.outbound.unwrap().routes[0].audience, "billing");
    }

    #[test]
    fn the_annotated_example_parses() {
        let text = include_str!("../config/trustgate.toml");
        parse(text).unwrap();
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let p = problems(&format!(
            "{MIN}\nlisten_addr = 1\n[limits]\ntimeout = \"1s\"\n"
        ));
        assert!(
            p.iter().any(|p| p.contains("limits.timeout: unknown key")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("outbound.listen_addr: unknown key")),
            "{p:?}"
        );
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let text = MIN.replace(
            "[inbound]",
            "[inbound]\nlisten = \"0.0.0.0\"\nmode = \"lenient\"",
        ) + "[limits]\nrequest_timeout = \"soon\"\n";
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.starts_with("t.toml: inbound.listen:")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.starts_with("t.toml: inbound.mode:")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("t.toml: limits.request_timeout:")),
            "{p:?}"
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn protocols_and_audiences() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.inbound.unwrap().upstream_protocol, UpstreamProtocol::Auto);
        assert!(!c.trust.allow_multi_audience, "refused by default");
        let text = MIN.replace("[inbound]", "[inbound]\nupstream_protocol = \"http2\"")
            + "[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b:1\"\nupstream_protocol = \"http1\"\n";
        let c = parse_env(&text, &[("TRUSTGATE_TRUST_ALLOW_MULTI_AUDIENCE", "true")]).unwrap();
        assert_eq!(
            c.inbound.unwrap().upstream_protocol,
            UpstreamProtocol::Http2
        );
        assert_eq!(
            c.outbound.unwrap().routes[0].upstream_protocol,
            UpstreamProtocol::Http1
        );
        assert!(c.trust.allow_multi_audience);

        let text = MIN.replace("[inbound]", "[inbound]\nupstream_protocol = \"h2c\"")
            + "[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b:1\"\nupstream_protocol = \"HTTP/1.1\"\n";
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.starts_with("t.toml: inbound.upstream_protocol:")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("t.toml: outbound.routes[0].upstream_protocol:")),
            "{p:?}"
        );
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn signed_headers_may_not_fold_onto_reserved_names() {
        for name in [
            "x_service_caller",
            "X.Service-Caller-Roles",
            "Authorization",
        ] {
            let text = MIN.replace(
                "[inbound]",
                &format!("[inbound]\nsigned_headers = [\"{name}\"]"),
            );
            let p = problems(&text);
            assert!(
                p.iter()
                    .any(|p| p.contains("inbound.signed_headers") && p.contains("reserved")),
                "{name}: {p:?}"
            );
        }
    }

    #[test]
    fn wrong_types_are_reported() {
        let p = problems("[identity]\nname = 5\n");
        assert!(p[0].contains("t.toml") && p[0].contains("name"), "{p:?}");
    }

    #[test]
    fn identity_rules() {
        let p = problems(&MIN.replace("name = \"orders\"", "name = \"Orders\""));
        assert!(p[0].contains("identity.name"), "{p:?}");
        let p = problems(&MIN.replace(
            "private_key = \"/k/orders.key\"",
            "private_key = \"/a\"\nshared_key = \"/b\"",
        ));
        assert!(p[0].contains("not both"), "{p:?}");
        let p = problems(&MIN.replace("private_key = \"/k/orders.key\"", ""));
        assert!(
            p[0].contains("identity.private_key: is required with [outbound]"),
            "{p:?}"
        );
        let p = problems(&MIN.replace("[identity]", "[identity]\ntoken_ttl = \"10m\""));
        assert!(p[0].contains("identity.token_ttl"), "{p:?}");
    }

    #[test]
    fn routes_are_unique_and_need_upstreams() {
        let text = format!(
            "{MIN}[[outbound.routes]]\nhost = \"billing\"\nupstream = \"http://b:1\"\n\
             [[outbound.routes]]\nhost = \"Billing\"\nupstream = \"http://b:2\"\n\
             [[outbound.routes]]\nhost = \"x\"\nupstream = \"ftp://x\"\n\
             [[outbound.routes]]\nhost = \"y\"\n"
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.contains("outbound.routes[1].host") && p.contains("two routes")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.contains("outbound.routes[2].upstream")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("outbound.routes[3].upstream: is required")),
            "{p:?}"
        );
    }

    #[test]
    fn allow_rules_are_checked() {
        let text = format!(
            "{MIN}[[inbound.allow]]\n[[inbound.allow]]\nmethods = [\"FETCH\"]\npaths = [\"orders\", \"/a/*/b\"]\ncallers = [\"Bad\"]\n"
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.contains("inbound.allow[0]") && p.contains("empty rule")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.contains("inbound.allow[1].methods")),
            "{p:?}"
        );
        assert_eq!(
            p.iter()
                .filter(|p| p.contains("inbound.allow[1].paths"))
                .count(),
            2,
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.contains("inbound.allow[1].callers")),
            "{p:?}"
        );
    }

    #[test]
    fn tls_pairs_and_headers() {
        let text = MIN.replace(
            "[inbound]",
            "[inbound]\ntls_cert = \"/c\"\ntoken_header = \"bad header\"",
        );
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains("inbound.tls_key: is required")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.contains("inbound.token_header")),
            "{p:?}"
        );
        let text = MIN.replace(
            "[inbound]",
            "[inbound]\nsigned_headers = [\"X-Service-Caller\"]",
        );
        assert!(problems(&text)[0].contains("reserved"));
    }

    #[test]
    fn env_overrides() {
        let c = parse_env(
            MIN,
            &[
                ("TRUSTGATE_INBOUND_LISTEN", "127.0.0.1:9443"),
                ("TRUSTGATE_INBOUND_REQUIRE_REQUEST_BINDING", "true"),
                ("TRUSTGATE_INBOUND_PUBLIC_PATHS", "/healthz, /ready"),
                ("TRUSTGATE_OUTBOUND_SIGNED_HEADERS", r#"["x-user-id"]"#),
                ("TRUSTGATE_TRUST_MAX_TOKEN_TTL", "10m"),
                ("TRUSTGATE_LIMITS_MAX_CONNECTIONS", "5"),
                ("TRUSTGATE_CONFIG", "/ignored"),
            ],
        )
        .unwrap();
        let i = c.inbound.unwrap();
        assert_eq!(i.listen, "127.0.0.1:9443".parse().unwrap());
        assert!(i.require_request_binding);
        assert_eq!(i.public_paths, vec!["/healthz", "/ready"]);
        assert_eq!(c.outbound.unwrap().signed_headers, vec!["x-user-id"]);
        assert_eq!(c.trust.max_token_ttl, Duration::from_secs(600));
        assert_eq!(c.limits.max_connections, 5);
    }

    #[test]
    fn env_creates_sections_and_rejects_unknown_names() {
        let c = parse_env(
            "[identity]\nname = \"a\"\n[trust]\nauthorized_keys = \"/k\"\n",
            &[("TRUSTGATE_INBOUND_UPSTREAM", "http://127.0.0.1:9000")],
        )
        .unwrap();
        assert_eq!(c.inbound.unwrap().upstream, "http://127.0.0.1:9000");
        let p = parse_env(
            MIN,
            &[
                ("TRUSTGATE_INBOUND_LISTN", "x"),
                ("TRUSTGATE_OUTBOUND_BIND_REQUEST", "maybe"),
            ],
        )
        .unwrap_err()
        .problems;
        assert!(
            p.iter().any(|p| p.contains("TRUSTGATE_INBOUND_LISTN")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("TRUSTGATE_OUTBOUND_BIND_REQUEST")),
            "{p:?}"
        );
    }

    #[test]
    fn nothing_to_do_is_an_error() {
        let p = problems("[identity]\nname = \"a\"\n");
        assert!(p[0].contains("nothing to do"), "{p:?}");
    }

    #[test]
    fn load_resolves_relative_paths_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trustgate.toml");
        std::fs::write(&path, MIN.replace("/k/", "keys/")).unwrap();
        let c = load(&path, Vec::new()).unwrap();
        assert_eq!(
            c.trust.authorized_keys.unwrap(),
            dir.path().join("keys/authorized_keys")
        );
        let err = load(&dir.path().join("nope.toml"), Vec::new()).unwrap_err();
        assert!(err.problems[0].contains("nope.toml"));
    }

    #[cfg(unix)]
    #[test]
    fn loose_key_permissions_are_warned_about() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "x").unwrap();
        let mode = |m| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
        mode(0o600);
        assert!(loose_permissions(&key).is_none());
        // Group-readable by our own group: the Kubernetes fsGroup layout.
        mode(0o640);
        assert!(loose_permissions(&key).is_none());
        mode(0o644);
        assert!(loose_permissions(&key).unwrap().contains("others"));
    }

    #[test]
    fn path_patterns() {
        let p = PathPattern::parse("/api/*").unwrap();
        assert!(p.matches("/api") && p.matches("/api/x/y") && !p.matches("/apix"));
        assert!(PathPattern::parse("*").unwrap().matches("/anything"));
        assert!(PathPattern::parse("/a/*/b").is_err());
    }
}
