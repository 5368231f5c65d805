//! Configuration: one TOML file plus `TRUSTGATE_<SECTION>_<KEY>` environment overrides →
//! a checked, frozen [`Config`].
//!
//! **Each key is declared once, below**, in the section struct that holds it: its type
//! (serde does the conversion: durations through `humantime-serde`, socket addresses,
//! URLs, header names, enums), its default, its doc. Everything else is derived from that
//! declaration: the environment variable that overrides it and how its text is read
//! ([`parse`]), whether it is a file path resolved against the configuration's directory
//! ([`FilePath`]), unknown-key reporting. Then one pass, [`check`], looks at what no single
//! key can know alone (pairs, contradictions, duplicates) and at the files named.
//!
//! Every problem is reported at once, each naming the file (or environment variable) and
//! the key. Nothing binds a port before all of this has passed, so the process never
//! starts half-configured.
//!
//! A new key: a field in its section here (with its default), and the code that uses it.
#[macro_use]
mod declare;
mod authz;
mod check;
mod claims;
mod dpop;
mod fleet;
mod headers;
mod parse;
mod platform;
mod values;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::Deserialize;

pub use crate::rule::{PathPattern, Rule};
pub use authz::Authz;
pub use claims::{ClaimHeader, ClaimPointer, Sources};
pub use dpop::DpopMode;
pub use fleet::{check_url as check_fleet_url, Fleet, OnError, Scope};
pub use parse::ConfigError;
pub use platform::{IssuerConfig, ISSUER_FROM_POD, POD_CA_FILE, POD_SA_DIR, POD_TOKEN_FILE};

/// Reads `path`, applies `env` overrides, checks. Relative paths in the file (and in
/// the environment) are resolved against the file's directory.
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
    let source = path.display().to_string();
    // Relative paths inside are relative to the file's directory, made absolute here
    // (against the working directory, once): the watcher compares the paths events name,
    // always absolute, with these.
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let mut cfg = parse_and_check(&text, &source, base.as_deref(), env)?;
    cfg.source = path.to_path_buf();
    Ok(cfg)
}

/// Parses and checks configuration text. `source` names it in messages. Touches no
/// files: see `trust::files::load_checked` for that.
pub fn from_toml_str(
    text: &str,
    source: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    parse_and_check(text, source, None, env)
}

fn parse_and_check(
    text: &str,
    source: &str,
    base: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (mut cfg, mut problems) = parse::parse(text, source, base, env)?;
    check::check(&mut cfg, &mut problems);
    problems.verdict(cfg)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal socket address")
}

// ---------------------------------------------------------------------------------------
// The configuration

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub identity: Identity,
    pub trust: Trust,
    /// `None` when the `[inbound]` section is absent: no inbound listener.
    pub inbound: Option<Inbound>,
    /// `None` when the `[outbound]` section is absent: no outbound listener.
    pub outbound: Option<Outbound>,
    /// `[callers.<name>]`, by caller identity.
    pub callers: BTreeMap<String, Caller>,
    /// `None` when the `[fleet]` section is absent: every limit and cache per sidecar.
    pub fleet: Option<Fleet>,
    /// `None` when the `[authz]` section is absent: no external authorizer.
    pub authz: Option<Authz>,
    pub admin: Admin,
    pub limits: Limits,
    pub log: Log,
}

section! {
    /// `[identity]`: who this service is and what it signs with.
    pub struct Identity {
        /// This service's identity, a DNS label (`orders`). Required.
        #[serde(deserialize_with = "values::identity")]
        pub name: String = String::new(),
        /// PKCS#8 / SEC1 PEM or private JWK.
        pub private_key: Option<FilePath> = None,
        /// Shared-key mode (HS256): a file of ≥ 128 bits.
        pub shared_key: Option<FilePath> = None,
        #[serde(with = "humantime_serde")]
        pub token_ttl: Duration = secs(60),
        /// The `aud` of the transaction tokens this service mints and accepts.
        pub trust_domain: String = "cluster.local".into(),
    }
}

impl Identity {
    /// The key this service signs with, if it signs at all.
    pub fn key(&self) -> Option<SigningKeySource> {
        match (&self.private_key, &self.shared_key) {
            (Some(p), _) => Some(SigningKeySource::Private(p.to_path_buf())),
            (None, Some(p)) => Some(SigningKeySource::Shared(p.to_path_buf())),
            (None, None) => None,
        }
    }
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

    /// The configuration key it comes from.
    pub fn config_key(&self) -> &'static str {
        match self {
            SigningKeySource::Private(_) => "identity.private_key",
            SigningKeySource::Shared(_) => "identity.shared_key",
        }
    }
}

section! {
    /// `[trust]`: whom this service trusts.
    pub struct Trust {
        /// Directory of public keys, one identity per file name (SSH model).
        pub authorized_keys: Option<FilePath> = None,
        /// Deny list: one kid per line.
        pub revoked: Option<FilePath> = None,
        /// Shared-key mode: the secret every peer holds.
        pub shared_key: Option<FilePath> = None,
        #[serde(with = "humantime_serde")]
        pub leeway: Duration = secs(30),
        #[serde(with = "humantime_serde")]
        pub max_token_ttl: Duration = secs(300),
        /// Full rescan of the trust material even without file events.
        #[serde(with = "humantime_serde")]
        pub rescan_interval: Duration = secs(30),
        /// How long the previous signing key stays in `/.well-known/jwks.json` after
        /// rotation.
        #[serde(with = "humantime_serde")]
        pub jwks_grace: Duration = secs(600),
        /// Accept tokens whose `aud` also names other services (off: such a token could
        /// be replayed by any of them against this one).
        pub allow_multi_audience: bool = false,
        /// CA bundle for fetching `authorized_keys/<identity>.url` JWKS (default: the
        /// system roots).
        pub fetch_ca_file: Option<FilePath> = None,
        /// Allow `http://` key URLs (off: refused, keys travel over TLS only).
        pub allow_http_fetch: bool = false,
        /// Connect + response + body of one JWKS fetch.
        #[serde(with = "humantime_serde")]
        pub fetch_timeout: Duration = secs(5),
        /// Refresh period of a key URL (`Cache-Control: max-age` honoured between
        /// `fetch_cooldown` and this).
        #[serde(with = "humantime_serde")]
        pub fetch_interval: Duration = secs(300),
        /// Least time between two fetches of one source, also when an unknown kid asks.
        #[serde(with = "humantime_serde")]
        pub fetch_cooldown: Duration = secs(10),
        /// How long the last good keys of a source serve while fetches fail; then that
        /// identity fails closed.
        #[serde(with = "humantime_serde")]
        pub max_stale: Duration = secs(3600),
        /// `[[trust.issuers]]`: issuers that vouch for many callers (platform identity), or
        /// for people (`users = true`).
        pub issuers: Vec<IssuerConfig> = Vec::new(),
        /// The identities whose transaction tokens (`txn-token`) this service accepts.
        #[serde(deserialize_with = "values::identities")]
        pub transaction_token_issuers: Vec<String> = Vec::new(),
        /// Longest `exp - iat` of a transaction token accepted.
        #[serde(with = "humantime_serde")]
        pub max_transaction_ttl: Duration = secs(600),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundMode {
    Enforce,
    Audit,
}

/// The protocol trustgate speaks to an upstream (`inbound.upstream_protocol`, a route's
/// `upstream_protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// Inbound: HTTP/2 for gRPC, HTTP/1.1 for everything else (every app server speaks
    /// it). Outbound: the protocol the app called in, so an HTTP/2 client multiplexes
    /// over the sidecar link and an HTTP/1.1 one (upgrades included) keeps HTTP/1.1.
    #[default]
    Auto,
    Http1,
    Http2,
}

/// What the exposure check does when the app answers on a pod address
/// (`inbound.app_exposure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppExposure {
    /// Gauge and error log only.
    Warn,
    /// Also `/readyz` 503 naming the reason, so the pod takes no traffic.
    Refuse,
    /// No check.
    Off,
}

/// `inbound.upstream`: where the app listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUpstream {
    /// Scheme and authority of the requests sent to the app. For a socket `http://localhost`,
    /// which names the connection pool only (the app sees the caller's `Host`).
    pub uri: Uri,
    /// `unix:///run/app/app.sock`: every connection goes to this socket.
    pub socket: Option<PathBuf>,
}

impl AppUpstream {
    pub fn url(uri: Uri) -> Self {
        AppUpstream { uri, socket: None }
    }

    pub fn unix(path: &Path) -> Self {
        AppUpstream {
            uri: Uri::from_static("http://localhost"),
            socket: Some(path.to_path_buf()),
        }
    }

    /// The TCP port the app listens on (none for a socket).
    pub fn tcp_port(&self) -> Option<u16> {
        if self.socket.is_some() {
            return None;
        }
        self.uri.port_u16().or(match self.uri.scheme_str() {
            Some("https") => Some(443),
            _ => Some(80),
        })
    }
}

impl std::fmt::Display for AppUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.socket {
            Some(p) => write!(f, "unix://{}", p.display()),
            None => write!(f, "{}", self.uri),
        }
    }
}

section! {
    /// `[inbound]`: callers → this service's app.
    pub struct Inbound {
        /// `false`: no inbound listener even though the section exists (an outbound-only
        /// workload: `trustgate inject` sets `TRUSTGATE_INBOUND_ENABLED=false`).
        pub enabled: bool = true,
        pub listen: SocketAddr = addr("0.0.0.0:8443"),
        /// `http://` or `https://`, a host, no path; or `unix://` and a socket path.
        #[serde(deserialize_with = "values::app_upstream")]
        pub upstream: AppUpstream = AppUpstream::url(Uri::from_static("http://127.0.0.1:8080")),
        pub upstream_protocol: UpstreamProtocol = UpstreamProtocol::Auto,
        /// Forwarded without a token (kubelet probes of the app): the patterns of rule
        /// `paths` (`/healthz`, `/pub/*`), matched against the canonical path.
        #[serde(deserialize_with = "values::public_paths")]
        pub public_paths: Vec<PathPattern> = Vec::new(),
        /// `true`: runs of `/` in a path are merged (for the rules and in the path the app
        /// receives); `false`: a path with an empty segment (`//`) is refused 400, since
        /// app servers read it three ways (merged, kept, or the start of an authority).
        pub merge_slashes: bool = false,
        #[serde(deserialize_with = "values::header")]
        pub token_header: HeaderName = http::header::AUTHORIZATION,
        pub mode: InboundMode = InboundMode::Enforce,
        /// Headers re-created from the token's `ctx` claim only.
        #[serde(deserialize_with = "values::headers")]
        pub signed_headers: Vec<HeaderName> = Vec::new(),
        pub require_request_binding: bool = false,
        pub tls_cert: Option<FilePath> = None,
        pub tls_key: Option<FilePath> = None,
        /// When set, clients must present a certificate signed by this CA.
        pub client_ca: Option<FilePath> = None,
        pub verified_cache_size: usize = 10_000,
        pub replay_cache_size: usize = 100_000,
        /// `"fleet"`: the replay cache of request-bound tokens is shared through `[fleet]`
        /// (a token used at one replica is refused at every other).
        pub replay_scope: Scope = Scope::Sidecar,
        /// Answer `GET /.well-known/jwks.json` on this listener (this service's public
        /// keys, as on the admin listener), so that peers can fetch them over the link
        /// they call through. Never forwarded, no token needed.
        pub publish_jwks: bool = true,
        /// The exposure check: is the app reachable around the sidecar, on a pod address?
        pub app_exposure: AppExposure = AppExposure::Warn,
        /// The addresses it tries the app's TCP port on (default: every non-loopback
        /// address of this host; inject sets them from the downward API's `status.podIPs`).
        #[serde(deserialize_with = "values::ip_addrs")]
        pub pod_ips: Vec<IpAddr> = Vec::new(),
        /// How often it tries (and once at start).
        #[serde(with = "humantime_serde")]
        pub app_exposure_interval: Duration = secs(30),
        /// `[[inbound.allow]]`: when rules exist (audit rules aside), a caller must match one.
        pub allow: Vec<Rule> = Vec::new(),
        /// `[[inbound.deny]]`: a request matching one is refused before allow rules are
        /// looked at.
        pub deny: Vec<Rule> = Vec::new(),
        /// `[inbound.claim_headers]`: header name → JSON Pointer into the verified claims
        /// (of the issuers' tokens), or `{ pointer, issuers }` naming the sources read; the
        /// app receives the claim in that header (protected like `x-service-caller`).
        #[serde(deserialize_with = "values::claim_headers")]
        pub claim_headers: Vec<ClaimHeader> = Vec::new(),
        /// `[inbound.users]`: the person behind the call (DESIGN.md "End users").
        pub users: Option<Users> = None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsersMode {
    /// A person's token present must be valid; absent: no person.
    Optional,
    /// No valid person's token and no valid transaction token: 401 `user_token_required`.
    Required,
}

section! {
    /// `[inbound.users]`: people's tokens verified here, transaction tokens minted here.
    pub struct Users {
        /// Where a person's token arrives (`Bearer ` optional).
        #[serde(deserialize_with = "values::header")]
        pub token_header: HeaderName = HeaderName::from_static("x-user-token"),
        pub mode: UsersMode = UsersMode::Optional,
        /// `"optional"`: requests with a person's token and no service token are accepted
        /// (an edge called by browsers or an ingress); they have no caller.
        pub callers: UsersMode = UsersMode::Required,
        /// Hand the app a transaction token (`txn-token`) instead of the person's token.
        pub mint_transaction_token: bool = false,
        /// Name → JSON Pointer into the person's verified claims, copied into `tctx`.
        #[serde(deserialize_with = "values::user_context")]
        pub context: Vec<(String, ClaimPointer)> = Vec::new(),
        #[serde(with = "humantime_serde")]
        pub transaction_ttl: Duration = secs(300),
        /// Send the person's token on to the app too (off: removed).
        pub forward_user_token: bool = false,
        /// Header to the app → `tctx` member.
        #[serde(deserialize_with = "values::context_headers")]
        pub context_headers: Vec<(HeaderName, String)> = Vec::new(),
        /// DPoP (RFC 9449): `"bound"` — a token bound to a key (`cnf.jkt`) needs a valid
        /// proof and the `DPoP` scheme; `"required"` — every person's token must be bound;
        /// `"off"` — `cnf` ignored (a migration only).
        pub dpop: DpopMode = DpopMode::Bound,
        /// The scheme and authority clients call (`"https://api.example.com"`): a proof's
        /// `htu` must be one of them followed by the request's path.
        pub dpop_origins: Vec<String> = Vec::new(),
        /// How long a proof is fresh after its `iat` (and the replay window).
        #[serde(with = "humantime_serde")]
        pub dpop_max_age: Duration = secs(60),
    }
}

impl Inbound {
    /// A path forwarded without a token (`public_paths`).
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| p.matches(path))
    }

    /// The listener's TLS, when `tls_cert` and `tls_key` are set ([`check`] makes sure
    /// they come as a pair).
    pub fn tls(&self) -> Option<ServerTls> {
        Some(ServerTls {
            cert: self.tls_cert.as_ref()?.to_path_buf(),
            key: self.tls_key.as_ref()?.to_path_buf(),
            client_ca: self.client_ca.as_ref().map(|p| p.to_path_buf()),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// `[callers.<name>]`: what this service grants a caller.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Caller {
    /// Sent to the app in `x-service-caller-roles`; matched by `[[inbound.allow]].roles`.
    pub roles: Vec<String>,
    /// `"100/s"`, `"600/m"`: this caller's requests past it get 429 `rate_limited`.
    #[serde(deserialize_with = "values::rate")]
    pub rate_limit: Option<Rate>,
    /// The bucket: this many requests at once, refilled at the rate (default: one
    /// second's worth, at least 1).
    pub burst: Option<u32>,
    /// Requests of this caller in flight at most; past it 429 `concurrency_limited`.
    /// Always per sidecar.
    pub max_concurrent: Option<u32>,
    /// `"fleet"`: `rate_limit` and `burst` hold across every replica together
    /// (`[fleet]`); `"sidecar"`: each replica's own bucket.
    pub rate_limit_scope: Scope,
}

/// A request rate: `count` per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The bucket when `burst` is not given: one second's worth, at least one request.
    pub fn default_burst(self) -> u32 {
        let per_second = u64::from(self.count) * 1000 / (self.per.as_millis() as u64).max(1);
        per_second.clamp(1, u64::from(u32::MAX)) as u32
    }
}

section! {
    /// `[outbound]`: this service's app → other services.
    pub struct Outbound {
        pub listen: SocketAddr = addr("127.0.0.1:15001"),
        #[serde(deserialize_with = "values::header")]
        pub token_header: HeaderName = http::header::AUTHORIZATION,
        /// Forward requests for hosts without a route, without a token.
        pub passthrough_unknown: bool = false,
        /// Request headers whose values are signed into the token's `ctx` claim.
        #[serde(deserialize_with = "values::headers")]
        pub signed_headers: Vec<HeaderName> = Vec::new(),
        /// Tokens bound to method and path, signed per request (RFC 9449 `htm`/`htu`).
        pub bind_request: bool = false,
        /// CA bundle for `https://` upstreams (default: the system roots).
        pub ca_file: Option<FilePath> = None,
        /// Client certificate chain and key for `https://` upstreams that want one.
        pub client_cert: Option<FilePath> = None,
        pub client_key: Option<FilePath> = None,
        pub routes: Vec<Route> = Vec::new(),
    }
}

impl Outbound {
    /// (certificate chain, private key), when both are set.
    pub fn client_identity(&self) -> Option<(&Path, &Path)> {
        Some((self.client_cert.as_deref()?, self.client_key.as_deref()?))
    }
}

table! {
    /// One `[[outbound.routes]]` entry.
    #[derive(Clone, Debug, Deserialize)]
    pub struct Route {
        /// Lower-case host as the app names it (`billing`, `billing.default.svc`).
        #[serde(deserialize_with = "values::host")]
        pub host: String,
        #[serde(deserialize_with = "values::upstream")]
        pub upstream: Uri,
        #[serde(default)]
        pub upstream_protocol: UpstreamProtocol,
        /// Default: the host's first label (`billing` for `billing.default.svc`), filled
        /// in by [`check`].
        #[serde(default, deserialize_with = "values::identity")]
        pub audience: String,
        /// Present the token in this file (a projected service-account token) instead of
        /// signing one; re-read when it changes.
        #[serde(default)]
        pub token_file: Option<FilePath>,
    }
}

section! {
    /// `[admin]`: health, readiness, metrics, JWKS, trust listing.
    pub struct Admin {
        pub listen: SocketAddr = addr("127.0.0.1:15000"),
    }
}

section! {
    /// `[limits]`: time and size bounds of the listeners and the forwarding client.
    pub struct Limits {
        /// From accept to a complete first request head (TLS handshake included).
        #[serde(with = "humantime_serde")]
        pub header_read_timeout: Duration = secs(10),
        #[serde(with = "humantime_serde")]
        pub connect_timeout: Duration = secs(5),
        #[serde(with = "humantime_serde")]
        pub request_timeout: Duration = secs(60),
        #[serde(with = "humantime_serde")]
        pub idle_timeout: Duration = secs(90),
        #[serde(with = "humantime_serde")]
        pub shutdown_grace: Duration = secs(20),
        pub max_header_bytes: usize = 64 * 1024,
        pub max_connections: usize = 10_000,
        /// Threads serving requests. 0: one per CPU this process may use (CPU affinity
        /// and cgroup quota count). When that is one — the usual sidecar limit — a
        /// single-threaded runtime serves everything, without work-stealing machinery.
        pub worker_threads: usize = 0,
    }
}

/// `log.format`, and the command line's `--log-format` (one declaration for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

section! {
    /// `[log]`
    pub struct Log {
        pub format: LogFormat = LogFormat::Text,
        /// A `tracing` filter: `info`, `trustgate=debug,warn`.
        #[serde(deserialize_with = "values::log_filter")]
        pub level: String = "info".into(),
    }
}

/// The levels a log filter names.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A log filter (`log.level`, `--log-level`, `TRUSTGATE_LOG_LEVEL`) as people mean it:
/// comma-separated directives, each a level (`info`) or `target=level`
/// (`trustgate=debug`). A bare word that is not a level (`verbose`) is refused: tracing
/// would read it as a target name, enable nothing else, and the sidecar would log nothing.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let level = |l: &str| LOG_LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    let directives: Vec<&str> = filter.split(',').map(str::trim).collect();
    if directives.iter().all(|d| d.is_empty()) {
        return Err("is empty: name a level (error, warn, info, debug, trace, off)".into());
    }
    for d in directives.iter().filter(|d| !d.is_empty()) {
        let ok = match d.rsplit_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(d),
        };
        if !ok {
            return Err(format!(
                "\"{d}\" is not a log level: use one of error, warn, info, debug, trace, off, or target=level (trustgate=debug)"
            ));
        }
    }
    Ok(())
}

/// A file the configuration names. Relative paths are resolved against the directory of
/// the configuration file (the environment's too); its `EnvKind` is what tells [`parse`]
/// which keys those are.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FilePath(PathBuf);

impl std::ops::Deref for FilePath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for FilePath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_platform;
