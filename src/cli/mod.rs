//! The command line: `run`, `demo` and the offline tools (`keygen`, `token`, `verify`,
//! `keys`, `check`).
//!
//! Exit codes are part of the contract: 0 ok, 1 rejected or invalid, 2 usage (clap's own
//! code for bad arguments). Errors are one sentence on stderr naming the file or key
//! concerned; private keys and tokens are never written to logs (a token is printed on
//! stdout only by `token`, whose whole purpose is to print one).
mod mint;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};

use trustgate::config;
use trustgate::keys::{self, KeyAlg, Keyring, OutputFormat};
use trustgate::token::{self, VerifyPolicy};
use trustgate::trust::files::{self as trust_files, TrustFiles};

#[derive(Debug, Parser)]
#[command(
    name = "trustgate",
    version,
    about = "A sidecar reverse proxy that lets services trust each other by signed tokens"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, env = "TRUSTGATE_LOG_FORMAT")]
    pub log_format: Option<trustgate::config::LogFormat>,
    /// Log filter (`info`, `debug`, `trustgate=debug,hyper=info`, ...).
    #[arg(long, global = true, env = "TRUSTGATE_LOG_LEVEL", value_parser = log_filter)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        /// Configuration file.
        #[arg(
            long,
            env = "TRUSTGATE_CONFIG",
            default_value = "/etc/trustgate/trustgate.toml"
        )]
        config: PathBuf,
    },
    /// Two services and their sidecars on loopback with fresh keys: a trusted call, a
    /// forged one, an unknown key, a policy denial and a peer's self-asserted claim, with
    /// what each side saw.
    Demo,
    /// Generate a key pair: `<name>.key` (private, mode 0600) and `<name>.pub`.
    Keygen {
        /// The identity the key is for (a DNS label).
        name: String,
        /// Key type: ES256 (P-256, the default), EdDSA (Ed25519) or RS256 (RSA 2048).
        #[arg(long, value_enum, default_value = "ES256")]
        alg: GenAlg,
        /// Directory to write into (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// File format: pem (PKCS#8 private, SPKI public) or jwk.
        #[arg(long, value_enum, default_value = "pem")]
        format: KeyFormat,
    },
    /// Print a token signed with a private key (for curl).
    Token(mint::TokenArgs),
    /// Verify a token against an authorized_keys directory: print the caller and claims,
    /// or the reason it is rejected (exit 1).
    Verify {
        /// The authorized_keys directory to verify against (as `trust.authorized_keys`).
        #[arg(long, required_unless_present = "shared_key")]
        authorized_keys: Option<PathBuf>,
        /// Trust a shared-key-mode secret as well.
        #[arg(long)]
        shared_key: Option<PathBuf>,
        /// Revocation list (one kid per line).
        #[arg(long)]
        revoked: Option<PathBuf>,
        /// The identity of the service receiving the token.
        #[arg(long)]
        aud: String,
        /// Clock skew tolerated on exp, nbf and iat (as `trust.leeway`).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        leeway: Duration,
        /// The longest lifetime (exp - iat) accepted (as `trust.max_token_ttl`).
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        max_ttl: Duration,
        /// Accept an `aud` list naming other services too (as `trust.allow_multi_audience`).
        #[arg(long)]
        allow_multi_audience: bool,
        /// Check the clock as if it were this Unix time (for replaying old tokens).
        #[arg(long, hide = true)]
        now: Option<u64>,
        /// The token, `-` or nothing to read it from stdin. A `Bearer ` prefix is accepted.
        token: Option<String>,
    },
    /// List the identities, kids, algorithms and problems of an authorized_keys directory,
    /// and its key URL sources (`<identity>.url`).
    Keys {
        /// The authorized_keys directory.
        dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Fetch every URL source once and list the keys it serves (as `run` would
        /// accept them).
        #[arg(long)]
        fetch: bool,
        /// CA bundle for the fetch (default: the system roots).
        #[arg(long, requires = "fetch")]
        fetch_ca_file: Option<PathBuf>,
        /// Allow http:// key URLs.
        #[arg(long, requires = "fetch")]
        allow_http: bool,
        /// Time limit of one fetch.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        fetch_timeout: Duration,
    },
    /// Add the trustgate sidecar to every workload in Kubernetes YAML (Deployment,
    /// StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, List items) and point the
    /// Services that select them at it; print the result. Idempotent; other documents
    /// are copied byte for byte. Per-workload settings: `trustgate.dev/*` annotations.
    Inject {
        /// The YAML file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// The trustgate image (annotation `trustgate.dev/image`).
        #[arg(long)]
        image: Option<String>,
        /// The sidecar's inbound port (annotation `trustgate.dev/inbound-port`).
        #[arg(long, default_value_t = 8443)]
        inbound_port: u16,
        /// The sidecar's outbound port, the app's HTTP_PROXY
        /// (annotation `trustgate.dev/outbound-port`).
        #[arg(long, default_value_t = 15001)]
        outbound_port: u16,
        /// The sidecar's admin port: probes and /metrics
        /// (annotation `trustgate.dev/admin-port`).
        #[arg(long, default_value_t = 15000)]
        admin_port: u16,
        /// Beside an existing Envoy or Istio sidecar, as its external authorizer (gRPC on
        /// 127.0.0.1, `--authz-port`) instead of in front of the app (annotation
        /// `trustgate.dev/authz: enabled`; `disabled` opts a workload out).
        #[arg(long)]
        authz: bool,
        /// The authorizer's port with `--authz` (annotation `trustgate.dev/authz-port`).
        #[arg(long, default_value_t = 9191)]
        authz_port: u16,
    },
    /// Validate a configuration and its key files (exit 1 with every problem, each with
    /// its key and file).
    Check {
        /// Configuration file (as `run`'s).
        #[arg(
            long,
            env = "TRUSTGATE_CONFIG",
            default_value = "/etc/trustgate/trustgate.toml"
        )]
        config: PathBuf,
    },
    /// What the inbound side would do with one request, step by step (exit 0: forwarded,
    /// 1: refused).
    Explain(ExplainArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Configuration file (as `run`'s).
    #[arg(
        long,
        env = "TRUSTGATE_CONFIG",
        default_value = "/etc/trustgate/trustgate.toml"
    )]
    config: PathBuf,
    /// The token the request carries (`-`: read it from stdin). Neither this nor
    /// --caller: a request without a token (answered on a public path).
    #[arg(long, conflicts_with = "caller")]
    token: Option<String>,
    /// A caller by name, instead of a token: what its requests would meet.
    #[arg(long)]
    caller: Option<String>,
    /// A person's token the request carries (in `[inbound.users] token_header`).
    #[arg(long)]
    user_token: Option<String>,
    /// A transaction token the request carries (in `txn-token`).
    #[arg(long)]
    txn_token: Option<String>,
    /// A DPoP proof the request carries (in `DPoP`; the person's token in `Authorization`
    /// then goes with the `DPoP` scheme).
    #[arg(long)]
    dpop: Option<String>,
    /// GET, POST, ...
    method: String,
    /// The request target: path and query.
    path: String,
    /// A request header, `"name: value"` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenAlg {
    #[value(name = "ES256", alias = "es256")]
    Es256,
    #[value(name = "EdDSA", alias = "eddsa")]
    EdDsa,
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
}

impl From<GenAlg> for KeyAlg {
    fn from(a: GenAlg) -> Self {
        match a {
            GenAlg::Es256 => KeyAlg::Es256,
            GenAlg::EdDsa => KeyAlg::EdDsa,
            GenAlg::Rs256 => KeyAlg::Rs256,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyFormat {
    Pem,
    Jwk,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. \"60s\", \"500ms\")"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("\"{s}\" is not name=value"))?;
    Ok((k.to_ascii_lowercase(), v.to_owned()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs an offline command. `run` and `demo` are dispatched by `main` (they need a
/// runtime); they are rejected here.
pub fn run_offline(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keygen {
            name,
            alg,
            out,
            format,
        } => keygen(&name, alg.into(), &out, format),
        Command::Token(args) => mint::run(args),
        Command::Verify {
            authorized_keys,
            shared_key,
            revoked,
            aud,
            leeway,
            max_ttl,
            allow_multi_audience,
            now,
            token,
        } => verify_cmd(VerifyArgs {
            authorized_keys,
            shared_key,
            revoked,
            policy: VerifyPolicy {
                audience: aud,
                leeway,
                max_ttl,
                allow_multi_audience,
            },
            now: now.unwrap_or_else(unix_now),
            token,
        }),
        Command::Keys {
            dir,
            json,
            fetch,
            fetch_ca_file,
            allow_http,
            fetch_timeout,
        } => {
            let fetch = fetch.then_some(FetchArgs {
                ca_file: fetch_ca_file,
                allow_http,
                timeout: fetch_timeout,
            });
            keys_cmd(&dir, json, fetch)
        }
        Command::Check { config } => check(&config),
        Command::Explain(args) => explain(args),
        Command::Inject {
            file,
            image,
            inbound_port,
            outbound_port,
            admin_port,
            authz,
            authz_port,
        } => {
            let opts = trustgate::inject::Options {
                inbound_port,
                outbound_port,
                admin_port,
                authz_port: authz.then_some(authz_port),
                image: image.unwrap_or_else(|| trustgate::inject::Options::default().image),
            };
            inject(file.as_deref(), &opts)
        }
        Command::Run { .. } | Command::Demo => {
            anyhow::bail!("run and demo need the proxy runtime; call them through main")
        }
    }
}

fn keygen(name: &str, alg: KeyAlg, out: &Path, format: KeyFormat) -> anyhow::Result<ExitCode> {
    let format = match format {
        KeyFormat::Pem => OutputFormat::Pem,
        KeyFormat::Jwk => OutputFormat::Jwk,
    };
    let files = keys::write_keypair(name, alg, out, format)?;
    eprintln!(
        "wrote {} (private, mode 0600: keep it in this service only)",
        files.private.display()
    );
    eprintln!(
        "wrote {} (public: copy it into the authorized_keys of every service {name} calls)",
        files.public.display()
    );
    println!("{}", files.kid);
    Ok(ExitCode::SUCCESS)
}

struct VerifyArgs {
    authorized_keys: Option<PathBuf>,
    shared_key: Option<PathBuf>,
    revoked: Option<PathBuf>,
    policy: VerifyPolicy,
    now: u64,
    token: Option<String>,
}

fn verify_cmd(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let files = TrustFiles {
        authorized_keys: args.authorized_keys.as_deref(),
        shared_key: args.shared_key.as_deref(),
        revoked: args.revoked.as_deref(),
    };
    let ring = trust_files::compose(&trust_files::load(&files, None)?, Vec::new());
    for p in ring.problems() {
        eprintln!("warning: {}: {}", p.file.display(), p.reason);
    }
    let token = match args.token.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .take(token::MAX_TOKEN_BYTES as u64 * 2)
                .read_to_string(&mut s)?;
            s
        }
        Some(t) => t.to_owned(),
    };
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    match token::verify(token, &ring, &args.policy, args.now) {
        Ok(v) => {
            println!("caller: {}", v.caller);
            println!("kid: {}", v.kid);
            println!("alg: {}", v.alg);
            println!("claims: {}", serde_json::to_string_pretty(&v.claims)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            eprintln!("rejected: {}", rejection.reason());
            if let Some(why) = token::why(token, rejection, &ring, &args.policy, args.now) {
                eprintln!("why: {why}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

struct FetchArgs {
    ca_file: Option<PathBuf>,
    allow_http: bool,
    timeout: Duration,
}

fn keys_cmd(dir: &Path, json: bool, fetch: Option<FetchArgs>) -> anyhow::Result<ExitCode> {
    let load = keys::load_dir(dir)?;
    let sources = load.sources;
    let mut problems = load.problems;
    let mut keys = load.keys;
    if let Some(args) = fetch {
        let fetcher = trustgate::trust::fetch::Fetcher::new(
            args.ca_file.as_deref(),
            args.allow_http,
            args.timeout,
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for s in &sources {
            match runtime.block_on(fetcher.fetch(&s.url)) {
                Ok(fetched) => keys.extend(fetched.keys.into_iter().map(|key| keys::TrustedKey {
                    speaks: keys::Speaks::Identity(s.identity.clone()),
                    key,
                    source: s.file.clone(),
                })),
                Err(e) => problems.push(keys::FileProblem {
                    file: s.file.clone(),
                    reason: format!("{}: fetch failed: {e}", s.url),
                }),
            }
        }
    }
    let ring = Keyring::new(keys, Default::default(), problems);
    let urls: Vec<_> = sources
        .iter()
        .map(|s| serde_json::json!({ "identity": s.identity, "url": s.url.to_string(), "file": s.file }))
        .collect();
    if json {
        let keys: Vec<_> = ring
            .keys()
            .into_iter()
            .map(|k| {
                serde_json::json!({
                    "identity": k.speaks.identity(),
                    "kid": k.key.kid,
                    "alg": k.key.alg.as_str(),
                    "file": k.source,
                })
            })
            .collect();
        let out =
            serde_json::json!({ "keys": keys, "url_sources": urls, "problems": ring.problems() });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{:<24} {:<44} {:<6} FILE", "IDENTITY", "KID", "ALG");
        for k in ring.keys() {
            println!(
                "{:<24} {:<44} {:<6} {}",
                k.speaks.label(),
                k.key.kid,
                k.key.alg,
                k.source.display()
            );
        }
        if !sources.is_empty() {
            println!("\n{:<24} {:<69} FILE", "IDENTITY (BY URL)", "URL");
            for s in &sources {
                println!("{:<24} {:<69} {}", s.identity, s.url, s.file.display());
            }
        }
        for p in ring.problems() {
            eprintln!("problem: {}: {}", p.file.display(), p.reason);
        }
        for line in ring.shared_lines() {
            eprintln!("warning: {line}");
        }
    }
    Ok(if ring.problems().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The configuration at `path` with the environment's overrides, or every problem on
/// stderr, one `error:` line each.
fn load_config(path: &Path) -> Option<config::Config> {
    match config::load(path, std::env::vars()) {
        Ok(cfg) => Some(cfg),
        Err(e) => {
            for p in &e.problems {
                eprintln!("error: {p}");
            }
            None
        }
    }
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(cfg) = load_config(path) else {
        return Ok(ExitCode::from(1));
    };
    let (_, mut files) = trust_files::load_checked(&cfg);
    let (errors, warnings) = trustgate::proxy::operator::exposure::config_problems(&cfg);
    files.errors.extend(errors);
    files.errors.extend(trustgate::fleet::file_problems(&cfg));
    files.warnings.extend(warnings);
    for w in &files.warnings {
        eprintln!("warning: {w}");
    }
    // A key file `run` would skip: refused here, as `keys` refuses it.
    for e in files.key_files.iter().chain(&files.errors) {
        eprintln!("error: {e}");
    }
    if files.errors.is_empty() && files.key_files.is_empty() {
        println!("{}: configuration is valid", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// `trustgate explain`: the steps on stdout; exit 0 forwarded, 1 refused, 2 bad usage.
fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    use trustgate::proxy::operator::explain::{Question, Who};
    let ExplainArgs {
        config: path,
        token,
        caller,
        method,
        path: target,
        headers,
        user_token,
        txn_token,
        dpop,
    } = args;
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        Ok(ExitCode::from(2))
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return usage(format!("\"{method}\" is not an HTTP method"));
    };
    let mut parsed = Vec::new();
    for h in &headers {
        let Some((n, v)) = h.split_once(':') else {
            return usage(format!("-H \"{h}\": expected \"name: value\""));
        };
        match (
            http::HeaderName::from_bytes(n.trim().as_bytes()),
            http::HeaderValue::from_str(v.trim()),
        ) {
            (Ok(n), Ok(v)) => parsed.push((n, v)),
            _ => return usage(format!("-H \"{h}\" is not a valid header")),
        }
    }
    let who = match (token, caller) {
        (Some(t), None) if t == "-" => Who::Token(read_stdin()?.trim().to_owned()),
        (Some(t), None) => Who::Token(t),
        (None, Some(c)) => Who::Caller(c),
        (None, None) => Who::Nobody,
        _ => return usage("give --token or --caller, not both".into()),
    };
    let Some(cfg) = load_config(&path) else {
        return Ok(ExitCode::from(1));
    };
    let (loaded, files) = trust_files::load_checked(&cfg);
    let Some(loaded) = loaded else {
        for e in &files.errors {
            eprintln!("error: {e}");
        }
        return Ok(ExitCode::from(1));
    };
    let q = Question {
        method,
        target,
        headers: parsed,
        who,
        user_token,
        txn_token,
        dpop,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // explain consumes nothing: no limit, no single-use token — so it asks the fleet's
    // store nothing either (a replay check there would use the token up). It says each
    // limit's scope from the configuration.
    let mut cfg = cfg;
    cfg.fleet = None;
    let answer = runtime.block_on(async {
        let metrics = trustgate::metrics::Metrics::new(prometheus::Registry::new())?;
        let state = trustgate::proxy::shared_state(std::sync::Arc::new(cfg), loaded, metrics)?;
        trustgate::proxy::operator::explain::explain(&state, q)
            .await
            .map_err(anyhow::Error::msg)
    })?;
    for line in &answer.lines {
        println!("{line}");
    }
    Ok(ExitCode::from(if answer.forwarded { 0 } else { 1 }))
}

fn read_stdin() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| anyhow::anyhow!("stdin: {e}"))?;
    Ok(s)
}

/// `trustgate inject`: the result on stdout, what was done on stderr; nothing on stdout
/// when a workload is refused (exit 1), so a pipe into `kubectl apply` applies nothing.
fn inject(file: Option<&Path>, opts: &trustgate::inject::Options) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let (name, input) = match file {
        None => ("stdin".to_owned(), read_stdin()?),
        Some(p) if p == Path::new("-") => ("stdin".to_owned(), read_stdin()?),
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        ),
    };
    match trustgate::inject::inject(&input, opts) {
        Ok(done) => {
            for line in &done.report {
                eprintln!("{line}");
            }
            let placeholder = trustgate::inject::Options::default().image;
            if done.output.contains(&placeholder) {
                eprintln!(
                    "warning: the sidecar image is the placeholder {placeholder}, which no registry serves: \
                     pass --image (e.g. the name deploy/image/build.sh printed) or annotate trustgate.dev/image"
                );
            }
            std::io::stdout().write_all(done.output.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {name}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `--log-level` / `TRUSTGATE_LOG_LEVEL`: refused (exit 2) like any bad value, never a
/// silent sidecar.
fn log_filter(s: &str) -> Result<String, String> {
    config::check_log_filter(s).map(|()| s.to_owned())
}
