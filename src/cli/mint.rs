//! `trustgate token`: a token signed with a private key, for curl and load tests — a
//! call's token, or (`--transaction-for`) a transaction token as an edge sidecar mints one.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use trustgate::keys;
use trustgate::proxy::unix_now;
use trustgate::token::TokenSigner;

use super::{parse_duration, parse_kv};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Private key file (PKCS#8/SEC1 PEM or private JWK), or with --shared a shared secret.
    #[arg(long)]
    key: PathBuf,
    /// The key file is a shared-key-mode secret (HS256).
    #[arg(long)]
    shared: bool,
    /// Issuer: the caller identity.
    #[arg(long)]
    iss: String,
    /// Audience: the called identity.
    #[arg(long)]
    aud: String,
    /// Lifetime.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    ttl: Duration,
    /// Signed context claim, `name=value` (repeatable).
    #[arg(long = "ctx", value_parser = parse_kv)]
    ctx: Vec<(String, String)>,
    /// Bind the token to a request: method and path-and-query, e.g. `GET /orders?id=1`.
    #[arg(long, num_args = 2, value_names = ["METHOD", "PATH"])]
    bind: Option<Vec<String>>,
    /// Print this many tokens, one per line (for load benchmarks).
    #[arg(long, default_value_t = 1, hide = true)]
    count: usize,
    /// A transaction token for this person (`sub`) instead: `--aud` is then the trust
    /// domain (`cluster.local`), `--ctx` its context, `--iss` the minter.
    #[arg(long, value_name = "SUBJECT")]
    transaction_for: Option<String>,
}

pub fn run(a: TokenArgs) -> anyhow::Result<ExitCode> {
    match a.transaction_for {
        Some(sub) => txn_cmd(&a.key, a.iss, &a.aud, a.ttl, a.ctx, &sub),
        None => token_cmd(
            &a.key, a.shared, a.iss, &a.aud, a.ttl, a.ctx, a.bind, a.count,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn token_cmd(
    key: &Path,
    shared: bool,
    iss: String,
    aud: &str,
    ttl: Duration,
    ctx: Vec<(String, String)>,
    bind: Option<Vec<String>>,
    count: usize,
) -> anyhow::Result<ExitCode> {
    for (what, name) in [("--iss", iss.as_str()), ("--aud", aud)] {
        if !keys::is_valid_identity(name) {
            anyhow::bail!("{what} \"{name}\" is not a valid identity (a DNS label)");
        }
    }
    let key = if shared {
        keys::load_shared_key(key)?
    } else {
        keys::load_signing_key(key)?
    };
    // Every verifier's default refuses what lives longer than `trust.max_token_ttl` (5m).
    if ttl > Duration::from_secs(300) {
        eprintln!(
            "warning: --ttl {}: a verifier with the default trust.max_token_ttl (5m) refuses it lifetime_too_long",
            humantime::format_duration(ttl)
        );
    }
    let signer = TokenSigner::new(iss, Arc::new(key), ttl);
    let ctx: BTreeMap<String, String> = ctx.into_iter().collect();
    let binding = bind.as_ref().map(|b| (b[0].as_str(), b[1].as_str()));
    let now = unix_now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count.max(1) {
        let token = signer.sign(aud, (!ctx.is_empty()).then_some(&ctx), binding, now)?;
        use std::io::Write as _;
        writeln!(out, "{token}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `trustgate token --transaction-for SUB`: a transaction token, as an edge sidecar mints
/// one (to try a downstream service with curl, or to load it).
fn txn_cmd(
    key: &Path,
    iss: String,
    domain: &str,
    ttl: Duration,
    ctx: Vec<(String, String)>,
    sub: &str,
) -> anyhow::Result<ExitCode> {
    if !keys::is_valid_identity(&iss) {
        anyhow::bail!("--iss \"{iss}\" is not a valid identity (a DNS label)");
    }
    let signer = TokenSigner::new(iss, Arc::new(keys::load_signing_key(key)?), ttl);
    let mut person = trustgate::token::Person::named(sub, "cli");
    let tctx = ctx
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let token = trustgate::token::mint_txn(&signer, &mut person, tctx, domain, ttl, unix_now())?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
