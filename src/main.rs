//! The `trustgate` binary: parse the command line, set up logging, hand over to the library.
use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
mod cli;
mod demo;

use cli::{Cli, Command};
use trustgate::config;
use trustgate::config::LogFormat;
use trustgate::proxy::{Proxy, StartError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config, cli.log_format, cli.log_level.as_deref()),
        Command::Demo => {
            init_logging(
                cli.log_format,
                // The demo's billing shows a claim header that a peer's own token cannot
                // fill: the start-up warning saying so is the lesson, not a problem.
                Some(
                    cli.log_level
                        .as_deref()
                        .unwrap_or("warn,trustgate::proxy=error"),
                ),
            );
            demo()
        }
        offline => {
            init_logging(cli.log_format, cli.log_level.as_deref());
            cli::run_offline(offline)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(0)
}

/// `limits.worker_threads` (0 = one per usable CPU); one thread → a current-thread
/// runtime (as Envoy's workers and linkerd's single core are), more → work stealing.
fn runtime_with(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    Ok(builder.enable_all().build()?)
}

/// `trustgate run`: configuration and key files are checked whole before any port is
/// bound; then serve until SIGTERM or SIGINT, drain, and exit 0.
fn run(path: &Path, format: Option<LogFormat>, level: Option<&str>) -> anyhow::Result<ExitCode> {
    let cfg = match config::load(path, std::env::vars()) {
        Ok(cfg) => cfg,
        Err(e) => {
            for p in &e.problems {
                eprintln!("error: {p}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let format = format.unwrap_or(cfg.log.format);
    init_logging(Some(format), Some(level.unwrap_or(&cfg.log.level)));
    runtime_with(cfg.limits.worker_threads)?.block_on(async {
        // The files are loaded (once) and checked here; each problem is one line.
        let proxy = match Proxy::bind(cfg, prometheus::Registry::new()).await {
            Err(StartError::Files(errors)) => {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                return Ok(ExitCode::from(1));
            }
            other => other?,
        };
        let addrs = proxy.addrs();
        let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let state = proxy.state();
        let mode = match &state.cfg.inbound {
            Some(i) if i.enabled => match i.mode {
                config::InboundMode::Enforce => "enforce",
                config::InboundMode::Audit => "audit",
            },
            _ => "outbound-only",
        };
        tracing::info!(
            identity = %state.cfg.identity.name,
            kid = %state.trust.signer().map(|s| s.kid().to_owned()).unwrap_or_else(|| "-".into()),
            trusted_keys = state.trust.snapshot().keyring.len(),
            mode,
            inbound = %show(addrs.inbound),
            outbound = %show(addrs.outbound),
            admin = %addrs.admin,
            "listening"
        );
        proxy.serve(shutdown_signal()).await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Colour codes only for a person at a terminal: never into Kubernetes logs, files or
/// pipes, and never when `NO_COLOR` is set to anything non-empty (no-color.org).
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn demo() -> anyhow::Result<ExitCode> {
    let ok = runtime()?.block_on(demo::run())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Logs go to stderr so that commands printing a token or kid keep stdout clean.
fn init_logging(format: Option<LogFormat>, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_wanted(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(std::io::stderr);
    match format.unwrap_or(LogFormat::Text) {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::colour_wanted;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, Some(OsStr::new(""))));
    }
}
